#!/usr/bin/env bash
# mount_read.sh - objects put out of band (s3cmd, curl) read back through the mount: names,
# sizes, types, s3fs metadata (mode, uid, gid, mtime), directory markers, empty objects and a
# large object; ls -lR, find, cat, md5sum and cp -r match the source tree byte for byte.
# The large object is 256 MiB by default, which is what CI runs (memstore keeps it in RAM and
# the test stays well under a minute); the issue asks for 1 GiB: READ_BIG_MIB=1024 runs that
# (slower; OBJFS_TEST_BIG_MB is the old name of the knob and still works).
set -euo pipefail
. "$(dirname "$0")/../lib/harness.sh"
. "$(dirname "$0")/mount_common.sh"

harness_init mount_read
harness_need_fuse
harness_need s3cmd md5sum find
harness_start_s3
bucket=$(harness_unique read)
harness_mkbucket "$bucket"

# ---- the source tree, uploaded with s3cmd ----
src=$HARNESS_DIR/src
mkdir -p "$src/dir/sub/deeper" "$src/other"
echo "hello world" >"$src/hello.txt"
: >"$src/empty"
: >"$src/dir/empty-too"
head -c 3000000 /dev/urandom >"$src/dir/three-mb.bin"
for i in $(seq 1 40); do echo "file $i" >"$src/dir/sub/f$i.txt"; done
echo deep >"$src/dir/sub/deeper/leaf"
echo "odd" >"$src/other/with space é+%.txt"
big_mb=${READ_BIG_MIB:-${OBJFS_TEST_BIG_MB:-256}}
head -c $((big_mb << 20)) /dev/urandom >"$src/big.bin"
s3c put --recursive --no-progress "$src/" "s3://$bucket/" >/dev/null || fail "s3cmd upload failed"

# s3fs-style metadata on an object and a directory marker (curl, like s3fs would send it)
echo '#!/bin/sh' >"$HARNESS_DIR/script"
s3curl -X PUT -T "$HARNESS_DIR/script" -H "x-amz-meta-mode: $((8#100755))" \
	-H "x-amz-meta-uid: 1234" -H "x-amz-meta-gid: 4321" -H "x-amz-meta-mtime: 1500000000" \
	"$S3_ENDPOINT/$bucket/meta/script.sh" >/dev/null
s3curl -X PUT --data-binary '' -H "Content-Type: application/x-directory" \
	-H "x-amz-meta-mode: $((8#40700))" -H "x-amz-meta-mtime: 1400000000" \
	"$S3_ENDPOINT/$bucket/marked/" >/dev/null
echo inside >"$HARNESS_DIR/inside"
s3curl -X PUT -T "$HARNESS_DIR/inside" "$S3_ENDPOINT/$bucket/marked/inside.txt" >/dev/null
cp "$HARNESS_DIR/script" "$src/meta-script.sh"

mp=$(objfs_mountpoint read)
objfs_mount "s3://$bucket" "$mp" "${MOUNT_READ_OPTS:-}"

# ---- names, sizes, types ----
(cd "$src" && find . -mindepth 1 -printf '%y %s %P\n' | grep -v ' meta-script.sh$' | sort) \
	>"$HARNESS_DIR/want.list"
(cd "$mp" && find . -mindepth 1 -printf '%y %s %P\n' |
	grep -Ev ' (meta|meta/script.sh|marked|marked/inside.txt)$' | sed 's/^d [0-9]* /d 4096 /' |
	sort) >"$HARNESS_DIR/got.list"
sed -i 's/^d [0-9]* /d 4096 /' "$HARNESS_DIR/want.list"
if diff "$HARNESS_DIR/want.list" "$HARNESS_DIR/got.list"; then
	pass "find: same names, types and sizes as the source tree"
else
	fail "find output differs (see diff above)"
fi
ls -lR "$mp" >"$HARNESS_DIR/ls.out" || fail "ls -lR failed"
assert_eq "$(grep -c 'f[0-9]*\.txt$' "$HARNESS_DIR/ls.out")" 40 "ls -lR shows the 40 files of dir/sub"

# ---- content ----
assert_eq "$(cat "$mp/hello.txt")" "hello world" "cat of a small object"
assert_eq "$(stat -c %s "$mp/empty")" 0 "empty object has size 0"
assert_eq "$(cat "$mp/empty" | wc -c)" 0 "empty object reads empty"
(cd "$src" && find . -type f ! -name meta-script.sh -print0 | sort -z | xargs -0 md5sum) \
	>"$HARNESS_DIR/want.md5"
(cd "$mp" && md5sum -c --quiet "$HARNESS_DIR/want.md5") || fail "md5sum of the mounted tree differs"
pass "md5sum of every file (incl. a ${big_mb} MiB object) matches"
cp -r "$mp/dir" "$HARNESS_DIR/copy"
diff -r "$src/dir" "$HARNESS_DIR/copy" || fail "cp -r out of the mount differs"
pass "cp -r out of the mount is identical"
assert_eq "$(cat "$mp/other/with space é+%.txt")" odd "a name with space, unicode, + and %"

# ---- s3fs metadata ----
assert_eq "$(stat -c '%a %u %g %Y %F' "$mp/meta/script.sh")" "755 1234 4321 1500000000 regular file" \
	"mode, uid, gid and mtime from x-amz-meta-*"
assert_eq "$(stat -c '%a %Y %F' "$mp/marked")" "700 1400000000 directory" \
	"a directory marker's mode and mtime"
assert_eq "$(stat -c '%a %F' "$mp/dir")" "750 directory" "an implicit directory gets 0750"
assert_eq "$(stat -c '%a %u' "$mp/hello.txt")" "640 $(id -u)" "an object without metadata: 0640, the mounting user"
assert_eq "$(cat "$mp/marked/inside.txt")" inside "a file below a marker"
if [[ -e $mp/nonexistent ]]; then fail "a missing name exists"; fi
pass "a missing name is ENOENT"

objfs_umount "$mp"
pass "unmounted cleanly"

# ---- the connection goes while a file is open ----
# Its RELEASE never comes: objfs frees the handle itself at the exit (under valgrind, as CI
# runs this test, a handle left behind is a leak). Not a directory here: libfuse's own
# per-directory buffer then leaks inside libfuse, which objfs cannot free.
objfs_mount "s3://$bucket" "$mp"
python3 - "$mp" <<'EOF' &
import os, sys, time
f = os.open(os.path.join(sys.argv[1], "hello.txt"), os.O_RDONLY)
os.read(f, 4)
print("open", flush=True)
time.sleep(30)
EOF
holder=$!
harness_register_pid "$holder"
sleep 1.5
harness_abort_fuse "$mp" || fail "cannot abort the FUSE connection of $mp"
kill "$holder" 2>/dev/null || true
wait "$holder" 2>/dev/null || true
objfs_umount "$mp"
grep -q "freed 1 handle(s) the kernel did not release" "$OBJFS_LOG" ||
	fail "the handle of the open file was not freed at the exit: $(tail -3 "$OBJFS_LOG")"
pass "handles the kernel never released are freed at the exit"
