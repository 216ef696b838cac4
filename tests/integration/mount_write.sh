#!/usr/bin/env bash
# mount_write.sh - writes through the mount reach the bucket: cp -r of a tree, appends,
# truncates, writes in the middle, mkdir/rmdir, renames of files and directories, symlinks,
# chmod/chown/touch, rm. Everything reads back at once (before the upload), fsync returns only
# once the object is at the server, the unmount drains, and the bucket (checked with s3cmd and
# curl, not through objfs) then holds exactly the expected objects with s3fs metadata; a fresh
# mount shows the same tree. The ro option refuses every write.
set -euo pipefail
. "$(dirname "$0")/../lib/harness.sh"
. "$(dirname "$0")/mount_common.sh"

harness_init mount_write
harness_need_fuse
harness_need s3cmd md5sum
harness_start_s3
bucket=$(harness_unique write)
harness_mkbucket "$bucket"

src=$HARNESS_DIR/src
mkdir -p "$src/t/a/b" "$src/t/c"
for i in $(seq 1 30); do head -c $((i * 1000)) /dev/urandom >"$src/t/a/f$i"; done
head -c 20000000 /dev/urandom >"$src/t/c/big.bin"
: >"$src/t/c/empty"
echo leaf >"$src/t/a/b/leaf"

mp=$(objfs_mountpoint write)
objfs_mount "s3://$bucket" "$mp" "settle=100ms,batch_time=500ms"

# ---- a tree copied in reads back at once ----
cp -r "$src/t" "$mp/t"
diff -r "$src/t" "$mp/t" || fail "the copied tree reads back differently"
pass "cp -r in: reads back identical before any upload"

# ---- in-place changes (the local model follows along) ----
cp -r "$src/t" "$HARNESS_DIR/model"
m=$HARNESS_DIR/model
echo appended >>"$mp/t/a/f1"; echo appended >>"$m/a/f1"
truncate -s 500 "$mp/t/a/f2"; truncate -s 500 "$m/a/f2"
truncate -s 70000 "$mp/t/a/f3"; truncate -s 70000 "$m/a/f3"
printf 'MIDDLE' | dd of="$mp/t/c/big.bin" bs=1 seek=1000000 conv=notrunc status=none
printf 'MIDDLE' | dd of="$m/c/big.bin" bs=1 seek=1000000 conv=notrunc status=none
mv "$mp/t/a/f4" "$mp/t/a/f4-renamed"; mv "$m/a/f4" "$m/a/f4-renamed"
rm "$mp/t/a/f5"; rm "$m/a/f5"
mkdir "$mp/t/newdir"; mkdir "$m/newdir"
mkdir "$mp/t/gone"; rmdir "$mp/t/gone"
mv "$mp/t/a/b" "$mp/t/b-moved"; mv "$m/a/b" "$m/b-moved"
ln -s ../c/empty "$mp/t/a/link"; ln -s ../c/empty "$m/a/link"
chmod 600 "$mp/t/a/f6"; chmod 600 "$m/a/f6"
touch -d @1600000000 "$mp/t/a/f7"; touch -d @1600000000 "$m/a/f7"
diff -r "$m" "$mp/t" || fail "after changes the mount differs from the model"
pass "append, truncate, overwrite in the middle, rename, rm, mkdir/rmdir, symlink: mount matches"
assert_eq "$(readlink "$mp/t/a/link")" ../c/empty "readlink of a new symlink"
assert_eq "$(stat -c %a "$mp/t/a/f6")" 600 "chmod shows"
assert_eq "$(stat -c %Y "$mp/t/a/f7")" 1600000000 "touch -d shows"
if rmdir "$mp/t/a" 2>/dev/null; then fail "rmdir of a non-empty directory succeeded"; fi
pass "rmdir of a non-empty directory fails"

# ---- fsync means at the server ----
head -c 100000 /dev/urandom >"$HARNESS_DIR/synced"
dd if="$HARNESS_DIR/synced" of="$mp/synced" bs=64k conv=fsync status=none
code=$(s3code -I "$S3_ENDPOINT/$bucket/synced")
assert_eq "$code" 200 "after fsync the object is at the server"

# ---- unmount drains; the bucket holds the tree ----
objfs_umount "$mp"
mkdir -p "$HARNESS_DIR/back"
for f in $(cd "$m" && find . -type f ! -name link -printf '%P\n'); do
	s3curl -o "$HARNESS_DIR/back/obj" "$S3_ENDPOINT/$bucket/t/$f" || fail "GET t/$f failed"
	cmp -s "$m/$f" "$HARNESS_DIR/back/obj" || fail "object t/$f differs at the server"
