#!/usr/bin/env bash
# mount_dirstore.sh - a file:///dir source (the directory store, store_dir.c): a tree placed in
# the directory reads through the mount; writes land in the directory as files with s3fs
# metadata in user.objfs.* xattrs; a second mount sees them; injected faults
# (OBJFS_DIR_FAULTS) reach readers as EIO, never ENOENT. Names that are not UTF-8, which S3
# refuses, read and write here. Needs no S3 server.
set -euo pipefail
. "$(dirname "$0")/../lib/harness.sh"
. "$(dirname "$0")/mount_common.sh"

harness_init mount_dirstore
harness_need_fuse
harness_need getfattr md5sum

store=$HARNESS_DIR/store
mkdir -p "$store/a/b" "$store/c"
for i in $(seq 1 25); do head -c $((i * 5000)) /dev/urandom >"$store/a/f$i"; done
echo leaf >"$store/a/b/leaf"
: >"$store/c/empty"
echo latin1 >"$store/c/caf"$'\xe9' # a name that is not UTF-8: any bytes, unlike S3
cp -r "$store" "$HARNESS_DIR/model"

mp=$(objfs_mountpoint dir)
objfs_mount "file://$store" "$mp" ""
diff -r "$HARNESS_DIR/model" "$mp" || fail "the mounted directory store differs from its files"
pass "a tree in the directory reads through the mount"

mkdir "$mp/new"
echo written >"$mp/new/w.txt"
chmod 604 "$mp/new/w.txt"
ln -s ../a/f1 "$mp/new/link"
mv "$mp/a/f2" "$mp/c/f2"
echo new-latin1 >"$mp/new/na"$'\xefve' || fail "a name that is not UTF-8 was refused by the directory store"
rm "$mp/a/f3"
objfs_umount "$mp"
assert_eq "$(cat "$store/new/w.txt")" written "a written file is a file in the directory"
assert_eq "$(getfattr --absolute-names --only-values -n user.objfs.mode "$store/new/w.txt")" "$((8#100604))" \
	"its mode is in user.objfs.mode"
assert_eq "$(getfattr --absolute-names --only-values -n user.objfs.marker "$store/new")" 1 "mkdir made a marker"
assert_eq "$(cat "$store/new/link")" ../a/f1 "a symlink is a file holding the target"
[[ -f $store/c/f2 && ! -e $store/a/f2 && ! -e $store/a/f3 ]] || fail "rename / rm did not reach the directory"
pass "rename and rm reached the directory"
assert_eq "$(cat "$store/new/na"$'\xefve')" new-latin1 "a file with a name that is not UTF-8 in the directory"

mp2=$(objfs_mountpoint dir2)
objfs_mount "file://$store" "$mp2" ""
assert_eq "$(readlink "$mp2/new/link")" ../a/f1 "a second mount reads the symlink"
assert_eq "$(stat -c %a "$mp2/new/w.txt")" 604 "a second mount reads the mode"
objfs_umount "$mp2"

# every store operation fails: readers get EIO, never ENOENT
mp3=$(objfs_mountpoint dir3)
OBJFS_DIR_FAULTS="eio=1" objfs_mount "file://$store" "$mp3" "ro"
if out=$(cat "$mp3/a/f1" 2>&1); then fail "a read with eio=1 succeeded"; fi
grep -q "Input/output error" <<<"$out" || fail "with eio=1: '$out' (want EIO)"
if out=$(stat "$mp3/c/empty" 2>&1); then fail "a lookup with eio=1 succeeded"; fi
grep -q "Input/output error" <<<"$out" || fail "lookup with eio=1: '$out' (want EIO)"
pass "injected store faults reach readers as EIO"
objfs_umount "$mp3"

# objfs umount waits for the daemon to exit, not for someone to reap it: under a parent
# that never reaps (a container whose PID 1 does not), the exited daemon stays a zombie,
# and umount must still return. The test process is that parent (a child subreaper).
mp4=$(objfs_mountpoint dir4)
harness_register_mount "$mp4"
secs=$(python3 - "$OBJFS_BIN" "$store" "$mp4" "$HARNESS_DIR/cache-reaper" <<'EOF'
import ctypes, os, subprocess, sys, time
objfs, store, mp, cache = sys.argv[1:5]
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(36, 1, 0, 0, 0) != 0:  # PR_SET_CHILD_SUBREAPER: the daemon becomes our child
    sys.exit("prctl(PR_SET_CHILD_SUBREAPER) failed")
subprocess.run([objfs, "mount", "file://" + store, mp, "-o", "cache_dir=" + cache + ",ro"],
               check=True, stdin=subprocess.DEVNULL)
t = time.time()
try:
    subprocess.run([objfs, "umount", mp], check=True, timeout=30, stdout=subprocess.DEVNULL)
except subprocess.TimeoutExpired:
    print("timeout")
    sys.exit(0)
print("%.1f" % (time.time() - t))
while True:  # reap the daemon now
    try:
        if os.waitpid(-1, os.WNOHANG)[0] == 0:
            time.sleep(0.1)
    except ChildProcessError:
        break
EOF
) || fail "the subreaper case failed: $secs"
[[ $secs != timeout ]] || fail "objfs umount waited 30 s for a daemon that had exited (a zombie)"
assert_le "${secs%.*}" 5 "objfs umount returned though nobody reaped the daemon (${secs} s)"
