#!/usr/bin/env bash
# ops_signals.sh - the signals of a running mount:
#  1. SIGUSR1 logs the counters (http, sync, data cache, meta cache) at the default log level,
#     and the mount goes on;
#  2. SIGHUP re-reads the credentials (here: passwd_file=) and says so in one line: with a
#     wrong secret in the file, a file not read before fails (403 -> EACCES), and the mount
#     is still there (libfuse's default SIGHUP handler would have unmounted it);
#  3. a passwd file that became unsafe (mode 0644) is refused on SIGHUP with an error line,
#     and the credentials in use stay;
#  4. the right secret back + SIGHUP: reads work again; the mount unmounts cleanly; with
#     dest=, one SIGHUP re-reads the credentials of both stores;
#  5. mount_wait logs its first failure and then one line every 10 s, not every retry.
set -euo pipefail
. "$(dirname "$0")/../lib/harness.sh"
. "$(dirname "$0")/mount_common.sh"

harness_init ops_signals
harness_need_fuse
harness_start_s3
bucket=$(harness_unique signals)
harness_mkbucket "$bucket"
for i in 1 2 3 4; do
	echo "content $i" >"$HARNESS_DIR/f$i"
	[[ $(s3code -X PUT -T "$HARNESS_DIR/f$i" "$S3_ENDPOINT/$bucket/f$i.txt") == 200 ]] ||
		fail "cannot put f$i.txt"
done

pw=$HARNESS_DIR/passwd
printf '%s:%s\n' "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" >"$pw"
chmod 600 "$pw"
mp=$(objfs_mountpoint signals)
# (passwd_file= comes before the environment: creds.h)
objfs_mount "s3://$bucket" "$mp" "passwd_file=$pw"
pid=$OBJFS_PID
log=$OBJFS_LOG

# wait_log PATTERN N: wait until PATTERN (grep -E) matches at least N lines of the log
wait_log() {
	harness_wait_for "[[ \$(grep -cE '$1' '$log') -ge $2 ]]" 10 ||
		fail "the log has fewer than $2 line(s) matching '$1': $(tail -n 5 "$log")"
}
alive() {
	kill -0 "$pid" 2>/dev/null || fail "objfs exited after $1: $(tail -n 5 "$log")"
	awk -v d="$mp" '$5 == d { f = 1 } END { exit !f }' /proc/self/mountinfo ||
		fail "$mp is no longer mounted after $1"
}

# ---- 1. SIGUSR1 ----
assert_eq "$(cat "$mp/f1.txt")" "content 1" "f1.txt reads through the mount"
kill -USR1 "$pid"
wait_log 'counters: http requests=[1-9]' 1
for what in 'http requests=' 'sync queued_files=' 'data_cache bytes=' 'meta_cache entries='; do
	grep -q "counters: $what" "$log" || fail "SIGUSR1: no '$what' counters in the log"
done
pass "SIGUSR1 logs the http, sync, data cache and meta cache counters at log_level=warn"
alive SIGUSR1
pass "the mount survives SIGUSR1"

# ---- 2. a wrong secret, SIGHUP ----
printf '%s:%s\n' "$AWS_ACCESS_KEY_ID" "wrong${AWS_SECRET_ACCESS_KEY}" >"$pw"
kill -HUP "$pid"
wait_log 'credentials re-read' 1
grep -q "credentials re-read: source bucket '$bucket' from passwd file '$pw'" "$log" ||
	fail "SIGHUP line does not name the bucket and the passwd file: $(grep 're-read' "$log")"
pass "SIGHUP logs one line naming the bucket and the passwd file"
alive SIGHUP
pass "the mount survives SIGHUP"
if out=$(cat "$mp/f2.txt" 2>&1); then
	fail "f2.txt still reads with a wrong secret after SIGHUP: '$out'"
fi
[[ $out == *"Permission denied"* || $out == *"Input/output error"* ]] ||
	fail "reading f2.txt with a wrong secret: expected EACCES or EIO, got '$out'"
