#!/bin/bash
# http_timeouts.sh - every timeout of the engine fires when it should, with the right errno:
# low-speed stall, connection refused, a TLS handshake that never completes (engine-enforced
# tls_timeout, not the 30 s connect timeout), Expect: 100-continue without an interim 100,
# and a host name that does not resolve.
set -euo pipefail
. "$(dirname "$0")/http_lib.sh"
http_init http_timeouts
start_origin_and_proxy
O=$ORIGIN
P=$PROXY_ENDPOINT
j() { jget "$out" "$1"; }

echo "# a server that sends headers and 100 bytes, then nothing: low-speed limit 1 KiB/s for 2 s"
out=$HARNESS_DIR/stall.json
load "$out" 60 --low-speed-time 2 --attempts 1 --job --name stall --url "$O/stall?size=100000&after=100" -n 2 -c 2
show "$out"
assert_eq "$(j 'job("stall")["errors"]')" '{"ETIMEDOUT": 2}' "a stalled transfer fails with ETIMEDOUT"
assert_le 1500 "$(j 'job("stall")["ms"]["min"]')" "... not before the 2 s low-speed window"
assert_le "$(j 'job("stall")["ms"]["max"]')" 6000 "... and soon after it"
assert_eq "$(j 'd["stats"]["in_flight"]')" 0 "... and gives its slot back"

echo "# the proxy stalls in the middle of a body; with retries the engine counts them as timeouts"
proxy_mode '{"stall": {"phase": "body", "after_bytes": 1000, "count": 1}}'
out=$HARNESS_DIR/stall_retry.json
load "$out" 60 --low-speed-time 2 --retry-base-ms 10 --job --name get --url "$P/obj/1?size=100000" --verify
show "$out"
assert_eq "$(j 'job("get")["ok"]')" 1 "a stalled body is retried and then succeeds"
assert_eq "$(j 'd["stats"]["retries"]["timeout"]')" 1 "... counted as a retry for cause 'timeout'"
proxy_mode '{}'

echo "# connection refused"
port=$(free_port)
out=$HARNESS_DIR/refused.json
load "$out" 60 --attempts 1 --job --name refused --url "http://127.0.0.1:$port/obj/1" -n 3 -c 3
show "$out"
assert_eq "$(j 'job("refused")["errors"]')" '{"ECONNREFUSED": 3}' "a closed port fails with ECONNREFUSED"
assert_le "$(j 'job("refused")["ms"]["max"]')" 1000 "... at once"
out=$HARNESS_DIR/refused_retry.json
load "$out" 60 --retry-base-ms 10 --retry-max-ms 50 --job --name refused --url "http://127.0.0.1:$port/obj/1"
assert_eq "$(j 'job("refused")["errors"]')" '{"ECONNREFUSED": 1}' "with retries: still ECONNREFUSED"
assert_eq "$(j 'd["stats"]["retries"]["connect"]')" 5 "... after 5 retries counted as 'connect'"
assert_eq "$(j 'job("refused")["attempts"]')" 6 "... 6 attempts in all"

echo "# a listener that never accepts: connects hang (SYN_SENT once its backlog is full)"
start_origin --mode blackhole
out=$HARNESS_DIR/connect_timeout.json
load "$out" 60 --connect-timeout-ms 1000 --low-speed-time 2 --attempts 1 \
	--job --name connect --url "http://127.0.0.1:$ORIGIN_PORT/obj/{i}" -n 6 -c 6
show "$out"
assert_eq "$(j 'job("connect")["errors"]')" '{"ETIMEDOUT": 6}' "connects that never finish fail with ETIMEDOUT"
assert_le "$(j 'job("connect")["ms"]["max"]')" 4000 "... after the 1 s connect timeout (or 2 s low-speed for a queued one)"
assert_eq "$(j 'd["stats"]["open_connections"]')" "$(j 'd["process_tcp_sockets"]')" \
	"... and the engine's socket count stays exact"
out=$HARNESS_DIR/connect_cancel.json
load "$out" 60 --job --name cancel --url "http://127.0.0.1:$ORIGIN_PORT/obj/{i}" -n 10 -c 10 \
	--cancel-frac 1 --cancel-after-ms 300 --async-frac 0.5
