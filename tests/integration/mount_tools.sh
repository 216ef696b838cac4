#!/usr/bin/env bash
# mount_tools.sh - the shell tools people point at a mount work as on a local disk, and what
# they leave behind is in the bucket after a remount with an empty cache:
#   - the lock-file pattern (create NAME.lock with O_EXCL, write, rename it over NAME, again):
#     the old name is gone at once, not "I/O error", while the upload is still pending;
#   - a file removed while its delete is pending, looked up again after the kernel forgot it;
#   - git init / add / commit twice (git does the above on .git/config and .git/index);
#   - rsync -a SRC/ MOUNT/ and tar -x of an archive with a "./" entry, both of which set the
#     times (and tar the owner) of the mount root; sed -i (a temporary file renamed over);
#   - mv of a stored directory shows its own mode and mtime while the rename is pending;
#   - rm -rf of a stored tree is gone from the listing at once; rm x; mkdir x lists a directory.
# The settle delay is long, so every step runs while the uploads are still pending.
set -euo pipefail
. "$(dirname "$0")/../lib/harness.sh"
. "$(dirname "$0")/mount_common.sh"

harness_init mount_tools
harness_need_fuse
harness_need python3 rsync git tar find
harness_start_s3
bucket=$(harness_unique tools)
harness_mkbucket "$bucket"

src=$HARNESS_DIR/src
mkdir -p "$src/d 1/sub" "$src/ü+%#?"
for i in $(seq 1 12); do head -c $((i * 3000)) /dev/urandom >"$src/d 1/f$i"; done
head -c 9000000 /dev/urandom >"$src/d 1/sub/big"
: >"$src/d 1/empty"
echo hello >"$src/ü+%#?/x y"
ln -s "d 1/f1" "$src/lnk"
chmod 751 "$src/d 1/f3"
touch -d @1500000000 "$src/d 1/f4" "$src/d 1/sub"
mkdir -p "$HARNESS_DIR/tarsrc/tar-tree/in"
echo tarred >"$HARNESS_DIR/tarsrc/tar-tree/in/file"
touch -d @1400000000 "$HARNESS_DIR/tarsrc/tar-tree/in/file"
tar -C "$HARNESS_DIR/tarsrc" -cf "$HARNESS_DIR/t.tar" .
tar -tf "$HARNESS_DIR/t.tar" | grep -x './' >/dev/null || fail "the archive has no ./ entry"

# stored before the mount, so that no listing of deep/ is cached when the test removes them
for k in deep/rmtree/a/b/f1 deep/rmtree/a/b/f2 deep/rmtree/a/f3 deep/swap; do
	[[ $(s3code -X PUT --data-binary "$k" "$S3_ENDPOINT/$bucket/$k") == 200 ]] || fail "PUT $k"
done

mp=$(objfs_mountpoint tools)
objfs_mount "s3://$bucket" "$mp" "settle=30s"

# ---- the lock-file pattern, while every upload is pending ----
lockcheck() { # DIR
	python3 - "$1" <<'EOF'
import errno, os, sys
d = sys.argv[1]
os.makedirs(d, exist_ok=True)
lock, final = os.path.join(d, "config.lock"), os.path.join(d, "config")
for i in range(5):
    fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    os.write(fd, b"round %d\n" % i)
    os.close(fd)
    os.rename(lock, final)
    try:
        os.stat(lock)
        sys.exit("round %d: the renamed-away name still exists" % i)
    except OSError as e:
        if e.errno != errno.ENOENT:
            sys.exit("round %d: stat of the renamed-away name: %s (want ENOENT)" % (i, e))
with open(final) as f:
    if f.read() != "round 4\n":
        sys.exit("the file renamed over last does not hold the last round")
EOF
}
lockcheck "$mp/locks" || fail "the lock-file pattern failed on the mount"
pass "lock-file pattern (O_EXCL create, rename over, again): the old name is ENOENT at once"

echo gone >"$mp/locks/removed"
rm "$mp/locks/removed"
sync
echo 2 >/proc/sys/vm/drop_caches # the kernel forgets the negative entry and asks objfs
err=$(stat "$mp/locks/removed" 2>&1) && fail "a removed file is still there"
[[ $err == *"No such file"* ]] || fail "stat of a removed file (delete pending): $err"
pass "a removed file looked up again while its delete is pending: ENOENT"

# ---- git ----
(
	cd "$mp"
	git init -q repo
	cd repo
	git config user.email t@example.org
	git config user.name test
	cp -r "$src/d 1" .
	git add -A
	git commit -qm first
	echo more >>"d 1/f1"
	git commit -qam second
	[[ -z $(git status --porcelain) ]] || { git status; exit 1; }
) >"$HARNESS_DIR/git.out" 2>&1 || fail "git in the mount failed: $(tail -5 "$HARNESS_DIR/git.out")"
pass "git init, add, commit twice, status clean"

