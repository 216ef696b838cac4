#!/bin/bash
# engine-bench.sh - the shared HTTP engine against the ceiling of this setup: PUT and GET of
# COUNT (1000) objects of SIZE (16 KiB) through store_s3 + the engine with a cap of CAP (25)
# connections (tests/tools/storeload, 64 threads), and the same transfers done by one
# `curl --parallel --parallel-max CAP --aws-sigv4` run. Prints the times and the ratios
# objfs/curl measured in this one run (lower is better; 1.0 = as fast as parallel curl).
#
# usage: bench/engine-bench.sh [BUILDDIR]      (BUILDDIR holds tests/tools/storeload)
# env: COUNT, SIZE, CAP, THREADS; OBJFS_TEST_ENDPOINT etc. as for the tests (harness.sh);
#      RGW_PORT_RANGE for the private RGW.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
OBJFS_SRCDIR=${OBJFS_SRCDIR:-$(cd "$here/.." && pwd)}
OBJFS_BUILDDIR=${1:-${OBJFS_BUILDDIR:-$OBJFS_SRCDIR}}
export OBJFS_SRCDIR OBJFS_BUILDDIR
. "$OBJFS_SRCDIR/tests/lib/harness.sh"

COUNT=${COUNT:-1000}
SIZE=${SIZE:-16384}
CAP=${CAP:-25}
THREADS=${THREADS:-64}
storeload=$OBJFS_BUILDDIR/tests/tools/storeload
[[ -x $storeload ]] || { echo "engine-bench: build $storeload first (make check or make tests/tools/storeload)" >&2; exit 2; }

harness_init engine-bench
harness_need curl
harness_start_s3
bucket=$(harness_unique bench)
harness_mkbucket "$bucket"
cd "$HARNESS_DIR"

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

# curl: the same bytes storeload sends (byte j = (j*7+3) & 255), one config file per phase
python3 -c 'import sys; n=int(sys.argv[1]); sys.stdout.buffer.write(bytes((j*7+3)&255 for j in range(n)))' \
	"$SIZE" >body
: >put.cfg
: >get.cfg
for ((i = 0; i < COUNT; i++)); do
	k=$(printf 'c/%06d' "$i")
	printf 'url = "%s/%s/%s"\nupload-file = "body"\noutput = "/dev/null"\n' "$S3_ENDPOINT" "$bucket" "$k" >>put.cfg
	printf 'url = "%s/%s/%s"\noutput = "/dev/null"\n' "$S3_ENDPOINT" "$bucket" "$k" >>get.cfg
done
curl_run() {
	local ca=()
	[[ -z ${S3_CA_FILE:-} ]] || ca=(--cacert "$S3_CA_FILE")
	curl -sS --no-progress-meter --fail-early -f --parallel --parallel-max "$CAP" --aws-sigv4 "aws:amz:$S3_REGION:s3" \
		--user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
		-H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' "${ca[@]}" -K "$1" -w '%{http_code}\n' >"$1.codes"
	local bad
	bad=$(grep -cv '^20[06]$' "$1.codes" || true)
	[[ $bad == 0 ]] || fail "curl: $bad requests of $1 did not answer 200"
}
sl() {
	"$storeload" --endpoint "$S3_ENDPOINT" --region "$S3_REGION" --bucket "$bucket" \
		--count "$COUNT" --size "$SIZE" --threads "$THREADS" --cap "$CAP" --prefix o/ "$@"
}

# warm-up (connections, the bucket index), not measured
sl --op put --count 50 >/dev/null || fail "storeload warm-up"

t0=$(now); sl --op put >sl.put || fail "storeload put: $(cat sl.put)"; t1=$(now)
o_put=$(elapsed "$t0" "$t1")
t0=$(now); curl_run put.cfg; t1=$(now)
c_put=$(elapsed "$t0" "$t1")
t0=$(now); sl --op get --verify >sl.get || fail "storeload get: $(cat sl.get)"; t1=$(now)
o_get=$(elapsed "$t0" "$t1")
t0=$(now); curl_run get.cfg; t1=$(now)
c_get=$(elapsed "$t0" "$t1")

max_put=$(sed 's/.*"max_in_flight": \([0-9]*\).*/\1/' sl.put)
max_get=$(sed 's/.*"max_in_flight": \([0-9]*\).*/\1/' sl.get)
((max_put <= CAP && max_get <= CAP)) || fail "the engine went over its cap: $max_put / $max_get > $CAP"

echo "engine-bench: $COUNT x $SIZE bytes, cap $CAP, storeload $THREADS threads vs curl --parallel-max $CAP"
printf '  %-4s objfs %7ss  curl %7ss  objfs/curl %s  (max in flight %s)\n' \
	PUT "$o_put" "$c_put" "$(awk -v a="$o_put" -v b="$c_put" 'BEGIN { printf "%.2f", a / b }')" "$max_put"
printf '  %-4s objfs %7ss  curl %7ss  objfs/curl %s  (max in flight %s)\n' \
	GET "$o_get" "$c_get" "$(awk -v a="$o_get" -v b="$c_get" 'BEGIN { printf "%.2f", a / b }')" "$max_get"
