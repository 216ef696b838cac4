#!/usr/bin/env bash
# sync_overlay.sh - a mount with dest= another bucket reads through to the source and writes
# only to the destination; the source bucket stays byte-for-byte the same. The source holds a
# tree of 60 objects (nested, with and without s3fs metadata, a directory marker). Through the
# mount every source file reads back; new files, overwrites, appends, truncates, chmod/touch
# of copied-up files, mkdir, new files in source directories and removing a new file are done;
# removing, renaming, chmod or touch of a source-only object is refused (EROFS) and leaves it
# as it was. After `objfs sync`: the
# destination holds exactly the new and changed files with the right bytes (md5, curl), and
# the source's listing (key, size, ETag, Last-Modified), every object's md5 and its metadata
# headers are what they were before the mount. A fresh mount shows the merged view.
set -euo pipefail
. "$(dirname "$0")/../lib/harness.sh"
. "$(dirname "$0")/mount_common.sh"
. "$(dirname "$0")/sync_common.sh"

harness_init sync_overlay
harness_need_fuse
harness_need md5sum curl python3
harness_start_s3
srcb=$(harness_unique ovsrc)
dstb=$(harness_unique ovdst)
harness_mkbucket "$srcb"
harness_mkbucket "$dstb"

# ---- the source tree, uploaded with curl ----
src=$HARNESS_DIR/src
mkdir -p "$src/d1/d2" "$src/d3"
for i in $(seq 1 20); do head -c $((i * 1000 + 7)) /dev/urandom >"$src/d1/a$i"; done
for i in $(seq 1 20); do head -c $((i * 300)) /dev/urandom >"$src/d1/d2/b$i"; done
for i in $(seq 1 19); do head -c $((i * 50 + 1)) /dev/urandom >"$src/d3/c$i"; done
head -c 3000000 /dev/urandom >"$src/big"
for f in $(cd "$src" && find . -type f -printf '%P\n'); do
	meta=()
	case $f in
	d1/d2/*) ;; # written by another tool: no metadata
	*) meta=(-H "x-amz-meta-mode: $((8#100640))" -H "x-amz-meta-mtime: 1500000000") ;;
	esac
	s3curl -f -X PUT "${meta[@]}" -T "$src/$f" "$S3_ENDPOINT/$srcb/$f" || fail "cannot PUT $f"
done
s3curl -f -X PUT -H "Content-Type: application/x-directory" -H "x-amz-meta-mode: $((8#040755))" \
	--data-binary '' "$S3_ENDPOINT/$srcb/d3/" || fail "cannot PUT the d3/ marker"

# snapshot BUCKET OUT: listing (key size etag last-modified) and md5 + metadata of every object
snapshot() {
	local out=$2 xml=$HARNESS_DIR/snap.xml
	s3curl -f -o "$xml" "$S3_ENDPOINT/$1?list-type=2&max-keys=1000" || fail "cannot list $1"
	python3 - "$xml" >"$out.list" <<'EOF'
import sys, xml.etree.ElementTree as ET
ns = "{http://s3.amazonaws.com/doc/2006-03-01/}"
root = ET.parse(sys.argv[1]).getroot()
assert root.find(ns + "IsTruncated").text == "false"
for c in root.iter(ns + "Contents"):
    print(*(c.find(ns + k).text for k in ("Key", "Size", "ETag", "LastModified")))
EOF
	rm -rf "$out.d"
	sync_fetch "$1" "" "$out.d"
	sync_md5_list "$out.d" >"$out.md5"
	sort "$out.d.meta" >"$out.meta"
}
snapshot "$srcb" "$HARNESS_DIR/before"
n_src=$(wc -l <"$HARNESS_DIR/before.list")
assert_eq "$n_src" 61 "the source holds 60 files and a directory marker"

mp=$(objfs_mountpoint overlay)
objfs_mount "s3://$srcb" "$mp" "dest=s3://$dstb,settle=100ms"

# ---- reads fall through ----
diff -r "$src" "$mp" >/dev/null || fail "the mount does not read the source tree back: $(diff -r "$src" "$mp" | head -3)"
assert_eq "$(stat -c %a "$mp/d1/a1")" 640 "the source's x-amz-meta-mode shows"
pass "every source file reads back through the mount"

# ---- writes, in the mount and in a local model ----
m=$HARNESS_DIR/model
cp -r "$src" "$m"
want=() # keys that must be in dest
echo new >"$mp/new-top"; echo new >"$m/new-top"; want+=(new-top)
head -c 5000 /dev/urandom >"$HARNESS_DIR/o1"
cp "$HARNESS_DIR/o1" "$mp/d1/a1"; cp "$HARNESS_DIR/o1" "$m/d1/a1"; want+=(d1/a1)
echo appended >>"$mp/d1/a2"; echo appended >>"$m/d1/a2"; want+=(d1/a2)
truncate -s 100 "$mp/d1/d2/b3"; truncate -s 100 "$m/d1/d2/b3"; want+=(d1/d2/b3)
printf 'MID' | dd of="$mp/big" bs=1 seek=1500000 conv=notrunc status=none
printf 'MID' | dd of="$m/big" bs=1 seek=1500000 conv=notrunc status=none; want+=(big)
mkdir "$mp/d1/newdir"; mkdir "$m/d1/newdir"; want+=(d1/newdir/)
echo inside >"$mp/d1/newdir/f"; echo inside >"$m/d1/newdir/f"; want+=(d1/newdir/f)
echo in-src-dir >"$mp/d3/new"; echo in-src-dir >"$m/d3/new"; want+=(d3/new)
echo gone >"$mp/d3/tmp"; rm "$mp/d3/tmp"
chmod 600 "$mp/d1/a2"; chmod 600 "$m/d1/a2" # copied up: its attributes can change
touch -d @1600000000 "$mp/d1/a1"; touch -d @1600000000 "$m/d1/a1"
if rm "$mp/d3/c6" 2>/dev/null; then fail "removing a source object succeeded"; fi
if mv "$mp/d3/c7" "$mp/d3/c7b" 2>/dev/null; then fail "renaming a source object succeeded"; fi
if chmod 600 "$mp/d3/c4" 2>/dev/null; then fail "chmod of a source-only object succeeded"; fi
# a directory holding both (d1/a1 is now at the destination, d1/a10 is not): refused, and
# nothing in it moves
if mv "$mp/d1" "$mp/d1moved" 2>"$HARNESS_DIR/mv.err"; then fail "renaming a directory with source objects in it succeeded"; fi
grep -q "Read-only file system" "$HARNESS_DIR/mv.err" || fail "mv of d1: $(cat "$HARNESS_DIR/mv.err")"
[[ -f $mp/d1/a1 && ! -e $mp/d1moved ]] || fail "the refused rename of d1 moved part of it: $(ls "$mp" "$mp/d1moved" 2>&1 | tr '\n' ' ')"
if touch -d @1600000000 "$mp/d3/c5" 2>"$HARNESS_DIR/touch.err"; then
	fail "touch -d of a source-only object succeeded"
fi
grep -q "Read-only file system" "$HARNESS_DIR/touch.err" || fail "touch -d: $(cat "$HARNESS_DIR/touch.err")"
if touch "$mp/d3/c8" 2>/dev/null; then fail "touch of a source-only object succeeded"; fi
cmp -s "$mp/d3/c5" "$src/d3/c5" || fail "after the refused touch d3/c5 does not read back"
assert_eq "$(stat -c %a.%Y "$mp/d3/c5")" 640.1500000000 "after the refused touch d3/c5 keeps its attributes"
pass "removing, renaming, chmod and touch of a source-only object, and renaming a directory holding one, are refused (EROFS)"
diff -r "$m" "$mp" >/dev/null || fail "the mount differs from the model: $(diff -r "$m" "$mp" | head -3)"
pass "after the changes the mount matches the model"

timeout 120 "$OBJFS_BIN" sync "$mp" >"$HARNESS_DIR/sync.out" 2>&1 ||
	fail "objfs sync failed: $(cat "$HARNESS_DIR/sync.out")"
objfs_umount "$mp"

# ---- the destination holds exactly what was written ----
printf '%s\n' "${want[@]}" | LC_ALL=C sort >"$HARNESS_DIR/want"
sync_keys "$dstb" "" >"$HARNESS_DIR/have"
diff "$HARNESS_DIR/want" "$HARNESS_DIR/have" >/dev/null ||
	fail "dest does not hold exactly the written keys: $(diff "$HARNESS_DIR/want" "$HARNESS_DIR/have" | head -5)"
sync_fetch "$dstb" "" "$HARNESS_DIR/dest"
for k in "${want[@]}"; do
	[[ $k == */ ]] && continue
	cmp -s "$m/$k" "$HARNESS_DIR/dest/$k" || fail "dest object $k has the wrong content"
