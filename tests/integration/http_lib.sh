# http_lib.sh - sourced by the http_*.sh tests of the HTTP engine (not a test itself).
#
# Starts the test origin (tests/lib/origin.py) and the fault proxy in front of it, runs the
# load tool (tests/tools/httpload) and reads its JSON summary. Everything started here is
# registered with the harness, which stops it at exit.

# shellcheck source=../lib/harness.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib/harness.sh"

HTTPLOAD=$OBJFS_BUILDDIR/tests/tools/httpload

# http_init NAME: harness_init NAME plus this suite's prerequisites.
http_init() {
	harness_init "$1"
	harness_need python3 curl timeout
	[[ -x $HTTPLOAD ]] || fail "'$HTTPLOAD' is missing: build it with 'make check' (or 'make tests/tools/httpload')"
}

# start_origin [--mode silent]: start origin.py; sets ORIGIN_PORT and ORIGIN (its base URL).
start_origin() {
	local pf log pid i
	pf=$(mktemp "$HARNESS_DIR/origin.XXXX.port")
	rm -f "$pf"
	log=$HARNESS_DIR/origin.$(basename "$pf" .port).log
	python3 "$HARNESS_LIB/origin.py" --port-file "$pf" "$@" </dev/null >>"$log" 2>&1 &
	pid=$!
	harness_register_pid "$pid"
	harness_register_log "$log"
	for ((i = 0; i < 100; i++)); do
		[[ -s $pf ]] && break
		kill -0 "$pid" 2>/dev/null || fail "origin.py exited: $(tail -n 5 "$log")"
		sleep 0.1
	done
	[[ -s $pf ]] || fail "origin.py did not start within 10 s"
	ORIGIN_PORT=$(cat "$pf")
	ORIGIN=http://127.0.0.1:$ORIGIN_PORT
}

# start_origin_and_proxy: origin.py with the fault proxy in front; sets ORIGIN, ORIGIN_PORT,
# and (harness) PROXY_ENDPOINT, PROXY_CTL.
start_origin_and_proxy() {
	start_origin
	harness_start_proxy --upstream "127.0.0.1:$ORIGIN_PORT"
}

# free_port: print a TCP port on 127.0.0.1 that nothing listens on (bound, then released).
free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# load OUT LIMIT_S ARGS...: run httpload ARGS with a time limit, JSON summary to OUT.
load() {
	local out=$1 limit=$2 rc=0
	shift 2
	echo "+ httpload $*" >"$out.cmd"
	timeout -k 5 "$limit" ${HTTPLOAD_WRAPPER:-} "$HTTPLOAD" "$@" >"$out" 2>"$out.err" || rc=$?
	harness_register_log "$out.err"
	if [[ $rc == 124 || $rc == 137 ]]; then
		fail "httpload did not finish within $limit s (a request never completed?): $*"
	fi
	[[ $rc == 0 ]] || fail "httpload exited with $rc: $(tail -n 5 "$out.err")"
}

# jget OUT EXPR: print the Python expression EXPR over the JSON in OUT (bound to d), e.g.
#   jget "$out" 'd["jobs"][0]["ok"]'
#   jget "$out" 'job("name")["errors"].get("ETIMEDOUT", 0)'
jget() {
	python3 - "$1" "$2" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
def job(name):
    for j in d["jobs"]:
        if j["name"] == name:
            return j
    raise SystemExit("no job named %r" % name)
host = lambda st, i=0: st["hosts"][i]
v = eval(sys.argv[2])
print(json.dumps(v) if isinstance(v, (dict, list)) else v)
EOF
}

# show OUT: print a short human summary of a run (for the test log).
show() {
	python3 - "$1" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
for j in d["jobs"]:
    print("  job %-10s n=%-4d ok=%-4d statuses=%s errors=%s verify_errors=%d attempts=%d ms=%s"
          % (j["name"], j["requests"], j["ok"], j["statuses"], j["errors"], j["verify_errors"],
             j["attempts"], j["ms"]))
s = d["stats"]
print("  engine: in_flight=%d queued=%d waiting_retry=%d open=%d idle=%d failures=%d retries=%s"
      % (s["in_flight"], s["queued"], s["waiting_retry"], s["open_connections"],
         s["idle_connections"], s["failures"], {k: v for k, v in s["retries"].items() if v}))
for h in s["hosts"]:
    print("  host %s limit=%d max_in_flight_seen=%d" % (h["host"], h["limit"], h["max_in_flight_seen"]))
print("  monitor: %s" % json.dumps(d["monitor"]))
print("  process TCP sockets at the end: %d" % d["process_tcp_sockets"])
EOF
}
