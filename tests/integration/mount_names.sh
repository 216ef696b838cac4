#!/usr/bin/env bash
# mount_names.sh - odd names round-trip: spaces, unicode, %, +, ?, #, &, =, quotes and a
# 255-byte name, put out of band and read through the mount, and written through the mount and
# checked at the server. Keys that cannot be file names ("a//b", ".", "..", a 256-byte
# component) are skipped with a log line without hiding their neighbours.
set -euo pipefail
. "$(dirname "$0")/../lib/harness.sh"
. "$(dirname "$0")/mount_common.sh"

harness_init mount_names
harness_need_fuse
harness_need python3
harness_start_s3
bucket=$(harness_unique names)
harness_mkbucket "$bucket"

enc() { python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe="/"))' "$1"; }
put_key() { # KEY CONTENT
	printf '%s' "$2" >"$HARNESS_DIR/body"
	local code
	code=$(s3code --path-as-is -X PUT -T "$HARNESS_DIR/body" "$S3_ENDPOINT/$bucket/$(enc "$1")")
	[[ $code == 200 ]] || fail "PUT of key '$1' answered $code"
}

long=$(printf 'L%.0s' $(seq 1 255))
names=("with space.txt" "ünïcødé-名前.txt" "per%cent.txt" "plus+sign.txt" "question?.txt"
	"hash#tag.txt" "amp&eq=.txt" "quote'double\".txt" "$long" "-leading-dash" " leading space")
for n in "${names[@]}"; do put_key "odd/$n" "content of $n"; done
put_key "odd/sub dir/inner ü.txt" inner
# keys no file system can show
put_key "odd/a//b" bad1
put_key "odd/$(printf 'X%.0s' $(seq 1 256))" bad2
put_key "odd/dot/./x" bad3

mp=$(objfs_mountpoint names)
objfs_mount "s3://$bucket" "$mp" ""
ls -la "$mp/odd" >"$HARNESS_DIR/ls.out" || fail "ls of the directory with odd keys failed"
for n in "${names[@]}"; do
	[[ -f "$mp/odd/$n" ]] || fail "name '$n' missing from the mount"
	assert_eq "$(cat "$mp/odd/$n")" "content of $n" "read '${n:0:40}'"
done
assert_eq "$(cat "$mp/odd/sub dir/inner ü.txt")" inner "a name in a directory with a space"
assert_eq "$(ls -A "$mp/odd" | grep -c '^X')" 0 "the 256-byte name is not shown"
grep -q "skipping key 'odd/XXXX" "$OBJFS_LOG" || fail "no log line for the skipped 256-byte key"
ls -la "$mp/odd/a" "$mp/odd/dot" >/dev/null || fail "listing a directory holding impossible keys failed"
pass "an impossible key is skipped with a log line"

# written through the mount, checked at the server
mkdir "$mp/new"
for n in "${names[@]}"; do printf 'w %s' "$n" >"$mp/new/$n"; done
objfs_umount "$mp"
for n in "${names[@]}"; do
	got=$(s3curl --path-as-is "$S3_ENDPOINT/$bucket/new/$(enc "$n")")
	assert_eq "$got" "w $n" "key 'new/${n:0:40}' at the server"
done
