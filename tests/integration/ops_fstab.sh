#!/usr/bin/env bash
# ops_fstab.sh - objfs from /etc/fstab, the way mount(8) and systemd use it:
#  1. an fstab entry of type objfs (`mount -a -T FILE`, so /sbin/mount.objfs runs) with
#     _netdev,nofail,allow_other,endpoint=,passwd_file=,cache_dir=: mounted, reads what is in
#     the bucket, allow_other reaches the kernel, a write arrives in the bucket after
#     umount(8); the bash completion offers the mount point to `objfs umount`;
#  2. the same entry with type fuse.objfs (mount.fuse3 runs `objfs SOURCE DIR -o OPTS`);
#  3. a passwd file readable by others is refused with a message that says so;
#  4. mount_wait=10 with the gateway down at mount time: the mount succeeds when the gateway
#     comes up inside the window, and fails after the window with a clear message when
#     nothing ever answers; it never hangs.
# mount(8) only finds /sbin/mount.objfs and mount.fuse3 only an objfs on sh's default PATH,
# so the test runs in a private mount namespace in which an overlay adds those two links
# (to the objfs under test) and a tmpfs on /mnt holds the mount points: nothing outside
# the namespace changes.
set -euo pipefail

if [[ ${OPS_FSTAB_IN_NS:-} != 1 ]]; then
	if [[ $(id -u) != 0 ]] || ! command -v unshare >/dev/null; then
		if [[ ${CI:-} == true ]]; then
			echo "ERROR: ops_fstab.sh needs root and unshare (mount -a, a mount namespace)" >&2
			exit 99
		fi
		echo "SKIP: ops_fstab.sh needs root and unshare"
		exit 77
	fi
	OPS_FSTAB_IN_NS=1 exec unshare -m --propagation private -- bash "$0" "$@"
fi

. "$(dirname "$0")/../lib/harness.sh"
harness_init ops_fstab
harness_need_fuse
harness_need mount umount findmnt curl python3 timeout
[[ -x $OBJFS_BIN ]] || fail "no objfs binary at $OBJFS_BIN"
[[ -x /sbin/mount.fuse3 ]] || harness_need mount.fuse3

W=$HARNESS_DIR
now() { date +%s.%N; }
elapsed() { awk -v s="$1" -v n="$(now)" 'BEGIN { printf "%.1f", n - s }'; }

# ---- the namespace: links for mount(8) and mount.fuse3, mount points on a tmpfs
mkdir -p "$W/sbin" "$W/bin"
ln -s "$OBJFS_BIN" "$W/sbin/mount.objfs"
ln -s "$OBJFS_BIN" "$W/bin/objfs"
sbin=$(readlink -f /sbin)
mount -t overlay overlay -o "lowerdir=$W/sbin:$sbin" "$sbin" ||
	fail "cannot lay an overlay on $sbin in the test's mount namespace"
mount -t overlay overlay -o "lowerdir=$W/bin:/usr/local/bin" /usr/local/bin ||
	fail "cannot lay an overlay on /usr/local/bin in the test's mount namespace"
[[ $(readlink -f /sbin/mount.objfs) == $(readlink -f "$OBJFS_BIN") ]] ||
	fail "/sbin/mount.objfs does not lead to $OBJFS_BIN"
mount -t tmpfs -o size=1m,mode=0755 ops-fstab /mnt || fail "cannot mount a tmpfs on /mnt"

harness_start_s3
bucket=$(harness_unique fstab)
harness_mkbucket "$bucket"
echo "hello from the bucket" >"$W/hello"
[[ $(s3code -X PUT -T "$W/hello" "$S3_ENDPOINT/$bucket/dir/hello.txt") == 200 ]] ||
	fail "cannot put the test object"

printf '%s:%s\n' "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" >"$W/passwd"
chmod 600 "$W/passwd"
# A boot-time mount has no AWS_* variables: run mount(8) without them, so the credentials
# can only come from passwd_file. mnt ARGS...: mount(8) so, killed after 90 s (a hang).
mnt() {
	env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY -u AWS_SESSION_TOKEN -u AWS_PROFILE \
		timeout 90 mount "$@"
}
opts_for() { # ENDPOINT CACHE_NAME [EXTRA]
	echo "_netdev,nofail,allow_other,endpoint=$1,passwd_file=$W/passwd,cache_dir=$W/cache-$2${3:+,$3}"
}

mounted() { findmnt -rn --mountpoint "$1" >/dev/null 2>&1; }

# check_mount DIR WHAT: the mount at DIR reads the bucket, shows allow_other, and a file
# written through it arrives in the bucket after umount(8).
check_mount() {
	local dir=$1 what=$2 key got
	mounted "$dir" || fail "$what: '$dir' is not mounted"
	got=$(timeout 30 cat "$dir/dir/hello.txt") || fail "$what: cannot read dir/hello.txt"
	assert_eq "$got" "hello from the bucket" "$what: reads the bucket"
	findmnt -rn -o OPTIONS,FS-OPTIONS --mountpoint "$dir" | grep -q allow_other ||
		fail "$what: allow_other did not reach the kernel: $(findmnt -rn -o OPTIONS,FS-OPTIONS --mountpoint "$dir")"
	pass "$what: allow_other is in effect"
	key="written-$(basename "$dir").txt"
	echo "written through $what" >"$dir/$key" || fail "$what: cannot write $key"
	timeout 60 umount "$dir" || fail "$what: umount failed"
	mounted "$dir" && fail "$what: still mounted after umount"
	harness_wait_for "[[ \$(s3curl '$S3_ENDPOINT/$bucket/$key') == 'written through $what' ]]" 60 ||
		fail "$what: '$key' did not arrive in the bucket within 60 s of umount"
	pass "$what: a file written before umount(8) arrives in the bucket"
}

