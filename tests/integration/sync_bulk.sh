#!/usr/bin/env bash
# sync_bulk.sh - bulk writes reach the bucket intact. 2,000 files of 16 KiB in 20 directories
# are copied in with cp -r; `objfs sync` returns 0 and then every object is at the server
# (fetched with curl, not through objfs) with the local bytes (md5 of every file) and s3fs
# metadata (x-amz-meta-mode with the S_IFREG bits and the mode the mount shows, uid, gid,
# mtime), and nothing else is in the bucket. Then one large file goes up as a multipart
# upload whose parts are sent in parallel: the fault proxy holds part PUTs until at least two
# are waiting at the same time, then lets them go; the object has the right md5 and a
# multipart ETag, and no upload is left open. Between the two, rm -rf of the uploaded tree
# sends no HEAD per file (their attributes are still known) and empties the bucket.
#
# Sizes: SYNC_FILES (2000) files in SYNC_DIRS (20) directories, SYNC_BIG_MIB (256; the issue's
# full size is 1024) MiB for the large file.
set -euo pipefail
. "$(dirname "$0")/../lib/harness.sh"
. "$(dirname "$0")/mount_common.sh"
. "$(dirname "$0")/sync_common.sh"

nfiles=${SYNC_FILES:-2000}
ndirs=${SYNC_DIRS:-20}
big_mib=${SYNC_BIG_MIB:-256}

harness_init sync_bulk
harness_need_fuse
harness_need md5sum curl python3 split
harness_start_s3
harness_start_proxy
bucket=$(harness_unique bulk)
harness_mkbucket "$bucket"

# ---- the local tree ----
src=$HARNESS_DIR/src
per=$(((nfiles + ndirs - 1) / ndirs))
for ((d = 0; d < ndirs; d++)); do
	mkdir -p "$src/tree/d$d"
	head -c $((per * 16384)) /dev/urandom | split -b 16384 -d -a 4 - "$src/tree/d$d/f"
done
n=$(find "$src/tree" -type f | wc -l)
assert_eq "$n" "$((per * ndirs))" "made $n local files of 16 KiB"
nfiles=$n

mp=$(objfs_mountpoint bulk)
objfs_mount "s3://$bucket" "$mp" "endpoint=$PROXY_ENDPOINT,region=$S3_REGION"

# ---- many small files ----
t0=$SECONDS
cp -r "$src/tree" "$mp/tree" || fail "cp -r into the mount failed"
t1=$SECONDS
timeout 120 "$OBJFS_BIN" sync "$mp" >"$HARNESS_DIR/sync.out" 2>&1 || fail "objfs sync failed: $(cat "$HARNESS_DIR/sync.out")"
t2=$SECONDS
pass "cp -r of $nfiles files took $((t1 - t0)) s, objfs sync returned 0 after $((t2 - t1)) s"
st=$(objfs_ctl status)
grep -q '^queued_files=0$' <<<"$st" || fail "after objfs sync the queue is not empty: $st"

# what the mount says each file's mode and mtime are (mode and mtime the metadata must carry)
(cd "$mp/tree" && find . -type f -printf '%P %m %T@\n') | LC_ALL=C sort >"$HARNESS_DIR/mount-attrs"

sync_fetch "$bucket" "" "$HARNESS_DIR/back"
assert_eq "$(grep -vc '^[^ ]*/ ' "$HARNESS_DIR/back.meta")" "$nfiles" "the bucket holds exactly $nfiles file objects"
assert_eq "$(grep -c '^[^ ]*/ ' "$HARNESS_DIR/back.meta")" "$((ndirs + 1))" "... and $((ndirs + 1)) directory markers"
grep '^[^ ]*/ ' "$HARNESS_DIR/back.meta" >"$HARNESS_DIR/markers.meta"
sed -i '/^[^ ]*\/ /d' "$HARNESS_DIR/back.meta"
awk '$2 != 200 || int($3 / 4096) % 16 != 4 { print; bad = 1 } END { exit bad }' \
	"$HARNESS_DIR/markers.meta" >&2 || fail "a directory marker lacks the S_IFDIR mode"
sync_md5_list "$src/tree" >"$HARNESS_DIR/md5.local"
sync_md5_list "$HARNESS_DIR/back/tree" >"$HARNESS_DIR/md5.bucket"
diff "$HARNESS_DIR/md5.local" "$HARNESS_DIR/md5.bucket" >/dev/null ||
	fail "objects differ from the local files: $(diff "$HARNESS_DIR/md5.local" "$HARNESS_DIR/md5.bucket" | head -5)"
pass "all $nfiles objects have the local md5"

uid=$(id -u)
gid=$(id -g)
python3 - "$HARNESS_DIR/back.meta" "$HARNESS_DIR/mount-attrs" "$uid" "$gid" <<'EOF' || fail "metadata check failed"
import sys
meta, attrs, uid, gid = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
want = {}
for line in open(attrs):
    rel, mode, mtime = line.split()
    want["tree/" + rel] = (int(mode, 8), float(mtime))
