#!/usr/bin/env bash
# mount_s3fs_interop.sh - a bucket written by s3fs (Debian's s3fs, options as the benchmark uses
# them) reads correctly in objfs: types, modes, owners, mtimes, sizes, symlinks, directories,
# content; and a tree written by objfs reads the same in s3fs.
set -euo pipefail
. "$(dirname "$0")/../lib/harness.sh"
. "$(dirname "$0")/mount_common.sh"

harness_init mount_s3fs_interop
harness_need_fuse
harness_need s3fs md5sum
harness_start_s3
bucket=$(harness_unique interop)
harness_mkbucket "$bucket"

printf '%s:%s\n' "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" >"$HARNESS_DIR/passwd-s3fs"
chmod 600 "$HARNESS_DIR/passwd-s3fs"
s3fs_mount() { # MOUNTPOINT
	mkdir -p "$HARNESS_DIR/s3fs-tmp"
	s3fs "$bucket" "$1" -o "url=$S3_ENDPOINT,use_path_request_style,endpoint=$S3_REGION,sigv4" \
		-o "passwd_file=$HARNESS_DIR/passwd-s3fs,tmpdir=$HARNESS_DIR/s3fs-tmp,dbglevel=err" \
		-o "max_stat_cache_size=0,retries=3,logfile=$HARNESS_DIR/s3fs.log" ||
		fail "s3fs could not mount"
	harness_register_mount "$1"
	harness_register_log "$HARNESS_DIR/s3fs.log"
	harness_wait_for "awk -v d='$1' '\$5 == d { f = 1 } END { exit !f }' /proc/self/mountinfo" 20 ||
		fail "s3fs mount did not appear"
}
s3fs_umount() {
	fusermount -u "$1" 2>/dev/null || fusermount3 -u "$1" || umount "$1" || fail "cannot unmount s3fs"
}
# the view to compare: type, mode, owner, size (not for directories), mtime, link target
view() { # DIR
	(cd "$1" && find . -mindepth 1 -printf '%P|%y|%m|%U|%G|%T@|%l|' -exec sh -c \
		'if [ -f "$1" ] && [ ! -L "$1" ]; then md5sum <"$1" | cut -c1-32; else echo; fi' _ {} \; |
		sed -E 's/\|([0-9]+)\.[0-9]+\|/|\1|/' | sort)
}

# ---- s3fs writes, objfs reads ----
s3=$(objfs_mountpoint s3fs)
s3fs_mount "$s3"
mkdir -p "$s3/top/sub/deeper" "$s3/private"
echo "script" >"$s3/top/run.sh"; chmod 755 "$s3/top/run.sh"
echo "secret" >"$s3/private/key"; chmod 600 "$s3/private/key"
echo "ro" >"$s3/top/readonly"; chmod 444 "$s3/top/readonly"
: >"$s3/top/empty"
head -c 5000000 /dev/urandom >"$s3/top/sub/five-mb"
echo deep >"$s3/top/sub/deeper/leaf"
chmod 711 "$s3/private"
chown 1234:4321 "$s3/top/sub/five-mb"
touch -d @1500000000 "$s3/top/sub/deeper/leaf"
ln -s ../run.sh "$s3/top/sub/link-to-run"
ln -s /etc/hostname "$s3/abs-link"
sync
view "$s3" >"$HARNESS_DIR/s3fs.view"
s3fs_umount "$s3"

mp=$(objfs_mountpoint interop)
objfs_mount "s3://$bucket" "$mp" ""
view "$mp" >"$HARNESS_DIR/objfs.view"
if diff "$HARNESS_DIR/s3fs.view" "$HARNESS_DIR/objfs.view"; then
	pass "objfs shows what s3fs wrote: types, modes, owners, mtimes, link targets, content"
else
	fail "objfs's view of an s3fs-written tree differs (s3fs < > objfs)"
fi
assert_eq "$(readlink "$mp/top/sub/link-to-run")" ../run.sh "an s3fs symlink reads as a symlink"
assert_eq "$(stat -c '%a %u %g' "$mp/top/sub/five-mb")" "$(grep '^top/sub/five-mb|' "$HARNESS_DIR/s3fs.view" | cut -d'|' -f3-5 | tr '|' ' ')" \
	"chown done in s3fs shows in objfs"

# ---- objfs writes, s3fs reads ----
mkdir -p "$mp/from-objfs/d"
echo one >"$mp/from-objfs/d/one"; chmod 750 "$mp/from-objfs/d/one"
echo two >"$mp/from-objfs/two"; touch -d @1600000000 "$mp/from-objfs/two"
chmod 700 "$mp/from-objfs/d"
ln -s d/one "$mp/from-objfs/link"
view "$mp/from-objfs" >"$HARNESS_DIR/objfs2.view"
objfs_umount "$mp"
s3fs_mount "$s3"
view "$s3/from-objfs" >"$HARNESS_DIR/s3fs2.view"
s3fs_umount "$s3"
if diff "$HARNESS_DIR/objfs2.view" "$HARNESS_DIR/s3fs2.view"; then
	pass "s3fs shows what objfs wrote"
else
	fail "s3fs's view of an objfs-written tree differs (objfs < > s3fs)"
fi
