#!/usr/bin/env bash
# ops_user.sh - objfs as an ordinary user, the way most people run it from a shell (through
# the setuid fusermount3):
#   - the mount daemonizes, reads an object put out of band, takes a tree with cp -r, and
#     objfs sync / status / umount work for that user; the objects arrive;
#   - the default cache directory is under the user's ~/.cache/objfs, owned by the user,
#     with nothing in it readable by others (it holds the bucket's data and the journal);
#   - another user cannot use the mount's control socket;
#   - allow_other without user_allow_other in /etc/fuse.conf, and a /dev/fuse the user may not
#     open, each fail with one clear line and leave nothing mounted.
# Runs as root: it creates two system users (removed afterwards) and may widen /dev/fuse to
# 0666 (what Debian's udev sets) for the test's duration, restoring its mode at the end.
set -euo pipefail
. "$(dirname "$0")/../lib/harness.sh"
. "$(dirname "$0")/mount_common.sh"

harness_init ops_user
harness_need_fuse
harness_need useradd userdel runuser stat
[[ $(id -u) == 0 ]] || skip "needs root to create the test users"
harness_start_s3
bucket=$(harness_unique user)
harness_mkbucket "$bucket"
printf 'from root\n' | s3curl -X PUT --data-binary @- "$S3_ENDPOINT/$bucket/hello" >/dev/null

u1=objfs-t1-$$ u2=objfs-t2-$$
home=$(mktemp -d /tmp/objfs-user-home.XXXX)
fuse_mode=$(stat -c %a /dev/fuse) u1_uid=
_user_cleanup() {
	set +e
	runuser -u "$u1" -- fusermount3 -uz "$home/mnt" 2>/dev/null
	pkill -u "$u1" -x objfs 2>/dev/null
	sleep 0.2
	[[ -z $u1_uid ]] || rm -rf --one-file-system "/tmp/objfs-$u1_uid" # its runtime directory
	userdel "$u1" 2>/dev/null
	userdel "$u2" 2>/dev/null
	chmod "$fuse_mode" /dev/fuse
	rm -rf --one-file-system "$home"
}
trap 'rc=$?; _user_cleanup; (exit $rc); _harness_cleanup' EXIT
useradd --system --no-create-home --home-dir "$home" --shell /bin/sh "$u1"
useradd --system --no-create-home --home-dir /nonexistent --shell /bin/sh "$u2"
u1_uid=$(id -u "$u1")
chown "$u1:" "$home"
chmod 0755 "$home"
# the binary where the users can run it (the build tree may be under a private directory)
bin=$home/objfs
cp "$OBJFS_BIN" "$bin"
chmod 0755 "$bin"
as() { # USER COMMAND...: run with the test's S3 keys in the environment, HOME=$home
	local who=$1
	shift
	runuser -u "$who" -- env HOME="$home" AWS_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID" \
		AWS_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY" "$@"
}
mp=$home/mnt
as "$u1" mkdir "$mp"
opts="endpoint=$S3_ENDPOINT,region=$S3_REGION,settle=100ms"
is_mounted() { awk -v d="$mp" '$5 == d { f = 1 } END { exit !f }' /proc/self/mountinfo; }

# ---- a /dev/fuse this user may not open ----
chmod 0600 /dev/fuse
rc=0
as "$u1" "$bin" mount "s3://$bucket" "$mp" -o "$opts" >"$HARNESS_DIR/out" 2>&1 || rc=$?
[[ $rc != 0 ]] || fail "the mount succeeded without access to /dev/fuse"
! is_mounted || fail "a failed mount (no /dev/fuse access) left $mp mounted"
grep -q "objfs: .*/dev/fuse.*readable and writable" "$HARNESS_DIR/out" ||
	fail "no clear line about /dev/fuse: $(cat "$HARNESS_DIR/out")"
pass "/dev/fuse not open to the user: $(grep objfs: "$HARNESS_DIR/out")"
chmod 0666 /dev/fuse

