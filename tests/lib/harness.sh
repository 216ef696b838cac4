# harness.sh - sourced by every integration test (bash; works under set -euo pipefail).
#
# Owns a test's throwaway world: its work directory, the S3 server it talks to (a Ceph RGW
# started by rgw.sh, or an external endpoint named in the environment), fault proxies
# (faultproxy.py), and everything the test registers (mounts, processes, logs). One EXIT trap
# undoes all of it in reverse order, also when the test fails or is interrupted; a watchdog
# ends a test that runs longer than HARNESS_TIMEOUT. No locking: one test, one shell.
#
# Exit codes: 0 pass, 1 fail, 77 skip, 99 hard error (a skip or a missing prerequisite when
# CI=true: CI must never skip silently).
#
# Environment read: OBJFS_BIN, OBJFS_BUILDDIR, OBJFS_SRCDIR (set by make check; defaults
# guessed from this file's place), CI, TMPDIR, HARNESS_TIMEOUT (seconds, default 600),
# HARNESS_KEEP=1 (keep the work directory after the test),
# OBJFS_VALGRIND=1 (every objfs the test starts, daemon and CLI, runs under valgrind memcheck:
# see _harness_valgrind_setup),
# OBJFS_TEST_ENDPOINT + AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY [+ S3_REGION,
# OBJFS_TEST_CA_FILE] to run against an external S3 server instead of a private RGW.
#
# Typical test:
#   . "$(dirname "$0")/../lib/harness.sh"
#   harness_init mytest
#   harness_need fio
#   harness_start_s3
#   harness_mkbucket data
#   harness_start_proxy
#   proxy_mode '{"slowdown": {"p": 0.2, "method": "PUT"}}'
#   ... objfs against $PROXY_ENDPOINT ...; harness_register_pid $!; harness_register_mount $mnt
#   assert_le "$(proxy_stat max_concurrent_conns)" 25 "connection cap holds"

HARNESS_LIB=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${OBJFS_SRCDIR:=$(cd "$HARNESS_LIB/../.." && pwd)}"
: "${OBJFS_BUILDDIR:=$OBJFS_SRCDIR}"
: "${OBJFS_BIN:=$OBJFS_BUILDDIR/objfs}"
export OBJFS_SRCDIR OBJFS_BUILDDIR OBJFS_BIN HARNESS_LIB
export PATH="$PATH:/usr/sbin:/sbin"

HARNESS_DIR=""
HARNESS_NAME=""
HARNESS_EXTERNAL=0
HARNESS_RGW_DIR=""
_harness_mounts=()
_harness_pids=()
_harness_logs=()
_harness_watchdog=""
_harness_nproxy=0

# pass MSG: report a passed check ("ok: MSG") and go on; the test passes by exiting 0.
pass() {
	echo "ok: $*"
}

# fail MSG: report a failed check on stderr and end the test with exit 1 (cleanup runs).
fail() {
	echo "FAIL: $*" >&2
	exit 1
}

# skip MSG: end the test as skipped (exit 77); when CI=true this is an error (exit 99).
skip() {
	if [[ ${CI:-} == true ]]; then
		echo "ERROR: test would skip, which is not allowed when CI=true: $*" >&2
		exit 99
	fi
	echo "SKIP: $*"
	exit 77
}

# assert_eq ACTUAL EXPECTED MSG: pass MSG when the strings are equal, else fail with both.
assert_eq() {
	if [[ $1 == "$2" ]]; then
		pass "$3"
	else
		fail "$3: got '$1', expected '$2'"
	fi
}

# assert_le A B MSG: pass MSG when number A <= number B (integers or decimals), else fail.
assert_le() {
	local re='^-?[0-9]+([.][0-9]+)?$'
	[[ $1 =~ $re ]] || fail "$3: '$1' is not a number"
	[[ $2 =~ $re ]] || fail "$3: '$2' is not a number"
	if awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 <= b + 0) }'; then
		pass "$3"
	else
		fail "$3: $1 > $2"
	fi
}