pass "with a wrong secret re-read on SIGHUP, an uncached file fails: ${out##*: }"

# ---- 3. an unsafe passwd file is refused; the credentials in use stay ----
printf '%s:%s\n' "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" >"$pw"
chmod 644 "$pw"
kill -HUP "$pid"
wait_log 'SIGHUP: cannot re-read the credentials' 1
assert_eq "$(grep -c 'credentials re-read' "$log")" 1 "an unsafe passwd file is not used"
if cat "$mp/f3.txt" >/dev/null 2>&1; then
	fail "f3.txt reads although the refused file should have left the wrong secret in use"
fi
pass "the credentials in use stay when the re-read fails"
alive "a failed SIGHUP"

# ---- 4. the right secret back ----
chmod 600 "$pw"
kill -HUP "$pid"
wait_log 'credentials re-read' 2
assert_eq "$(cat "$mp/f4.txt")" "content 4" "with the right secret re-read on SIGHUP, f4.txt reads"
assert_eq "$(cat "$mp/f2.txt")" "content 2" "and f2.txt, which failed before, reads too"
echo "written after SIGHUP" >"$mp/new.txt" || fail "cannot write new.txt"
sync "$mp/new.txt" 2>/dev/null || true
objfs_umount "$mp"
wait "$pid" && rc=0 || rc=$?
assert_eq "$rc" 0 "objfs exits 0 at the unmount"
[[ $(s3curl "$S3_ENDPOINT/$bucket/new.txt") == "written after SIGHUP" ]] ||
	fail "new.txt did not reach the bucket"
pass "a file written after the SIGHUPs is uploaded with the re-read credentials"

# ---- 4b. with dest=, SIGHUP re-reads the credentials of both stores, in one line ----
dest=$(harness_unique signals-dest)
harness_mkbucket "$dest"
objfs_mount "s3://$bucket" "$mp" "passwd_file=$pw,dest=s3://$dest"
kill -HUP "$OBJFS_PID"
log=$OBJFS_LOG
wait_log 'credentials re-read' 1
grep -q "re-read: source bucket '$bucket' from passwd file .*; dest bucket '$dest' from passwd file" \
	"$log" || fail "the SIGHUP line does not name both stores: $(grep 're-read' "$log")"
pass "with dest=, one SIGHUP line names the source and the dest bucket"
objfs_umount "$mp"

# ---- 5. mount_wait logs its first failure, then one line every 10 s (not every retry) ----
# A port bound but never listened on: connections are refused, and no other process (tests
# run two at a time) can take it meanwhile, as it could take a port found free and let go.
python3 -c 'import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0))
print(s.getsockname()[1], flush=True); time.sleep(120)' >"$HARNESS_DIR/refused.port" &
harness_register_pid $!
harness_wait_for "[[ -s $HARNESS_DIR/refused.port ]]" 10 || fail "no port to refuse connections"
port=$(cat "$HARNESS_DIR/refused.port")
mp2=$(objfs_mountpoint signals-wait)
wlog=$HARNESS_DIR/mount-wait.log
harness_register_log "$wlog"
start=$SECONDS
"$OBJFS_BIN" mount "s3://$bucket" "$mp2" -f -o "endpoint=http://127.0.0.1:$port,region=$S3_REGION" \
	-o "cache_dir=$HARNESS_DIR/cache-wait,mount_wait=12s,retries=0" >"$wlog" 2>&1 && rc=0 || rc=$?
[[ $rc != 0 ]] || fail "a mount of a closed port succeeded"
took=$((SECONDS - start))
[[ $took -ge 11 && $took -le 40 ]] || fail "mount_wait=12s gave up after $took s"
n=$(grep -c 'retrying' "$wlog" || true)
assert_eq "$n" 2 "mount_wait=12s: $(grep -c . "$wlog") log lines, 2 'retrying' (at 0 and 10 s)"
grep -q 'connection refused' "$wlog" ||
	fail "the final error does not say 'connection refused': $(tail -n 2 "$wlog")"
pass "the mount fails after mount_wait with the reason"
