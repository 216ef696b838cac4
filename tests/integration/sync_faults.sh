#!/usr/bin/env bash
# sync_faults.sh - the sync rides out a sick server and never starves the foreground.
#  (a) The gateway is stopped for 20 s while 200 written files wait to be uploaded; during
#      the outage a writer rewrites 100 of them without any error, and `objfs status` shows
#      the queued files, retries and the last error; once the gateway is back `objfs sync`
#      returns 0 and every object has the content written last (md5, curl).
#  (b) Through the fault proxy, 30 % of PUTs answer 503 SlowDown: 200 files all arrive intact.
#  (c) While 1,000 files are uploading with max_conns_per_host=25 and 40 upload workers (the
#      proxy holds every PUT, so the uploads keep all the connections they can get), `ls -l` of
#      another, uncached directory of the mount completes within 5 s and lists it all, and the
#      proxy never sees more than 25 concurrent connections; everything arrives.
#  (d) The proxy damages one byte of two part uploads of a 200 MiB file: part 1 (sent with
#      Content-MD5: the server refuses it, and the upload starts again) and part 20 (parts are
#      hashed as they are sent once the server's part ETags proved to be MD5s: the server
#      stores it and objfs must see that the ETag is not the MD5 of what it sent), and cuts
#      the answer to part 23 (sent again, it must be hashed again from its first byte). The
#      object completes with the right md5 and the log names the one damaged part.
#  (e) The proxy answers 400 InvalidRequest to part uploads without Content-MD5, as AWS does
#      for a bucket with Object Lock: a 100 MiB file still arrives intact.
#
# Sizes: SYNC_FILES (200) for (a) and (b), SYNC_LOAD_FILES (1000) for (c), SYNC_OUTAGE_S (20).
# SYNC_PARTS (abcde) selects the parts to run.
set -euo pipefail
. "$(dirname "$0")/../lib/harness.sh"
. "$(dirname "$0")/mount_common.sh"
. "$(dirname "$0")/sync_common.sh"

nfiles=${SYNC_FILES:-200}
nload=${SYNC_LOAD_FILES:-1000}
outage=${SYNC_OUTAGE_S:-20}

harness_init sync_faults
harness_need_fuse
harness_need md5sum curl python3 split
harness_start_s3
bucket=$(harness_unique faults)
harness_mkbucket "$bucket"
harness_start_proxy

# make_tree DIR N SIZE: N files of SIZE bytes of random data in DIR
make_tree() {
	mkdir -p "$1"
	head -c $(($2 * $3)) /dev/urandom | split -b "$3" -d -a 4 - "$1/f"
}

# check_bucket PREFIX LOCALDIR WHAT: the objects under PREFIX are exactly LOCALDIR's files
check_bucket() {
	local out=$HARNESS_DIR/back-$(harness_unique x)
	sync_fetch "$bucket" "$1" "$out"
	sync_md5_list "$2" >"$out.local"
	sync_md5_list "$out" >"$out.bucket"
	diff "$out.local" "$out.bucket" >/dev/null ||
		fail "$3: the bucket differs: $(diff "$out.local" "$out.bucket" | head -5)"
	pass "$3: all $(wc -l <"$out.local") objects under $1 have the right md5"
}

status_val() { # status_val MOUNTPOINT KEY: one value of `objfs status`
	"$OBJFS_BIN" status "$1" | sed -n "s/^$2=//p"
}

