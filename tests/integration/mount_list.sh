#!/usr/bin/env bash
# mount_list.sh - `ls -l` of a directory of 10,000 objects costs about 10 LIST requests and no
# HEAD (the attributes come from the listing), counted at the fault proxy; a second `ls -l`
# within the TTLs costs no request at all; a name looked up after the listing needs none; a
# cold lookup sends its HEAD and its LIST at once.
set -euo pipefail
. "$(dirname "$0")/../lib/harness.sh"
. "$(dirname "$0")/mount_common.sh"

harness_init mount_list
harness_need_fuse
harness_need rclone python3
harness_start_s3
bucket=$(harness_unique list)
harness_mkbucket "$bucket"

n=10000
src=$HARNESS_DIR/many
mkdir -p "$src"
python3 - "$src" "$n" <<'EOF'
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    with open(os.path.join(d, "f%05d" % i), "w") as f:
        f.write("x" * (i % 97))
EOF
env -u AWS_CA_BUNDLE RCLONE_CONFIG="" rclone copy "$src" ":s3:$bucket/many" --s3-provider Other \
	--s3-endpoint "$S3_ENDPOINT" --s3-force-path-style=true --s3-region "$S3_REGION" \
	--s3-access-key-id "$AWS_ACCESS_KEY_ID" --s3-secret-access-key "$AWS_SECRET_ACCESS_KEY" \
	--s3-no-check-bucket --s3-no-head --no-check-dest --transfers 32 --checkers 32 \
	--log-level ERROR || fail "rclone upload of $n objects failed"

harness_start_proxy
mp=$(objfs_mountpoint list)
objfs_mount "s3://$bucket" "$mp" "endpoint=$PROXY_ENDPOINT,attr_ttl=300s,dir_ttl=300s"
stat "$mp/many" >/dev/null || fail "stat of the directory failed"

proxy_reset
ls -l "$mp/many" >"$HARNESS_DIR/ls1.out" || fail "ls -l failed"
assert_eq "$(grep -c '^-' "$HARNESS_DIR/ls1.out")" "$n" "ls -l lists $n files"
assert_eq "$(awk '$NF == "f00096" { print $5 }' "$HARNESS_DIR/ls1.out")" 96 "sizes come from the listing"
lists=$(proxy_stat requests.LIST)
heads=$(proxy_stat requests.HEAD)
gets=$(proxy_stat requests.GET)
echo "first ls -l: LIST=$lists HEAD=$heads GET=$gets total=$(proxy_stat requests_total)"
assert_le "$lists" 12 "about $((n / 1000)) LIST requests"
assert_le "$((n / 1000))" "$lists" "at least one LIST per 1000 keys"
assert_eq "$heads" 0 "no HEAD per entry"

proxy_reset
ls -l "$mp/many" >"$HARNESS_DIR/ls2.out" || fail "second ls -l failed"
cmp -s "$HARNESS_DIR/ls1.out" "$HARNESS_DIR/ls2.out" || fail "second ls -l differs from the first"
stat "$mp/many/f04242" >/dev/null
if [[ -e $mp/many/not-there ]]; then fail "a missing name exists"; fi
assert_eq "$(proxy_stat requests_total)" 0 "second ls -l, a stat and a miss within the TTL: no request"
objfs_umount "$mp"

# A reader that stops early: closing the directory cancels the LIST of the next page that
# is in flight (held at the proxy), it is not left waiting for the server.
objfs_mount "s3://$bucket" "$mp" "endpoint=$PROXY_ENDPOINT"
proxy_mode '{"hold": {"kind": "LIST", "path_re": "continuation-token"}}'
python3 - "$mp/many" <<'EOF' &
import os, sys, time
it = os.scandir(sys.argv[1])
next(it)  # the first page is there; the next one is asked for and held
time.sleep(1.5)
it.close()
EOF
reader=$!
harness_wait_for '[[ $(proxy_stat held_requests) == 1 ]]' 10 || fail "no next-page LIST was held"
wait "$reader" || fail "reading the first entries failed"
harness_wait_for '[[ $(proxy_stat held_requests) == 0 ]]' 5 ||
	fail "closing the directory left its next-page LIST in flight"
pass "closing the directory cancelled the LIST in flight"
proxy_mode '{}'
objfs_umount "$mp"

