#!/usr/bin/env bash
# harness_selftest.sh - proves the test infrastructure before any objfs test relies on it:
# the RGW answers signed requests over HTTP and HTTPS (s3cmd with the CA file) and rejects a
# wrong secret; a gateway restart keeps the data; the fault proxy forwards faithfully, counts
# concurrent connections exactly and each fault mode does what it says; the harness cleans up
# after a failing test, skips (or errors in CI) on a missing command, and ends a hung test.
set -euo pipefail
. "$(dirname "$0")/../lib/harness.sh"

harness_init harness_selftest
harness_need curl python3 s3cmd openssl cmp
harness_start_s3 --https

now() { date +%s.%N; }
# elapsed_ge START SECONDS: true when at least SECONDS passed since START
elapsed_ge() { awk -v s="$1" -v n="$(now)" -v l="$2" 'BEGIN { exit !(n - s >= l) }'; }
elapsed() { awk -v s="$1" -v n="$(now)" 'BEGIN { printf "%.2f", n - s }'; }
xml_ok() { python3 -c 'import sys, xml.dom.minidom as m; m.parse(sys.argv[1])' "$1" 2>/dev/null; }

W=$HARNESS_DIR
B=$(harness_unique selftest)

# ---- 1. signed requests over HTTP and HTTPS
s3c mb "s3://$B" >/dev/null || fail "s3cmd mb over http"
echo "hello over http" >"$W/small"
s3c put "$W/small" "s3://$B/dir/obj1" >/dev/null || fail "s3cmd put over http"
s3c get "s3://$B/dir/obj1" "$W/small.back" >/dev/null || fail "s3cmd get over http"
cmp -s "$W/small" "$W/small.back" || fail "object read back over http differs"
pass "s3cmd mb/put/get over http"

