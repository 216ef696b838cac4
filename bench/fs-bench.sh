#!/bin/bash
# fs-bench.sh - objfs against s3fs, rclone mount and raw parallel HTTP (curl), on one private
# Ceph RGW in one run, optionally through a delaying proxy (latency emulation: this kernel
# has no netem). Prints each workload's number per file system and the ratios objfs/peer.
# A benchmark, not a test: numbers from one run on a shared machine; compare ratios only.
#
# usage: bench/fs-bench.sh [BUILDDIR]              (BUILDDIR holds ./objfs)
# env:   FS="objfs s3fs rclone"   WORKLOADS="seqread listing randread smallfiles seqwrite"
#        DELAY_MS=0 (one-way latency added by tests/lib/faultproxy.py; 5 for the issue's setup)
#        BIG_MIB=512 LIST_N=10000 SF_N=1000 SF_KIB=16 RAND_S=20
#        REPS=1 (rounds: each runs raw and every file system once, in an order that rotates
#        from round to round; with more than one, each number is the median of the rounds and
#        the ratios are of the medians, with the lowest and highest ratio of a round beside)
#        OBJFS_OPTS="key=value,..." (extra objfs mount options, to try settings)
#        SEQWRITE_SOURCE=warm (the 512 MiB written is read into the page cache first, so that
#        the local disk's read speed is not part of every file system's time) or cold
# Needs: fuse3 s3fs rclone fio curl python3 (contrib/install-deps.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
OBJFS_SRCDIR=${OBJFS_SRCDIR:-$(cd "$here/.." && pwd)}
OBJFS_BUILDDIR=${1:-${OBJFS_BUILDDIR:-$OBJFS_SRCDIR/build}}
OBJFS_BIN=$OBJFS_BUILDDIR/objfs
export OBJFS_SRCDIR OBJFS_BUILDDIR OBJFS_BIN
: "${HARNESS_TIMEOUT:=5400}"
export HARNESS_TIMEOUT
. "$OBJFS_SRCDIR/tests/lib/harness.sh"

FS=${FS:-objfs s3fs rclone}
WORKLOADS=${WORKLOADS:-seqread listing randread smallfiles seqwrite}
DELAY_MS=${DELAY_MS:-0}
BIG_MIB=${BIG_MIB:-512}
LIST_N=${LIST_N:-10000}
SF_N=${SF_N:-1000}
SF_KIB=${SF_KIB:-16}
RAND_S=${RAND_S:-20}
REPS=${REPS:-1}
ROUND=1
[[ -x $OBJFS_BIN ]] || { echo "fs-bench: no $OBJFS_BIN (build first)" >&2; exit 2; }

harness_init fs-bench
harness_need_fuse
harness_need s3fs rclone fio curl python3
RGW_MEMSTORE_BYTES=$(((BIG_MIB * 3 + 2048) << 20)) harness_start_s3
harness_mkbucket src
# Without latency every client talks to the gateway directly (the Python proxy would be the
# bottleneck); with DELAY_MS they all go through tests/lib/faultproxy.py, which holds each
# request one round trip. Requests are counted in the gateway's own log either way.
EP=$S3_ENDPOINT
if [[ $DELAY_MS != 0 ]]; then
	harness_start_proxy
	proxy_mode "{\"delay_ms\": {\"ms\": $((2 * DELAY_MS))}}"
	EP=$PROXY_ENDPOINT
fi
RGWLOG=$HARNESS_RGW_DIR/log/client.rgw.a.log
# requests of one kind ("HEAD", "GET") the gateway has logged so far
rgw_requests() { grep -c "\"$1 /" "$RGWLOG" || true; }
# bytes sent to the clients so far: counted by the proxy when there is one; else the sizes
# of the GET answers in the gateway's log (which logs an answer's whole length even when the
# client stopped reading early, and only once it has written the line)
bytes_out() {
	if [[ $DELAY_MS != 0 ]]; then
		proxy_stat bytes_to_client
	else
		awk '/"GET \// { for (i = 1; i <= NF; i++) if ($i ~ /^HTTP\/1.1"$/) { s += $(i + 2) } } END { printf "%d\n", s }' "$RGWLOG"
	fi
}
W=$HARNESS_DIR
results=$W/results
: >"$results"

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }'; }
record() { echo "$1 $2 $3 $4 $ROUND" >>"$results"; printf '  %-8s %-22s %10s %s\n' "$1" "$2" "$3" "$4"; }
objfs_cli() { "$OBJFS_BIN" "$@" -o "endpoint=$S3_ENDPOINT,region=$S3_REGION"; }