show "$out"
assert_eq "$(j 'job("cancel")["errors"]')" '{"ECANCELED": 10}' "requests cancelled while connecting end with ECANCELED"
assert_eq "$(j 'd["stats"]["open_connections"]')" "$(j 'd["process_tcp_sockets"]')" \
	"... and the engine still counts sockets exactly (libcurl 7.88 closes unconnected sockets without the close callback)"
assert_eq "$(j 'd["stats"]["in_flight"]')" 0 "... and gives every slot back"

echo "# a TLS server that accepts and never answers the ClientHello"
start_origin --mode silent
out=$HARNESS_DIR/tls.json
load "$out" 60 --tls-timeout-ms 1000 --connect-timeout-ms 30000 --attempts 1 \
	--job --name tls --url "https://127.0.0.1:$ORIGIN_PORT/obj/1" -n 2 -c 2
show "$out"
assert_eq "$(j 'job("tls")["errors"]')" '{"ETIMEDOUT": 2}' "a stuck TLS handshake fails with ETIMEDOUT"
assert_le 900 "$(j 'job("tls")["ms"]["min"]')" "... not before tls_timeout (1 s)"
assert_le "$(j 'job("tls")["ms"]["max"]')" 4000 "... well before the 30 s connect timeout"
case $(j 'd["stats"]["last_error"]') in
*"TLS handshake"*) pass "... and the error says it was the TLS handshake" ;;
*) fail "last_error does not name the TLS handshake: $(j 'd["stats"]["last_error"]')" ;;
esac
assert_eq "$(j 'd["stats"]["open_connections"]')" 0 "... and the aborted connections are closed"

echo "# Expect: 100-continue and a server (proxy) that never sends the interim 100"
proxy_mode '{"no100": {}}'
out=$HARNESS_DIR/no100.json
load "$out" 60 --expect100-ms 1500 --attempts 1 \
	--job --name put --method PUT --size 2000000 --url "$P/obj/big{i}" -n 2 -c 1
show "$out"
assert_eq "$(j 'job("put")["ok"]')" 2 "a large PUT completes when the 100 never comes"
assert_le 1300 "$(j 'job("put")["ms"]["min"]')" "... after waiting for the expect-100 timeout (1.5 s)"
assert_le "$(j 'job("put")["ms"]["max"]')" 5000 "... and not much longer"
out=$HARNESS_DIR/small_put.json
load "$out" 60 --expect100-ms 1500 --attempts 1 \
	--job --name put --method PUT --size 100000 --url "$P/obj/small{i}" -n 3 -c 1
assert_eq "$(j 'job("put")["ok"]')" 3 "small PUTs (below 1 MiB) succeed"
assert_le "$(j 'job("put")["ms"]["max"]')" 1000 "... without waiting for a 100 (no Expect header)"
proxy_mode '{}'
out=$HARNESS_DIR/with100.json
load "$out" 60 --expect100-ms 1500 --attempts 1 \
	--job --name put --method PUT --size 2000000 --url "$P/obj/big{i}" -n 2 -c 1
assert_eq "$(j 'job("put")["ok"]')" 2 "with the interim 100 relayed, a large PUT succeeds"
assert_le "$(j 'job("put")["ms"]["max"]')" 1000 "... without the wait"

echo "# a host name that does not resolve"
t0=$(date +%s%N)
getent hosts objfs-test.invalid >/dev/null 2>&1 || true
resolver_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
echo "  (the system resolver takes $resolver_ms ms to fail on its own)"
out=$HARNESS_DIR/resolve.json
load "$out" 60 --attempts 1 --job --name resolve --url "http://objfs-test.invalid:$ORIGIN_PORT/obj/1"
show "$out"
assert_eq "$(j 'job("resolve")["errors"]')" '{"EHOSTUNREACH": 1}' "an unresolvable host fails with EHOSTUNREACH"
assert_le "$(j 'job("resolve")["ms"]["max"]')" "$(( 1000 + 2 * resolver_ms ))" "... quickly"
