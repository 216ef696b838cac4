#!/usr/bin/env bash
# mount_vhost.sh - virtual-host-style addressing end to end: the bucket in the host name
# (http://BUCKET.localhost:PORT/KEY), not in the path. curl resolves *.localhost to the
# loopback address itself, and the test RGW knows "localhost" as its DNS name (rgw.sh:
# rgw dns name), so it takes the bucket from the Host header.
#
# An object put out of band (path style, s3cmd) is listed and read through a virtual_host
# mount; files written through the mount (odd names included) arrive at the server and read
# back out of band; and the gateway's log shows the mount's requests with the key alone in
# the path, so the mount did not fall back to path style.
set -euo pipefail
. "$(dirname "$0")/../lib/harness.sh"
. "$(dirname "$0")/mount_common.sh"

harness_init mount_vhost
harness_need_fuse
harness_need s3cmd
[[ -z ${OBJFS_TEST_ENDPOINT:-} ]] || skip "needs the private RGW (its DNS name is set by rgw.sh)"
harness_start_s3
bucket=$(harness_unique vhost)
harness_mkbucket "$bucket"
port=${S3_ENDPOINT##*:}
vhost_ep=http://localhost:$port
rgwlog=$HARNESS_RGW_DIR/log/client.rgw.a.log

printf 'seeded out of band\n' >"$HARNESS_DIR/seed"
s3c put --no-progress "$HARNESS_DIR/seed" "s3://$bucket/dir/seed.txt" >/dev/null ||
	fail "s3cmd upload failed"

mp=$(objfs_mountpoint vhost)
objfs_mount "s3://$bucket" "$mp" "endpoint=$vhost_ep,region=$S3_REGION,virtual_host"

assert_eq "$(ls "$mp/dir")" "seed.txt" "the out-of-band object is listed"
assert_eq "$(cat "$mp/dir/seed.txt")" "seeded out of band" "and reads back"

names=("plain.txt" "a b+c%d#e?f.txt" "ünï cödé.txt")
for n in "${names[@]}"; do
	head -c 70000 /dev/urandom >"$HARNESS_DIR/src-$n"
	cp "$HARNESS_DIR/src-$n" "$mp/dir/$n"
done
"$OBJFS_BIN" sync "$mp" >/dev/null || fail "objfs sync failed"
for n in "${names[@]}"; do
	rm -f "$HARNESS_DIR/got"
	s3c get --no-progress "s3://$bucket/dir/$n" "$HARNESS_DIR/got" >/dev/null ||
		fail "'$n' is not at the server"
	cmp -s "$HARNESS_DIR/src-$n" "$HARNESS_DIR/got" || fail "'$n' differs at the server"
	pass "'$n' written through the mount is at the server, byte for byte"
done

# the mount's PUT of plain.txt: key alone in the path (path style would be /BUCKET/dir/...)
grep -q "\"PUT /dir/plain.txt" "$rgwlog" ||
	fail "no virtual-host PUT of dir/plain.txt in the gateway's log"
! grep -q "\"PUT /$bucket/dir/plain.txt" "$rgwlog" ||
	fail "the mount sent a path-style PUT"
pass "the gateway saw the bucket in the host name, not in the path"
objfs_umount "$mp"
pass "unmounted cleanly"
