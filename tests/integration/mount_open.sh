#!/usr/bin/env bash
# mount_open.sh - files kept open while other programs list, unlink and rename them behave as
# on a local disk:
#   - a listing (READDIRPLUS: ls -l, python's scandir) of a file open for writing shows its
#     live size, not the size of its last close still pending upload: the kernel takes that
#     size for the file's, and put the next O_APPEND write there, over what was written since
#     (data corruption, before); also with writers that open, append and close in a loop
#     while others list;
#   - fstat, fchmod, ftruncate, write and read of the open file keep working (libfuse's
#     hidden name, kept in memory only), nlink is 0;
#   - the name is gone from lookups and listings at once, while the file is still open;
#   - a new file created under the same name while the old one is open is its own file: it
#     is uploaded with its own content (it used to share the unlinked file's staged state,
#     which is never uploaded, and was lost);
#   - rename over an open file: the open file goes on, the new content is at the name;
#   - a file open for writing, not written yet, renamed (or its directory): the next write
#     copies the content in from the new name (it looked at the old one: ENOENT);
#   - nothing of the unlinked files, and no ".fuse_hidden" object, reaches the bucket;
#   - an object named like a hidden file (s3fs leaves some) is not shown, and such a name
#     cannot be created (EPERM);
#   - an open file whose delete has run at the server: what is cached reads, the rest fails
#     with ESTALE (the object is gone), never ENOENT; one renamed reads on from its new name;
#   - a reader opened on a closed file sees what is appended after it opened, also once the
#     file was renamed (tail -f, tail -F of a rotated log).
# Each check runs with uploads pending (settle=30s) and then again with them committed
# (settle=20ms), on files new and already stored.
set -euo pipefail
. "$(dirname "$0")/../lib/harness.sh"
. "$(dirname "$0")/mount_common.sh"

harness_init mount_open
harness_need_fuse
harness_need python3
harness_start_s3
bucket=$(harness_unique unlinked)
harness_mkbucket "$bucket"
leftover=.fuse_hidden0000000a00000001
for k in stored1 stored2 stored3 "$leftover"; do
	[[ $(s3code -X PUT --data-binary "$k-content" "$S3_ENDPOINT/$bucket/$k") == 200 ]] ||
		fail "PUT $k"
done

# append_while_listed DIR: append through an open descriptor, list the directory, append again
append_while_listed() {
	python3 - "$1" <<'EOF'
import os, sys
d = sys.argv[1]
p = os.path.join(d, "appended")
with open(p, "wb") as f:
    f.write(b"0123456789")
os.listdir(d)  # a listing cached with the closed file's size
fd = os.open(p, os.O_WRONLY | os.O_APPEND)
os.write(fd, b"A" * 5000)
for e in os.scandir(d):
    if e.name == "appended" and e.stat().st_size != 5010:
        sys.exit("the listing shows size %d for a file open for writing of 5010 bytes" % e.stat().st_size)
os.write(fd, b"B" * 10)
os.close(fd)
with open(p, "rb") as f:
    got = f.read()
if got != b"0123456789" + b"A" * 5000 + b"B" * 10:
    sys.exit("appended while listed: %d bytes, %d A, %d B (want 5020, 5000, 10)" % (
        len(got), got.count(b"A"), got.count(b"B")))
EOF
}

# appenders_while_listed DIR: three writers each open a file O_APPEND, write 20 lines, close,
# again, for 8 s, while two threads list DIR with attributes; every line must be there. The
# release before this test lost a third of them, later ones a few: a listing gathered before
# a close handed the kernel the size before it, and the next append went there.
appenders_while_listed() {
	python3 - "$1" <<'EOF'
import os, sys, threading, time
d = os.path.join(sys.argv[1], "appenders")
os.makedirs(d)
stop = time.time() + 8
counts, errors = {}, []

def writer(name):
    p, n = os.path.join(d, name), 0
    while time.time() < stop:
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        for _ in range(20):
            os.write(fd, name.encode() * 3 + b"\n")
            n += 1
        os.close(fd)
    counts[name] = n

def lister():
    while time.time() < stop:
        try:
            for e in os.scandir(d):
                e.stat()
        except OSError as e:
            errors.append(e)

threads = [threading.Thread(target=writer, args=(n,)) for n in ("aaaaa", "bbbbb", "ccccc")]
threads += [threading.Thread(target=lister) for _ in range(2)]
for t in threads:
    t.start()
for t in threads:
    t.join()
bad = []
for name, n in sorted(counts.items()):
    with open(os.path.join(d, name), "rb") as f:
        lines = f.read().split(b"\n")[:-1]
    if len(lines) != n or any(l != name.encode() * 3 for l in lines):
        bad.append("%s: %d lines of %d written" % (name, len(lines), n))
if bad or errors:
    sys.exit("appends while listed: %s %s" % ("; ".join(bad), errors[:3]))
EOF
}