bad = []
for line in open(meta):
    f = line.split()
    if len(f) != 7:
        bad.append("incomplete headers: " + line.strip())
        continue
    key, code, mode, u, g, mtime, etag = f
    if code != "200":
        bad.append("%s: HTTP %s" % (key, code))
        continue
    m = int(mode)
    if m & 0o170000 != 0o100000:
        bad.append("%s: x-amz-meta-mode %s has no S_IFREG bits" % (key, mode))
    if key not in want:
        bad.append("%s: not a file of the copy" % key)
        continue
    if m & 0o7777 != want[key][0]:
        bad.append("%s: mode %o, the mount shows %o" % (key, m & 0o7777, want[key][0]))
    if u != uid or g != gid:
        bad.append("%s: uid/gid %s/%s, expected %s/%s" % (key, u, g, uid, gid))
    if abs(float(mtime) - want[key][1]) > 1.0:
        bad.append("%s: x-amz-meta-mtime %s, the mount shows %s" % (key, mtime, want[key][1]))
if bad:
    print("\n".join(bad[:10]), file=sys.stderr)
    sys.exit(1)
EOF
pass "every object carries s3fs metadata: S_IFREG mode, uid $uid, gid $gid, mtime"
assert_le "$(proxy_stat max_concurrent_conns)" 25 "the connection cap (25) held during the bulk sync"

# ---- rm -rf of the tree this mount wrote: the files' attributes are known, no HEAD each ----
proxy_reset
rm -rf "$mp/tree" || fail "rm -rf of the uploaded tree failed"
heads=$(proxy_stat requests.HEAD)
timeout 120 "$OBJFS_BIN" sync "$mp" >"$HARNESS_DIR/sync3.out" 2>&1 || fail "objfs sync after rm -rf: $(cat "$HARNESS_DIR/sync3.out")"
assert_le "$heads" $((2 * ndirs + 4)) "HEAD requests during rm -rf of $nfiles files this mount had uploaded"
assert_eq "$(sync_keys "$bucket" tree/ | wc -l)" 0 "after rm -rf and objfs sync nothing of the tree is in the bucket"

# ---- one large file, multipart with parts in parallel ----
head -c $((big_mib << 20)) /dev/urandom >"$HARNESS_DIR/big.bin"
big_md5=$(md5sum <"$HARNESS_DIR/big.bin" | cut -d' ' -f1)
proxy_reset
# hold every part PUT until several wait at once: a serial uploader never gets there
proxy_mode '{"hold": {"method": "PUT", "path_re": "partNumber=", "max_s": 60}}'
cp "$HARNESS_DIR/big.bin" "$mp/big.bin" || fail "cp of the large file failed"
timeout 120 "$OBJFS_BIN" sync "$mp" >"$HARNESS_DIR/sync2.out" 2>&1 &
sync_pid=$!
harness_register_pid "$sync_pid"
harness_wait_for '[[ $(proxy_stat held_requests) -ge 2 ]]' 30 ||
	fail "part uploads never overlapped: at most $(proxy_stat held_requests) held at once"
sleep 1 # let more parts arrive to report how many run at once
held=$(proxy_stat held_requests)
proxy_mode '{}'
pass "$held part PUTs were in flight at the same time"
wait "$sync_pid" || fail "objfs sync of the large file failed: $(cat "$HARNESS_DIR/sync2.out")"
t3=$SECONDS
parts=$(proxy_stat requests.PUT)
pass "large file ($big_mib MiB) synced with $parts PUT requests"

s3curl -f -D "$HARNESS_DIR/big.hdr" -o "$HARNESS_DIR/big.back" "$S3_ENDPOINT/$bucket/big.bin" ||
	fail "GET of big.bin failed"
assert_eq "$(md5sum <"$HARNESS_DIR/big.back" | cut -d' ' -f1)" "$big_md5" "big.bin at the server has the local md5"
etag=$(tr -d '\r"' <"$HARNESS_DIR/big.hdr" | sed -n 's/^[Ee][Tt][Aa][Gg]: //p')
[[ $etag =~ -[0-9]+$ ]] || fail "big.bin's ETag '$etag' is not a multipart ETag"
pass "big.bin went up as a multipart upload (ETag $etag)"
grep -qi "^x-amz-meta-mode: $((8#100000 | 8#$(stat -c %a "$mp/big.bin")))" <(tr -d '\r' <"$HARNESS_DIR/big.hdr") ||
	fail "big.bin's x-amz-meta-mode is wrong: $(grep -i meta "$HARNESS_DIR/big.hdr")"
assert_eq "$(sync_uploads "$bucket")" "" "no multipart upload is left open"
objfs_umount "$mp"
echo "sync_bulk: $((SECONDS - t0)) s after the local tree was made"
