#!/bin/bash
# http_cap.sh - the per-host connection cap holds under 500 concurrent requests, and
# keep-alive reuses connections (the proxy counts what actually reaches the wire).
set -euo pipefail
. "$(dirname "$0")/http_lib.sh"
http_init http_cap
start_origin_and_proxy

for cap in 25 4; do
	proxy_reset
	out=$HARNESS_DIR/cap$cap.json
	# 100 threads calling http_execute plus ~80% asynchronous submissions: nearly all 500
	# requests are waiting in the engine at once (monitor.max_queued shows it)
	load "$out" 120 --cap "$cap" --job --name get --url "$PROXY_ENDPOINT/obj/{i}?size=20000" \
		-n 500 -c 100 --async-frac 0.8 --verify
	show "$out"
	conns=$(proxy_stat max_concurrent_conns)
	total=$(proxy_stat total_conns)
	echo "  proxy: max_concurrent_conns=$conns total_conns=$total"

	assert_eq "$(jget "$out" 'job("get")["ok"]')" 500 "cap $cap: all 500 GETs succeed with verified bodies"
	assert_le 250 "$(jget "$out" 'd["monitor"]["max_queued"]')" \
		"cap $cap: the requests really were concurrent (most queued at once)"
	assert_le "$conns" "$cap" "cap $cap: the proxy never saw more than $cap concurrent connections"
	assert_le "$(jget "$out" 'host(d["stats"])["max_in_flight_seen"]')" "$cap" \
		"cap $cap: the engine never admitted more than $cap"
	assert_eq "$(jget "$out" 'host(d["stats"])["max_in_flight_seen"]')" "$cap" \
		"cap $cap: the cap was reached (the test exercised it)"
	assert_le "$total" "$(( cap * 2 ))" "cap $cap: keep-alive: at most $(( cap * 2 )) connections for 500 requests"
	assert_eq "$(jget "$out" 'd["stats"]["open_connections"] <= '"$cap"' and d["stats"]["idle_connections"] == d["stats"]["open_connections"]')" \
		True "cap $cap: at the end every open connection is idle, none above the cap"
	assert_eq "$(jget "$out" 'd["stats"]["open_connections"]')" "$(jget "$out" 'd["process_tcp_sockets"]')" \
		"cap $cap: the engine's count of open connections is exact (= the process's TCP sockets)"
	assert_eq "$(jget "$out" 'd["stats"]["in_flight"] + d["stats"]["queued"]')" 0 \
		"cap $cap: nothing in flight or queued at the end"
done