head -c 3000000 /dev/urandom >"$W/big"
s3cs put "$W/big" "s3://$B/big" >/dev/null || fail "s3cmd put over https"
s3cs get "s3://$B/big" "$W/big.back" >/dev/null || fail "s3cmd get over https"
cmp -s "$W/big" "$W/big.back" || fail "object read back over https differs"
s3cs ls "s3://$B/dir/" | grep -q "s3://$B/dir/obj1" || fail "s3cmd ls over https misses dir/obj1"
pass "s3cmd put/get/ls over https with the CA file"
[[ $S3_HTTPS_ENDPOINT == https://* ]] || fail "S3_HTTPS_ENDPOINT '$S3_HTTPS_ENDPOINT'"
rc=0
curl -sS -o /dev/null --max-time 10 "$S3_HTTPS_ENDPOINT/" 2>/dev/null || rc=$?
assert_eq "$rc" 60 "https without the CA file fails certificate verification"
code=$(curl -sS -o /dev/null -w '%{http_code}' --cacert "$S3_CA_FILE" \
	"https://localhost:${S3_HTTPS_ENDPOINT##*:}/")
assert_eq "$code" 200 "certificate also valid for localhost"

assert_eq "$(s3curl "$S3_ENDPOINT/$B/dir/obj1")" "hello over http" "s3curl GET"
assert_eq "$(AWS_SECRET_ACCESS_KEY=wrong-secret s3code "$S3_ENDPOINT/$B/dir/obj1")" 403 \
	"a wrong secret is rejected with 403"
assert_eq "$(s3code "$S3_ENDPOINT/$B/no-such-key")" 404 "missing key is 404"
s3curl "$S3_ENDPOINT/$B?list-type=2&prefix=dir/&delimiter=/" >"$W/list.xml"
grep -q '<Key>dir/obj1</Key>' "$W/list.xml" || fail "s3curl list with a canonicalised query"
pass "s3curl sorts and encodes query parameters"
harness_mkbucket "$B-two"
assert_eq "$(s3code -X PUT -T "$W/small" "$S3_ENDPOINT/$B-two/k")" 200 "harness_mkbucket made a usable bucket"

# ---- 2. the gateway restarts without losing data
old_pid=$RGW_PID
harness_rgw stop-gateway
assert_eq "$(s3code --max-time 2 "$S3_ENDPOINT/$B/dir/obj1")" 000 "gateway down: connection refused"
harness_rgw start-gateway
[[ $RGW_PID != "$old_pid" ]] || fail "RGW_PID not updated after start-gateway"
assert_eq "$(s3curl "$S3_ENDPOINT/$B/dir/obj1")" "hello over http" "data survives a gateway restart"

# ---- 3. the proxy forwards faithfully
harness_start_proxy
P=$PROXY_ENDPOINT
s3curl -T "$W/big" "$P/$B/via-proxy" >/dev/null
s3curl -o "$W/via.back" "$P/$B/via-proxy"
cmp -s "$W/big" "$W/via.back" || fail "3 MB PUT/GET through the proxy differs"
assert_eq "$(s3code -I "$P/$B/via-proxy")" 200 "HEAD through the proxy"
assert_eq "$(s3code -X DELETE "$P/$B/via-proxy")" 204 "DELETE through the proxy"
assert_eq "$(s3code -X POST "$P/$B/mp?uploads")" 200 "POST through the proxy"
assert_eq "$(s3code "$P/$B?list-type=2")" 200 "LIST through the proxy"
assert_eq "$(proxy_stat requests.PUT)/$(proxy_stat requests.GET)/$(proxy_stat requests.HEAD)" \
	"1/1/1" "requests counted by method"
assert_eq "$(proxy_stat requests.DELETE)/$(proxy_stat requests.POST)/$(proxy_stat requests.LIST)" \
	"1/1/1" "DELETE, POST and LIST counted"
assert_eq "$(proxy_stat responses.200)" 5 "responses counted by status"

# keep-alive: one curl, five requests, one connection
proxy_reset
s3curl -o /dev/null -o /dev/null -o /dev/null -o /dev/null -o /dev/null \
	"$P/$B/dir/obj1" "$P/$B/dir/obj1" "$P/$B/dir/obj1" "$P/$B/dir/obj1" "$P/$B/dir/obj1"
assert_eq "$(proxy_stat total_conns)/$(proxy_stat requests.GET)" "1/5" "keep-alive: 5 requests on 1 connection"

# Expect: 100-continue is relayed at once (curl would wait its 2 s timeout otherwise)
t=$(now)
s3curl -H 'Expect: 100-continue' --expect100-timeout 2 -T "$W/big" "$P/$B/expect" >/dev/null
elapsed_ge "$t" 1.9 && fail "100-continue not relayed: PUT took $(elapsed "$t") s"
pass "100-continue relayed ($(elapsed "$t") s)"

# ---- 4. the connection counter is exact
N=20
proxy_reset
proxy_mode '{"hold": {}}'
pids=()
for ((i = 0; i < N; i++)); do
	s3curl -o /dev/null --max-time 60 "$P/$B/dir/obj1" &
	pids+=($!)
done
harness_wait_for "[[ \$(proxy_stat held_requests) == $N ]]" 30 || fail "$N requests never held"
assert_eq "$(proxy_stat max_concurrent_conns)/$(proxy_stat current_conns)" "$N/$N" \
	"$N concurrent curls: max_concurrent_conns and current_conns == $N"
proxy_mode '{}'
for p in "${pids[@]}"; do wait "$p" || fail "a concurrent GET through the proxy failed"; done
assert_eq "$(proxy_stat current_conns)" 0 "current_conns back to 0"
assert_eq "$(proxy_stat total_conns)/$(proxy_stat responses.200)" "$N/$N" "$N connections, $N answers"
# 400 at once, each with its upstream connection: the proxy must hold them all
proxy_reset
proxy_mode '{"hold": {}}'
python3 - "${P#http://}" "$PROXY_CTL" 400 <<'PY' || fail "400 concurrent connections"
import json, socket, sys, time, urllib.request
host, port = sys.argv[1].split(":")
ctl, n = sys.argv[2], int(sys.argv[3])
def stats():
    return json.load(urllib.request.urlopen(ctl + "/stats"))
socks = []
for i in range(n):
    s = socket.create_connection((host, int(port)))
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    socks.append(s)
end = time.time() + 30
while stats()["held_requests"] < n and time.time() < end:
    time.sleep(0.1)
st = stats()
assert st["max_concurrent_conns"] == n and st["current_conns"] == n, st
urllib.request.urlopen(urllib.request.Request(ctl + "/mode", data=b"{}", method="POST"))
for s in socks:
    s.settimeout(30)
    assert s.recv(64).startswith(b"HTTP/1.1 200"), "no answer"
    s.close()
PY
pass "400 concurrent connections held, counted and answered"
proxy_mode '{}'
proxy_reset
for ((i = 0; i < 30; i++)); do s3curl -o /dev/null "$P/$B/dir/obj1"; done
assert_eq "$(proxy_stat max_concurrent_conns)" 1 "30 sequential connections never count as 2"
assert_eq "$(proxy_stat total_conns)" 30 "30 sequential connections counted"
# a client that gives up on a slow request and reconnects at once: the closed connection must
# not count while the proxy's thread for it is still busy
proxy_mode '{"delay_ms": {"ms": 1500}}'
proxy_reset
python3 - "${P#http://}" <<'PY'
import socket, sys, time
host, port = sys.argv[1].split(":")
for i in range(10):
    s = socket.create_connection((host, int(port)))
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.05)
    s.close()
PY
assert_eq "$(proxy_stat max_concurrent_conns)/$(proxy_stat total_conns)" "1/10" \
	"abandoned connections stop counting when the client closes them"
# their requests still sleep out the delay in the proxy, and then meet whatever mode is set:
# let them finish before the modes below count their injections
harness_wait_for '[[ $(proxy_stat current_requests) -eq 0 ]]' 10 ||
	fail "abandoned requests still in the proxy: $(proxy_stats)"
proxy_mode '{}'

# ---- 5. each fault mode once
proxy_reset
proxy_mode '{"slowdown": {"method": "PUT", "count": 1}}'
s3curl -T "$W/small" -w '%{http_code}' "$P/$B/slow" >"$W/out" || true
grep -q '<Code>SlowDown</Code>' "$W/out" && grep -q '503$' "$W/out" || fail "slowdown: $(cat "$W/out")"
assert_eq "$(s3code "$S3_ENDPOINT/$B/slow")" 404 "slowdown: the server never saw the PUT"
assert_eq "$(s3code -T "$W/small" "$P/$B/slow")" 200 "slowdown count=1: the second PUT goes through"
assert_eq "$(proxy_stat injected.slowdown)" 1 "slowdown injected once"

proxy_mode '{"slowdown": {"kind": "LIST"}}'
assert_eq "$(s3code "$P/$B?list-type=2")" 503 "slowdown matched on kind LIST"
assert_eq "$(s3code "$P/$B/slow")" 200 "kind LIST does not match a GET"

proxy_mode '{"error500": {"count": 1}}'
assert_eq "$(s3code "$P/$B/slow")" 500 "error500"
proxy_mode '{"notfound": {"method": "HEAD"}}'
assert_eq "$(s3code -I "$P/$B/slow")" 404 "notfound on HEAD of an existing key"
assert_eq "$(s3code -I "$S3_ENDPOINT/$B/slow")" 200 "notfound: the key does exist"

proxy_mode '{"reset": {"when": "before", "method": "PUT"}}'
assert_eq "$(s3code -X PUT --data-binary @"$W/small" "$P/$B/rst-before")" 000 "reset before: client sees no response"
assert_eq "$(s3code -I "$S3_ENDPOINT/$B/rst-before")" 404 "reset before: the server never saw the PUT"
proxy_mode '{"reset": {"when": "after", "method": "PUT"}}'
assert_eq "$(s3code -X PUT --data-binary @"$W/small" "$P/$B/rst-after")" 000 "reset after: client sees no response"
assert_eq "$(s3code -I "$S3_ENDPOINT/$B/rst-after")" 200 "reset after: the server completed the PUT"
proxy_mode '{"reset": {"when": "mid", "method": "GET"}}'
rc=0
s3curl -o "$W/part" "$P/$B/big" 2>/dev/null || rc=$?
n=$(stat -c %s "$W/part")
[[ $rc != 0 && $n -gt 0 && $n -lt 3000000 ]] || fail "reset mid: curl rc $rc with $n bytes"
pass "reset mid: curl rc $rc after $n of 3000000 bytes"

proxy_mode '{"stall": {"stall_s": 2, "method": "GET"}}'
t=$(now)
s3curl -o "$W/stalled" "$P/$B/big"
elapsed_ge "$t" 1.9 || fail "stall 2 s: GET took only $(elapsed "$t") s"
cmp -s "$W/big" "$W/stalled" || fail "stall 2 s: data differs after the stall"
pass "stall 2 s mid-body, then the rest ($(elapsed "$t") s)"
proxy_mode '{"stall": {"method": "GET", "after_bytes": 1000}}'
rc=0
s3curl -o "$W/stalled" --max-time 2 "$P/$B/big" 2>/dev/null || rc=$?
assert_eq "$rc/$(stat -c %s "$W/stalled")" "28/1000" "stall forever: client times out after 1000 bytes"
proxy_mode '{"stall": {"phase": "response", "stall_s": 1, "method": "PUT"}}'
t=$(now)
assert_eq "$(s3code -T "$W/small" "$P/$B/stall-put")" 200 "stall before a PUT response"
elapsed_ge "$t" 0.9 || fail "stall phase response: PUT took only $(elapsed "$t") s"

proxy_mode '{"no100": {}}'
t=$(now)
assert_eq "$(s3code -H 'Expect: 100-continue' --expect100-timeout 2 -T "$W/big" "$P/$B/no100")" 200 \
	"no100: the PUT completes"
elapsed_ge "$t" 1.9 || fail "no100: client did not wait for 100 ($(elapsed "$t") s)"
pass "no100: client waited its 2 s expect timeout ($(elapsed "$t") s)"

proxy_mode '{"malformed_xml": {"kind": "LIST"}}'
s3curl "$P/$B?list-type=2" >"$W/bad.xml"
xml_ok "$W/bad.xml" && fail "malformed_xml: the listing still parses"
s3curl "$S3_ENDPOINT/$B?list-type=2" >"$W/good.xml"
xml_ok "$W/good.xml" || fail "the direct listing does not parse"
proxy_mode '{"malformed_xml": {"kind": "LIST", "how": "garbage"}}'
s3curl "$P/$B?list-type=2" >"$W/bad.xml"
xml_ok "$W/bad.xml" && fail "malformed_xml garbage: the listing still parses"
pass "malformed_xml truncates or corrupts listings"

proxy_mode '{"refuse": {}}'
assert_eq "$(s3code "$P/$B/slow")" 000 "refuse: connection dropped"
proxy_mode '{"delay_ms": 700}'
t=$(now)
assert_eq "$(s3code "$P/$B/slow")" 200 "delay_ms: request served"
elapsed_ge "$t" 0.65 || fail "delay_ms 700: took only $(elapsed "$t") s"
proxy_mode '{"error500": {"p": 0}}'
assert_eq "$(s3code "$P/$B/slow")" 200 "p=0 never fires"
proxy_mode '{"error500": {"skip": 1, "count": 1}}'
assert_eq "$(s3code "$P/$B/slow")/$(s3code "$P/$B/slow")/$(s3code "$P/$B/slow")" "200/500/200" \
	"skip=1 count=1 fires on the second request only"
proxy_mode '{}'
assert_eq "$(proxy_stat injected.refuse)/$(proxy_stat refused_conns)" "1/1" "refusals counted"
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST --data '{"nosuchmode": {}}' "$PROXY_CTL/mode")
assert_eq "$code" 400 "an unknown mode is rejected"

