#!/usr/bin/env bash
# demo.sh - the main job, end to end, on a private object store on 127.0.0.1:
#   install the dependencies and build objfs; start a throwaway Ceph RADOS Gateway; seed a
#   source bucket "photos" with sample files; mount it with the destination bucket
#   "processed"; process files into the mount with ordinary shell tools; `objfs sync`; show
#   the results at the destination with an independent client (s3cmd); show the source is
#   untouched; `objfs umount`. Everything it started is stopped at the end.
#
# usage: contrib/demo.sh          (as root on Debian 12; OBJFS_NO_INSTALL=1 skips apt-get)
set -euo pipefail
cd "$(dirname "$0")/.."
top=$(pwd)

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }

if [[ ${OBJFS_NO_INSTALL:-0} != 1 ]]; then
	step "installing dependencies (contrib/install-deps.sh)"
	./contrib/install-deps.sh
fi

step "building objfs in ./build"
if [[ ! -x build/objfs || ${OBJFS_REBUILD:-1} == 1 ]]; then
	./autogen.sh >/dev/null 2>&1
	mkdir -p build
	(cd build && "$top/configure" >/dev/null && make -j"$(nproc)" >/dev/null)
fi
export PATH="$top/build:$PATH"
objfs --version

# The test harness doubles as the demo's life-support: it starts the server, makes the
# buckets, and tears everything down (mount, daemon, server) when this script exits.
export OBJFS_SRCDIR=$top OBJFS_BUILDDIR=$top/build HARNESS_TIMEOUT=900
. "$top/tests/lib/harness.sh"
harness_init demo
step "starting a throwaway Ceph RADOS Gateway on 127.0.0.1"
harness_start_s3
harness_mkbucket photos
harness_mkbucket processed
echo "endpoint $S3_ENDPOINT (keys in the environment: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)"
O="endpoint=$S3_ENDPOINT,region=$S3_REGION"

step "seeding the source bucket s3://photos with sample files"
mkdir -p "$HARNESS_DIR/seed/raw/2026-12" "$HARNESS_DIR/seed/notes"
for i in 1 2 3 4 5; do
	printf 'frame %d of the demo set, shot at 12:0%d\n' "$i" "$i" >"$HARNESS_DIR/seed/raw/2026-12/img_000$i.txt"
done
printf 'odd names work too\n' >"$HARNESS_DIR/seed/notes/a file with spaces & ünïcode #1.txt"
head -c $((24 << 20)) /dev/urandom >"$HARNESS_DIR/seed/raw/2026-12/big.bin"
(cd "$HARNESS_DIR/seed" && find . -type f | sed 's|^\./||' | while read -r f; do
	objfs put "$f" "s3://photos/$f" -o "$O" >/dev/null
done)
show objfs ls -r -l s3://photos -o "$O"

mnt=/mnt/objfs-demo
mkdir -p "$mnt"
step "mounting s3://photos at $mnt, publishing writes to s3://processed"
show objfs mount s3://photos "$mnt" -o "$O,dest=s3://processed,cache_dir=$HARNESS_DIR/cache"
harness_register_mount "$mnt"
show ls -l "$mnt" "$mnt/raw/2026-12"
show cat "$mnt/raw/2026-12/img_0001.txt"

step "processing files into the mount with ordinary shell tools"
mkdir -p "$mnt/out/upper" "$mnt/out/copies"
for f in "$mnt"/raw/2026-12/img_*.txt; do
	tr 'a-z' 'A-Z' <"$f" >"$mnt/out/upper/$(basename "$f")"
done
show cp -r "$mnt/notes" "$mnt/out/copies/"
show rsync -a "$mnt/raw/2026-12/big.bin" "$mnt/out/copies/big.bin"
sha256sum "$mnt/raw/2026-12/big.bin" "$mnt/out/copies/big.bin"
show objfs status "$mnt"

step "objfs sync: wait until everything written is at the destination"
show objfs sync "$mnt"

step "the destination bucket, read with an independent client (s3cmd)"
show s3c ls -r s3://processed
s3c get --quiet s3://processed/out/upper/img_0003.txt "$HARNESS_DIR/check.txt"
show cat "$HARNESS_DIR/check.txt"
s3c get --quiet s3://processed/out/copies/big.bin "$HARNESS_DIR/check.bin"
sha256sum "$HARNESS_DIR/check.bin"
cmp "$HARNESS_DIR/check.bin" "$HARNESS_DIR/seed/raw/2026-12/big.bin" && echo "big.bin at the destination is byte-identical"

step "the source bucket is unchanged (nothing was written to it)"
show s3c ls -r s3://photos

step "objfs umount: drain, then unmount"
show objfs umount "$mnt"
echo
echo "demo finished: $(s3c ls -r s3://processed | wc -l) objects published to s3://processed"
