#!/usr/bin/env bash
# read_cache.sh - the data cache stays within cache_size on disk while three times that much
# is read through it: with cache_size=64M (default 1 MiB blocks and 8 MiB read-ahead), three
# different 64 MiB objects are read one after the other and each md5sum matches the source,
# while the disk space of cache_dir/data is sampled every 0.2 s.
#
# What is measured: the allocated bytes of the files under cache_dir/data (st_blocks, what
# `du -s -B1` counts; not `du -sb`, which is the apparent size and would count the holes of
# these sparse files). What the code promises (data_cache.h): "the bytes of cached blocks plus
# the blocks being fetched never exceed max_bytes": read-ahead reserves its blocks before it
# fetches them, so its in-flight allowance is zero and the bound is cache_size itself. The
# only slack allowed is the filesystem's own metadata counted in st_blocks (ext4 extent-tree
# blocks: one 4 KiB block per cache file, FS_SLACK in total), far less than one cache block.
# `objfs status` must also report cache_bytes <= cache_max_bytes, during and after the reads.
# That phase mounts with read_ahead_mem=0, so that read-ahead fills the cache directory too.
#
# Then the default: read-ahead goes into memory, and a sequential read through a fresh mount
# leaves the cache directory (nearly) empty: only the blocks the reader fetched itself (the
# start of the stream) are written there. The md5 matches (read by dd bs=1M), status shows
# the read-ahead went to memory, and no buffer is left afterwards.
set -euo pipefail
. "$(dirname "$0")/../lib/harness.sh"
. "$(dirname "$0")/mount_common.sh"

harness_init read_cache
harness_need_fuse
harness_need s3cmd md5sum find
harness_start_s3
bucket=$(harness_unique rcache)
harness_mkbucket "$bucket"

cache_mib=64
cache_size=$((cache_mib << 20))
FS_SLACK=$((64 << 10))
src=$HARNESS_DIR/src
mkdir -p "$src"
for i in 1 2 3; do head -c "$cache_size" /dev/urandom >"$src/obj$i"; done
s3c put --recursive --no-progress "$src/" "s3://$bucket/" >/dev/null || fail "s3cmd upload failed"

mp=$(objfs_mountpoint rcache)
objfs_mount "s3://$bucket" "$mp" "cache_size=${cache_mib}M,read_ahead_mem=0"
data=$OBJFS_CACHE/data
[[ -d $data ]] || fail "no cache data directory at '$data'"

# status_value KEY: KEY's value in `objfs status MP` (lines "key=value" or "key: value").
status_value() {
	"$OBJFS_BIN" status "$mp" | sed -nE "s/^[[:space:]]*$1[[:space:]]*[=:][[:space:]]*([0-9]+).*/\1/p" |
		head -n 1
}

# ---- the sampler: allocated bytes under cache_dir/data every 20 ms (finer than the 0.2 s
# asked for: the reads are fast on 127.0.0.1), one line per sample ----
samples=$HARNESS_DIR/du.samples
python3 - "$data" >"$samples" <<'EOF' &
import os, sys, time
d = sys.argv[1]
while True:
    total = 0
    try:
        with os.scandir(d) as it:
            for e in it:
                try:
                    st = e.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if e.is_file(follow_symlinks=False):
                    total += st.st_blocks * 512
    except FileNotFoundError:
        pass
    print(total, flush=True)
    time.sleep(0.02)
EOF
sampler=$!
harness_register_pid "$sampler"

for i in 1 2 3; do
	got=$(md5sum <"$mp/obj$i" | cut -d' ' -f1)
	assert_eq "$got" "$(md5sum <"$src/obj$i" | cut -d' ' -f1)" \
		"md5 of ${cache_mib} MiB object $i through the mount"
	cb=$(status_value cache_bytes)
	cm=$(status_value cache_max_bytes)
	assert_eq "$cm" "$cache_size" "objfs status: cache_max_bytes is cache_size"
	assert_le "$cb" "$cm" "objfs status after object $i: cache_bytes $cb <= cache_max_bytes"
done
sleep 0.5
kill "$sampler"
wait "$sampler" 2>/dev/null || true

n=$(wc -l <"$samples")
max=$(sort -n "$samples" | tail -n 1)
assert_le 20 "$n" "the sampler took $n samples of the cache's disk use"
# The cache really was used to its bound: three times its size went through it.
assert_le $((cache_size / 2)) "$max" "the cache filled up (max $max bytes on disk)"
assert_le "$max" $((cache_size + FS_SLACK)) \
	"disk use of cache_dir/data never exceeded cache_size ($max <= $cache_size + $FS_SLACK fs metadata)"
evictions=$(status_value cache_evictions)
assert_le 1 "$evictions" "blocks were evicted ($evictions) to stay within the bound"

objfs_umount "$mp"
pass "unmounted cleanly"

# ---- the default: sequential reads are served from memory ----
objfs_mount "s3://$bucket" "$mp" "cache_size=${cache_mib}M"
got=$(dd if="$mp/obj2" bs=1M status=none | md5sum | cut -d' ' -f1)
assert_eq "$got" "$(md5sum <"$src/obj2" | cut -d' ' -f1)" "md5 of object 2 read ahead into memory"
on_disk=$(du -s -B1 "$data" | cut -f1)
assert_le "$on_disk" $((4 << 20)) "a sequential read left $on_disk bytes in the cache directory"
to_mem=$(status_value cache_readahead_to_memory)
assert_le $((cache_mib / 2)) "$to_mem" "read-ahead blocks fetched into memory ($to_mem)"
# the reader's close (FUSE RELEASE) reaches objfs a little after dd exits
harness_wait_for '[[ $(status_value cache_readahead_memory_bytes) == 0 ]]' 10 ||
	fail "read-ahead buffers still in use after close: $(status_value cache_readahead_memory_bytes) bytes"
pass "no read-ahead buffer left after close"
objfs_umount "$mp"
pass "unmounted cleanly after the read from memory"
