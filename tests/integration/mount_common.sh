# mount_common.sh - helpers shared by the mount_*.sh integration tests (sourced after
# harness.sh; not a test itself).
#
#   objfs_mount SOURCE MOUNTPOINT [OPTIONS]  mount in the foreground as a background job (log in
#       $HARNESS_DIR/objfs-N.log), wait until mounted, register mount and pid; sets OBJFS_PID,
#       OBJFS_LOG. OPTIONS is the -o list; endpoint/region/cache_dir are added unless given.
#   objfs_umount MOUNTPOINT                  fusermount3 -u and wait for the daemon to exit
#       (with OBJFS_VALGRIND=1 its exit status must be 0: valgrind exits 99 on errors).
#   objfs_mountpoint NAME                    print a fresh /mnt/objfs-mount-NAME-xxxx (created).
#   objfs_ctl CMD                            send CMD to the last mount's control socket
#       (OBJFS_CACHE/ctl.sock) and print the answer (independent of the CLI client).

_objfs_nmount=0

objfs_mountpoint() {
	local d
	d=/mnt/objfs-mount-$(harness_unique "$1")
	mkdir -p "$d"
	echo "$d"
}

objfs_mount() {
	local src=$1 mp=$2 opts=${3:-} n
	n=$_objfs_nmount
	_objfs_nmount=$((n + 1))
	[[ $opts == *endpoint=* || $src == file://* ]] || opts="endpoint=$S3_ENDPOINT,region=$S3_REGION${opts:+,$opts}"
	[[ $opts == *cache_dir=* ]] || opts="cache_dir=$HARNESS_DIR/cache-$n${opts:+,$opts}"
	OBJFS_CACHE=$(sed -E 's/.*cache_dir=([^,]*).*/\1/' <<<"$opts")
	OBJFS_LOG=$HARNESS_DIR/objfs-$n.log
	harness_register_log "$OBJFS_LOG"
	"$OBJFS_BIN" mount "$src" "$mp" -f -o "$opts" >"$OBJFS_LOG" 2>&1 &
	OBJFS_PID=$!
	harness_register_pid "$OBJFS_PID"
	harness_register_mount "$mp"
	local i
	for ((i = 0; i < 300; i++)); do
		if awk -v d="$mp" '$5 == d { f = 1 } END { exit !f }' /proc/self/mountinfo; then
			return 0
		fi
		kill -0 "$OBJFS_PID" 2>/dev/null || break
		sleep 0.1
	done
	fail "objfs did not mount $src on $mp: $(tail -5 "$OBJFS_LOG")"
}

objfs_umount() {
	local mp=$1 i
	fusermount3 -u "$mp" || fail "fusermount3 -u $mp failed"
	for ((i = 0; i < 600; i++)); do
		if ! kill -0 "$OBJFS_PID" 2>/dev/null; then
			[[ ${OBJFS_VALGRIND:-0} == 1 ]] || return 0
			local rc=0
			wait "$OBJFS_PID" || rc=$?
			[[ $rc == 0 ]] || fail "objfs under valgrind exited with $rc after the unmount of $mp"
			return 0
		fi
		sleep 0.1
	done
	fail "objfs (pid $OBJFS_PID) did not exit after the unmount of $mp"
}

objfs_ctl() {
	python3 - "$OBJFS_CACHE/ctl.sock" "$1" <<'EOF'
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(120)
s.connect(sys.argv[1])
s.sendall((sys.argv[2] + "\n").encode())
out = b""
while True:
    b = s.recv(65536)
    if not b:
        break
    out += b
sys.stdout.write(out.decode())
EOF
}
