#!/usr/bin/env bash
# mount_badinput.sh - a mount that cannot work fails at once, in the foreground, with one clear
# line on stderr and a non-zero exit, and leaves nothing mounted and no daemon behind: wrong
# credentials, a missing bucket, an unreachable endpoint, a missing mountpoint, a mountpoint
# that is a file, an unwritable cache directory, a second mount on the same cache directory,
# a mountpoint that is already mounted.
set -euo pipefail
. "$(dirname "$0")/../lib/harness.sh"
. "$(dirname "$0")/mount_common.sh"

harness_init mount_badinput
harness_need_fuse
harness_start_s3
bucket=$(harness_unique bad)
harness_mkbucket "$bucket"
mp=$(objfs_mountpoint bad)
harness_register_mount "$mp"

# expect_fail WHAT PATTERN MOUNTPOINT OBJFS-ARGS...: the daemonizing mount must fail with
# exactly one stderr line matching PATTERN, within 30 s, leaving MOUNTPOINT unmounted.
expect_fail() {
	local what=$1 pat=$2 where=$3 rc=0 err
	shift 3
	err=$HARNESS_DIR/err.txt
	timeout 30 "$OBJFS_BIN" mount "$@" 2>"$err" >/dev/null || rc=$?
	[[ $rc != 0 ]] || fail "$what: the mount succeeded"
	[[ $rc != 124 ]] || fail "$what: the mount hung for 30 s"
	[[ $(wc -l <"$err") == 1 ]] || fail "$what: expected one line on stderr, got: $(cat "$err")"
	grep -Eq "$pat" "$err" || fail "$what: message '$(cat "$err")' does not match /$pat/"
	if awk -v d="$where" '$5 == d { f = 1 } END { exit !f }' /proc/self/mountinfo; then
		fail "$what: $where was left mounted"
	fi
	if pgrep -f "objfs mount .* $where" >/dev/null; then fail "$what: a daemon is left running"; fi
	pass "$what: exit $rc, '$(cat "$err")'"
}

ep="endpoint=$S3_ENDPOINT,region=$S3_REGION"
AWS_SECRET_ACCESS_KEY=wrong-secret expect_fail "wrong secret key" \
	"(SignatureDoesNotMatch|AccessDenied|InvalidAccessKeyId|403)" "$mp" \
	"s3://$bucket" "$mp" -o "$ep,cache_dir=$HARNESS_DIR/c1"
AWS_ACCESS_KEY_ID=NOSUCHKEY expect_fail "unknown access key" \
	"(InvalidAccessKeyId|AccessDenied|403)" "$mp" \
	"s3://$bucket" "$mp" -o "$ep,cache_dir=$HARNESS_DIR/c1"
expect_fail "missing bucket" "(NoSuchBucket|does not exist|404)" "$mp" \
	"s3://no-such-bucket-$bucket" "$mp" -o "$ep,cache_dir=$HARNESS_DIR/c1"
expect_fail "unreachable endpoint" "127\.0\.0\.1:1|refused|connect" "$mp" \
	"s3://$bucket" "$mp" -o "endpoint=http://127.0.0.1:1,region=$S3_REGION,retries=1,connect_timeout=2s,cache_dir=$HARNESS_DIR/c1"
expect_fail "missing mountpoint" "does not exist" "$mp-missing" \
	"s3://$bucket" "$mp-missing" -o "$ep,cache_dir=$HARNESS_DIR/c1"
touch "$HARNESS_DIR/a-file"
expect_fail "mountpoint is a file" "not a directory" "$HARNESS_DIR/a-file" \
	"s3://$bucket" "$HARNESS_DIR/a-file" -o "$ep,cache_dir=$HARNESS_DIR/c1"
expect_fail "cache_dir below a file" "cache directory" "$mp" \
	"s3://$bucket" "$mp" -o "$ep,cache_dir=$HARNESS_DIR/a-file/cache"
if [[ $(id -u) == 0 ]]; then
	ro=$HARNESS_DIR/ro-fs
	mkdir -p "$ro"
	mount -t tmpfs -o ro,size=1m tmpfs "$ro" || fail "cannot mount a read-only tmpfs"
	harness_register_mount "$ro"
	expect_fail "read-only cache_dir" "cache directory .*(not writable|Read-only)" "$mp" \
		"s3://$bucket" "$mp" -o "$ep,cache_dir=$ro"
else
	chmod 0500 "$HARNESS_DIR/a-file" # not a directory either way
	mkdir -p "$HARNESS_DIR/ro-dir" && chmod 0500 "$HARNESS_DIR/ro-dir"
	expect_fail "unwritable cache_dir" "cache directory .*not writable" "$mp" \
		"s3://$bucket" "$mp" -o "$ep,cache_dir=$HARNESS_DIR/ro-dir"
fi

# a working mount, then a second one on the same cache directory and on the same mountpoint
objfs_mount "s3://$bucket" "$mp" "cache_dir=$HARNESS_DIR/shared"
mp2=$(objfs_mountpoint bad2)
harness_register_mount "$mp2"
expect_fail "second mount on the same cache_dir" "cache directory .* in use" "$mp2" \
	"s3://$bucket" "$mp2" -o "$ep,cache_dir=$HARNESS_DIR/shared"
rc=0
timeout 30 "$OBJFS_BIN" mount "s3://$bucket" "$mp" -o "$ep,cache_dir=$HARNESS_DIR/c3" \
	2>"$HARNESS_DIR/err.txt" || rc=$?
[[ $rc != 0 ]] || fail "mounting over an objfs mount succeeded"
grep -q "already a mount point" "$HARNESS_DIR/err.txt" || fail "over a mount: $(cat "$HARNESS_DIR/err.txt")"
pass "mounting on a mounted mountpoint: '$(cat "$HARNESS_DIR/err.txt")'"
echo alive >"$mp/still-works" && assert_eq "$(cat "$mp/still-works")" alive "the first mount is unharmed"
objfs_umount "$mp"

# the daemonizing path succeeds, reports, and unmounts on SIGTERM
"$OBJFS_BIN" mount "s3://$bucket" "$mp2" -o "$ep,cache_dir=$HARNESS_DIR/c4" ||
	fail "daemonized mount failed"
harness_register_mount "$mp2"
awk -v d="$mp2" '$5 == d { f = 1 } END { exit !f }' /proc/self/mountinfo ||
	fail "daemonized mount returned 0 but nothing is mounted"
pid=$(cat "$HARNESS_DIR/c4/lock" 2>/dev/null | head -1)
[[ -n $pid ]] && kill -0 "$pid" || fail "no daemon pid in the cache lock file"
kill -TERM "$pid"
harness_wait_for "! awk -v d='$mp2' '\$5 == d { f = 1 } END { exit !f }' /proc/self/mountinfo" 20 ||
	fail "SIGTERM did not unmount"
harness_wait_for "! kill -0 $pid 2>/dev/null" 20 || fail "the daemon did not exit after SIGTERM"
pass "daemon: mounted, then SIGTERM unmounted it and it exited"