# unlinked_checks DIR TAG: the open-file checks in DIR (a python script; exits non-zero
# with a message on the first difference from a local disk)
unlinked_checks() {
	python3 - "$1" "$2" <<'EOF'
import errno, os, stat, sys
d, tag = sys.argv[1], sys.argv[2]

def check(cond, what):
    if not cond:
        sys.exit("%s: %s" % (tag, what))

def gone(path):
    try:
        os.stat(path)
        return False
    except OSError as e:
        check(e.errno == errno.ENOENT, "stat of the unlinked %s: %s" % (path, e))
        return True

def hidden_listed():
    return [n for n in os.listdir(d) if n.startswith(".fuse_hidden")]

# 1. a new file, written, unlinked while open, then used through the descriptor
p = os.path.join(d, "new-open")
fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o600)
os.write(fd, b"0123456789")
os.unlink(p)
check(gone(p), "the unlinked name still exists")
check("new-open" not in os.listdir(d), "the unlinked name is still listed")
st = os.fstat(fd)
check(st.st_size == 10 and st.st_nlink == 0, "fstat: size %d nlink %d" % (st.st_size, st.st_nlink))
os.write(fd, b"ab")
os.fchmod(fd, 0o640)
os.ftruncate(fd, 11)
st = os.fstat(fd)
check(st.st_size == 11 and stat.S_IMODE(st.st_mode) == 0o640 and st.st_nlink == 0,
      "after write, fchmod, ftruncate: size %d mode %o nlink %d" % (
          st.st_size, stat.S_IMODE(st.st_mode), st.st_nlink))
check(os.lseek(fd, 0, os.SEEK_END) == 11, "lseek SEEK_END of the unlinked file")
check(os.pread(fd, 100, 0) == b"0123456789a", "read back through the descriptor")
check(not hidden_listed(), "a hidden name is listed: %s" % hidden_listed())

# 2. the same name created again while the old file is open: a file of its own
with open(p, "w") as f:
    f.write("the new one")
os.pwrite(fd, b"old", 11)
with open(p) as f:
    check(f.read() == "the new one", "the new file of the same name reads wrong")
check(os.fstat(fd).st_size == 14, "the old open file's size changed")
os.close(fd)
with open(p) as f:
    check(f.read() == "the new one", "the new file changed when the old one was closed")

# 3. a stored file opened for reading, unlinked, read to the end
p = os.path.join(d, "stored1")
with open(p, "rb") as f:
    os.unlink(p)
    check(gone(p), "the unlinked stored file still exists")
    st = os.fstat(f.fileno())
    check(st.st_nlink == 0 and st.st_size == len(b"stored1-content"), "fstat of a stored file")
    check(f.read() == b"stored1-content", "read of the unlinked stored file")

# 4. rename over an open file: it goes on; the name holds what was renamed onto it
a, b = os.path.join(d, "stored2"), os.path.join(d, "over-target")
with open(b, "w") as f:
    f.write("target")
fd = os.open(b, os.O_RDWR)
os.rename(a, b)
check(os.fstat(fd).st_size == 6, "fstat of the file renamed over")
os.write(fd, b"X")
with open(b) as f:
    check(f.read() == "stored2-content", "the name renamed onto reads wrong")
os.close(fd)

# 5. opened for writing, not written yet, then renamed (itself, or its directory): the first
# write copies the content in from where it is now, not from the old name
os.mkdir(os.path.join(d, "dir1"))
with open(os.path.join(d, "dir1", "f"), "wb") as f:
    f.write(b"0123456789")
fd = os.open(os.path.join(d, "dir1", "f"), os.O_RDWR)
fd2 = os.open(os.path.join(d, "stored3"), os.O_RDWR)
os.rename(os.path.join(d, "dir1"), os.path.join(d, "dir2"))
os.rename(os.path.join(d, "stored3"), os.path.join(d, "stored3b"))
os.pwrite(fd, b"AB", 4)
os.pwrite(fd2, b"XY", 0)
os.close(fd)
os.close(fd2)
with open(os.path.join(d, "dir2", "f"), "rb") as f:
    check(f.read() == b"0123AB6789", "written after its directory was renamed")