# ---- fixtures (through the server directly, not the proxy) ----
echo "fs-bench: preparing fixtures (big $BIG_MIB MiB, $LIST_N listing objects, $SF_N small files)"
head -c $((BIG_MIB << 20)) /dev/urandom >"$W/big"
objfs_cli put "$W/big" s3://src/big >/dev/null
if [[ " $WORKLOADS " == *" listing "* ]]; then
	"$OBJFS_BUILDDIR/tests/tools/storeload" --endpoint "$S3_ENDPOINT" --region "$S3_REGION" \
		--bucket src --op put --count "$LIST_N" --size 100 --prefix list/o --threads 32 >/dev/null
fi
mkdir -p "$W/small"
for ((d = 0; d < 20; d++)); do mkdir -p "$W/small/d$d"; done
for ((i = 0; i < SF_N; i++)); do
	head -c $((SF_KIB << 10)) /dev/urandom >"$W/small/d$((i % 20))/f$i"
done

# the fixtures' dirty pages would otherwise be written back during the first workloads
sync
echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true

# count objects under a prefix at the server (paged ListObjectsV2 by objfs's own CLI, which
# does not go through any mount or the proxy)
server_count() {
	"$OBJFS_BIN" ls -r "s3://src/$1" -o "endpoint=$S3_ENDPOINT,region=$S3_REGION" | wc -l
}

# Before each seqwrite: the objects earlier seqwrites left are deleted and the gateway's
# garbage collector run, so that every file system writes into an OSD of the same size. The
# memstore OSD keeps what it stores in its own memory, and on this VM the kernel's page faults
# got about 3 times as costly once the machine's memory in use passed about 2.5 GiB: without
# the reset each later writer paid more (a 512 MiB put went 260 -> 160 MiB/s after three
# others; with the reset five in a row stayed at 255-265).
seqwrite_reset() {
	local k
	for k in rawbig wbig-objfs wbig-s3fs wbig-rclone; do
		objfs_cli rm "s3://src/$k" >/dev/null 2>&1 || true
	done
	harness_rgw_admin gc process --include-all >/dev/null || true
	sync
	echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
}

# Before each timed workload: 1.5 GiB of memory is touched and freed. On this VM a page the
# kernel has not handed out for a few seconds costs several times more to hand out again
# (the host takes free memory back: writing 1 GiB into fresh page cache took 1.7-3 s, into
# recycled pages 0.2 s), so the first file system to read after a quiet spell paid for it
# (objfs's first read of a run: 377 MiB/s and twice the CPU; 550 with this warm-up).
# Every file system and raw get the same warm-up.
warm_memory() {
	local f=/dev/shm/objfs-bench-warm
	dd if=/dev/zero of="$f" bs=1M count=1536 status=none 2>/dev/null || true
	rm -f "$f"
}

# the source of seqwrite in the page cache (SEQWRITE_SOURCE=warm) or not (cold)
warm_source() {
	if [[ ${SEQWRITE_SOURCE:-warm} == warm ]]; then
		cat "$W/big" >/dev/null
	else
		echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
	fi
}

