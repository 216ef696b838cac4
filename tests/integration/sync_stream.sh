#!/usr/bin/env bash
# sync_stream.sh - a large file written sequentially goes up while it is being written (issue
# #4's sequential-write target: the upload overlaps the writing), and is published only whole
# and only with its newest bytes ("a file modified again while uploading is re-queued, never
# published half-old"; nothing is visible before CompleteMultipartUpload).
#
# Through the fault proxy (which counts requests), with 5 MiB parts and threshold:
#  1. a writer (a python process keeping the file open between steps) appends 27 MiB and
#     waits: at least 5 part uploads reach the server while the file is still open, the object
#     is not visible yet; then it appends the rest and closes; after `objfs sync` the object
#     matches byte for byte, no part went up twice, its x-amz-meta-mtime is from the last write,
#     and no multipart upload is left open;
#  2. the same, but after parts went up the writer overwrites the first MiB: the object holds
#     the new bytes, the early upload is aborted, none is left open;
#  3. kill -9 while an early upload is open: the remount aborts it; a file closed before the
#     kill is at the server; the file never closed is not published.
# Size: SYNC_STREAM_MIB (40) MiB per file (the issue measures 512 MiB; bench/fs-bench.sh).
set -euo pipefail
. "$(dirname "$0")/../lib/harness.sh"
. "$(dirname "$0")/mount_common.sh"
. "$(dirname "$0")/sync_common.sh"

mib=${SYNC_STREAM_MIB:-40}
first=27 # MiB before the pause: 5 full parts of 5 MiB

harness_init sync_stream
harness_need_fuse
harness_need md5sum curl python3 cmp
((mib > first)) || fail "SYNC_STREAM_MIB must be over $first"
harness_start_s3
harness_start_proxy
bucket=$(harness_unique stream)
harness_mkbucket "$bucket"

data=$HARNESS_DIR/data
head -c $((mib << 20)) /dev/urandom >"$data"
head -c $((1 << 20)) /dev/urandom >"$HARNESS_DIR/patch"

cat >"$HARNESS_DIR/writer.py" <<'EOF'
# writer.py PATH DATA ACK: commands on stdin, one line each, acknowledged in ACK when done:
#   append MIB   write the next MIB MiB of DATA at the end
#   patch FILE   write FILE's bytes at offset 0
#   close        close the file
import os, sys
path, data, ack = sys.argv[1:4]
src = open(data, "rb")
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
pos = 0
while True:
    line = sys.stdin.readline()
    if not line:
        break
    cmd = line.split()
    if cmd[0] == "append":
        left = int(cmd[1]) << 20
        while left:
            b = src.read(min(left, 1 << 20))
            done = 0
            while done < len(b):
                done += os.pwrite(fd, b[done:], pos + done)
            pos += len(b)
            left -= len(b)
    elif cmd[0] == "patch":
        os.pwrite(fd, open(cmd[1], "rb").read(), 0)
    elif cmd[0] == "close":
        os.close(fd)
    with open(ack, "a") as f:
        f.write(line)
EOF

# writer_start PATH: a writer on PATH fed through fd 9
writer_start() {
	local fifo=$HARNESS_DIR/writer.fifo
	rm -f "$fifo" "$HARNESS_DIR/ack"
	touch "$HARNESS_DIR/ack"
	mkfifo "$fifo"
	python3 "$HARNESS_DIR/writer.py" "$1" "$data" "$HARNESS_DIR/ack" <"$fifo" &
	WRITER_PID=$!
	harness_register_pid "$WRITER_PID"
	exec 9>"$fifo"
}
# writer_do CMD: send one command and wait until the writer has done it
writer_do() {
	local n
	n=$(wc -l <"$HARNESS_DIR/ack")
	echo "$1" >&9
	harness_wait_for "[[ \$(wc -l <'$HARNESS_DIR/ack') -gt $n ]]" 60 ||
		fail "the writer did not finish '$1'"
}
writer_end() {
	exec 9>&-
	wait "$WRITER_PID" || fail "the writer failed"
}
head_status() { # KEY: HTTP status of a HEAD straight at the server
	s3curl -s -o /dev/null -w '%{http_code}' -I "$S3_ENDPOINT/$bucket/$1" || true
}
parts_put() { proxy_stat requests.PUT; }

cache=$HARNESS_DIR/cache-stream
mp=$(objfs_mountpoint stream)
opts="endpoint=$PROXY_ENDPOINT,region=$S3_REGION,cache_dir=$cache,part_size=5M,multipart_threshold=5M"
objfs_mount "s3://$bucket" "$mp" "$opts"