with open(os.path.join(d, "stored3b"), "rb") as f:
    check(f.read() == b"XYored3-content", "written after it was renamed")

# 6. an open file unlinked, then its directory renamed: fstat still works
os.mkdir(os.path.join(d, "dir3"))
fd = os.open(os.path.join(d, "dir3", "f"), os.O_RDWR | os.O_CREAT, 0o600)
os.write(fd, b"abc")
os.unlink(os.path.join(d, "dir3", "f"))
os.rename(os.path.join(d, "dir3"), os.path.join(d, "dir4"))
st = os.fstat(fd)
check(st.st_size == 3 and st.st_nlink == 0, "fstat after its directory was renamed")
os.close(fd)

# 7. ... and its directory removed: reads and writes go on (fstat is ESTALE: documented)
os.mkdir(os.path.join(d, "dir5"))
fd = os.open(os.path.join(d, "dir5", "f"), os.O_RDWR | os.O_CREAT, 0o600)
os.write(fd, b"abc")
os.unlink(os.path.join(d, "dir5", "f"))
os.rmdir(os.path.join(d, "dir5"))
os.write(fd, b"def")
check(os.pread(fd, 10, 0) == b"abcdef", "read after its directory was removed")
os.close(fd)

# 8. an object with a hidden name is not shown, and such a name cannot be created
check(not hidden_listed(), "a hidden name is listed: %s" % hidden_listed())
try:
    os.close(os.open(os.path.join(d, ".fuse_hidden0000000b00000002"), os.O_CREAT | os.O_WRONLY))
    sys.exit("%s: creating a hidden name succeeded" % tag)
except OSError as e:
    check(e.errno == errno.EPERM, "creating a hidden name: %s (want EPERM)" % e)
EOF
}

expect_bucket() { # PREFIX: the objects the checks leave, nothing else
	local got
	got=$(s3curl "$S3_ENDPOINT/$bucket?list-type=2&prefix=$1" |
		grep -o '<Key>[^<]*</Key>' | sed 's/<[^>]*>//g' | sort | tr '\n' ' ')
	local big=
	[[ $1 == s20ms/ ]] && big="${1}big2-renamed "
	assert_eq "$got" "${1}appended ${1}appenders/ ${1}appenders/aaaaa ${1}appenders/bbbbb ${1}appenders/ccccc $big${1}dir2/ ${1}dir2/f ${1}dir4/ ${1}log.1 ${1}new-open ${1}over-target ${1}stored3b " \
		"the bucket under '$1'"
	assert_eq "$(s3curl "$S3_ENDPOINT/$bucket/${1}new-open")" "the new one" \
		"the file created again under the unlinked name was uploaded"
	assert_eq "$(s3curl "$S3_ENDPOINT/$bucket/${1}over-target")" "stored2-content" \
		"the name renamed over holds the renamed file"
}

# late_read PREFIX: PREFIX/big and PREFIX/big2, stored 32 MiB files, are open for reading;
# big is unlinked and big2 renamed, and the delete and the rename's copy and delete run at
# the server. big: what was read (cached) reads again, the rest fails with ESTALE (not
# ENOENT). big2: reads to the end from its new name, byte for byte (it failed once the old
# key was gone: the open file did not follow the rename).
late_read() {
	local i reader
	rm -f "$HARNESS_DIR/go" "$HARNESS_DIR/ready"
	python3 - "$mp/$1" "$HARNESS_DIR" <<'EOF' &
import errno, os, sys, time
d, h = sys.argv[1], sys.argv[2]
fd = os.open(os.path.join(d, "big"), os.O_RDONLY)
fd2 = os.open(os.path.join(d, "big2"), os.O_RDONLY)
head = os.read(fd, 1 << 20)
head2 = os.read(fd2, 1 << 20)
os.unlink(os.path.join(d, "big"))
os.rename(os.path.join(d, "big2"), os.path.join(d, "big2-renamed"))
open(os.path.join(h, "ready"), "w").close()
while not os.path.exists(os.path.join(h, "go")):
    time.sleep(0.05)
try:
    while os.read(fd, 1 << 20):
        pass
    sys.exit("read the whole file after its delete ran (read-ahead is bounded at 8 MiB)")
except OSError as e:
    if e.errno != errno.ESTALE:
        sys.exit("read after the delete: %s (want ESTALE)" % e)
if os.pread(fd, 1 << 20, 0) != head:
    sys.exit("the part read before the delete does not read again")
rest = b""
while True:
    b = os.read(fd2, 1 << 20)
    if not b:
        break
    rest += b
with open(os.path.join(h, "big"), "rb") as f:
    if head2 + rest != f.read():
        sys.exit("the file renamed while open read %d bytes, not the original" % len(head2 + rest))
EOF
	reader=$!
	harness_register_pid "$reader"
	harness_wait_for "test -e $HARNESS_DIR/ready" 10 || fail "the reader did not start"
	for ((i = 0; i < 100; i++)); do
		[[ $(s3code -I "$S3_ENDPOINT/$bucket/${1}big") == 404 &&
			$(s3code -I "$S3_ENDPOINT/$bucket/${1}big2") == 404 ]] && break
		sleep 0.1
	done
	((i < 100)) || fail "the delete and the rename did not run at the server"
	touch "$HARNESS_DIR/go"
	wait "$reader" || fail "open files whose delete or rename ran"
}