# upstream down: the proxy resets the client and counts it
proxy_reset
harness_rgw stop-gateway
assert_eq "$(s3code --max-time 5 "$P/$B/slow")" 000 "upstream down: client connection reset"
assert_eq "$(proxy_stat upstream_errors)" 1 "upstream_errors counted"
harness_rgw start-gateway
assert_eq "$(s3code "$P/$B/slow")" 200 "proxy works again once the gateway is back"

# ---- 6. the harness itself: cleanup after failure, skip rules, timeout
cat >"$W/child.sh" <<'EOF'
set -euo pipefail
. "$1/harness.sh"
harness_init child
case $2 in
fail)
	harness_start_s3
	harness_start_proxy
	sleep 300 &
	harness_register_pid $!
	echo "$HARNESS_DIR $RGW_PID $(cat "$HARNESS_RGW_DIR/mon.pid") $(cat "$HARNESS_RGW_DIR/osd.pid") $PROXY_PID $!" >"$3"
	fail "deliberate failure"
	;;
need) harness_need no-such-command-objfs ;;
timeout) sleep 60 ;;
esac
EOF
rc=0
TMPDIR=$W bash "$W/child.sh" "$HARNESS_LIB" fail "$W/child.info" >"$W/child.log" 2>&1 || rc=$?
assert_eq "$rc" 1 "a failing test exits 1"
read -r cdir cpids <"$W/child.info"
[[ ! -e $cdir ]] || fail "the failed test's work dir $cdir was left behind"
for p in $cpids; do
	st=$(ps -o stat= -p "$p" 2>/dev/null || true)
	[[ -z $st || $st == Z* ]] || fail "process $p of the failed test still runs ($st)"
