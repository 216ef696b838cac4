#!/bin/bash
# http_priority.sh - foreground requests are admitted before background ones: with the cap
# taken by slow background downloads and more of them queued, a foreground request starts
# at once (the background share leaves it a slot, and it jumps the background queue).
set -euo pipefail
. "$(dirname "$0")/http_lib.sh"
http_init http_priority
start_origin_and_proxy
P=$PROXY_ENDPOINT
j() { jget "$out" "$1"; }

# cap 5, reserve auto (1): background holds at most 4 slots. 40 background downloads of
# ~1.5 s each (400 KB at 40 KB per 150 ms) keep their share busy for ~15 s; foreground GETs
# start after 1 s, one after the other, and must each finish promptly.
out=$HARNESS_DIR/prio.json
load "$out" 120 --cap 5 \
	--job --name bg --bg --url "$P/slow?size=400000&chunk=40000&interval_ms=150" -n 40 -c 40 \
	--job --name fg --delay-ms 1000 --url "$P/obj/{i}?size=1000" -n 10 -c 1 --verify
show "$out"
assert_eq "$(j 'job("fg")["ok"]')" 10 "foreground requests succeed"
assert_le "$(j 'job("fg")["ms"]["max"]')" 500 "each foreground request finished within 0.5 s"
assert_eq "$(j 'job("bg")["ok"]')" 40 "background requests all complete"
assert_le 2000 "$(j 'job("bg")["ms"]["max"]')" "the background queue was really long (its last request waited)"
assert_le "$(proxy_stat max_concurrent_conns)" 5 "never more than 5 connections"

# reserve 0 is "auto"; with an explicit reserve of 2 on cap 4 background gets 2 slots
proxy_reset
out=$HARNESS_DIR/prio2.json
load "$out" 120 --cap 4 --fg-reserve 2 \
	--job --name bg --bg --url "$P/slow?size=200000&chunk=40000&interval_ms=150" -n 10 -c 10 \
	--job --name fg --delay-ms 500 --url "$P/slow?size=200000&chunk=40000&interval_ms=150" -n 2 -c 2
show "$out"
assert_eq "$(j 'job("fg")["ok"] + job("bg")["ok"]')" 12 "all requests succeed"
assert_le "$(j 'd["monitor"]["max_in_flight"]')" 4 "never above the cap"
assert_le "$(j 'job("fg")["ms"]["max"]')" 1500 "two foreground requests ran at once beside the background (~0.8 s each)"
