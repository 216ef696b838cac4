#!/usr/bin/env bash
# sync_crash.sh - kill -9 in the middle of a sync loses nothing and publishes nothing wrong.
# A multipart-sized file and 1,000 small files are written; the fault proxy slows every PUT
# (delay_ms) and holds the large file's part uploads, so when about 300 small files are at
# the server the daemon is killed with SIGKILL, with PUTs in flight and a multipart upload
# open. The dead mount is lazily unmounted. At that moment every object in the bucket has
# exactly the content of its file (no partial or wrong object). A new mount on the same
# cache_dir replays the journal; `objfs sync` returns 0; then the bucket holds exactly the
# 1,001 files with their md5s, and no multipart upload is left open (the interrupted one was
# aborted, the file uploaded again).
#
# Sizes: SYNC_FILES (1000) small files of 1..8 KiB, SYNC_BIG_MIB (40) MiB for the large file
# (multipart threshold 16 MiB, 8 MiB parts), SYNC_KILL_AT (300) objects before the kill.
set -euo pipefail
. "$(dirname "$0")/../lib/harness.sh"
. "$(dirname "$0")/mount_common.sh"
. "$(dirname "$0")/sync_common.sh"

nfiles=${SYNC_FILES:-1000}
big_mib=${SYNC_BIG_MIB:-40}
kill_at=${SYNC_KILL_AT:-300}

harness_init sync_crash
harness_need_fuse
harness_need md5sum curl python3
harness_start_s3
harness_start_proxy
bucket=$(harness_unique crash)
harness_mkbucket "$bucket"

src=$HARNESS_DIR/src
mkdir -p "$src/small"
head -c $((big_mib << 20)) /dev/urandom >"$src/big.bin"
python3 - "$src/small" "$nfiles" <<'EOF'
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    with open(os.path.join(d, "f%04d" % i), "wb") as f:
        f.write(os.urandom(1024 + (i * 7919) % 7168))
EOF
sync_md5_list "$src" >"$HARNESS_DIR/md5.local"

cache=$HARNESS_DIR/cache-crash
mp=$(objfs_mountpoint crash)
objfs_mount "s3://$bucket" "$mp" "endpoint=$PROXY_ENDPOINT,region=$S3_REGION,cache_dir=$cache,settle=100ms"
pid1=$OBJFS_PID

# slow every PUT; hold the large file's parts so its multipart upload is open at the kill
proxy_mode '{"delay_ms": {"ms": 300, "method": "PUT"},
	"hold": {"method": "PUT", "path_re": "partNumber=", "max_s": 300}}'
cp "$src/big.bin" "$mp/big.bin" || fail "cp of the large file failed"
cp -r "$src/small" "$mp/small" || fail "cp -r of the small files failed"
pass "$nfiles small files and a $big_mib MiB file written (closed successfully)"

count_small() {
	sync_keys "$bucket" small/ | grep -c -v '/$' || true
}
harness_wait_for '[[ $(proxy_stat held_requests) -ge 1 && $(count_small) -ge $kill_at ]]' 120 ||
	fail "the sync did not get to $kill_at objects with a part upload held (at $(count_small))"
reg=${OBJFS_RUNTIME_DIR:-/run/objfs}/$(sed 's|/|%2F|g' <<<"$mp").sock
[[ -L $reg ]] || fail "the mount's control socket entry $reg is not registered"
kill -KILL "$pid1"
before=$(count_small)
held=$(proxy_stat held_requests)
[[ $before -lt $nfiles ]] || fail "the sync finished before the kill ($before objects): make it slower"
pass "killed objfs with $before of $nfiles small files at the server and $held part uploads held"
wait "$pid1" 2>/dev/null || true
# what a user does next: objfs umount knows the daemon is gone and only unmounts
"$OBJFS_BIN" umount "$mp" >"$HARNESS_DIR/umount.out" 2>&1 ||
	fail "objfs umount of the dead mount failed: $(cat "$HARNESS_DIR/umount.out")"
grep -q "not running there any more; unmounting without draining" "$HARNESS_DIR/umount.out" ||
	fail "objfs umount of the dead mount said: $(cat "$HARNESS_DIR/umount.out")"
! awk -v d="$mp" '$5 == d { f = 1 } END { exit !f }' /proc/self/mountinfo || fail "the dead mount is still mounted"
[[ ! -e $reg && ! -L $reg ]] || fail "the dead mount's control socket entry $reg is still registered"
pass "objfs umount of the dead mount: $(cat "$HARNESS_DIR/umount.out")"
proxy_mode '{}'
harness_wait_for '[[ $(proxy_stat current_requests) -eq 0 ]]' 30 ||
	fail "requests of the dead daemon still in the proxy: $(proxy_stats)"

# ---- right after the crash: what is there is right ----
open_uploads=$(sync_uploads "$bucket")
grep -q '^big.bin ' <<<"$open_uploads" ||
	fail "no multipart upload of big.bin was open at the kill: the test did not interrupt one"
pass "the kill interrupted a multipart upload of big.bin"
sync_fetch "$bucket" "" "$HARNESS_DIR/mid"
sync_md5_list "$HARNESS_DIR/mid" >"$HARNESS_DIR/md5.mid"
n_mid=$(wc -l <"$HARNESS_DIR/md5.mid")
bad=$(LC_ALL=C comm -23 <(LC_ALL=C sort "$HARNESS_DIR/md5.mid") <(LC_ALL=C sort "$HARNESS_DIR/md5.local"))
[[ -z $bad ]] || fail "after the kill, objects with content no file had: $(head -3 <<<"$bad")"
pass "after the kill all $n_mid objects at the server have their file's exact content"

# ---- remount on the same cache_dir: the journal is replayed ----
mp2=$(objfs_mountpoint crash2)
objfs_mount "s3://$bucket" "$mp2" "endpoint=$PROXY_ENDPOINT,region=$S3_REGION,cache_dir=$cache"
timeout 120 "$OBJFS_BIN" sync "$mp2" >"$HARNESS_DIR/sync.out" 2>&1 ||
	fail "objfs sync after the remount failed: $(cat "$HARNESS_DIR/sync.out")"
pass "remounted on the same cache_dir; objfs sync returned 0"
diff <(cd "$src" && find . -type f -printf '%P\n' | LC_ALL=C sort) \
	<(cd "$mp2" && find . -type f -printf '%P\n' | LC_ALL=C sort) >/dev/null ||
	fail "the new mount does not show the written tree"

sync_fetch "$bucket" "" "$HARNESS_DIR/back"
sync_md5_list "$HARNESS_DIR/back" >"$HARNESS_DIR/md5.back"
diff "$HARNESS_DIR/md5.local" "$HARNESS_DIR/md5.back" >/dev/null ||
	fail "the bucket differs from what was written: $(diff "$HARNESS_DIR/md5.local" "$HARNESS_DIR/md5.back" | head -5)"
pass "all $((nfiles + 1)) files are at the server with their md5, and nothing else"
awk '$2 != 200 { print; bad = 1 } END { exit bad }' "$HARNESS_DIR/back.meta" >&2 ||
	fail "some objects did not answer 200"
etag=$(awk '$1 == "big.bin" { print $7 }' "$HARNESS_DIR/back.meta")
[[ $etag =~ -[0-9]+$ ]] || fail "big.bin's ETag '$etag' is not a multipart ETag"
assert_eq "$(sync_uploads "$bucket")" "" "no multipart upload is left open"
grep -q '^queued_files=0$' <<<"$(objfs_ctl status)" || fail "the queue is not empty after the sync"
objfs_umount "$mp2"