# harness_need CMD...: every CMD must be on PATH; a missing one skips the test (exit 77), or
# fails it with exit 99 when CI=true.
harness_need() {
	local c missing=()
	for c in "$@"; do
		command -v "$c" >/dev/null 2>&1 || missing+=("$c")
	done
	[[ ${#missing[@]} == 0 ]] && return 0
	if [[ ${CI:-} == true ]]; then
		echo "ERROR: missing prerequisite(s): ${missing[*]}; CI must install them (.ci/run)" >&2
		exit 99
	fi
	echo "SKIP: missing prerequisite(s): ${missing[*]}"
	exit 77
}

# harness_need_fuse: /dev/fuse must be usable and fusermount3 present (else skip / 99 in CI).
harness_need_fuse() {
	harness_need fusermount3
	[[ -r /dev/fuse && -w /dev/fuse ]] || skip "/dev/fuse is missing or not accessible"
}

# harness_unique BASE: print BASE-xxxxxxxx, a bucket/key name no other run uses.
harness_unique() {
	printf '%s-%s\n' "$1" "$(od -An -tx1 -N4 /dev/urandom | tr -d ' \n')"
}

# _harness_is_mounted DIR: DIR is a mount point (reads mountinfo; never touches a hung mount).
_harness_is_mounted() {
	awk -v d="$1" '$5 == d { found = 1 } END { exit !found }' /proc/self/mountinfo
}

# harness_abort_fuse DIR: abort the FUSE connection behind DIR (unsticks a hung daemon, or
# cuts a live one off as a crashed kernel connection would). Mounts the fusectl file system
# when it is not (a fresh machine without systemd's mount unit). Fails if it could not abort.
harness_abort_fuse() {
	local dev minor
	dev=$(awk -v d="$1" '$5 == d { print $3 }' /proc/self/mountinfo | tail -n 1)
	[[ -n $dev ]] || return 1
	minor=${dev#*:}
	if [[ ! -d /sys/fs/fuse/connections/$minor ]] && [[ $(id -u) == 0 ]]; then
		mount -t fusectl none /sys/fs/fuse/connections 2>/dev/null || true
	fi
	[[ -w /sys/fs/fuse/connections/$minor/abort ]] &&
		echo 1 >"/sys/fs/fuse/connections/$minor/abort" 2>/dev/null
}

_harness_abort_fuse() {
	harness_abort_fuse "$1" || true
}

# _harness_unmount DIR: unmount DIR, forcibly when it is busy or hung.
_harness_unmount() {
	local d=$1 i
	if _harness_is_mounted "$d"; then
		for ((i = 0; i < 3; i++)); do
			timeout 10 fusermount3 -u "$d" 2>/dev/null || timeout 10 umount "$d" 2>/dev/null || true
			_harness_is_mounted "$d" || break
			sleep 0.5
		done
	fi
	if _harness_is_mounted "$d"; then
		echo "harness: '$d' is busy or hung; aborting its FUSE connection" >&2
		_harness_abort_fuse "$d"
		timeout 10 fusermount3 -u -z "$d" 2>/dev/null || timeout 10 umount -l "$d" 2>/dev/null || true
	fi
	# the tests' own mount points under /mnt are removed once empty, so runs leave nothing
	case $d in /mnt/objfs-*) rmdir "$d" 2>/dev/null || true ;; esac
}

# _harness_stop_pid PID: TERM, wait up to 5 s, KILL.
_harness_stop_pid() {
	local pid=$1 i
	kill -0 "$pid" 2>/dev/null || return 0
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 50; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		[[ $(ps -o stat= -p "$pid" 2>/dev/null) == Z* ]] && break
		sleep 0.1
	done
	kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

# _harness_valgrind_setup: for OBJFS_VALGRIND=1, point OBJFS_BIN at a wrapper that runs the
# real binary under memcheck (an error, or a definite leak at exit, makes it exit 99), one log
# per process in $HARNESS_DIR/valgrind/; _harness_valgrind_check reads them at exit.
# tests/valgrind.supp is used when it exists (none is needed today: libfuse, libcurl and
# OpenSSL run clean with definite leaks only).
_harness_valgrind_setup() {
	local real=$OBJFS_BIN supp=$OBJFS_SRCDIR/tests/valgrind.supp opt=""
	harness_need valgrind
	[[ ! -f $supp ]] || opt="--suppressions='$supp'"
	mkdir -p "$HARNESS_DIR/valgrind"
	cat >"$HARNESS_DIR/valgrind/objfs" <<EOF
#!/bin/sh
exec valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \\
	--track-fds=no --num-callers=30 $opt \\
	--log-file='$HARNESS_DIR/valgrind/vg.%p.log' '$real' "\$@"
EOF
	chmod +x "$HARNESS_DIR/valgrind/objfs"
	OBJFS_BIN=$HARNESS_DIR/valgrind/objfs
	export OBJFS_BIN OBJFS_VALGRIND
	echo "harness: objfs runs under valgrind (logs in $HARNESS_DIR/valgrind)"
}

# _harness_valgrind_check: 1 (with the reports on stderr) when a valgrind log of this test
# counts errors. A log without a summary is a process killed with SIGKILL: noted, not failed.
_harness_valgrind_check() {
	local f bad=0
	for f in "$HARNESS_DIR"/valgrind/vg.*.log; do
		[[ -f $f ]] || continue
		if grep -q 'ERROR SUMMARY: [1-9]' "$f"; then
			echo "---- valgrind found errors: $f" >&2
			cat "$f" >&2
			bad=1
		elif ! grep -q 'ERROR SUMMARY: 0 errors' "$f"; then
			echo "harness: valgrind log $f has no summary (process killed?)" >&2
		fi
	done
	return "$bad"
}

# _harness_cleanup: the EXIT trap. Unmounts, stops processes and servers, removes the dir.
_harness_cleanup() {
	local rc=$? i f
	set +e
	trap - EXIT INT TERM HUP
	[[ -z $_harness_watchdog ]] || kill "$_harness_watchdog" 2>/dev/null
	if [[ $rc != 0 && $rc != 77 ]]; then
		echo "---- harness: '$HARNESS_NAME' ended with exit $rc; log tails follow" >&2
		for f in "${_harness_logs[@]}"; do
			[[ -f $f ]] || continue
			echo "---- $f (last 40 lines)" >&2
			tail -n 40 "$f" >&2
		done
		if [[ -n $HARNESS_RGW_DIR && -d $HARNESS_RGW_DIR/log ]]; then
			for f in "$HARNESS_RGW_DIR"/log/rgw.out "$HARNESS_RGW_DIR"/log/client.rgw.a.log; do
				[[ -f $f ]] || continue
				echo "---- $f (last 15 lines)" >&2
				tail -n 15 "$f" >&2
			done
		fi
	fi
	for ((i = ${#_harness_mounts[@]} - 1; i >= 0; i--)); do
		_harness_unmount "${_harness_mounts[i]}"
	done
	for ((i = ${#_harness_pids[@]} - 1; i >= 0; i--)); do
		_harness_stop_pid "${_harness_pids[i]}"
	done
	if [[ -n $HARNESS_RGW_DIR && -d $HARNESS_RGW_DIR ]]; then
		"$HARNESS_LIB/rgw.sh" stop "$HARNESS_RGW_DIR" || true
	fi
	if [[ ${OBJFS_VALGRIND:-0} == 1 && -n $HARNESS_DIR ]] && ! _harness_valgrind_check; then
		echo "FAIL: valgrind reported errors in objfs (logs above)" >&2
		[[ $rc != 0 && $rc != 77 ]] || rc=1
	fi
	if [[ -n $HARNESS_DIR && -d $HARNESS_DIR ]]; then
		local still=0
		for f in "${_harness_mounts[@]}"; do
			_harness_is_mounted "$f" && still=1
		done
		if [[ ${HARNESS_KEEP:-0} == 1 ]]; then
			echo "harness: kept $HARNESS_DIR" >&2
		elif [[ $still == 1 ]]; then
			echo "harness: a mount is still active; leaving $HARNESS_DIR in place" >&2
		else
			rm -rf --one-file-system "$HARNESS_DIR"
		fi
	fi
	exit "$rc"
}

# harness_init NAME: create the work dir ${TMPDIR:-/tmp}/objfs-test.NAME.XXXX (exported as
# HARNESS_DIR), install the EXIT/INT/TERM/HUP traps that clean up everything, and start a
# watchdog that aborts registered mounts and TERMs the test after HARNESS_TIMEOUT seconds.
harness_init() {
	HARNESS_NAME=${1:?harness_init needs a test name}
	HARNESS_DIR=$(mktemp -d "${TMPDIR:-/tmp}/objfs-test.$HARNESS_NAME.XXXX")
	export HARNESS_DIR HARNESS_NAME
	: >"$HARNESS_DIR/mounts"
	trap _harness_cleanup EXIT
	[[ ${OBJFS_VALGRIND:-0} != 1 ]] || _harness_valgrind_setup
	trap 'exit 130' INT
	trap 'exit 143' TERM
	trap 'exit 129' HUP
	local me=$$ limit=${HARNESS_TIMEOUT:-600}
	(
		trap - EXIT INT TERM HUP
		end=$((SECONDS + limit))
		while ((SECONDS < end)); do
			kill -0 "$me" 2>/dev/null || exit 0
			sleep 1
		done
		echo "FAIL: '$HARNESS_NAME' timed out after $limit s (HARNESS_TIMEOUT)" >&2
		while read -r m; do
			[[ -n $m ]] && _harness_is_mounted "$m" && _harness_abort_fuse "$m"
		done <"$HARNESS_DIR/mounts"
		kill -TERM "$me" 2>/dev/null
		# bash runs the trap only when its foreground command returns: end that command
		for ((i = 0; i < 30; i++)); do
			kill -0 "$me" 2>/dev/null || exit 0
			sleep 0.1
		done
		for c in $(ps -o pid= --ppid "$me"); do
			[[ $c == "$BASHPID" ]] || kill -TERM "$c" 2>/dev/null
		done
	) </dev/null &
	_harness_watchdog=$!
	echo "harness: '$HARNESS_NAME' in $HARNESS_DIR"
}

# harness_register_mount DIR: unmount DIR at exit (fusermount3 -u, forced if busy or hung).
harness_register_mount() {
	_harness_mounts+=("$1")
	[[ -z $HARNESS_DIR ]] || echo "$1" >>"$HARNESS_DIR/mounts"
}

# harness_register_pid PID: TERM (then KILL) PID at exit, after the unmounts.
harness_register_pid() {
	_harness_pids+=("$1")
}

# harness_register_log FILE: print the tail of FILE on stderr if the test fails.
harness_register_log() {
	_harness_logs+=("$1")
}

# harness_wait_for CMD TIMEOUT_S: run CMD (a string, eval'd) every 0.1 s until it succeeds;
# returns 0 then, or prints a message and returns 1 after TIMEOUT_S seconds.
harness_wait_for() {
	local cmd=$1 limit=$2 start
	start=$(date +%s.%N)
	while true; do
		if eval "$cmd" >/dev/null 2>&1; then
			return 0
		fi
		if awk -v s="$start" -v n="$(date +%s.%N)" -v l="$limit" 'BEGIN { exit !(n - s >= l) }'; then
			echo "harness: timed out after $limit s waiting for: $cmd" >&2
			return 1
		fi
		sleep 0.1
	done
}

# _harness_canon_url URL: URL with its query in SigV4 canonical form, which curl 7.88's
# --aws-sigv4 needs: every parameter has '=', '/' in values is %2F, sorted by name.
_harness_canon_url() {
	local url=$1 base q p k v parts=() out=()
	if [[ $url != *\?* ]]; then
		printf '%s' "$url"
		return
	fi
	base=${url%%\?*}
	q=${url#*\?}
	IFS='&' read -ra parts <<<"$q"
	for p in "${parts[@]}"; do
		[[ -n $p ]] || continue
		[[ $p == *=* ]] || p+="="
		k=${p%%=*}
		v=${p#*=}
		out+=("$k=${v//\//%2F}")
	done
	printf '%s?' "$base"
	printf '%s\n' "${out[@]}" | LC_ALL=C sort -t '=' -k1,1 -k2 | paste -sd '&' | tr -d '\n'
}

# s3curl [CURL ARGS...] URL: curl signed with SigV4 for the current S3 credentials
# (-sS --aws-sigv4 aws:amz:$S3_REGION:s3, x-amz-content-sha256: UNSIGNED-PAYLOAD, --cacert
# $S3_CA_FILE when set). Query strings of http(s):// arguments are canonicalised; percent-
# encode other special characters in keys yourself. Example:
#   s3curl -X PUT -T file "$S3_ENDPOINT/bucket/key"
s3curl() {
	local a args=()
	for a in "$@"; do
		case $a in
		http://* | https://*) args+=("$(_harness_canon_url "$a")") ;;
		*) args+=("$a") ;;
		esac
	done
	[[ -z ${S3_CA_FILE:-} ]] || args=(--cacert "$S3_CA_FILE" "${args[@]}")
	curl -sS --aws-sigv4 "aws:amz:${S3_REGION:-us-east-1}:s3" \
		--user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
		-H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' "${args[@]}"
}

# s3code [CURL ARGS...] URL: like s3curl, but discards the body and prints the HTTP status.
s3code() {
	s3curl -o /dev/null -w '%{http_code}' "$@" || true
}

# s3c ARGS...: s3cmd with the config for $S3_ENDPOINT (path-style, SigV4, CA file).
s3c() {
	s3cmd --config="$HARNESS_DIR/s3cfg" "$@"
}

# s3cs ARGS...: s3cmd against $S3_HTTPS_ENDPOINT (after harness_start_s3 --https).
s3cs() {
	[[ -f $HARNESS_DIR/s3cfg-https ]] || fail "s3cs needs harness_start_s3 --https"
	s3cmd --config="$HARNESS_DIR/s3cfg-https" "$@"
}

# _harness_s3cfg FILE URL: write an s3cmd config for endpoint URL.
_harness_s3cfg() {
	local f=$1 url=$2 hp https=False
	hp=${url#*://}
	hp=${hp%%/*}
	[[ $url == https://* ]] && https=True
	cat >"$f" <<EOF
[default]
access_key = $AWS_ACCESS_KEY_ID
secret_key = $AWS_SECRET_ACCESS_KEY
host_base = $hp
host_bucket = $hp
bucket_location = $S3_REGION
use_https = $https
signature_v2 = False
check_ssl_certificate = True
check_ssl_hostname = True
ca_certs_file = ${S3_CA_FILE:-}
progress_meter = False
guess_mime_type = False
socket_timeout = 60
EOF
	chmod 600 "$f"
}

# harness_start_s3 [--https]: make an S3 server available and export S3_ENDPOINT, S3_REGION,
# AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (and, with --https, S3_HTTPS_ENDPOINT and
# S3_CA_FILE). With OBJFS_TEST_ENDPOINT set, that server is used (HARNESS_EXTERNAL=1);
# otherwise a private RGW is started (HARNESS_EXTERNAL=0, HARNESS_RGW_DIR, RGW_CONF,
# RGW_PID). Writes the configs for s3c / s3cs.
harness_start_s3() {
	local https=0
	[[ ${1:-} == --https ]] && https=1
	[[ -n $HARNESS_DIR ]] || fail "harness_start_s3 before harness_init"
	if [[ -n ${OBJFS_TEST_ENDPOINT:-} ]]; then
		[[ -n ${AWS_ACCESS_KEY_ID:-} && -n ${AWS_SECRET_ACCESS_KEY:-} ]] ||
			fail "OBJFS_TEST_ENDPOINT is set: also set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
		HARNESS_EXTERNAL=1
		S3_ENDPOINT=$OBJFS_TEST_ENDPOINT
		S3_REGION=${S3_REGION:-${AWS_REGION:-us-east-1}}
		S3_CA_FILE=${OBJFS_TEST_CA_FILE:-${S3_CA_FILE:-}}
		if [[ $https == 1 ]]; then
			[[ $S3_ENDPOINT == https://* ]] ||
				skip "test needs HTTPS but OBJFS_TEST_ENDPOINT is '$S3_ENDPOINT'"
			S3_HTTPS_ENDPOINT=$S3_ENDPOINT
			export S3_HTTPS_ENDPOINT
		fi
	else
		harness_need ceph-mon ceph-osd radosgw radosgw-admin ceph monmaptool curl python3
		[[ $https == 0 ]] || harness_need openssl
		local opt=()
		[[ $https == 0 ]] || opt=(--https)
		HARNESS_RGW_DIR=$HARNESS_DIR/rgw
		"$HARNESS_LIB/rgw.sh" start "$HARNESS_RGW_DIR" "${opt[@]}" --watch-pid $$ ||
			fail "could not start the Ceph RGW (see messages above)"
		# shellcheck disable=SC1091
		source "$HARNESS_RGW_DIR/env"
		export RGW_CONF RGW_PID RGW_PORT
		[[ $https == 0 ]] || export S3_HTTPS_ENDPOINT S3_CA_FILE
	fi
	export S3_ENDPOINT S3_REGION AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY HARNESS_EXTERNAL
	echo "$AWS_SECRET_ACCESS_KEY" >>"${OBJFS_SECRET_LIST:-/dev/null}" # run-all.sh: no log has it
	export HARNESS_RGW_DIR
	[[ -z ${S3_CA_FILE:-} ]] || export S3_CA_FILE
	_harness_s3cfg "$HARNESS_DIR/s3cfg" "$S3_ENDPOINT"
	[[ -z ${S3_HTTPS_ENDPOINT:-} ]] || _harness_s3cfg "$HARNESS_DIR/s3cfg-https" "$S3_HTTPS_ENDPOINT"
	echo "harness: S3 at $S3_ENDPOINT${S3_HTTPS_ENDPOINT:+ and $S3_HTTPS_ENDPOINT}"
}

# harness_rgw CMD: stop-gateway | start-gateway | restart-gateway | status on the private RGW
# (skips with an external endpoint); re-reads RGW_PID afterwards.
harness_rgw() {
	[[ $HARNESS_EXTERNAL == 0 && -n $HARNESS_RGW_DIR ]] ||
		skip "harness_rgw $1 needs the private RGW (OBJFS_TEST_ENDPOINT is set)"
	"$HARNESS_LIB/rgw.sh" "$1" "$HARNESS_RGW_DIR" || fail "rgw.sh $1 failed"
	RGW_PID=$(. "$HARNESS_RGW_DIR/env" && echo "$RGW_PID")
	export RGW_PID
}

# harness_rgw_admin ARGS...: radosgw-admin on the private RGW, for out-of-band checks.
harness_rgw_admin() {
	[[ $HARNESS_EXTERNAL == 0 && -n $HARNESS_RGW_DIR ]] ||
		skip "radosgw-admin needs the private RGW (OBJFS_TEST_ENDPOINT is set)"
	radosgw-admin -c "$RGW_CONF" "$@" 2>/dev/null
}

# harness_mkbucket NAME: create bucket NAME on $S3_ENDPOINT (fails the test otherwise).
harness_mkbucket() {
	local name=$1 code body=()
	if [[ $S3_REGION != us-east-1 ]]; then
		local loc="<LocationConstraint>$S3_REGION</LocationConstraint>"
		body=(--data "<CreateBucketConfiguration>$loc</CreateBucketConfiguration>")
	fi
	code=$(s3curl -o "$HARNESS_DIR/mkbucket.out" -w '%{http_code}' -X PUT "${body[@]}" \
		"$S3_ENDPOINT/$name") || true
	if [[ $code == 200 ]] || grep -qs BucketAlreadyOwnedByYou "$HARNESS_DIR/mkbucket.out"; then
		return 0
	fi
	fail "cannot create bucket '$name' (HTTP $code): $(cat "$HARNESS_DIR/mkbucket.out" 2>/dev/null)"
}

# harness_start_proxy [FAULTPROXY ARGS...]: start faultproxy.py in front of S3_ENDPOINT
# (or --upstream HOST:PORT given in ARGS) and export PROXY_ENDPOINT (http://127.0.0.1:PORT),
# PROXY_CTL (its control URL) and PROXY_PID. The proxy_* helpers talk to the latest one.
harness_start_proxy() {
	local n=$_harness_nproxy pf log up pid i lp cp a
	_harness_nproxy=$((n + 1))
	pf=$HARNESS_DIR/proxy.$n.port
	log=$HARNESS_DIR/proxy.$n.log
	up=${S3_ENDPOINT:-}
	for a in "$@"; do
		[[ $a == --upstream ]] && up=given
	done
	local uparg=()
	if [[ $up != given ]]; then
		[[ $up == http://* ]] || skip "the fault proxy needs a plain http:// endpoint, not '$up'"
		up=${up#http://}
		up=${up%%/*}
		[[ $up == *:* ]] || up+=":80"
		uparg=(--upstream "$up")
	fi
	python3 "$HARNESS_LIB/faultproxy.py" --listen 127.0.0.1:0 "${uparg[@]}" --port-file "$pf" \
		--parent-pid $$ "$@" </dev/null >>"$log" 2>&1 &
	pid=$!
	harness_register_pid "$pid"
	harness_register_log "$log"
	for ((i = 0; i < 100; i++)); do
		[[ -s $pf ]] && break
		kill -0 "$pid" 2>/dev/null || fail "faultproxy.py exited: $(tail -n 5 "$log")"
		sleep 0.1
	done
	[[ -s $pf ]] || fail "faultproxy.py did not start within 10 s"
	read -r lp cp <"$pf"
	PROXY_ENDPOINT=http://127.0.0.1:$lp
	PROXY_CTL=http://127.0.0.1:$cp
	PROXY_PID=$pid
	export PROXY_ENDPOINT PROXY_CTL PROXY_PID
}

# proxy_mode JSON: replace the proxy's fault modes (see faultproxy.py; '{}' clears them).
proxy_mode() {
	local out code
	out=$(curl -sS -o - -w '\n%{http_code}' -X POST --data "$1" "$PROXY_CTL/mode") ||
		fail "proxy control at $PROXY_CTL not reachable"
	code=${out##*$'\n'}
	[[ $code == 200 ]] || fail "proxy_mode '$1' rejected: ${out%$'\n'*}"
}

# proxy_stats: print the proxy's statistics as JSON.
proxy_stats() {
	curl -sS -f "$PROXY_CTL/stats" || fail "proxy control at $PROXY_CTL not reachable"
}

# proxy_stat KEY: print one statistic, KEY a dotted path (max_concurrent_conns,
# requests.HEAD, responses.503, injected.slowdown); 0 when absent.
proxy_stat() {
	proxy_stats | python3 -c '
import json, sys
d = json.load(sys.stdin)
for k in sys.argv[1].split("."):
    d = d.get(k, 0) if isinstance(d, dict) else 0
print(d)' "$1"
}

# proxy_reset: zero the proxy's counters (max_concurrent_* restart from the current values).
proxy_reset() {
	curl -sS -f -o /dev/null -X POST "$PROXY_CTL/reset" ||
		fail "proxy control at $PROXY_CTL not reachable"
}
