#!/usr/bin/env bash
# ops_contrib.sh - what contrib/ ships must work as shipped:
#  1. the systemd units pass `systemd-analyze verify` (objfs taken from the build);
#  2. every entry of contrib/fstab.example and the Options= of contrib/mnt-photos.mount are
#     accepted by mount.objfs in fake mode (-f: parse, filter, validate, do not mount), and
#     fstab.example has no parse errors for findmnt;
#  3. the bash completion completes subcommands, -o keys (also after a comma and after a
#     value with ':' in it) and --keys, taking the keys from `objfs --list-options` (the
#     binary found as "objfs" on PATH: here the build's), and its list of value-less keys
#     equals the keys `objfs --help` shows without "=".
set -euo pipefail
. "$(dirname "$0")/../lib/harness.sh"
harness_init ops_contrib
harness_need systemd-analyze findmnt bash python3

contrib=$OBJFS_SRCDIR/contrib
[[ -x $OBJFS_BIN ]] || fail "no objfs binary at $OBJFS_BIN"

# 1. systemd units. verify wants the unit file name to match the instance and ExecStart's
# program to exist; systemd finds a bare "objfs" in its own fixed PATH, so point it at the
# build instead.
units=$HARNESS_DIR/units
mkdir -p "$units"
cp "$contrib/mnt-photos.mount" "$contrib/mnt-photos.automount" "$units/"
sed -E "s#^(Exec[A-Za-z]+=-?)objfs #\\1$OBJFS_BIN #" "$contrib/objfs@.service" \
	>"$units/objfs@mnt-photos.service"
grep -q "^ExecStart=$OBJFS_BIN mount " "$units/objfs@mnt-photos.service" ||
	fail "objfs@.service has no 'ExecStart=objfs mount ...' line"
out=$(cd "$units" && systemd-analyze verify --man=no ./mnt-photos.mount ./mnt-photos.automount \
	./objfs@mnt-photos.service 2>&1) && rc=0 || rc=$?
[[ $rc == 0 && -z $out ]] || fail "systemd-analyze verify (exit $rc): $out"
pass "systemd-analyze verify: objfs@.service, mnt-photos.mount, mnt-photos.automount"

# 2. the option lines, through the real helper (a link named mount.objfs, as installed)
ln -s "$OBJFS_BIN" "$HARNESS_DIR/mount.objfs"
helper_fake() { # SOURCE DIR OPTS WHERE
	local out rc
	out=$(env -i "$HARNESS_DIR/mount.objfs" "$1" "$2" -f -o "$3" 2>&1) && rc=0 || rc=$?
	[[ $rc == 0 ]] || fail "$4: mount.objfs -f rejects '$3' (exit $rc): $out"
}
n=0
while read -r src dir type opts _freq pass_no extra; do
	[[ -z $src || $src == \#* ]] && continue
	[[ -n $pass_no && -z $extra ]] || fail "fstab.example: '$src $dir' is not 6 fields"
	[[ $type == objfs || $type == fuse.objfs ]] || fail "fstab.example: '$src' has type '$type'"
	helper_fake "$src" "$dir" "$opts" "fstab.example entry $dir"
	n=$((n + 1))
done <"$contrib/fstab.example"
[[ $n -ge 3 ]] || fail "fstab.example has only $n entries"
pass "mount.objfs -f accepts all $n entries of fstab.example"
out=$(findmnt --verify --tab-file "$contrib/fstab.example" 2>&1 || true)
[[ $out == *"0 parse errors"* ]] || fail "findmnt --verify fstab.example: $out"
pass "findmnt parses fstab.example"
what=$(sed -n 's/^What=//p' "$contrib/mnt-photos.mount")
where=$(sed -n 's/^Where=//p' "$contrib/mnt-photos.mount")
mopts=$(sed -n 's/^Options=//p' "$contrib/mnt-photos.mount")
helper_fake "$what" "$where" "$mopts" "mnt-photos.mount"
pass "mount.objfs -f accepts the Options= of mnt-photos.mount"

# 3. bash completion. complete WORDS...: the replies for the command line "WORDS" (the last
# word is the one being completed), one per line.
mkdir -p "$HARNESS_DIR/bin"
ln -s "$OBJFS_BIN" "$HARNESS_DIR/bin/objfs"
complete_line() {
	# (bash's default COMP_WORDBREAKS applies: " \t\n\"'><=;|&(:")
	PATH=$HARNESS_DIR/bin:$PATH bash -c 'source "$1"; COMP_LINE=$2 COMP_POINT=${#2}; _objfs; printf "%s\n" "${COMPREPLY[@]}"' \
		_ "$contrib/objfs.bash-completion" "$1"
}
[[ $(complete_line 'objfs ' | sort | tr '\n' ' ') == "cat ls mount put rm stat status sync umount " ]] ||
	fail "subcommands: got '$(complete_line 'objfs ' | tr '\n' ' ')'"
pass "completion: subcommands"
[[ $(complete_line 'objfs mount -o cache_d') == "cache_dir=" ]] ||
	fail "-o key: got '$(complete_line 'objfs mount -o cache_d')'"
[[ $(complete_line 'objfs mount -o ro,allow_ot') == "ro,allow_other" ]] ||
	fail "-o key after a comma: got '$(complete_line 'objfs mount -o ro,allow_ot')'"
# bash replaces only the text after the last ':' of the word: the reply must start there
[[ $(complete_line 'objfs mount -o endpoint=http://h:1,mount_w') == "1,mount_wait=" ]] ||
	fail "-o key after a URL: got '$(complete_line 'objfs mount -o endpoint=http://h:1,mount_w')'"
[[ $(complete_line 'objfs mount s3://b/p --tls_t') == "--tls_timeout=" ]] ||
	fail "--key: got '$(complete_line 'objfs mount s3://b/p --tls_t')'"
[[ $(complete_line 'objfs umount --l') == "--lazy" ]] || fail "umount --lazy not completed"
[[ $(complete_line 'objfs status --j') == "--json" ]] || fail "status --json not completed"
pass "completion: -o keys, --keys, umount/status flags"

# the value-less keys of the completion are exactly those `objfs --help` shows without "="
# (the other keys come from `objfs --list-options` at completion time)
"$OBJFS_BIN" --help >"$HARNESS_DIR/help" || fail "$OBJFS_BIN --help failed"
help_bools=$(sed -nE '/^options/,/^$/ s/^  ([a-z][a-z0-9_]*) .*/\1/p' "$HARNESS_DIR/help" | sort)
comp_bools=$(bash -c 'source "$1"; printf "%s\n" $_objfs_bool_keys' _ \
	"$contrib/objfs.bash-completion" | sort)
[[ $(wc -l <<<"$help_bools") -ge 5 ]] || fail "cannot read the value-less keys from objfs --help"
d=$(diff <(echo "$help_bools") <(echo "$comp_bools") || true)
[[ -z $d ]] || fail "value-less keys: objfs --help (<) and the completion (>) differ: $d"
pass "completion: value-less keys equal those of objfs --help"
