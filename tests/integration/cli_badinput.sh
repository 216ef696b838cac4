#!/bin/bash
# cli_badinput.sh - every way of pointing objfs at the wrong thing ends with ONE clear line
# on stderr, a non-zero exit and no hang: wrong secret key, unknown access key, missing
# bucket, closed port, malformed endpoint, unsafe passwd file, missing profile. Also the
# credential sources that should work (passwd file, bucket line, shared credentials file).
# objfs umount refuses what is not an objfs mount (a tmpfs, a plain directory).
set -euo pipefail
. "$(dirname "$0")/../lib/harness.sh"
harness_init cli_badinput
harness_need python3
harness_start_s3
bucket=$(harness_unique bad)
harness_mkbucket "$bucket"
cd "$HARNESS_DIR"
echo hello >file

# expect_fail NAME WANT_EXIT PATTERN CMD...: CMD must exit WANT_EXIT within 10 s and print
# exactly one line on stderr, starting "objfs: " and matching PATTERN (grep -E).
expect_fail() {
	local name=$1 want=$2 pat=$3 rc start end
	shift 3
	start=$(date +%s%N)
	set +e
	timeout 30 "$@" >out 2>err
	rc=$?
	set -e
	end=$(date +%s%N)
	local ms=$(((end - start) / 1000000))
	[[ $rc == "$want" ]] || fail "$name: exit $rc, expected $want; stderr: $(cat err)"
	[[ $(wc -l <err) == 1 ]] || fail "$name: expected one line on stderr, got: $(cat err)"
	grep -qE "^objfs: .*$pat" err || fail "$name: message does not match /$pat/: $(cat err)"
	((ms < 10000)) || fail "$name: took $ms ms"
	pass "$name ($ms ms): $(cat err)"
}

ep="endpoint=$S3_ENDPOINT"
AK=$AWS_ACCESS_KEY_ID
SK=$AWS_SECRET_ACCESS_KEY

expect_fail "wrong secret key" 1 "SignatureDoesNotMatch \(the secret key is wrong" \
	env AWS_SECRET_ACCESS_KEY="x$SK" "$OBJFS_BIN" ls "s3://$bucket" -o "$ep"
expect_fail "unknown access key" 1 "InvalidAccessKeyId \(.*access key" \
	env AWS_ACCESS_KEY_ID="AKIANOSUCHKEY000000" "$OBJFS_BIN" ls "s3://$bucket" -o "$ep"
expect_fail "missing bucket" 1 \
	"cannot access bucket 'no-such-bucket-$bucket' at $S3_ENDPOINT: NoSuchBucket \(the bucket does not exist" \
	"$OBJFS_BIN" put file "s3://no-such-bucket-$bucket/x" -o "$ep"

closed=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
expect_fail "closed port" 1 "cannot connect to http://127.0.0.1:$closed: connection refused" \
	"$OBJFS_BIN" stat "s3://$bucket/x" -o "endpoint=http://127.0.0.1:$closed"
expect_fail "malformed endpoint (port)" 1 "malformed endpoint 'http://127.0.0.1:99999'" \
	"$OBJFS_BIN" ls "s3://$bucket" -o "endpoint=http://127.0.0.1:99999"
expect_fail "malformed endpoint (scheme)" 2 "endpoint '127.0.0.1:7480' is not an http" \
	"$OBJFS_BIN" ls "s3://$bucket" -o "endpoint=127.0.0.1:7480"
expect_fail "unknown option" 2 "unknown option 'no_such_option'" \
	"$OBJFS_BIN" ls "s3://$bucket" -o "$ep,no_such_option=1"
expect_fail "secret as an option" 2 "credentials are not options" \
	"$OBJFS_BIN" ls "s3://$bucket" --secret_key=abc

# passwd files (s3fs format)
printf '%s:%s\n' "$AK" "$SK" >passwd
chmod 644 passwd
expect_fail "passwd file mode 0644" 1 "passwd file '$HARNESS_DIR/passwd' is accessible by group or others.*chmod 600" \
	env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY "$OBJFS_BIN" ls "s3://$bucket" \
	-o "$ep,passwd_file=$HARNESS_DIR/passwd"
chmod 600 passwd
env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY timeout 10 "$OBJFS_BIN" put file \
	"s3://$bucket/via-passwd" -o "$ep,passwd_file=$HARNESS_DIR/passwd" ||
	fail "passwd file 0600 refused"
printf '# comment\nWRONGAK:WRONGSK\n%s:%s:%s\n' "$bucket" "$AK" "$SK" >passwd2
chmod 600 passwd2
env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY timeout 10 "$OBJFS_BIN" stat \
	"s3://$bucket/via-passwd" -o "$ep,passwd_file=$HARNESS_DIR/passwd2" >/dev/null ||
	fail "the bucket:AK:SK line did not win over the bare AK:SK line"
pass "passwd file with mode 0600, and its bucket line"

