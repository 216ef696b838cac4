#!/usr/bin/env bash
# ops_region.sh - a bucket in another region fails the mount with one line that names the
# region and the option to set. RGW never answers that way, so the fault proxy does
# (mode wrong_region): S3's 301 PermanentRedirect with x-amz-bucket-region, its 400
# AuthorizationHeaderMalformed with <Region> in the body, and a 301 that names no region
# (generic advice, no invented region). For dest= the option named is dest_region. With the
# mode cleared the same mount works, so the failures come from the answers alone.
set -euo pipefail
. "$(dirname "$0")/../lib/harness.sh"
. "$(dirname "$0")/mount_common.sh"

harness_init ops_region
harness_need_fuse
harness_start_s3
harness_start_proxy
src=$(harness_unique region-src)
dst=$(harness_unique region-dst)
harness_mkbucket "$src"
harness_mkbucket "$dst"
mp=$(objfs_mountpoint region)

# mount_fails WHAT OPTS PATTERN...: the mount through the proxy fails (exit 1), leaves no
# mount behind, and its message matches every PATTERN (grep -E)
mount_fails() {
	local what=$1 opts=$2 out rc p
	shift 2
	out=$(timeout 60 "$OBJFS_BIN" mount "s3://$src" "$mp" -o \
		"endpoint=$PROXY_ENDPOINT,region=$S3_REGION,cache_dir=$HARNESS_DIR/cache,retries=0$opts" \
		2>&1) && rc=0 || rc=$?
	if [[ $rc == 0 ]]; then
		harness_register_mount "$mp"
		fail "$what: the mount succeeded"
	fi
	assert_eq "$rc" 1 "$what: the mount fails with exit status 1"
	! awk -v d="$mp" '$5 == d { f = 1 } END { exit !f }' /proc/self/mountinfo ||
		fail "$what: a mount was left behind"
	for p in "$@"; do
		grep -qE -- "$p" <<<"$out" || fail "$what: the message does not match '$p': $out"
	done
	[[ $(wc -l <<<"$out") == 1 ]] || fail "$what: more than one line: $out"
	pass "$what: $out"
}

proxy_mode '{"wrong_region": {"status": 301, "region": "eu-west-1"}}'
mount_fails "301 PermanentRedirect + x-amz-bucket-region" "" \
	"bucket '$src' is in region 'eu-west-1'" "add -o region=eu-west-1\$" "PermanentRedirect"

proxy_mode '{"wrong_region": {"status": 400, "region": "ap-south-1", "header": false}}'
mount_fails "400 AuthorizationHeaderMalformed with <Region>" "" \
	"bucket '$src' is in region 'ap-south-1'" "add -o region=ap-south-1\$" \
	"AuthorizationHeaderMalformed"

proxy_mode '{"wrong_region": {"status": 301, "header": false}}'
mount_fails "301 without a region" "" "PermanentRedirect" "set region= or endpoint=" \
	"^[^']*'$src'[^']*\$"

# dest= in another region: only the dest bucket's requests are answered so
proxy_mode "{\"wrong_region\": {\"status\": 301, \"region\": \"us-west-2\", \"path_re\": \"^/$dst\"}}"
mount_fails "dest= bucket in another region" ",dest=s3://$dst" \
	"s3://$dst: bucket '$dst' is in region 'us-west-2'" "add -o dest_region=us-west-2\$"
[[ $(proxy_stat injected.wrong_region) -ge 4 ]] || fail "the proxy injected fewer answers than expected"

proxy_mode '{}'
objfs_mount "s3://$src" "$mp" "endpoint=$PROXY_ENDPOINT,dest=s3://$dst"
echo hello >"$mp/hello.txt"
"$OBJFS_BIN" sync "$mp" >/dev/null || fail "objfs sync failed"
objfs_umount "$mp"
[[ $(s3curl "$S3_ENDPOINT/$dst/hello.txt") == hello ]] || fail "hello.txt did not reach the dest"
pass "without the injected answers the same mount works"