# ---- 1. parts go up while the file is open; the close completes, reusing them ----
proxy_reset
writer_start "$mp/one.bin"
writer_do "append $first"
harness_wait_for '[[ $(parts_put) -ge 5 ]]' 30 ||
	fail "only $(parts_put) part uploads reached the server while one.bin was open (want 5)"
pass "$(parts_put) part uploads reached the server while one.bin was open and being written"
assert_eq "$(head_status one.bin)" 404 "one.bin is not visible before it is complete"
grep -q '^one.bin ' <<<"$(sync_uploads "$bucket")" || fail "no multipart upload of one.bin is open"
sleep 1.1 # the metadata must be the file's at close, not at the upload's start
t_last=$(date +%s)
writer_do "append $((mib - first))"
writer_do close
writer_end
timeout 120 "$OBJFS_BIN" sync "$mp" >/dev/null || fail "objfs sync failed"
s3curl -f -o "$HARNESS_DIR/one.back" "$S3_ENDPOINT/$bucket/one.bin" || fail "cannot fetch one.bin"
cmp -s "$data" "$HARNESS_DIR/one.back" || fail "one.bin at the server differs from what was written"
nparts=$(((mib + 4) / 5))
# nparts part PUTs, and at most one more: the metadata rewrite (copy onto itself)
assert_le "$(parts_put)" $((nparts + 1)) "no part of one.bin went up twice"
mtime=$(s3curl -sI "$S3_ENDPOINT/$bucket/one.bin" | tr -d '\r' |
	awk 'tolower($1) == "x-amz-meta-mtime:" { split($2, a, "."); print a[1] }')
[[ -n $mtime ]] || fail "one.bin has no x-amz-meta-mtime"
assert_le "$t_last" "$mtime" "one.bin's x-amz-meta-mtime is from its last write, not the upload's start"
assert_eq "$(sync_uploads "$bucket")" "" "no multipart upload is left open"

# ---- 2. an overwrite at offset 0 after parts went up: only the new bytes are published ----
proxy_reset
writer_start "$mp/two.bin"
writer_do "append $first"
harness_wait_for '[[ $(parts_put) -ge 3 ]]' 30 || fail "no early part upload of two.bin"
writer_do "patch $HARNESS_DIR/patch"
writer_do "append $((mib - first))"
writer_do close
writer_end
{ cat "$HARNESS_DIR/patch"; tail -c +$(((1 << 20) + 1)) "$data"; } >"$HARNESS_DIR/two.want"
timeout 120 "$OBJFS_BIN" sync "$mp" >/dev/null || fail "objfs sync failed"
s3curl -f -o "$HARNESS_DIR/two.back" "$S3_ENDPOINT/$bucket/two.bin" || fail "cannot fetch two.bin"
cmp -s "$HARNESS_DIR/two.want" "$HARNESS_DIR/two.back" ||
	fail "two.bin at the server is not the overwritten content"
pass "two.bin, overwritten at offset 0 after $first MiB went up, has only the new bytes"
[[ $(proxy_stat requests.DELETE) -ge 1 ]] || fail "the early upload of two.bin was not aborted"
assert_eq "$(sync_uploads "$bucket")" "" "no multipart upload is left open"

# ---- 3. kill -9 with an early upload open ----
echo acked >"$mp/acked.txt" || fail "write of acked.txt failed"
proxy_reset
writer_start "$mp/three.bin"
writer_do "append $first"
harness_wait_for '[[ $(parts_put) -ge 3 ]]' 30 || fail "no early part upload of three.bin"
grep -q '^three.bin ' <<<"$(sync_uploads "$bucket")" || fail "no multipart upload of three.bin is open"
kill -KILL "$OBJFS_PID"
wait "$OBJFS_PID" 2>/dev/null || true
kill "$WRITER_PID" 2>/dev/null || true
exec 9>&-
wait "$WRITER_PID" 2>/dev/null || true
fusermount3 -u -z "$mp" || fail "fusermount3 -u -z of the dead mount failed"
pass "killed objfs with an early upload of three.bin open"
mp2=$(objfs_mountpoint stream2)
objfs_mount "s3://$bucket" "$mp2" "$opts"
timeout 120 "$OBJFS_BIN" sync "$mp2" >/dev/null || fail "objfs sync after the remount failed"
assert_eq "$(sync_uploads "$bucket")" "" "the remount aborted the early upload: none is left open"
assert_eq "$(s3curl -sf "$S3_ENDPOINT/$bucket/acked.txt")" acked "acked.txt, closed before the kill, is at the server"
assert_eq "$(head_status three.bin)" 404 "three.bin, never closed, is not published"
objfs_umount "$mp2"
pass "sync_stream"
