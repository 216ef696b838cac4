#!/usr/bin/env bash
# ops_nosecret.sh - the secret key never reaches a log, a message, a file objfs writes or a
# command line. One mount at log_level=debug (curl verbose stays off: it is not an option)
# goes through reads, writes (single PUT and multipart), objfs sync/status, SIGUSR1, a
# wrong secret re-read on SIGHUP (failing reads and uploads, retries), the right one back;
# then a mount and an `objfs ls` that fail on a wrong secret, at log_level=debug. Every
# output, the log, the cache directory and `ps -eo args` (while mounted) are searched for
# the secret and for the wrong secret used.
set -euo pipefail
. "$(dirname "$0")/../lib/harness.sh"
. "$(dirname "$0")/mount_common.sh"

harness_init ops_nosecret
harness_need_fuse
harness_need rev
harness_start_s3
bucket=$(harness_unique nosecret)
harness_mkbucket "$bucket"
secret=$AWS_SECRET_ACCESS_KEY
wrong=$(rev <<<"$secret")
[[ ${#secret} -ge 8 && $wrong != "$secret" ]] || fail "unexpected test secret"
out=$HARNESS_DIR/out # every command's output goes here too
: >"$out"
harness_register_log "$out"
for i in 1 2 3; do
	echo "object $i" >"$HARNESS_DIR/o$i"
	s3curl -X PUT -T "$HARNESS_DIR/o$i" "$S3_ENDPOINT/$bucket/dir/o$i.txt" >/dev/null
done

pw=$HARNESS_DIR/passwd
printf '%s:%s\n' "$AWS_ACCESS_KEY_ID" "$secret" >"$pw"
chmod 600 "$pw"
mp=$(objfs_mountpoint nosecret)
objfs_mount "s3://$bucket" "$mp" "passwd_file=$pw,log_level=debug,multipart_threshold=5M,part_size=5M,\
settle=5s,retries=1,retry_max=200ms"
pid=$OBJFS_PID
log=$OBJFS_LOG
cache=$OBJFS_CACHE

# ---- what a secret could leak through: every request path, at debug ----
ls -l "$mp/dir" >>"$out" 2>&1 || fail "ls -l failed"
cat "$mp/dir/o1.txt" >>"$out" || fail "cat o1.txt failed"
echo small >"$mp/small.txt"
head -c $((6 << 20)) /dev/urandom >"$mp/big.bin" # multipart (threshold 5M)
"$OBJFS_BIN" sync "$mp" >>"$out" 2>&1 || fail "objfs sync failed: $(tail -n 3 "$out")"
"$OBJFS_BIN" status "$mp" >>"$out" 2>&1 || fail "objfs status failed"
kill -USR1 "$pid"
harness_wait_for "grep -q 'counters: http' '$log'" 10 || fail "no counters after SIGUSR1"
ps -eo args >"$HARNESS_DIR/ps.mounted"

# ---- a wrong secret: failed reads, failed uploads, the error paths at debug ----
# (later.txt is written first: with a wrong secret even its lookup fails; settle=5s holds
# its upload until the wrong secret is in use)
echo "upload me" >"$mp/later.txt"
printf '%s:%s\n' "$AWS_ACCESS_KEY_ID" "$wrong" >"$pw"
kill -HUP "$pid"
harness_wait_for "[[ \$(grep -c 'credentials re-read' '$log') -ge 1 ]]" 10 || fail "no SIGHUP line"
if cat "$mp/dir/o2.txt" >>"$out" 2>&1; then
	fail "o2.txt read with a wrong secret"
fi
harness_wait_for "grep -qiE 'SignatureDoesNotMatch|403' '$log'" 20 ||
	fail "the failed upload is not in the log"
"$OBJFS_BIN" status "$mp" >>"$out" 2>&1 || fail "objfs status failed"
kill -USR1 "$pid"
harness_wait_for "[[ \$(grep -c 'counters: http' '$log') -ge 2 ]]" 10 || fail "no counters"
ps -eo args >>"$HARNESS_DIR/ps.mounted"

# ---- the right secret back: the pending upload goes through ----
printf '%s:%s\n' "$AWS_ACCESS_KEY_ID" "$secret" >"$pw"
kill -HUP "$pid"
harness_wait_for "[[ \$(grep -c 'credentials re-read' '$log') -ge 2 ]]" 10 || fail "no SIGHUP line"
timeout 60 "$OBJFS_BIN" sync "$mp" >>"$out" 2>&1 || fail "objfs sync after the right secret failed"
[[ $(s3curl "$S3_ENDPOINT/$bucket/later.txt") == "upload me" ]] || fail "later.txt not uploaded"
objfs_umount "$mp"
pass "reads, writes, multipart, sync, status, SIGUSR1 and SIGHUP (wrong and right secret) ran at debug"

# ---- failures that print messages: a mount and an ls with a wrong secret ----
mp2=$(objfs_mountpoint nosecret-fail)
if env AWS_SECRET_ACCESS_KEY="$wrong" "$OBJFS_BIN" mount "s3://$bucket" "$mp2" -f -o \
	"endpoint=$S3_ENDPOINT,region=$S3_REGION,cache_dir=$HARNESS_DIR/cache-fail,log_level=debug" \
	>>"$out" 2>&1; then
	harness_register_mount "$mp2"
	fail "a mount with a wrong secret succeeded"
fi
if env AWS_SECRET_ACCESS_KEY="$wrong" "$OBJFS_BIN" ls "s3://$bucket" \
	-o "endpoint=$S3_ENDPOINT,region=$S3_REGION,log_level=debug" >>"$out" 2>&1; then
	fail "objfs ls with a wrong secret succeeded"
fi
grep -q SignatureDoesNotMatch "$out" || fail "the failures did not say SignatureDoesNotMatch"
pass "a mount and an ls with a wrong secret fail and say why"

# ---- the search ----
[[ $(wc -l <"$log") -ge 20 ]] || fail "the debug log is suspiciously short ($(wc -l <"$log") lines)"
found=""
for f in "$log" "$out" "$HARNESS_DIR/ps.mounted"; do
	if grep -qF -e "$secret" -e "$wrong" "$f"; then
		found+=" $f"
	fi
done
if grep -rlF -e "$secret" -e "$wrong" "$cache" "$HARNESS_DIR/cache-fail" 2>/dev/null; then
	found+=" (files in the cache directory, above)"
fi
[[ -z $found ]] || fail "the secret key appears in:$found"
pass "no secret in the debug log ($(wc -l <"$log") lines), the command output, the cache" \
	"directory or ps -eo args"