# ---- 1. type objfs through mount -a -T
mp=/mnt/objfs-ops-fstab
mkdir -p "$mp"
printf '# objfs entries of ops_fstab.sh\ns3://%s  %s  objfs  %s  0 0\n' \
	"$bucket" "$mp" "$(opts_for "$S3_ENDPOINT" a)" >"$W/fstab.objfs"
harness_register_mount "$mp"
out=$(mnt -a -T "$W/fstab.objfs" 2>&1) && rc=0 || rc=$?
[[ $rc == 0 ]] || fail "mount -a -T fstab (type objfs) exit $rc: $out"
pass "mount -a -T FILE mounts an objfs entry"
comp=$(bash -c 'source "$1"; COMP_LINE="objfs umount /mnt/objfs-ops"; COMP_POINT=${#COMP_LINE}
	_objfs; printf "%s\n" "${COMPREPLY[@]}"' _ "$OBJFS_SRCDIR/contrib/objfs.bash-completion")
[[ $comp == *"$mp"* ]] || fail "completion of 'objfs umount' does not offer $mp: '$comp'"
pass "bash completion offers the objfs mount point to umount"
check_mount "$mp" "type objfs"

# ---- 2. type fuse.objfs (mount.fuse3 -> objfs SOURCE DIR -o OPTS)
printf 's3://%s  %s  fuse.objfs  %s  0 0\n' "$bucket" "$mp" "$(opts_for "$S3_ENDPOINT" b)" \
	>"$W/fstab.fuse"
out=$(mnt -a -T "$W/fstab.fuse" 2>&1) && rc=0 || rc=$?
[[ $rc == 0 ]] || fail "mount -a -T fstab (type fuse.objfs) exit $rc: $out"
pass "mount -a -T FILE mounts a fuse.objfs entry"
check_mount "$mp" "type fuse.objfs"
out=$(mnt -t fuse.objfs -o "$(opts_for "$S3_ENDPOINT" c)" "s3://$bucket" "$mp" 2>&1) &&
	rc=0 || rc=$?
[[ $rc == 0 ]] || fail "mount -t fuse.objfs exit $rc: $out"
check_mount "$mp" "mount -t fuse.objfs"

# ---- 3. a passwd file others can read is refused, clearly
cp "$W/passwd" "$W/passwd-open"
chmod 644 "$W/passwd-open"
out=$(mnt -t objfs -o "endpoint=$S3_ENDPOINT,passwd_file=$W/passwd-open,cache_dir=$W/cache-d" \
	"s3://$bucket" "$mp" 2>&1) && rc=0 || rc=$?
mounted "$mp" && fail "mounted with a world-readable passwd file"
[[ $rc != 0 ]] || fail "mount with a world-readable passwd file exited 0"
[[ $out == *passwd-open* ]] || fail "the refusal does not name the passwd file: '$out'"
pass "a group/world-readable passwd_file is refused (exit $rc): $out"

# ---- 4. mount_wait=10 with the endpoint down at mount time
# 4a. the gateway comes back inside the window: the mount succeeds
printf 's3://%s  %s  objfs  %s  0 0\n' "$bucket" "$mp" \
	"$(opts_for "$S3_ENDPOINT" e mount_wait=10)" >"$W/fstab.wait"
harness_rgw stop-gateway
[[ $(s3code --max-time 2 "$S3_ENDPOINT/" 2>/dev/null) == 000 ]] || fail "the gateway still answers after stop-gateway"
start=$(now)
mnt -a -T "$W/fstab.wait" >"$W/wait.out" 2>&1 &
mount_job=$!
sleep 2
harness_rgw start-gateway
up_after=$(elapsed "$start")
wait "$mount_job" && rc=0 || rc=$?
took=$(elapsed "$start")
[[ $rc != 124 ]] || fail "mount with mount_wait=10 hung (killed after 90 s): $(cat "$W/wait.out")"
[[ $rc == 0 ]] || fail "gateway up after ${up_after}s, inside mount_wait=10, but mount failed (exit $rc after ${took}s): $(cat "$W/wait.out")"
pass "mount_wait=10: gateway back after ${up_after}s, mounted after ${took}s"
got=$(timeout 30 cat "$mp/dir/hello.txt") || fail "cannot read through the mount made after the wait"
assert_eq "$got" "hello from the bucket" "the mount made after the wait reads the bucket"
timeout 60 umount "$mp" || fail "umount after the wait failed"

# 4b. nothing ever answers: fail after the window, with a message, without hanging
port=""
for p in $(shuf -i 27000-27999 -n 20); do
	if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
		port=$p
		break
	fi
done
[[ -n $port ]] || fail "no closed port found in 27000-27999"
printf 's3://%s  %s  objfs  %s  0 0\n' "$bucket" "$mp" \
	"$(opts_for "http://127.0.0.1:$port" f mount_wait=10)" >"$W/fstab.dead"
start=$(now)
out=$(mnt -a -T "$W/fstab.dead" 2>&1) && rc=0 || rc=$?
took=$(elapsed "$start")
[[ $rc != 124 ]] || fail "mount of an endpoint that never answers hung (killed after 90 s)"
mounted "$mp" && fail "an endpoint that never answers was mounted"
[[ $rc != 0 ]] || fail "mount of an endpoint that never answers exited 0"
awk -v t="$took" 'BEGIN { exit !(t >= 9 && t <= 45) }' ||
	fail "mount_wait=10 against a dead endpoint gave up after ${took}s (expected 10 s, never a hang)"
[[ $out == *"127.0.0.1:$port"* ]] || fail "the failure does not name the endpoint: '$out'"
pass "mount_wait=10, endpoint never up: failed after ${took}s (exit $rc): $out"