# ---- (a) the gateway goes away for a while ----
part_a() {
	make_tree "$HARNESS_DIR/a/v1" "$nfiles" 16384
	make_tree "$HARNESS_DIR/a/v2" $((nfiles / 2)) 20000
	mp=$(objfs_mountpoint faults-a)
	# a 2 s settle keeps the files queued when the gateway stops
	objfs_mount "s3://$bucket" "$mp" "settle=2s"
	cp -r "$HARNESS_DIR/a/v1" "$mp/a" || fail "(a) cp -r before the outage failed"
	harness_rgw stop-gateway
	t_stop=$SECONDS
	pass "(a) gateway stopped with $(status_val "$mp" queued_files) files queued"
	# a writer rewrites half of the files during the outage
	cp -r "$HARNESS_DIR/a/v2/." "$mp/a/" 2>"$HARNESS_DIR/cp.err" ||
		fail "(a) the writer saw an error during the outage: $(cat "$HARNESS_DIR/cp.err")"
	[[ ! -s $HARNESS_DIR/cp.err ]] || fail "(a) the writer printed: $(cat "$HARNESS_DIR/cp.err")"
	pass "(a) the writer rewrote $((nfiles / 2)) files during the outage without an error"
	harness_wait_for "[[ \$(status_val '$mp' retrying) -gt 0 ]]" $((outage - 2)) ||
		fail "(a) objfs status never showed retrying items: $("$OBJFS_BIN" status "$mp")"
	st=$("$OBJFS_BIN" status "$mp")
	q=$(sed -n 's/^queued_files=//p' <<<"$st")
	[[ $q -ge $nfiles ]] || fail "(a) status during the outage shows $q queued files, expected >= $nfiles"
	err=$(sed -n 's/^last_error=//p' <<<"$st")
	[[ -n $err ]] || fail "(a) status during the outage shows no last_error: $st"
	fails=$(sed -n 's/^failed_attempts=//p' <<<"$st")
	[[ $fails -gt 0 ]] || fail "(a) status shows no failed attempts: $st"
	pass "(a) status during the outage: queued_files=$q failed_attempts=$fails last_error='$err'"
	while ((SECONDS - t_stop < outage)); do sleep 0.5; done
	harness_rgw start-gateway
	t_back=$SECONDS
	timeout 120 "$OBJFS_BIN" sync "$mp" >"$HARNESS_DIR/sync-a.out" 2>&1 ||
		fail "(a) objfs sync after the outage failed: $(cat "$HARNESS_DIR/sync-a.out")"
	pass "(a) after $outage s without a gateway, objfs sync returned 0 $((SECONDS - t_back)) s after it came back"
	mkdir -p "$HARNESS_DIR/a/model"
	cp -r "$HARNESS_DIR/a/v1/." "$HARNESS_DIR/a/model/"
	cp -r "$HARNESS_DIR/a/v2/." "$HARNESS_DIR/a/model/"
	check_bucket a/ "$HARNESS_DIR/a/model" "(a)"
	objfs_umount "$mp"
}

# ---- (b) 30 % of PUTs answer 503 SlowDown ----
part_b() {
	make_tree "$HARNESS_DIR/b" "$nfiles" 16384
	mp=$(objfs_mountpoint faults-b)
	objfs_mount "s3://$bucket" "$mp" "endpoint=$PROXY_ENDPOINT,region=$S3_REGION"
	proxy_mode '{"slowdown": {"p": 0.3, "method": "PUT"}, "seed": 4}'
	cp -r "$HARNESS_DIR/b" "$mp/b" || fail "(b) cp -r failed"
	timeout 120 "$OBJFS_BIN" sync "$mp" >"$HARNESS_DIR/sync-b.out" 2>&1 ||
		fail "(b) objfs sync failed: $(cat "$HARNESS_DIR/sync-b.out")"
	inj=$(proxy_stat injected.slowdown)
	[[ $inj -ge $((nfiles / 10)) ]] || fail "(b) only $inj SlowDown answers were injected"
	pass "(b) objfs sync returned 0 with $inj PUTs answered 503 SlowDown"
	proxy_mode '{}'
	check_bucket b/ "$HARNESS_DIR/b" "(b)"
	objfs_umount "$mp"
}