# ---- raw: the ceiling, parallel HTTP without FUSE ----
curl_s3() { curl -sS --no-progress-meter --aws-sigv4 "aws:amz:$S3_REGION:s3" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
	-H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' "$@"; }
run_raw() {
	local t
	if [[ " $WORKLOADS " == *" seqread "* ]]; then
		local chunk=$((16 << 20)) n=$(((BIG_MIB << 20) / (16 << 20))) i
		: >"$W/raw.cfg"
		for ((i = 0; i < n; i++)); do
			printf 'url = "%s/src/big"\nrange = "%d-%d"\noutput = "/dev/null"\n' \
				"$EP" $((i * chunk)) $(((i + 1) * chunk - 1)) >>"$W/raw.cfg"
		done
		warm_memory
		t=$(now)
		curl_s3 --parallel --parallel-max 16 -K "$W/raw.cfg" -w '%{http_code}\n' | grep -qv '^206$' &&
			fail "raw seqread: a range GET did not answer 206"
		record raw seqread "$(awk -v m="$BIG_MIB" -v s="$(since "$t")" 'BEGIN { printf "%.1f", m / s }')" MiB/s
	fi
	if [[ " $WORKLOADS " == *" listing "* ]]; then
		warm_memory
		t=$(now)
		"$OBJFS_BIN" ls -l "s3://src/list/" -o "endpoint=$EP,region=$S3_REGION" >/dev/null
		record raw listing_cold "$(since "$t")" s
	fi
	if [[ " $WORKLOADS " == *" smallfiles "* ]]; then
		: >"$W/rawput.cfg"
		local f
		while read -r f; do
			printf 'url = "%s/src/rawsmall%s"\nupload-file = "%s"\noutput = "/dev/null"\n' "$EP" "$ROUND/${f#"$W"/small/}" "$f" >>"$W/rawput.cfg"
		done < <(find "$W/small" -type f)
		warm_memory
		t=$(now)
		curl_s3 --parallel --parallel-max 25 -K "$W/rawput.cfg" -w '%{http_code}\n' | grep -qv '^200$' &&
			fail "raw smallfiles: a PUT did not answer 200"
		record raw smallfiles_synced "$(since "$t")" s
	fi
	if [[ " $WORKLOADS " == *" seqwrite "* ]]; then
		# curl cannot do a parallel multipart upload: the direct path is objfs put (the same
		# engine and parallel parts, without FUSE, staging or journal)
		seqwrite_reset
		warm_source
		warm_memory
		t=$(now)
		"$OBJFS_BIN" put "$W/big" s3://src/rawbig -o "endpoint=$EP,region=$S3_REGION" >/dev/null
		record raw seqwrite_synced "$(awk -v m="$BIG_MIB" -v s="$(since "$t")" 'BEGIN { printf "%.1f", m / s }')" MiB/s
	fi
}

# ---- mounts ----
MP=""
FSPID=""
mount_fs() { # FS
	MP=/mnt/objfs-bench-$1
	local cache=$W/cache-$1 log=$W/$1.log
	# every mount starts with an empty cache: objfs keeps its data cache across mounts, so a
	# later round (or workload) would read what an earlier one fetched
	rm -rf "$cache"
	mkdir -p "$MP" "$cache"
	case $1 in
	objfs)
		"$OBJFS_BIN" mount s3://src "$MP" -f -o "endpoint=$EP,region=$S3_REGION,cache_dir=$cache${OBJFS_OPTS:+,$OBJFS_OPTS}" >"$log" 2>&1 &
		;;
	s3fs)
		printf '%s:%s\n' "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" >"$W/passwd-s3fs"
		chmod 600 "$W/passwd-s3fs"
		s3fs src "$MP" -f -o "url=$EP,use_path_request_style,endpoint=$S3_REGION,sigv4,passwd_file=$W/passwd-s3fs,parallel_count=16,multipart_size=16,multireq_max=32,max_stat_cache_size=200000,stat_cache_expire=900,enable_noobj_cache,complement_stat,tmpdir=$cache,big_writes,max_write=131072,dbglevel=err" >"$log" 2>&1 &
		;;
	rclone)
		env -u AWS_CA_BUNDLE RCLONE_S3_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID RCLONE_S3_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY \
			rclone mount :s3:src "$MP" --s3-provider Other --s3-endpoint "$EP" --s3-force-path-style=true \
			--s3-region "$S3_REGION" --s3-no-check-bucket --s3-upload-concurrency 8 --s3-chunk-size 16M \
			--transfers 16 --use-server-modtime --buffer-size 32M --vfs-read-chunk-size 16M \
			--vfs-read-chunk-size-limit off --vfs-write-back 0s --dir-cache-time 5m --attr-timeout 1s \
			--vfs-cache-mode writes --cache-dir "$cache" >"$log" 2>&1 &
		;;
	esac
	FSPID=$!
	harness_register_pid "$FSPID"
	harness_register_mount "$MP"
	harness_wait_for "grep -qs ' $MP fuse' /proc/mounts" 30 || { tail "$log"; fail "$1 did not mount"; }
}
umount_fs() {
	umount "$MP" 2>/dev/null || umount -l "$MP" || true
	for _ in $(seq 300); do kill -0 "$FSPID" 2>/dev/null || break; sleep 0.1; done
	sync
	echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
}
peak_rss() { awk '/VmHWM/ { print int($2 / 1024) }' "/proc/$FSPID/status" 2>/dev/null || echo NA; }

