#!/bin/bash
# http_leak.sh - regression test for the bug objfs exists to avoid: a client that blocks
# forever after N requests because some failure path never gave its connection back.
# 1,000 requests through a 25-connection cap fail in every way we can make them fail
# (404, 503 SlowDown until retries run out, resets before and in the middle of the body,
# a stall ended by the low-speed timeout, cancels by flag and by http_cancel, resets
# injected by the proxy); then 100 ordinary requests must all succeed promptly and the
# engine must report nothing in flight, queued or waiting.
set -euo pipefail
. "$(dirname "$0")/http_lib.sh"
http_init http_leak
start_origin_and_proxy
P=$PROXY_ENDPOINT
# the proxy also resets 5% of the good GETs in the middle of their body
proxy_mode '{"reset": {"p": 0.05, "when": "mid", "path_re": "^/obj/[0-9]", "method": "GET"}}'

# phase 0: 900 requests failing (or not) in every way at once; phase 1: 100 answered 503
# SlowDown until their attempts run out (kept apart: throttling shrinks the host's limit,
# which would leave the phase-0 cancels nothing running to cancel); phase 2: 100 ordinary.
# The cancel job starts 50 ms before the others so that its first wave is running when the
# cancels come (by flag for http_execute, by http_cancel for http_submit).
out=$HARNESS_DIR/leak.json
load "$out" 120 --cap 25 --low-speed-time 2 --retry-base-ms 10 --retry-max-ms 100 \
	--job --name good --delay-ms 50 --url "$P/obj/{i}?size=30000" -n 250 -c 20 --async-frac 0.3 --verify \
	--job --name put --delay-ms 50 --method PUT --size 20000 --url "$P/obj/p{i}" -n 50 -c 5 --body fd \
	--job --name notfound --delay-ms 50 --url "$P/404" -n 200 -c 10 --async-frac 0.5 \
	--job --name slowdown --phase 1 --url "$P/503" -n 100 -c 10 --attempts 3 --async-frac 0.5 \
	--job --name reset --delay-ms 50 --url "$P/reset" --url "$P/reset?after=1000&size=30000" -n 150 -c 10 \
	--attempts 2 --async-frac 0.5 \
	--job --name stall --delay-ms 50 --url "$P/stall?size=30000&after=100" -n 50 -c 25 --attempts 1 \
	--async-frac 0.5 \
	--job --name cancel --url "$P/slow?size=1000000&chunk=4096&interval_ms=100" -n 200 -c 30 \
	--cancel-frac 1 --cancel-after-ms 200 --async-frac 0.5 \
	--job --name after --phase 2 --url "$P/obj/a{i}?size=30000" -n 100 -c 25 --verify --attempts 1
show "$out"

j() { jget "$out" "$1"; }
total=$(j 'sum(x["requests"] for x in d["jobs"] if x["phase"] < 2)')
assert_eq "$total" 1000 "1,000 requests in the failure phases"
assert_eq "$(j 'sum(x["not_done"] for x in d["jobs"])')" 0 "every request completed"
assert_eq "$(j 'job("good")["ok"]')" 250 "good GETs all succeed (proxy resets retried, bodies verified)"
assert_eq "$(j 'job("put")["ok"]')" 50 "PUTs from a file all succeed"
assert_eq "$(j 'job("notfound")["statuses"]')" '{"404": 200}' "404s are answers, not errors"
assert_eq "$(j 'job("slowdown")["statuses"]')" '{"503": 100}' "503 after the last of 3 attempts"
assert_eq "$(j 'job("slowdown")["attempts"]')" 300 "SlowDown retried up to the attempt limit"
assert_eq "$(j 'job("reset")["errors"]')" '{"ECONNRESET": 150}' "resets fail with ECONNRESET"
assert_eq "$(j 'job("stall")["errors"]')" '{"ETIMEDOUT": 50}' "stalls end with ETIMEDOUT (low-speed timeout)"
assert_eq "$(j 'job("stall")["attempts"]')" 50 "stalls were given one attempt each (durations include queueing: see http_timeouts.sh)"
assert_le "$(j 'd["monitor"]["hosts"][0]["min_limit"]')" 12 "SlowDowns shrank the host's limit in phase 1"
assert_eq "$(j 'job("cancel")["errors"]')" '{"ECANCELED": 200}' "cancelled requests end with ECANCELED"
assert_le "$(j 'job("cancel")["ms"]["max"]')" 3000 "cancelled requests ended soon after the cancel (even queued ones)"
assert_le 25 "$(j 'job("cancel")["attempts"]')" "many cancels hit running transfers (attempts started)"
assert_le 1 "$(j 'd["stats"]["retries"]["reset"]')" "resets were retried"
assert_le 1 "$(j 'd["stats"]["retries"]["slowdown"]')" "SlowDowns were retried"

for p in 0 1; do
	st="d[\"phases\"][$p][\"stats\"]"
	assert_eq "$(j "$st[\"in_flight\"], $st[\"queued\"], $st[\"waiting_retry\"]")" "(0, 0, 0)" \
		"after failure phase $p: nothing in flight, queued or waiting for a retry"
done
assert_eq "$(j 'job("after")["ok"]')" 100 "afterwards, 100 ordinary requests all succeed"
assert_le "$(j 'd["phases"][2]["wall_ms"]')" 5000 "... promptly (phase wall time in ms)"
assert_le "$(j 'job("after")["ms"]["max"]')" 3000 "... each of them promptly"
st='d["stats"]'
assert_eq "$(j "$st[\"in_flight\"], $st[\"queued\"], $st[\"waiting_retry\"]")" "(0, 0, 0)" \
	"at the end: nothing in flight, queued or waiting for a retry"
assert_eq "$(j 'd["stats"]["open_connections"]')" "$(j 'd["process_tcp_sockets"]')" \
	"the engine's count of open connections is exact (= TCP sockets the process has)"
assert_le "$(j 'd["stats"]["open_connections"]')" 25 "at the end at most 25 connections are open"
assert_eq "$(j 'd["stats"]["idle_connections"] == d["stats"]["open_connections"]')" True \
	"at the end every open connection is idle"
assert_le "$(j 'd["monitor"]["max_in_flight"]')" 25 "the engine never had more than 25 in flight"
assert_le "$(proxy_stat max_concurrent_conns)" 25 "the proxy never saw more than 25 connections"
last=$(j 'd["stats"]["last_error"]')
echo "  last_error: $last"
[[ -n $last ]] || fail "the engine reports its last error"