# shared credentials file and profiles; the environment is ignored when profile= is given
printf '[default]\naws_access_key_id = WRONG\naws_secret_access_key = WRONG\n\n[test]\naws_access_key_id = %s\naws_secret_access_key = %s\n' \
	"$AK" "$SK" >creds
env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY AWS_SHARED_CREDENTIALS_FILE="$HARNESS_DIR/creds" \
	timeout 10 "$OBJFS_BIN" stat "s3://$bucket/via-passwd" -o "$ep,profile=test" >/dev/null ||
	fail "profile=test from AWS_SHARED_CREDENTIALS_FILE"
env AWS_ACCESS_KEY_ID=WRONG AWS_SHARED_CREDENTIALS_FILE="$HARNESS_DIR/creds" AWS_PROFILE=test \
	timeout 10 "$OBJFS_BIN" stat "s3://$bucket/via-passwd" -o "$ep,profile=test" >/dev/null ||
	fail "profile= must win over the environment"
pass "shared credentials file, profile= and AWS_PROFILE"
expect_fail "missing profile" 1 "profile 'nope' not found in '$HARNESS_DIR/creds'" \
	env AWS_SHARED_CREDENTIALS_FILE="$HARNESS_DIR/creds" "$OBJFS_BIN" ls "s3://$bucket" \
	-o "$ep,profile=nope"
expect_fail "no credentials at all" 1 "no credentials: set AWS_ACCESS_KEY_ID" \
	env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY -u AWS_PROFILE \
	AWS_SHARED_CREDENTIALS_FILE="$HARNESS_DIR/none" "$OBJFS_BIN" ls "s3://$bucket" -o "$ep"
expect_fail "half the environment" 1 "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not" \
	env -u AWS_SECRET_ACCESS_KEY "$OBJFS_BIN" ls "s3://$bucket" -o "$ep"

# the secret never appears in what objfs prints, even at debug level
env AWS_SECRET_ACCESS_KEY="x$SK" timeout 10 "$OBJFS_BIN" ls "s3://$bucket" -o "$ep,log_level=debug" \
	>out 2>err || true
if grep -qF "$SK" out err; then
	fail "the secret key appears in objfs's output"
fi
pass "no secret in the output at log_level=debug"

# server failures after retries are errors, never "no such object" (only a 404 is ENOENT)
harness_start_proxy
pep="endpoint=$PROXY_ENDPOINT,retries=2,retry_base=10ms,retry_max=100ms"
proxy_mode '{"error500": {"method": "HEAD"}}'
expect_fail "500 on HEAD" 1 "cannot stat 's3://$bucket/via-passwd': HTTP 500: Internal Server Error" \
	"$OBJFS_BIN" stat "s3://$bucket/via-passwd" -o "$pep"
[[ $(proxy_stat injected.error500) == 3 ]] || fail "expected 3 attempts, proxy saw $(proxy_stat injected.error500)"
proxy_mode '{"slowdown": {"method": "GET", "kind": "GET"}}'
expect_fail "503 SlowDown on GET" 1 "cannot read 's3://$bucket/via-passwd': SlowDown \(503\)" \
	"$OBJFS_BIN" cat "s3://$bucket/via-passwd" -o "$pep"
proxy_mode '{"reset": {"method": "HEAD"}}'
expect_fail "connection reset on HEAD" 1 "cannot stat 's3://$bucket/via-passwd': .*(reset|Recv failure|Empty reply)" \
	"$OBJFS_BIN" stat "s3://$bucket/via-passwd" -o "$pep"
proxy_mode '{"malformed_xml": {"kind": "LIST", "skip": 1, "how": "garbage"}}'
expect_fail "malformed listing" 1 "cannot list 's3://$bucket': .*malformed ListObjectsV2 response" \
	"$OBJFS_BIN" ls "s3://$bucket" -o "$pep"
if grep -q "no such object" err; then fail "a server failure was reported as absent"; fi
proxy_mode '{}'
"$OBJFS_BIN" stat "s3://$bucket/via-passwd" -o "$pep" >/dev/null || fail "the proxy path works when no fault is injected"
pass "without faults the same path works"

# objfs umount only ever unmounts objfs: as root, umount2 would take any file system
mkdir -p "$HARNESS_DIR/tmpfs" "$HARNESS_DIR/plain"
mount -t tmpfs objfs-test-tmpfs "$HARNESS_DIR/tmpfs"
expect_fail "objfs umount of a tmpfs" 1 "is not an objfs mount \(it is tmpfs\): not unmounting it" \
	"$OBJFS_BIN" umount "$HARNESS_DIR/tmpfs"
still=0
awk -v d="$HARNESS_DIR/tmpfs" '$5 == d { f = 1 } END { exit !f }' /proc/self/mountinfo || still=1
umount "$HARNESS_DIR/tmpfs"
[[ $still == 0 ]] || fail "objfs umount unmounted a tmpfs"
expect_fail "objfs umount of a plain directory" 1 "is not a mount point" \
	"$OBJFS_BIN" umount "$HARNESS_DIR/plain"
