#!/usr/bin/env bash
# mount_session.sh - temporary credentials (an access key, a secret and a session token, as
# AWS STS hands out) end to end: objfs signs every request with the token
# (x-amz-security-token), from the environment (AWS_SESSION_TOKEN) and from a shared
# credentials file (aws_session_token), and never logs it.
#
# This test's RGW runs with STS on (rgw.sh, RGW_STS=1); the test user gets a policy
# allowing sts:GetSessionToken (Ceph's requirement, through its IAM API) and asks for a
# 15-minute session. With it:
#   - a mount lists and reads an object put out of band, and files written through it
#     (one of them multipart) arrive at the server byte for byte (checked with the user's
#     permanent keys, s3cmd);
#   - the same through a credentials file's profile, and then rotated: a new session written
#     into the file and SIGHUP (a damaged token re-read so makes reads fail, which shows the
#     mount uses what it re-reads; the right one makes reads and writes work again);
#   - the temporary keys without their token, or with a damaged token, fail the mount with
#     one line that names the session token, and leave nothing mounted;
#   - neither the token nor the temporary secret appears in any objfs log or message.
set -euo pipefail
. "$(dirname "$0")/../lib/harness.sh"
. "$(dirname "$0")/mount_common.sh"

harness_init mount_session
harness_need_fuse
harness_need s3cmd curl python3
[[ -z ${OBJFS_TEST_ENDPOINT:-} ]] || skip "needs the private RGW (STS is configured by rgw.sh)"
RGW_STS=1 harness_start_s3
bucket=$(harness_unique session)
harness_mkbucket "$bucket"

# permission to call GetSessionToken: Ceph wants a user policy allowing it
harness_rgw_admin caps add --uid=objfs-test --caps="user-policy=*" >/dev/null ||
	fail "radosgw-admin caps add failed"
policy='{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["sts:GetSessionToken"],"Resource":"*"}]}'
curl -sSf --aws-sigv4 "aws:amz:$S3_REGION:iam" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
	--data-urlencode "Action=PutUserPolicy" --data-urlencode "PolicyName=objfs-sts" \
	--data-urlencode "UserName=objfs-test" --data-urlencode "PolicyDocument=$policy" \
	"$S3_ENDPOINT/" >/dev/null || fail "PutUserPolicy failed"