# ---- allow_other without user_allow_other ----
if ! grep -qs '^[[:space:]]*user_allow_other' /etc/fuse.conf; then
	rc=0
	as "$u1" "$bin" mount "s3://$bucket" "$mp" -o "$opts,allow_other" >"$HARNESS_DIR/out" 2>&1 || rc=$?
	[[ $rc != 0 ]] || fail "allow_other was accepted without user_allow_other"
	! is_mounted || fail "a refused allow_other left $mp mounted"
	grep -q "user_allow_other" "$HARNESS_DIR/out" || fail "allow_other refused unclearly: $(cat "$HARNESS_DIR/out")"
	pass "allow_other without user_allow_other: $(head -1 "$HARNESS_DIR/out")"
fi

# ---- the ordinary mount ----
as "$u1" "$bin" mount "s3://$bucket" "$mp" -o "$opts" >"$HARNESS_DIR/out" 2>&1 ||
	fail "the mount as an ordinary user failed: $(cat "$HARNESS_DIR/out")"
harness_register_mount "$mp"
is_mounted || fail "objfs mount returned but $mp is not mounted"
assert_eq "$(as "$u1" cat "$mp/hello")" "from root" "an object put out of band, read by the user"
mkdir -p "$HARNESS_DIR/tree/sub"
for i in 1 2 3 4 5; do head -c $((i * 7000)) /dev/urandom >"$HARNESS_DIR/tree/sub/f$i"; done
chmod -R a+rX "$HARNESS_DIR" "$HARNESS_DIR/tree"
as "$u1" cp -r "$HARNESS_DIR/tree" "$mp/tree" || fail "cp -r into the mount as the user failed"
as "$u1" "$bin" sync "$mp" >"$HARNESS_DIR/out" 2>&1 || fail "objfs sync as the user: $(cat "$HARNESS_DIR/out")"
as "$u1" "$bin" status "$mp" >"$HARNESS_DIR/status" 2>&1 || fail "objfs status as the user: $(cat "$HARNESS_DIR/status")"
grep -q "^queued_files=0$" "$HARNESS_DIR/status" || fail "status after sync: $(cat "$HARNESS_DIR/status")"
for i in 1 2 3 4 5; do
	s3curl "$S3_ENDPOINT/$bucket/tree/sub/f$i" | cmp -s - "$HARNESS_DIR/tree/sub/f$i" ||
		fail "tree/sub/f$i is not at the bucket byte for byte"
done
pass "as an ordinary user: mount, read, cp -r, objfs sync and status; the objects arrive"

cache=$(sed -n 's/^cache_dir=//p' "$HARNESS_DIR/status")
[[ $cache == "$home/.cache/objfs/"* ]] || fail "the default cache directory is '$cache', not under ~/.cache/objfs"
bad=$(find "$cache" \( -perm /077 -o ! -user "$u1" \) -printf '%M %u %p\n')
[[ -z $bad ]] || fail "the cache directory has something others can read, or not the user's: $bad"
pass "the cache directory is ~/.cache/objfs/..., the user's alone (0700 directories, 0600 files)"

rc=0
runuser -u "$u2" -- "$bin" status "$mp" >"$HARNESS_DIR/out" 2>&1 || rc=$?
[[ $rc != 0 ]] || fail "another user could read the mount's status"
pass "another user cannot use the control socket: $(head -1 "$HARNESS_DIR/out")"

as "$u1" "$bin" umount "$mp" >"$HARNESS_DIR/out" 2>&1 || fail "objfs umount as the user: $(cat "$HARNESS_DIR/out")"
! is_mounted || fail "$mp is still mounted after objfs umount"
# (a zombie waits for PID 1 to reap it: only a live daemon counts)
[[ -z $(ps -u "$u1" -o stat=,comm= | awk '$1 !~ /^Z/ && $2 == "objfs"') ]] ||
	fail "the user's objfs daemon is still running after umount"
pass "objfs umount as the user unmounts and the daemon exits"
