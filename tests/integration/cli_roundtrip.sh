#!/bin/bash
# cli_roundtrip.sh - objfs put / ls / cat / stat / rm against a real S3 server (RGW), with
# names that need URI encoding (space, unicode, %, +, ?, #, &, =), a 255-byte name, an empty
# file and a 40 MiB file that goes multipart. Every result is checked with an independent
# client (s3cmd, or curl signing its own requests): bytes, listings and the s3fs-style
# metadata headers. SigV4 itself is exercised by every request: the server checks it.
set -euo pipefail
. "$(dirname "$0")/../lib/harness.sh"
harness_init cli_roundtrip
harness_need s3cmd cmp
harness_start_s3
bucket=$(harness_unique rt)
harness_mkbucket "$bucket"
cd "$HARNESS_DIR"

# objfs with the test server; options after the arguments, as users write them
obj() {
	timeout 120 "$OBJFS_BIN" "$@" -o "endpoint=$S3_ENDPOINT" --region="$S3_REGION"
}

long=$(printf 'n%.0s' $(seq 255))
names=(
	"plain.txt"
	"with space.txt"
	"unicodé-日本語.txt"
	"percent%41%25.txt"
	"plus+sign.txt"
	"question?mark.txt"
	"hash#tag.txt"
	"amp&eq=.txt"
	"dir/sub dir/deep+file"
	"long/$long"
)

i=0
for n in "${names[@]}"; do
	printf 'content of %s\n%d\n' "$n" "$i" >"src.$i"
	chmod 640 "src.$i"
	obj put "src.$i" "s3://$bucket/$n" || fail "put '$n'"
	rm -f got
	s3c get "s3://$bucket/$n" got >/dev/null || fail "s3cmd cannot get '$n'"
	cmp -s "src.$i" got || fail "bytes of '$n' differ (s3cmd get)"
	obj cat "s3://$bucket/$n" >got2 || fail "cat '$n'"
	cmp -s "src.$i" got2 || fail "bytes of '$n' differ (objfs cat)"
	i=$((i + 1))
done
pass "put + s3cmd get + cat round-trip ${#names[@]} odd names (incl. a 255-byte one)"

# empty file
: >empty
obj put empty "s3://$bucket/empty" || fail "put empty"
[[ $(s3c ls "s3://$bucket/empty" | awk '{print $3}') == 0 ]] || fail "empty object is not 0 bytes"
[[ $(obj cat "s3://$bucket/empty" | wc -c) == 0 ]] || fail "cat of empty is not empty"
pass "empty file"

