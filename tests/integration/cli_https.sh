#!/bin/bash
# cli_https.sh - objfs over HTTPS to RGW with the harness's own CA: works with ca_file=,
# fails with one clear TLS line without it, works with insecure; plain HTTP spoken to the
# TLS port (and TLS to the plain port) fails with a clear line too, never a hang.
set -euo pipefail
. "$(dirname "$0")/../lib/harness.sh"
harness_init cli_https
harness_need cmp
harness_start_s3 --https
[[ -n ${S3_CA_FILE:-} ]] || skip "no CA file for the HTTPS endpoint"
bucket=$(harness_unique tls)
harness_mkbucket "$bucket"
cd "$HARNESS_DIR"
head -c 100000 /dev/urandom >data

obj() {
	timeout 30 "$OBJFS_BIN" "$@"
}

obj put data "s3://$bucket/a b.bin" -o "endpoint=$S3_HTTPS_ENDPOINT,ca_file=$S3_CA_FILE" ||
	fail "put over https with ca_file"
obj cat "s3://$bucket/a b.bin" -o "endpoint=$S3_HTTPS_ENDPOINT" --ca_file="$S3_CA_FILE" >got ||
	fail "cat over https with ca_file"
cmp -s data got || fail "bytes differ over https"
rm -f got2
s3cs get "s3://$bucket/a b.bin" got2 >/dev/null || fail "s3cmd get over https"
cmp -s data got2 || fail "s3cmd sees other bytes"
pass "put/cat over https with ca_file=, checked with s3cmd"

# the certificate names localhost too: a host name, still path-style (auto)
port=${S3_HTTPS_ENDPOINT##*:}
obj stat "s3://$bucket/a b.bin" -o "endpoint=https://localhost:$port,ca_file=$S3_CA_FILE" |
	grep -q "^size: *100000$" || fail "stat via https://localhost"
pass "https://localhost with ca_file="

set +e
obj ls "s3://$bucket" -o "endpoint=$S3_HTTPS_ENDPOINT" >out 2>err
rc=$?
set -e
[[ $rc == 1 ]] || fail "without ca_file: exit $rc, expected 1 ($(cat err))"
[[ $(wc -l <err) == 1 ]] || fail "without ca_file: not one line: $(cat err)"
grep -q "^objfs: cannot verify the TLS certificate of $S3_HTTPS_ENDPOINT: .*(give ca_file=FILE" err ||
	fail "without ca_file: unclear message: $(cat err)"
pass "without ca_file: $(cat err)"

obj ls "s3://$bucket" -o "endpoint=$S3_HTTPS_ENDPOINT,insecure" >out || fail "insecure"
[[ $(cat out) == "a b.bin" ]] || fail "insecure listing: $(cat out)"
pass "insecure skips verification"

# the wrong protocol for the port: one line, quickly
http_port=${S3_ENDPOINT##*:}
set +e
obj ls "s3://$bucket" -o "endpoint=https://127.0.0.1:$http_port,ca_file=$S3_CA_FILE" 2>err
rc=$?
set -e
[[ $rc == 1 && $(wc -l <err) == 1 ]] || fail "https to the plain port: exit $rc: $(cat err)"
grep -q "^objfs: TLS with https://127.0.0.1:$http_port failed" err || fail "message: $(cat err)"
pass "https to a plain-http port: $(cat err)"