# ---- (c) foreground listing during a big upload, connection cap ----
part_c() {
	mkdir -p "$HARNESS_DIR/c/other"
	for i in $(seq 1 50); do echo "other $i" >"$HARNESS_DIR/c/other/o$i"; done
	for i in $(seq 1 50); do
		s3curl -f -X PUT -T "$HARNESS_DIR/c/other/o$i" "$S3_ENDPOINT/$bucket/other/o$i" ||
			fail "(c) cannot PUT other/o$i"
	done
	make_tree "$HARNESS_DIR/c/load" "$nload" 8192
	mp=$(objfs_mountpoint faults-c)
	# 40 upload workers: more than the 25 connections, so uploads alone could take every slot
	objfs_mount "s3://$bucket" "$mp" \
		"endpoint=$PROXY_ENDPOINT,region=$S3_REGION,max_conns_per_host=25,upload_workers=40,settle=100ms"
	proxy_reset
	# hold every PUT: the uploads keep their connections busy for as long as the ls takes
	proxy_mode '{"hold": {"method": "PUT", "max_s": 60}}'
	cp -r "$HARNESS_DIR/c/load" "$mp/load" || fail "(c) cp -r failed"
	timeout 120 "$OBJFS_BIN" sync "$mp" >"$HARNESS_DIR/sync-c.out" 2>&1 &
	sync_pid=$!
	harness_register_pid "$sync_pid"
	harness_wait_for '[[ $(proxy_stat held_requests) -ge 15 ]]' 30 ||
		fail "(c) the upload never got busy: $(proxy_stats)"
	sleep 1 # let the uploads take every slot they can
	busy=$(proxy_stat held_requests)
	t0=$(date +%s.%N)
	n=$(timeout 30 ls -l "$mp/other" | grep -c ' o[0-9]*$') || fail "(c) ls -l of $mp/other failed or hung"
	t1=$(date +%s.%N)
	dt=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
	assert_eq "$n" 50 "(c) ls -l during the upload lists the 50 objects of other/"
	assert_le "$dt" 5 "(c) ls -l of an uncached directory took $dt s with $busy uploads in flight"
	[[ $(proxy_stat held_requests) -ge 15 ]] || fail "(c) the uploads were released before the ls finished"
	proxy_mode '{}'
	wait "$sync_pid" || fail "(c) objfs sync failed: $(cat "$HARNESS_DIR/sync-c.out")"
	assert_le "$(proxy_stat max_concurrent_conns)" 25 "(c) the proxy never saw more than 25 connections"
	check_bucket load/ "$HARNESS_DIR/c/load" "(c)"
	objfs_umount "$mp"
}

# big_upload PART MIB MODES: a MIB MiB file copied into PART/big of a mount through the
# proxy (8 MiB parts) with the fault MODES set, then `objfs sync`, which must return 0.
# Leaves the mount in $mp.
big_upload() {
	local p=$1
	mkdir -p "$HARNESS_DIR/$p"
	head -c $(($2 << 20)) /dev/urandom >"$HARNESS_DIR/$p/big"
	mp=$(objfs_mountpoint "faults-$p")
	objfs_mount "s3://$bucket" "$mp" "endpoint=$PROXY_ENDPOINT,region=$S3_REGION,part_size=8M"
	proxy_reset
	proxy_mode "$3"
	mkdir "$mp/$p"
	cp "$HARNESS_DIR/$p/big" "$mp/$p/big" || fail "($p) cp failed"
	timeout 120 "$OBJFS_BIN" sync "$mp" >"$HARNESS_DIR/sync-$p.out" 2>&1 ||
		fail "($p) objfs sync failed: $(cat "$HARNESS_DIR/sync-$p.out")"
}

# ---- (d) a part damaged on the way ----
part_d() {
	# 25 parts, at most 12 at once: part 20 starts after 8 parts answered; part 1 fails the
	# first upload at once, so parts 20 and 23 are in all likelihood first sent in the second
	big_upload d 200 '{"corrupt_body": [{"method": "PUT", "path_re": "partNumber=1&", "count": 1},
		{"method": "PUT", "path_re": "partNumber=20&", "count": 1}],
		"reset": {"method": "PUT", "path_re": "partNumber=23&", "when": "after", "count": 1}}'
	assert_eq "$(proxy_stat injected.corrupt_body)" 2 "(d) the proxy damaged two part uploads"
	assert_eq "$(proxy_stat injected.reset)" 1 "(d) the proxy cut one part upload's answer"
	proxy_mode '{}'
	check_bucket d/ "$HARNESS_DIR/d" "(d)"
	assert_eq "$(grep -c "arrived damaged" "$OBJFS_LOG")" 1 \
		"(d) the part sent without Content-MD5 was found damaged by its ETag (and sent again)"
	assert_eq "$(grep -c "not sent in one pass" "$OBJFS_LOG")" 0 \
		"(d) the part sent again after a lost answer was hashed whole"
	objfs_umount "$mp"
}

# ---- (e) a store that wants Content-MD5 on every part ----
part_e() {
	big_upload e 100 '{"require_md5": {"method": "PUT", "path_re": "partNumber="}}'
	[[ $(proxy_stat injected.require_md5) -ge 1 ]] ||
		fail "(e) no part went without Content-MD5: $(proxy_stats)"
	pass "(e) objfs sync returned 0; $(proxy_stat injected.require_md5) parts without Content-MD5 were refused"
	proxy_mode '{}'
	check_bucket e/ "$HARNESS_DIR/e" "(e)"
	objfs_umount "$mp"
}

for p in $(grep -o . <<<"${SYNC_PARTS:-abcde}"); do
	"part_$p"
done