done
pass "every file is at the server with the right content"
if [[ -n $(s3c ls "s3://$bucket/t/a/f5") ]]; then fail "removed object still at the server"; fi
if [[ -n $(s3c ls "s3://$bucket/t/a/b/") ]]; then fail "renamed directory still at its old name"; fi
pass "removed and renamed-away keys are gone"
hdr=$(s3curl -I "$S3_ENDPOINT/$bucket/t/a/f6" | tr -d '\r')
grep -qi "^x-amz-meta-mode: $((8#100600))$" <<<"$hdr" || fail "x-amz-meta-mode of f6: $hdr"
hdr=$(s3curl -I "$S3_ENDPOINT/$bucket/t/a/f7" | tr -d '\r')
grep -qi '^x-amz-meta-mtime: 1600000000' <<<"$hdr" || fail "x-amz-meta-mtime of f7: $hdr"
pass "s3fs metadata at the server (mode, mtime)"
assert_eq "$(s3curl "$S3_ENDPOINT/$bucket/t/a/link")" ../c/empty "a symlink is an object whose body is the target"
hdr=$(s3curl -I "$S3_ENDPOINT/$bucket/t/newdir/" | tr -d '\r')
grep -qi '^content-type: application/x-directory' <<<"$hdr" || fail "marker of newdir: $hdr"
pass "mkdir made a directory marker"

# ---- control socket: status shows the queue, sync empties it ----
mp5=$(objfs_mountpoint ctl)
objfs_mount "s3://$bucket" "$mp5" "settle=60s,batch_time=60s"
for i in 1 2 3 4; do echo "ctl $i" >"$mp5/ctl-$i"; done
st=$(objfs_ctl status)
grep -q '^queued_files=4$' <<<"$st" || fail "status does not show 4 queued files: $st"
grep -q "^mountpoint=$mp5$" <<<"$st" || fail "status does not name the mount point"
assert_eq "$(s3code -I "$S3_ENDPOINT/$bucket/ctl-1")" 404 "with a 60 s settle nothing is uploaded yet"
assert_eq "$(objfs_ctl sync | tail -1)" done "sync over the control socket"
for i in 1 2 3 4; do
	assert_eq "$(s3curl "$S3_ENDPOINT/$bucket/ctl-$i")" "ctl $i" "after sync ctl-$i is at the server"
done
grep -q '^queued_files=0$' <<<"$(objfs_ctl status)" || fail "status after sync still shows a queue"
objfs_umount "$mp5"

# ---- a fresh mount shows the same tree ----
mp2=$(objfs_mountpoint write2)
objfs_mount "s3://$bucket" "$mp2" ""
diff -r "$m" "$mp2/t" || fail "a fresh mount differs from the model"
assert_eq "$(stat -c %a "$mp2/t/a/f6")" 600 "mode survives the round trip"
pass "a fresh mount shows the same tree"
objfs_umount "$mp2"

# ---- ro ----
mp3=$(objfs_mountpoint write3)
objfs_mount "s3://$bucket" "$mp3" "ro"
if (echo x >"$mp3/t/new") 2>/dev/null; then fail "a write on a ro mount succeeded"; fi
if mkdir "$mp3/t/d" 2>/dev/null; then fail "mkdir on a ro mount succeeded"; fi
if rm "$mp3/t/a/f1" 2>/dev/null; then fail "rm on a ro mount succeeded"; fi
pass "ro: writes are refused"
objfs_umount "$mp3"

# ---- overlay: read the source, write to dest; the source is never modified ----
dest=$(harness_unique dest)
harness_mkbucket "$dest"
mp4=$(objfs_mountpoint overlay)
objfs_mount "s3://$bucket/t" "$mp4" "dest=s3://$dest/out"
assert_eq "$(cat "$mp4/b-moved/leaf")" leaf "overlay: source files read through"
echo new >"$mp4/new-file"
echo more >>"$mp4/a/f8"
cp "$m/a/f8" "$HARNESS_DIR/f8-model"; echo more >>"$HARNESS_DIR/f8-model"
cmp -s "$mp4/a/f8" "$HARNESS_DIR/f8-model" || fail "overlay: appended source file reads wrong"
if rm "$mp4/a/f9" 2>/dev/null; then fail "overlay: removing a source object succeeded"; fi
if mv "$mp4/a/f10" "$mp4/a/f10b" 2>/dev/null; then fail "overlay: renaming a source object succeeded"; fi
grep -q "read-only source" "$OBJFS_LOG" || fail "overlay: no log line for the refused change"
pass "overlay: changes to source objects are refused (EROFS) with a log line"
objfs_umount "$mp4"
assert_eq "$(s3curl "$S3_ENDPOINT/$dest/out/new-file")" new "overlay: a new file went to dest"
s3curl -o "$HARNESS_DIR/f8-dest" "$S3_ENDPOINT/$dest/out/a/f8"
cmp -s "$HARNESS_DIR/f8-dest" "$HARNESS_DIR/f8-model" || fail "overlay: the copied-up file at dest is wrong"
s3curl -o "$HARNESS_DIR/f8-src" "$S3_ENDPOINT/$bucket/t/a/f8"
cmp -s "$HARNESS_DIR/f8-src" "$m/a/f8" || fail "overlay: the source object was modified"
assert_eq "$(s3code -I "$S3_ENDPOINT/$bucket/t/new-file")" 404 "overlay: nothing new in the source"
pass "overlay: writes went to dest, the source is unchanged"