# ---- rsync, tar, sed -i ----
rsync -a "$src/" "$mp/" || fail "rsync -a SRC/ MOUNT/ exited with $?"
rsync -a "$src/" "$mp/" || fail "a second rsync -a SRC/ MOUNT/ exited with $?"
pass "rsync -a SRC/ MOUNT/ (sets the mount root's times), twice"
tar -C "$mp" -xf "$HARNESS_DIR/t.tar" || fail "tar -x of an archive with ./ into the mount root exited with $?"
pass "tar -x of an archive with a ./ entry into the mount root"
touch -d @1600000000 "$mp"
assert_eq "$(stat -c %Y "$mp")" 1600000000 "touch of the mount root shows while mounted"
mkdir "$mp/sed"
printf 'one\ntwo\n' >"$mp/sed/file"
sed -i 's/two/TWO/' "$mp/sed/file"
assert_eq "$(cat "$mp/sed/file")" "$(printf 'one\nTWO')" "sed -i result"
[[ -z $(find "$mp/sed" -mindepth 1 -name "sed*") ]] || fail "sed's temporary file is still listed"
pass "sed -i"

# ---- mv of a stored directory: its mode and times show at once, not defaults ----
mkdir "$mp/mvdir"
echo inside >"$mp/mvdir/file"
chmod 705 "$mp/mvdir"
touch -d @1300000000 "$mp/mvdir"
"$OBJFS_BIN" sync "$mp" >/dev/null || fail "objfs sync failed"
mv "$mp/mvdir" "$mp/mvdir2"
assert_eq "$(ls -l --time-style=+%s "$mp" | awk '$7 == "mvdir2" { print $1, $6 }')" \
	"drwx---r-x 1300000000" "a moved directory's mode and mtime in a listing of its parent"
assert_eq "$(stat -c '%a %Y' "$mp/mvdir2")" "705 1300000000" "a moved directory's mode and mtime"
assert_eq "$(cat "$mp/mvdir2/file")" inside "a file in a moved directory"

# ---- rm -rf of a stored tree, and a file replaced by a directory, while the deletes wait;
# deep/ is listed only afterwards, so its listing comes from the store and the journal ----
rm -rf "$mp/deep/rmtree"
rm "$mp/deep/swap"
mkdir "$mp/deep/swap"
ls -l "$mp/deep" >"$HARNESS_DIR/deep.ls"
! grep -q rmtree "$HARNESS_DIR/deep.ls" || fail "rm -rf of a stored tree: still listed"
[[ $(awk '$NF == "swap" { print substr($1, 1, 1) }' "$HARNESS_DIR/deep.ls") == d ]] ||
	fail "a file replaced by a directory: $(grep swap "$HARNESS_DIR/deep.ls")"
pass "rm -rf of a stored tree is gone from the listing; rm x; mkdir x lists a directory"

"$OBJFS_BIN" sync "$mp" >/dev/null || fail "objfs sync failed"
objfs_umount "$mp"

# ---- all of it is in the bucket: a fresh mount with an empty cache ----
objfs_mount "s3://$bucket" "$mp" "cache_dir=$HARNESS_DIR/cache-fresh"
diff -r "$src/d 1" "$mp/d 1" || fail "rsync'd tree differs after the remount"
assert_eq "$(cat "$mp/ü+%#?/x y")" hello "odd name after the remount"
assert_eq "$(readlink "$mp/lnk")" "d 1/f1" "symlink after the remount"
assert_eq "$(stat -c %a "$mp/d 1/f3")" 751 "mode after the remount"
assert_eq "$(stat -c %Y "$mp/d 1/f4")" 1500000000 "mtime after the remount"
assert_eq "$(stat -c %Y "$mp/d 1/sub")" 1500000000 "directory mtime after the remount"
assert_eq "$(cat "$mp/tar-tree/in/file")" tarred "tar'd file after the remount"
assert_eq "$(stat -c %Y "$mp/tar-tree/in/file")" 1400000000 "tar'd mtime after the remount"
assert_eq "$(cat "$mp/locks/config")" "round 4" "the lock-file pattern's result after the remount"
[[ ! -e "$mp/locks/config.lock" && ! -e "$mp/locks/removed" ]] || fail "a renamed or removed name came back"
assert_eq "$(cat "$mp/sed/file")" "$(printf 'one\nTWO')" "sed -i result after the remount"
assert_eq "$(stat -c '%a %Y' "$mp/mvdir2")" "705 1300000000" "a moved directory after the remount"
[[ ! -e "$mp/mvdir" ]] || fail "a moved directory's old name came back"
[[ ! -e "$mp/deep/rmtree" && -d "$mp/deep/swap" ]] || fail "rmtree or swap wrong after the remount"
(
	cd "$mp/repo"
	[[ $(git log --format=%s | tr '\n' ' ') == "second first " ]] || { git log; exit 1; }
	git fsck --no-progress --strict
	[[ -z $(git status --porcelain) ]] || { git status; exit 1; }
) >"$HARNESS_DIR/git2.out" 2>&1 || fail "the git repository after the remount: $(tail -5 "$HARNESS_DIR/git2.out")"
pass "after a remount with an empty cache: trees, names, modes, mtimes, the git repository"
objfs_umount "$mp"
