#!/bin/bash
# http_slowdown.sh - under 50% 503 SlowDown every request still completes (retries with
# backoff, bodies re-sent intact), retries are counted by cause, the host's admission limit
# shrinks, and it grows back to the cap once the server stops throttling.
set -euo pipefail
. "$(dirname "$0")/http_lib.sh"
http_init http_slowdown
start_origin_and_proxy
P=$PROXY_ENDPOINT
# throttle only the phase-0 paths (/obj/s...); phase 1 (/obj/g...) is never throttled
proxy_mode '{"seed": 7, "slowdown": {"p": 0.5, "path_re": "^/obj/s"}}'

out=$HARNESS_DIR/slowdown.json
load "$out" 180 --cap 25 --attempts 30 --retry-base-ms 5 --retry-max-ms 100 --retry-budget 0 \
	--job --name get --url "$P/obj/s{i}?size=20000" -n 300 -c 50 --async-frac 0.5 --verify \
	--job --name put --method PUT --size 200000 --url "$P/obj/s-put{i}" -n 60 -c 10 --body fd \
	--job --name recover --phase 1 --url "$P/obj/g{i}?size=1000" -n 300 -c 25 --verify
show "$out"
j() { jget "$out" "$1"; }
injected=$(proxy_stat injected.slowdown)
echo "  proxy injected $injected SlowDowns"

assert_eq "$(j 'job("get")["ok"]')" 300 "every GET completes with a verified body"
assert_eq "$(j 'job("put")["ok"]')" 60 "every PUT completes (the origin checked each body)"
assert_le 100 "$injected" "the proxy really answered SlowDown often"
assert_eq "$(j 'd["phases"][0]["stats"]["retries"]["slowdown"]')" "$injected" \
	"each SlowDown was retried once and counted under 'slowdown'"
assert_eq "$(j 'sum(v for k, v in d["stats"]["retries"].items() if k != "slowdown")')" 0 \
	"no retries of other causes"
assert_eq "$(j 'job("get")["attempts"] + job("put")["attempts"] - 360')" "$injected" \
	"attempts = requests + SlowDowns"
assert_le "$(j 'd["monitor"]["hosts"][0]["min_limit"]')" 6 "the host's limit shrank (from 25)"
assert_le "$(j 'd["phases"][0]["stats"]["hosts"][0]["max_in_flight_seen"]')" 25 "never above the cap"
assert_eq "$(j 'job("recover")["ok"]')" 300 "after the throttling stops, requests succeed"
assert_eq "$(j 'host(d["stats"])["limit"]')" 25 "... and the limit grew back to the cap"
assert_eq "$(j 'd["stats"]["in_flight"] + d["stats"]["queued"] + d["stats"]["waiting_retry"]')" 0 \
	"nothing left in flight, queued or waiting"
assert_le "$(proxy_stat max_concurrent_conns)" 25 "the proxy never saw more than 25 connections"