# follow_writes DIR: a reader opened on a closed file reads what is appended through the mount
# after it opened, also after the file is renamed (tail -f, tail -F of a rotated log)
follow_writes() {
	python3 - "$1" <<'EOF'
import os, sys
d = sys.argv[1]
p = os.path.join(d, "log")
with open(p, "wb") as f:
    f.write(b"one\n")
r = os.open(p, os.O_RDONLY)
if os.read(r, 100) != b"one\n":
    sys.exit("the reader's first read")
with open(p, "ab") as f:
    f.write(b"two\n")
got = os.read(r, 100)
if got != b"two\n":
    sys.exit("the reader read %r after an append (want b'two\\n')" % got)
os.rename(p, p + ".1")
with open(p + ".1", "ab") as f:
    f.write(b"three\n")
got = os.read(r, 100)
if got != b"three\n":
    sys.exit("the reader read %r after the rename and an append (want b'three\\n')" % got)
os.close(r)
EOF
}

mp=$(objfs_mountpoint open)
for settle in 30s 20ms; do
	prefix=s$settle/
	for k in stored1 stored2 stored3; do
		[[ $(s3code -X PUT --data-binary "$k-content" "$S3_ENDPOINT/$bucket/$prefix$k") == 200 ]] ||
			fail "PUT $prefix$k"
	done
	if [[ $settle == 20ms ]]; then
		head -c 32M /dev/urandom >"$HARNESS_DIR/big"
		for k in big big2; do
			[[ $(s3code -X PUT -T "$HARNESS_DIR/big" "$S3_ENDPOINT/$bucket/$prefix$k") == 200 ]] ||
				fail "PUT $prefix$k"
		done
	fi
	objfs_mount "s3://$bucket" "$mp" "settle=$settle,read_ahead=8M"
	[[ -e $mp/$leftover ]] && fail "an object with a hidden name is looked up"
	ls -a "$mp" | grep -q fuse_hidden && fail "an object with a hidden name is listed"
	append_while_listed "$mp/s$settle" || fail "appends while the directory is listed, settle=$settle"
	pass "settle=$settle: a listing shows a file open for writing at its live size; appends stay appends"
	appenders_while_listed "$mp/s$settle" || fail "appenders while listed, settle=$settle"
	pass "settle=$settle: 3 appending writers and 2 listers for 8 s: every line is there"
	follow_writes "$mp/s$settle" || fail "a reader following appends, settle=$settle"
	pass "settle=$settle: an open reader reads what is appended after it opened, also after a rename"
	unlinked_checks "$mp/s$settle" "settle=$settle" || fail "open files unlinked, settle=$settle"
	pass "settle=$settle: fstat, fchmod, ftruncate, read and write of open unlinked files"
	left=$(find "$OBJFS_CACHE/staging" -type f | wc -l)
	assert_eq "$left" 0 "settle=$settle: staged files left once every file is closed"
	if [[ $settle == 20ms ]]; then
		late_read "$prefix"
		pass "an open file whose delete ran: what was read re-reads, the rest fails with ESTALE"
		pass "an open file renamed, the rename done at the server: reads to the end"
	fi
	"$OBJFS_BIN" sync "$mp" >/dev/null || fail "objfs sync failed"
	objfs_umount "$mp"
	expect_bucket "$prefix"
	pass "settle=$settle: the bucket holds the new files, nothing of the unlinked ones"
done
assert_eq "$(s3curl "$S3_ENDPOINT/$bucket/$leftover")" "$leftover-content" \
	"the object with a hidden name is left alone"
pass "an object named like a hidden file is neither shown nor touched"