done
grep -q 'log tails follow' "$W/child.log" || fail "no log tails printed for the failed test"
pass "a failing test leaves no process and no directory behind"
rc=0
env -u CI bash "$W/child.sh" "$HARNESS_LIB" need >/dev/null 2>&1 || rc=$?
assert_eq "$rc" 77 "missing command skips outside CI"
rc=0
CI=true bash "$W/child.sh" "$HARNESS_LIB" need >/dev/null 2>&1 || rc=$?
assert_eq "$rc" 99 "missing command is a hard error when CI=true"
rc=0
t=$(now)
HARNESS_TIMEOUT=2 TMPDIR=$W bash "$W/child.sh" "$HARNESS_LIB" timeout >"$W/child.log" 2>&1 || rc=$?
[[ $rc != 0 ]] || fail "a hung test was not stopped"
elapsed_ge "$t" 20 && fail "the timeout took $(elapsed "$t") s"
grep -q 'timed out after 2 s' "$W/child.log" || fail "no timeout message: $(cat "$W/child.log")"
pass "a hung test ends after HARNESS_TIMEOUT (rc $rc, $(elapsed "$t") s)"
[[ -z $(find "$W" -maxdepth 1 -name 'objfs-test.child.*') ]] || fail "child work dirs left behind"

pass "harness self-test complete"
