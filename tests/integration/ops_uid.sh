#!/usr/bin/env bash
# ops_uid.sh - uid= and gid= mean what objfs --help and objfs(1) say: they override every
# object's owner, x-amz-meta-uid/-gid included (as s3fs does); without them an object shows
# its x-amz-meta-uid/-gid, else the user who mounts. The help text is checked to say so.
set -euo pipefail
. "$(dirname "$0")/../lib/harness.sh"
. "$(dirname "$0")/mount_common.sh"

harness_init ops_uid
harness_need_fuse
harness_start_s3
bucket=$(harness_unique uid)
harness_mkbucket "$bucket"
echo meta >"$HARNESS_DIR/meta"
[[ $(s3code -X PUT -T "$HARNESS_DIR/meta" -H "x-amz-meta-uid: 1234" -H "x-amz-meta-gid: 2345" \
	"$S3_ENDPOINT/$bucket/with-meta.txt") == 200 ]] || fail "cannot put with-meta.txt"
[[ $(s3code -X PUT -T "$HARNESS_DIR/meta" "$S3_ENDPOINT/$bucket/plain.txt") == 200 ]] ||
	fail "cannot put plain.txt"

"$OBJFS_BIN" --help | grep -E '^  uid=' | grep -q overriding ||
	fail "objfs --help does not say that uid= overrides x-amz-meta-uid"
"$OBJFS_BIN" --help | grep -E '^  gid=' | grep -q overriding ||
	fail "objfs --help does not say that gid= overrides x-amz-meta-gid"
pass "objfs --help says uid= and gid= override the metadata"

mp=$(objfs_mountpoint uid)
objfs_mount "s3://$bucket" "$mp"
assert_eq "$(stat -c '%u %g' "$mp/with-meta.txt")" "1234 2345" "without uid=/gid=: x-amz-meta-uid/-gid"
assert_eq "$(stat -c '%u %g' "$mp/plain.txt")" "$(id -u) $(id -g)" \
	"without uid=/gid= and metadata: the user who mounts"
objfs_umount "$mp"

objfs_mount "s3://$bucket" "$mp" "uid=4321,gid=5432"
assert_eq "$(stat -c '%u %g' "$mp/with-meta.txt")" "4321 5432" "uid=/gid= override x-amz-meta-uid/-gid"
assert_eq "$(stat -c '%u %g' "$mp/plain.txt")" "4321 5432" "uid=/gid= apply to objects without metadata"
assert_eq "$(stat -c '%u %g' "$mp")" "4321 5432" "uid=/gid= apply to the mount's root"
objfs_umount "$mp"
