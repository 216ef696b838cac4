#!/usr/bin/env bash
# ops_df.sh - what df(1) and statfs(2) say about a mount: the size is fs_size= (default 1P),
# free and available are at most that and not zero, the block size is 4096 and names may be
# 255 bytes long; df -h and df -T show the mount with its source and type. A directory
# store (file://) serves the mount: statfs does not depend on the S3 server.
set -euo pipefail
. "$(dirname "$0")/../lib/harness.sh"
. "$(dirname "$0")/mount_common.sh"

harness_init ops_df
harness_need_fuse
harness_need df stat
store=$HARNESS_DIR/store
mkdir -p "$store"
echo data >"$store/file"

# check_df MP BYTES HUMAN: df and statfs of MP for a file system of BYTES bytes
check_df() {
	local mp=$1 bytes=$2 human=$3 line size avail
	line=$(df -B1 --output=size,avail,target "$mp" | tail -n 1) || fail "df -B1 $mp failed"
	read -r size avail _ <<<"$line"
	assert_eq "$size" "$bytes" "df -B1: size is $human"
	[[ $avail -gt 0 && $avail -le $size ]] || fail "df -B1: available $avail is not in (0, $size]"
	pass "df -B1: available $avail is in (0, size]"
	line=$(df -h "$mp" | tail -n 1) || fail "df -h $mp failed"
	[[ $(awk '{ print $2 }' <<<"$line") == "$human" ]] || fail "df -h: size is not $human: '$line'"
	pass "df -h shows $human: $line"
	assert_eq "$(stat -f -c '%s %S %l' "$mp")" "4096 4096 255" \
		"statfs: block size 4096, fragment size 4096, names up to 255 bytes"
	[[ $(stat -f -c '%b' "$mp") -eq $((bytes / 4096)) ]] || fail "statfs: blocks is not size/4096"
	[[ $(stat -f -c '%a' "$mp") -le $(stat -f -c '%f' "$mp") ]] ||
		fail "statfs: more blocks available to users than free"
	pass "statfs: blocks = size / 4096, available <= free"
}

mp=$(objfs_mountpoint df)
objfs_mount "file://$store" "$mp" "fs_size=10G"
check_df "$mp" $((10 << 30)) 10G
line=$(df -T "$mp" | tail -n 1)
[[ $(awk '{ print $1, $2 }' <<<"$line") == "file://$store fuse.objfs" ]] ||
	fail "df -T does not show source and type 'file://$store fuse.objfs': '$line'"
pass "df -T shows the source and the type fuse.objfs"
objfs_umount "$mp"

mp=$(objfs_mountpoint df-default)
objfs_mount "file://$store" "$mp"
check_df "$mp" $((1 << 50)) 1.0P
objfs_umount "$mp"
