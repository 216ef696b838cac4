#!/usr/bin/env bash
# mount_faults.sh - reads hold under faults, counted at the fault proxy:
#  - 30 % of requests answered 503 SlowDown: md5sum of the whole tree still matches;
#  - gateway stopped: reads and lookups fail with EIO (never ENOENT) within the configured
#    timeouts, and work again after the gateway is back, without remounting;
#  - 64 concurrent readers never have more than max_conns_per_host connections open: with
#    max_conns_per_host=8 (small blocks, so there are many requests), and with 25, the
#    default, on a second mount with default block size and read-ahead, behind a proxy of its
#    own (the first mount keeps its idle connections) that delays each GET by 100 ms so that
#    the readers' requests pile up: more than 20 connections must then be seen (the cap, not
#    the readers, is what limits them).
set -euo pipefail
. "$(dirname "$0")/../lib/harness.sh"
. "$(dirname "$0")/mount_common.sh"

harness_init mount_faults
harness_need_fuse
harness_need s3cmd md5sum
harness_start_s3
bucket=$(harness_unique faults)
harness_mkbucket "$bucket"

src=$HARNESS_DIR/src
mkdir -p "$src/tree/a" "$src/tree/b" "$src/par" "$src/later"
for i in $(seq 1 20); do head -c $((i * 37000)) /dev/urandom >"$src/tree/a/f$i"; done
for i in $(seq 1 10); do head -c 3000000 /dev/urandom >"$src/tree/b/g$i"; done
for i in $(seq 1 64); do head -c 2500000 /dev/urandom >"$src/par/p$i"; done
for i in $(seq 1 5); do echo "later $i" >"$src/later/l$i"; done
s3c put --recursive --no-progress "$src/" "s3://$bucket/" >/dev/null || fail "upload failed"
(cd "$src" && find tree par -type f -print0 | sort -z | xargs -0 md5sum) >"$HARNESS_DIR/want.md5"

harness_start_proxy
mp=$(objfs_mountpoint faults)
cap=8
objfs_mount "s3://$bucket" "$mp" "endpoint=$PROXY_ENDPOINT,max_conns_per_host=$cap,retries=12,retry_base=10ms,retry_max=200ms,connect_timeout=2s,attr_ttl=1s,dir_ttl=1s,neg_ttl=1s,block_size=256k,read_ahead=1M"

# ---- 30 % SlowDown ----
proxy_mode '{"slowdown": {"p": 0.3}, "seed": 7}'
(cd "$mp" && md5sum -c --quiet "$HARNESS_DIR/want.md5") || fail "md5sum under 30% 503 differs"
injected=$(proxy_stat injected.slowdown)
assert_le 10 "$injected" "the proxy injected SlowDown ($injected times)"
pass "md5sum of the tree matches with 30% of requests answered 503"
proxy_mode '{}'

# ---- 64 concurrent readers ----
proxy_reset
pids=()
for i in $(seq 1 64); do
	md5sum "$mp/par/p$i" >"$HARNESS_DIR/par-$i.md5" &
	pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || fail "a concurrent reader failed"; done
for i in $(seq 1 64); do
	[[ $(cut -d' ' -f1 "$HARNESS_DIR/par-$i.md5") == $(md5sum <"$src/par/p$i" | cut -d' ' -f1) ]] ||
		fail "concurrent reader $i read wrong data"
done
maxc=$(proxy_stat max_concurrent_conns)
assert_le "$maxc" "$cap" "64 concurrent readers: at most $cap connections at the proxy (saw $maxc)"

# ---- the same with max_conns_per_host=25 on a second mount, behind a second proxy ----
pid8=$OBJFS_PID
proxy1=("$PROXY_ENDPOINT" "$PROXY_CTL" "$PROXY_PID")
harness_start_proxy
mp25=$(objfs_mountpoint faults25)
objfs_mount "s3://$bucket" "$mp25" "endpoint=$PROXY_ENDPOINT,max_conns_per_host=25"
proxy_mode '{"delay_ms": {"ms": 100, "kind": "GET"}}'
proxy_reset
pids=()
for i in $(seq 1 64); do
	md5sum "$mp25/par/p$i" >"$HARNESS_DIR/par25-$i.md5" &
	pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || fail "a concurrent reader (cap 25) failed"; done
for i in $(seq 1 64); do
	[[ $(cut -d' ' -f1 "$HARNESS_DIR/par25-$i.md5") == $(md5sum <"$src/par/p$i" | cut -d' ' -f1) ]] ||
		fail "concurrent reader $i (cap 25) read wrong data"
done
pass "64 concurrent readers with max_conns_per_host=25: every md5 matches"
maxc=$(proxy_stat max_concurrent_conns)
assert_le "$maxc" 25 "64 concurrent readers: at most 25 connections at the proxy (saw $maxc)"
assert_le 21 "$maxc" "64 concurrent readers with slow GETs used more than 20 connections ($maxc)"
objfs_umount "$mp25"
OBJFS_PID=$pid8
PROXY_ENDPOINT=${proxy1[0]} PROXY_CTL=${proxy1[1]} PROXY_PID=${proxy1[2]}

# ---- gateway stopped: EIO, never ENOENT; back without remounting ----
sleep 1.2 # let the 1 s TTLs lapse so lookups go to the server
harness_rgw stop-gateway
start=$(date +%s)
if out=$(cat "$mp/later/l1" 2>&1); then fail "read with the gateway down succeeded: $out"; fi
grep -q "Input/output error" <<<"$out" || fail "read with the gateway down: '$out' (want EIO)"
if out=$(stat "$mp/later/not-yet-seen" 2>&1); then fail "stat with the gateway down succeeded"; fi
grep -q "Input/output error" <<<"$out" || fail "lookup with the gateway down: '$out' (want EIO, not ENOENT)"
if out=$(ls "$mp/later" 2>&1); then fail "ls with the gateway down succeeded: $out"; fi
grep -q "Input/output error" <<<"$out" || fail "listing with the gateway down: '$out' (want EIO)"
elapsed=$(($(date +%s) - start))
assert_le "$elapsed" 60 "errors arrived within the configured timeouts (${elapsed}s)"
pass "gateway down: read, lookup and listing fail with EIO, not ENOENT"
harness_rgw start-gateway
harness_wait_for "cat '$mp/later/l2' >/dev/null 2>&1" 30 || fail "reads did not recover after start-gateway"
assert_eq "$(cat "$mp/later/l1")" "later 1" "reads work again without remounting"
objfs_umount "$mp"