# 40 MiB + a bit: multipart (threshold 16M, 8M parts -> 6 parts uploaded in parallel)
head -c $((40 * 1024 * 1024 + 4321)) /dev/urandom >big
obj put big "s3://$bucket/big.bin" || fail "multipart put"
rm -f got
s3c get "s3://$bucket/big.bin" got >/dev/null || fail "s3cmd cannot get big.bin"
cmp -s big got || fail "big.bin differs (s3cmd get)"
etag=$(s3curl -I "$S3_ENDPOINT/$bucket/big.bin" | tr -d '\r' | awk -F': ' 'tolower($1)=="etag"{print $2}')
[[ $etag == *-6\" ]] || fail "big.bin was not uploaded as 6 parts (ETag $etag)"
obj cat "s3://$bucket/big.bin" | cmp -s big - || fail "big.bin differs (objfs cat)"
pass "40 MiB multipart put, bytes identical, ETag $etag"

# metadata, s3fs style, read back by another client
touch -d '@1577934245.123456789' src.0
chmod 640 src.0
obj put src.0 "s3://$bucket/meta.txt"
info=$(s3c info "s3://$bucket/meta.txt")
grep -q "x-amz-meta-mode: $((8#100640))$" <<<"$info" || fail "x-amz-meta-mode wrong: $info"
grep -q "x-amz-meta-uid: $(id -u)$" <<<"$info" || fail "x-amz-meta-uid wrong: $info"
grep -q "x-amz-meta-gid: $(id -g)$" <<<"$info" || fail "x-amz-meta-gid wrong: $info"
grep -q "x-amz-meta-mtime: 1577934245.123456789$" <<<"$info" || fail "x-amz-meta-mtime wrong: $info"
st=$(obj stat "s3://$bucket/meta.txt")
grep -q "^mode: *0640 ($((8#100640)))" <<<"$st" || fail "stat mode: $st"
grep -q "^uid: *$(id -u)$" <<<"$st" || fail "stat uid: $st"
grep -q "^mtime:.*(1577934245.123456789)$" <<<"$st" || fail "stat mtime: $st"
grep -q "^size: *$(stat -c %s src.0)$" <<<"$st" || fail "stat size: $st"
pass "x-amz-meta-mode/uid/gid/mtime written and read the s3fs way"

# objects other tools wrote: no metadata, a directory marker
s3curl -f -X PUT -T src.1 "$S3_ENDPOINT/$bucket/foreign.txt" >/dev/null || fail "curl put"
st=$(obj stat "s3://$bucket/foreign.txt")
grep -q "^mode: *-$" <<<"$st" || fail "foreign object shows a mode: $st"
grep -q "Last-Modified" <<<"$st" || fail "foreign object mtime not from Last-Modified: $st"
s3curl -f -X PUT -H 'Content-Type: application/x-directory' --data-binary '' \
	"$S3_ENDPOINT/$bucket/marker/" >/dev/null || fail "curl put marker"
obj stat "s3://$bucket/marker" | grep -q "^type: *directory$" || fail "marker not a directory"
obj stat "s3://$bucket/dir" | grep -q "implicit" || fail "dir/ not an implicit directory"
pass "objects without metadata and directory markers"

# listings agree with s3cmd's
expected=$(printf '%s\n' "${names[@]}" empty big.bin meta.txt foreign.txt marker/ | LC_ALL=C sort)
got=$(obj ls -r "s3://$bucket" | LC_ALL=C sort)
[[ $got == "$expected" ]] || fail "ls -r differs: got [$got] expected [$expected]"
viaS3cmd=$(s3c ls -r "s3://$bucket" | sed "s|.* s3://$bucket/||" | LC_ALL=C sort)
[[ $viaS3cmd == "$expected" ]] || fail "s3cmd sees [$viaS3cmd]"
top=$(obj ls "s3://$bucket/" | LC_ALL=C sort | paste -sd ' ')
[[ $top == *"dir/"* && $top == *"long/"* && $top == *"with space.txt"* && $top != *deep* ]] ||
	fail "non-recursive ls: $top"
sub=$(obj ls "s3://$bucket/dir/sub dir")
[[ $sub == "deep+file" ]] || fail "ls of a sub-directory: [$sub]"
obj ls -l "s3://$bucket/big.bin" | grep -q "^ *$((40 * 1024 * 1024 + 4321)) " || fail "ls -l size"
pass "ls, ls -r, ls -l agree with s3cmd"

# more than one page (1,000 keys): continuation tokens
storeload=$OBJFS_BUILDDIR/tests/tools/storeload
[[ -x $storeload ]] || fail "$storeload is not built (make check builds it)"
"$storeload" --endpoint "$S3_ENDPOINT" --region "$S3_REGION" --bucket "$bucket" --op put \
	--count 1005 --size 0 --threads 16 --prefix "many pages/" >/dev/null || fail "storeload put"
n=$(obj ls "s3://$bucket/many pages/" | sort -u | wc -l)
[[ $n == 1005 ]] || fail "ls over two pages shows $n keys, expected 1005"
[[ $(obj ls "s3://$bucket/many pages/" | tail -n 1) == 001004 ]] || fail "last key of page 2"
"$storeload" --endpoint "$S3_ENDPOINT" --region "$S3_REGION" --bucket "$bucket" --op delete \
	--count 1005 --threads 16 --prefix "many pages/" >/dev/null || fail "storeload delete"
pass "ls follows continuation tokens (1005 keys)"

# errors: absent object, usage
if out=$(obj cat "s3://$bucket/absent" 2>&1); then fail "cat of an absent key succeeded"; fi
[[ $out == "objfs: cannot read 's3://$bucket/absent': no such object" ]] || fail "message: $out"
set +e
timeout 10 "$OBJFS_BIN" put only-one-arg >/dev/null 2>&1
rc=$?
set -e
[[ $rc == 2 ]] || fail "usage error exit code $rc, expected 2"
pass "absent object and usage errors"

# rm, checked with s3cmd; removing an absent key is not an error
all=()
for n in "${names[@]}" empty big.bin meta.txt foreign.txt marker/; do
	all+=("s3://$bucket/$n")
done
obj rm "${all[@]}" || fail "rm"
obj rm "s3://$bucket/never-existed" || fail "rm of an absent key failed"
left=$(s3c ls -r "s3://$bucket")
[[ -z $left ]] || fail "objects left after rm: $left"
pass "rm removed everything"