# new_session: GetSessionToken into tmp_ak, tmp_sk, tmp_tok
new_session() {
	curl -sSf --aws-sigv4 "aws:amz:$S3_REGION:sts" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
		-d "Action=GetSessionToken&Version=2011-06-15&DurationSeconds=900" \
		"$S3_ENDPOINT/" >"$HARNESS_DIR/session.xml" || fail "GetSessionToken failed"
	tmp_ak=$(field AccessKeyId)
	tmp_sk=$(field SecretAccessKey)
	tmp_tok=$(field SessionToken)
	[[ -n $tmp_ak && -n $tmp_sk && ${#tmp_tok} -gt 40 ]] ||
		fail "no credentials in the answer: $(cat "$HARNESS_DIR/session.xml")"
	[[ $tmp_ak != "$AWS_ACCESS_KEY_ID" ]] || fail "the session's access key is the permanent one"
	secrets+=("$tmp_tok" "$tmp_sk")
}
# damaged TOKEN: TOKEN with its first character changed (to x, or to y when it is an x: a
# token that starts with x stayed valid, 1 in 64 runs)
damaged() {
	if [[ ${1:0:1} == x ]]; then printf 'y%s' "${1:1}"; else printf 'x%s' "${1:1}"; fi
}
# field NAME: one element of the GetSessionToken answer
field() {
	python3 -c '
import sys, xml.etree.ElementTree as ET
for e in ET.parse(sys.argv[1]).iter():
    if e.tag.split("}")[-1] == sys.argv[2]:
        print(e.text)
        break' "$HARNESS_DIR/session.xml" "$1"
}
secrets=()
new_session
pass "GetSessionToken gave temporary credentials (${#tmp_tok}-byte token)"

printf 'seeded out of band\n' >"$HARNESS_DIR/seed"
s3c put --no-progress "$HARNESS_DIR/seed" "s3://$bucket/in/seed.txt" >/dev/null ||
	fail "s3cmd upload failed"

# check_mount HOW SUBDIR: list and read through the mount in $mp, write two files (one of
# them multipart) under SUBDIR, sync, and compare them at the server with the permanent keys
check_mount() {
	local how=$1 sub=$2 n
	assert_eq "$(ls "$mp/in")" "seed.txt" "$how: the out-of-band object is listed"
	assert_eq "$(cat "$mp/in/seed.txt")" "seeded out of band" "$how: and reads back"
	mkdir "$mp/$sub"
	head -c 70000 /dev/urandom >"$HARNESS_DIR/small-$sub"
	head -c $((20 << 20)) /dev/urandom >"$HARNESS_DIR/big-$sub"
	cp "$HARNESS_DIR/small-$sub" "$mp/$sub/small"
	cp "$HARNESS_DIR/big-$sub" "$mp/$sub/big"
	"$OBJFS_BIN" sync "$mp" >/dev/null || fail "$how: objfs sync failed"
	for n in small big; do
		rm -f "$HARNESS_DIR/got"
		s3c get --no-progress "s3://$bucket/$sub/$n" "$HARNESS_DIR/got" >/dev/null ||
			fail "$how: $sub/$n is not at the server"
		cmp -s "$HARNESS_DIR/$n-$sub" "$HARNESS_DIR/got" || fail "$how: $sub/$n differs at the server"
	done
	pass "$how: files written through the mount (one multipart) are at the server, byte for byte"
	# every request carried the token: the gateway would have refused the temporary key alone
	local err
	err=$("$OBJFS_BIN" status "$mp" | sed -n 's/^http_last_error=//p')
	[[ -z $err ]] || fail "$how: the mount reports an error: $err"
}

mp=$(objfs_mountpoint session)
AWS_ACCESS_KEY_ID=$tmp_ak AWS_SECRET_ACCESS_KEY=$tmp_sk AWS_SESSION_TOKEN=$tmp_tok \
	objfs_mount "s3://$bucket" "$mp" "multipart_threshold=8M,part_size=5M"
check_mount "environment" env
objfs_umount "$mp"
logs=("$OBJFS_LOG")

# the same from a shared credentials file
credfile=$HARNESS_DIR/aws-credentials
# write_credfile TOKEN: the [temp] profile with the current session's keys and TOKEN
write_credfile() {
	(
		umask 077
		printf '[other]\naws_access_key_id = NOSUCHKEY\naws_secret_access_key = nosuchsecret\n\n' >"$credfile.new"
		printf '[temp]\naws_access_key_id = %s\naws_secret_access_key = %s\naws_session_token = %s\n' \
			"$tmp_ak" "$tmp_sk" "$1" >>"$credfile.new"
	)
	mv "$credfile.new" "$credfile"
}
write_credfile "$tmp_tok"
# (profile= skips the environment, which holds the permanent keys and no token)
AWS_SHARED_CREDENTIALS_FILE=$credfile objfs_mount "s3://$bucket" "$mp" "profile=temp,multipart_threshold=8M,part_size=5M"
check_mount "credentials file" file

# Rotation, as temporary credentials need before they expire: a new session in the file and
# SIGHUP. A damaged token re-read on SIGHUP makes reads of uncached objects fail, so the
# mount does use what it re-reads; the right one back, and reads and writes work again.
# wait_reread N: the log shows N credential re-reads
wait_reread() {
	local i
	for ((i = 0; i < 100; i++)); do
		(($(grep -c 'credentials re-read' "$OBJFS_LOG") >= $1)) && return 0
		sleep 0.1
	done
	fail "no credential re-read #$1 in the log: $(tail -3 "$OBJFS_LOG")"
}
for n in 1 2 3; do
	printf 'uncached %s\n' "$n" >"$HARNESS_DIR/u$n"
	s3c put --no-progress "$HARNESS_DIR/u$n" "s3://$bucket/rot/u$n.txt" >/dev/null ||
		fail "s3cmd upload failed"
done
new_session
write_credfile "$(damaged "$tmp_tok")"
kill -HUP "$OBJFS_PID"
wait_reread 1
if out=$(cat "$mp/rot/u1.txt" 2>&1); then
	fail "an uncached object reads with a damaged token re-read on SIGHUP: '$out'"
fi
[[ $out == *"Permission denied"* || $out == *"Input/output error"* ]] ||
	fail "reading with a damaged token: expected EACCES or EIO, got '$out'"
pass "a damaged token re-read on SIGHUP is used: an uncached read fails (${out##*: })"
write_credfile "$tmp_tok"
kill -HUP "$OBJFS_PID"
wait_reread 2
assert_eq "$(cat "$mp/rot/u2.txt")" "uncached 2" "a new session re-read on SIGHUP: an uncached object reads"
assert_eq "$(cat "$mp/rot/u1.txt")" "uncached 1" "and so does the one that failed"
head -c 3000000 /dev/urandom >"$HARNESS_DIR/rotated"
cp "$HARNESS_DIR/rotated" "$mp/file/rotated"
"$OBJFS_BIN" sync "$mp" >/dev/null || fail "objfs sync after the rotation failed"
rm -f "$HARNESS_DIR/got"
s3c get --no-progress "s3://$bucket/file/rotated" "$HARNESS_DIR/got" >/dev/null ||
	fail "file/rotated is not at the server"
cmp -s "$HARNESS_DIR/rotated" "$HARNESS_DIR/got" || fail "file/rotated differs at the server"
pass "a file written after the rotation is at the server, byte for byte"
objfs_umount "$mp"
logs+=("$OBJFS_LOG")

# expect_fail WHAT PATTERN ENV...: the mount with these credentials fails with one line
expect_fail() {
	local what=$1 pat=$2 err=$HARNESS_DIR/err rc=0
	shift 2
	env "$@" timeout 60 "$OBJFS_BIN" mount "s3://$bucket" "$mp" \
		-o "endpoint=$S3_ENDPOINT,region=$S3_REGION,cache_dir=$HARNESS_DIR/cache-bad" \
		2>"$err" >/dev/null || rc=$?
	[[ $rc != 0 ]] || fail "$what: the mount succeeded"
	[[ $rc != 124 ]] || fail "$what: the mount hung for 60 s"
	[[ $(wc -l <"$err") == 1 ]] || fail "$what: expected one line on stderr, got: $(cat "$err")"
	grep -Eq "$pat" "$err" || fail "$what: message '$(cat "$err")' does not match /$pat/"
	! awk -v d="$mp" '$5 == d { f = 1 } END { exit !f }' /proc/self/mountinfo ||
		fail "$what: $mp was left mounted"
	local kept
	kept=$HARNESS_DIR/err-$(harness_unique x)
	cp "$err" "$kept"
	logs+=("$kept")
	pass "$what: exit $rc, '$(cat "$err")'"
}
expect_fail "temporary keys without their token" "(InvalidAccessKeyId|AccessDenied).*session token" \
	AWS_ACCESS_KEY_ID="$tmp_ak" AWS_SECRET_ACCESS_KEY="$tmp_sk" AWS_SESSION_TOKEN=
expect_fail "a damaged token" "(InvalidArgument|InvalidToken|InvalidClientTokenId).*session token" \
	AWS_ACCESS_KEY_ID="$tmp_ak" AWS_SECRET_ACCESS_KEY="$tmp_sk" AWS_SESSION_TOKEN="$(damaged "$tmp_tok")"

for f in "${logs[@]}"; do
	for x in "${secrets[@]}"; do
		! grep -qF -- "$x" "$f" || fail "a session token or temporary secret is in $f"
		! grep -qF -- "${x:1}" "$f" || fail "a damaged session token is in $f"
	done
done
pass "no token or temporary secret is in any log or message (${#logs[@]} files, ${#secrets[@]} secrets)"