# A directory of more than one LIST page is handed out while its later pages are fetched.
# What that must still get right: an object "x" (page 1) and a prefix "x/" (page 2, after the
# 1,000 keys "x.NNNN") are one name, the object; pending changes (a removal, a new file,
# held back by a long settle) win over what the store lists.
mix=$HARNESS_DIR/mix
mkdir -p "$mix"
for ((i = 0; i < 1000; i++)); do printf '%d' "$i" >"$mix/$(printf 'x.%04d' "$i")"; done
echo z >"$mix/zzz"
env -u AWS_CA_BUNDLE RCLONE_CONFIG="" rclone copy "$mix" ":s3:$bucket/mix" --s3-provider Other \
	--s3-endpoint "$S3_ENDPOINT" --s3-force-path-style=true --s3-region "$S3_REGION" \
	--s3-access-key-id "$AWS_ACCESS_KEY_ID" --s3-secret-access-key "$AWS_SECRET_ACCESS_KEY" \
	--s3-no-check-bucket --s3-no-head --no-check-dest --transfers 32 --checkers 32 \
	--log-level ERROR || fail "rclone upload of the mixed directory failed"
echo object >"$HARNESS_DIR/x"
s3c put --no-progress "$HARNESS_DIR/x" "s3://$bucket/mix/x" >/dev/null || fail "s3cmd put failed"
s3c put --no-progress "$HARNESS_DIR/x" "s3://$bucket/mix/x/inner" >/dev/null || fail "s3cmd put failed"
objfs_mount "s3://$bucket" "$mp" "endpoint=$PROXY_ENDPOINT,settle=600s"
rm "$mp/mix/x.0500" || fail "rm through the mount failed"
echo new >"$mp/mix/new" || fail "writing through the mount failed"
proxy_reset
ls -l "$mp/mix" >"$HARNESS_DIR/mix.out" || fail "ls -l of the mixed directory failed"
assert_le 2 "$(proxy_stat requests.LIST)" "the mixed directory took more than one LIST page"
awk 'NR > 1 { print $NF }' "$HARNESS_DIR/mix.out" | sort >"$HARNESS_DIR/mix.names"
assert_eq "$(uniq -d "$HARNESS_DIR/mix.names" | head -3 | tr '\n' ' ')" "" "no name listed twice"
assert_eq "$(wc -l <"$HARNESS_DIR/mix.names")" 1002 "x, 999 x.NNNN, new, zzz"
grep -qx 'x.0500' "$HARNESS_DIR/mix.names" && fail "a pending removal is listed"
grep -qx 'new' "$HARNESS_DIR/mix.names" || fail "a pending new file is not listed"
assert_eq "$(awk '$NF == "x" { print substr($1, 1, 1) }' "$HARNESS_DIR/mix.out")" "-" \
	"the object x wins over the prefix x/"
assert_eq "$(cat "$mp/mix/x.0999")" 999 "an entry of the second page reads"
objfs_umount "$mp"

# A cold lookup sends the HEAD of the name (a file?) and the LIST of "name/" (a directory?) at
# once, so that a directory or a missing name costs one round trip, not two in a row. The
# proxy holds every request 300 ms: both are in flight together.
objfs_mount "s3://$bucket" "$mp" "endpoint=$PROXY_ENDPOINT"
proxy_mode '{"delay_ms": {"ms": 300}}'
for name in many not-there; do
	proxy_reset
	t0=$(date +%s%N)
	stat "$mp/$name" >/dev/null 2>&1 || true
	ms=$((($(date +%s%N) - t0) / 1000000))
	echo "cold lookup of $name: HEAD=$(proxy_stat requests.HEAD) LIST=$(proxy_stat requests.LIST) in ${ms} ms"
	assert_eq "$(proxy_stat requests.HEAD)/$(proxy_stat requests.LIST)" 1/1 "a cold lookup of '$name': one HEAD and one LIST"
	assert_eq "$(proxy_stat max_concurrent_requests)" 2 "the HEAD and the LIST of '$name' were in flight together"
done
[[ -d $mp/many && ! -e $mp/not-there ]] || fail "the cold lookups answered wrong"
proxy_mode '{}'
objfs_umount "$mp"