run_fs() { # FS
	local fs=$1 t
	if [[ " $WORKLOADS " == *" seqread "* ]]; then
		mount_fs "$fs"
		warm_memory
		t=$(now)
		dd if="$MP/big" of=/dev/null bs=1M status=none
		record "$fs" seqread "$(awk -v m="$BIG_MIB" -v s="$(since "$t")" 'BEGIN { printf "%.1f", m / s }')" MiB/s
		record "$fs" seqread_peak_rss "$(peak_rss)" MiB
		umount_fs
	fi
	if [[ " $WORKLOADS " == *" listing "* ]]; then
		mount_fs "$fs"
		local h0
		h0=$(rgw_requests HEAD)
		warm_memory
		t=$(now)
		ls -l "$MP/list" >/dev/null
		record "$fs" listing_cold "$(since "$t")" s
		record "$fs" listing_heads "$(($(rgw_requests HEAD) - h0))" requests
		t=$(now)
		ls -l "$MP/list" >/dev/null
		record "$fs" listing_warm "$(since "$t")" s
		record "$fs" listing_peak_rss "$(peak_rss)" MiB
		umount_fs
	fi
	if [[ " $WORKLOADS " == *" randread "* ]]; then
		mount_fs "$fs"
		local out b0
		b0=$(bytes_out)
		warm_memory
		out=$(fio --name=rr --filename="$MP/big" --rw=randread --bs=4k --numjobs=4 --time_based \
			--runtime="$RAND_S" --ioengine=psync --group_reporting --readonly --output-format=terse 2>/dev/null | tail -1)
		record "$fs" randread_iops "$(echo "$out" | awk -F';' '{ print $8 }')" IOPS
		record "$fs" randread_fetched "$(($(bytes_out) - b0))" bytes
		umount_fs
	fi
	if [[ " $WORKLOADS " == *" smallfiles "* ]]; then
		mount_fs "$fs"
		warm_memory
		t=$(now)
		cp -r "$W/small" "$MP/sf-$fs$ROUND"
		record "$fs" smallfiles_cp "$(since "$t")" s
		# objfs says when everything is at the server (objfs sync returns), as curl does for
		# raw: its time ends there and the listing then checks it. The others are polled
		# with that listing, which their time includes.
		local deadline=$((SECONDS + 600)) synced=
		if [[ $fs == objfs ]]; then
			"$OBJFS_BIN" sync "$MP" || fail "objfs sync failed"
			synced=$(since "$t")
			local n
			n=$(server_count "sf-$fs$ROUND/")
			((n >= SF_N)) || fail "objfs sync returned with $n of $SF_N objects at the server"
		else
			while (($(server_count "sf-$fs$ROUND/") < SF_N)) && ((SECONDS < deadline)); do sleep 0.2; done
		fi
		record "$fs" smallfiles_synced "${synced:-$(since "$t")}" s
		record "$fs" smallfiles_peak_rss "$(peak_rss)" MiB
		umount_fs
	fi
	if [[ " $WORKLOADS " == *" seqwrite "* ]]; then
		seqwrite_reset
		mount_fs "$fs"
		warm_source
		warm_memory
		t=$(now)
		dd if="$W/big" of="$MP/wbig-$fs" bs=1M status=none
		if [[ $fs == objfs ]]; then "$OBJFS_BIN" sync "$MP" || fail "objfs sync failed"; fi
		local want=$((BIG_MIB << 20)) deadline=$((SECONDS + 600))
		# HEAD, not GET: downloading the object to see its size would count a 512 MiB read
		# in every file system's write time
		while [[ $(curl_s3 -I "$S3_ENDPOINT/src/wbig-$fs" 2>/dev/null | tr -d '\r' |
			awk 'tolower($1) == "content-length:" { print $2 }') != "$want" ]] &&
			((SECONDS < deadline)); do sleep 0.1; done
		record "$fs" seqwrite_synced "$(awk -v m="$BIG_MIB" -v s="$(since "$t")" 'BEGIN { printf "%.1f", m / s }')" MiB/s
		record "$fs" seqwrite_peak_rss "$(peak_rss)" MiB
		umount_fs
	fi
}

echo "fs-bench: delay ${DELAY_MS} ms each way, RGW at $S3_ENDPOINT via proxy $EP"
# Each round starts one later in the list, so that no file system is always the one that
# runs first (after the fixtures) or right after a given other.
order=(raw $FS)
for ((ROUND = 1; ROUND <= REPS; ROUND++)); do
	((REPS == 1)) || echo "round $ROUND of $REPS"
	for ((i = 0; i < ${#order[@]}; i++)); do
		fs=${order[(i + ROUND - 1) % ${#order[@]}]}
		if [[ $fs == raw ]]; then run_raw; else run_fs "$fs"; fi
	done
done

echo
echo "ratios (objfs / peer; for times lower is better, for rates higher is better):"
python3 - "$results" "$REPS" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
reps = int(sys.argv[2])
runs = {}  # (fs, workload) -> {round: value}
for fs, name, value, _unit, rnd in rows:
    try:
        runs.setdefault((fs, name), {})[rnd] = float(value)
    except ValueError:
        pass
def med(key):
    v = runs.get(key)
    return statistics.median(v.values()) if v else None
if reps > 1:
    print("  (medians of %d rounds; in brackets the lowest and highest ratio of one round)" % reps)
for n in sorted({r[1] for r in rows}):
    o = med(("objfs", n))
    if o is None:
        continue
    parts = []
    for peer in ("raw", "s3fs", "rclone"):
        p = med((peer, n))
        if not p:
            continue
        part = "%s %.2f" % (peer, o / p)
        both = [r for r in runs[("objfs", n)] if runs[(peer, n)].get(r)]
        if reps > 1 and len(both) > 1:
            each = [runs[("objfs", n)][r] / runs[(peer, n)][r] for r in both]
            part += " [%.2f-%.2f]" % (min(each), max(each))
        parts.append(part)
    shown = "%d" % o if o == int(o) else "%g" % o
    print("  %-22s objfs=%-10s %s" % (n, shown, "  ".join(parts)))
PY