done
pass "dest holds exactly the ${#want[@]} new and changed keys, with the right bytes"
grep -q "^d1/a2 200 $((8#100600)) " "$HARNESS_DIR/dest.meta" ||
	fail "chmod of a copied-up file did not reach dest: $(grep '^d1/a2 ' "$HARNESS_DIR/dest.meta")"
grep -q "^d1/a1 200 [0-9]* [0-9]* [0-9]* 1600000000" "$HARNESS_DIR/dest.meta" ||
	fail "touch of a copied-up file did not reach dest: $(grep '^d1/a1 ' "$HARNESS_DIR/dest.meta")"
pass "chmod and touch of copied-up files reached dest"

# ---- the source is unchanged ----
snapshot "$srcb" "$HARNESS_DIR/after"
for x in list md5 meta; do
	diff "$HARNESS_DIR/before.$x" "$HARNESS_DIR/after.$x" >/dev/null ||
		fail "the source bucket changed ($x): $(diff "$HARNESS_DIR/before.$x" "$HARNESS_DIR/after.$x" | head -5)"
done
pass "the source bucket is unchanged: $n_src keys, sizes, ETags, Last-Modified, md5s and metadata"

# ---- a fresh mount shows dest over source ----
mp2=$(objfs_mountpoint overlay2)
objfs_mount "s3://$srcb" "$mp2" "dest=s3://$dstb"
diff -r "$m" "$mp2" >/dev/null || fail "a fresh mount differs from the model: $(diff -r "$m" "$mp2" | head -3)"
pass "a fresh mount shows the merged view"
objfs_umount "$mp2"
