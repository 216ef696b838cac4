#!/usr/bin/env bash
# read_random.sh - random reads fetch what they need, not the object: 200 random 4 KiB reads
# (seeded, each checked against the source) of a 256 MiB object through the mount, counted at
# the fault proxy: bytes_to_client <= 200 x (block_size + SLACK), with SLACK for each GET's
# response headers and the lookups. Run twice, each on a fresh mount: with the default 1 MiB
# blocks (bound ~203 MiB of 256) and with block_size=64k (bound ~16 MiB), where fetching the
# whole object, or read-ahead triggered by random reads, shows at once. The reader asks the
# kernel for no read-ahead of its own (POSIX_FADV_RANDOM), so each read is one FUSE read.
set -euo pipefail
. "$(dirname "$0")/../lib/harness.sh"
. "$(dirname "$0")/mount_common.sh"

harness_init read_random
harness_need_fuse
harness_need s3cmd python3
harness_start_s3
bucket=$(harness_unique rrandom)
harness_mkbucket "$bucket"

size=$((256 << 20))
nreads=200
SLACK=$((16 << 10))
head -c "$size" /dev/urandom >"$HARNESS_DIR/big"
s3c put --no-progress "$HARNESS_DIR/big" "s3://$bucket/big" >/dev/null || fail "s3cmd upload failed"

harness_start_proxy
mp=$(objfs_mountpoint rrandom)

for bs in 1M 64k; do
	case $bs in
	1M) bsb=$((1 << 20)) opt="" ;;
	64k) bsb=$((64 << 10)) opt=",block_size=64k" ;;
	esac
	objfs_mount "s3://$bucket" "$mp" "endpoint=$PROXY_ENDPOINT$opt"
	stat "$mp/big" >/dev/null || fail "stat of the object through the mount"
	proxy_reset
	python3 - "$mp/big" "$HARNESS_DIR/big" "$nreads" <<'EOF' || fail "block_size $bs: random reads failed"
import os, random, sys
mnt, src, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
size = os.path.getsize(src)
rnd = random.Random(4242)
fm = os.open(mnt, os.O_RDONLY)
fs = os.open(src, os.O_RDONLY)
os.posix_fadvise(fm, 0, 0, os.POSIX_FADV_RANDOM)
for i in range(n):
    off = rnd.randrange(0, size // 4096) * 4096
    a = os.pread(fm, 4096, off)
    if a != os.pread(fs, 4096, off):
        sys.exit("read %d at offset %d differs from the source" % (i, off))
os.close(fm)
os.close(fs)
EOF
	pass "block_size $bs: $nreads random 4 KiB reads match the source"
	got=$(proxy_stat bytes_to_client)
	gets=$(proxy_stat requests.GET)
	assert_le "$got" $((nreads * (bsb + SLACK))) \
		"block_size $bs: $got bytes in $gets GETs for $nreads random reads, <= $nreads x (block + $SLACK)"
	assert_le "$gets" "$nreads" "block_size $bs: at most one GET per random read ($gets)"
	objfs_umount "$mp"
done
pass "unmounted cleanly"
