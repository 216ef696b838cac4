#!/usr/bin/env bash
# ops_manpages.sh - the man pages are the reference, so they must be clean and complete:
#  1. `mandoc -Tlint -W warning` says nothing about man/objfs.1 and man/mount.objfs.8;
#  2. every option key the binary accepts is documented in objfs.1 as ".It Cm KEY", and
#     every ".It Cm KEY" of its OPTIONS section is a key the binary accepts;
#  3. every default the binary prints in `objfs --help` appears in that key's entry, and
#     the COMMANDS of objfs.1 are exactly the commands `objfs --help` lists.
# Keys come from `objfs --list-options` (one per line, the binary's option table).
set -euo pipefail
. "$(dirname "$0")/../lib/harness.sh"
harness_init ops_manpages
harness_need mandoc python3

man1=$OBJFS_SRCDIR/man/objfs.1
man8=$OBJFS_SRCDIR/man/mount.objfs.8
[[ -f $man1 && -f $man8 ]] || fail "man pages missing under $OBJFS_SRCDIR/man"

# 1. lint
for m in "$man1" "$man8"; do
	out=$(mandoc -Tlint -W warning "$m" 2>&1) && rc=0 || rc=$?
	[[ $rc == 0 && -z $out ]] || fail "mandoc -Tlint -W warning $(basename "$m") (exit $rc): $out"
	pass "mandoc -Tlint -W warning $(basename "$m") is silent"
done

# 2. the keys, from the binary's own table (objfs --list-options, one key per line)
keys=$HARNESS_DIR/keys
[[ -x $OBJFS_BIN ]] || fail "no objfs binary at $OBJFS_BIN"
"$OBJFS_BIN" --list-options >"$keys" || fail "$OBJFS_BIN --list-options failed"
notkeys=$(grep -vE '^[a-z][a-z0-9_]*$' "$keys" || true)
[[ -z $notkeys ]] || fail "objfs --list-options prints more than keys: $(head -3 <<<"$notkeys")"
nkeys=$(wc -l <"$keys")
[[ $nkeys -ge 10 ]] || fail "only $nkeys option keys found: $(tr '\n' ' ' <"$keys")"

# the ".It Cm KEY" items of the OPTIONS section of objfs.1
documented=$HARNESS_DIR/documented
awk '/^\.Sh /{ in_opts = ($2 == "OPTIONS") } in_opts && /^\.It Cm / { print $3 }' "$man1" |
	sort -u >"$documented"
missing=$(sort -u "$keys" | comm -23 - "$documented")
[[ -z $missing ]] || fail "option keys not documented in objfs.1 OPTIONS: $(echo "$missing" | tr "\n" " ")"
pass "all $nkeys option keys are documented in objfs.1"
stale=$(sort -u "$keys" | comm -13 - "$documented")
[[ -z $stale ]] || fail "objfs.1 OPTIONS documents keys the binary does not accept: $(echo "$stale" | tr "\n" " ")"
pass "objfs.1 documents no option the binary does not accept"

# 3. the defaults, as `objfs --help` prints them ("  key=default   help")
if [[ -x $OBJFS_BIN ]] && "$OBJFS_BIN" --help >"$HARNESS_DIR/help" 2>&1; then
	python3 - "$HARNESS_DIR/help" "$man1" <<'EOF' || fail "defaults in objfs.1 differ from objfs --help (above)"
import re, sys
help_text = open(sys.argv[1]).read()
man = open(sys.argv[2]).read().split("\n")
defaults = {}
for line in help_text.split("\n"):
    m = re.match(r"^  ([a-z0-9_]+)=(\S+)\s", line)
    if m:
        defaults[m.group(1)] = m.group(2)
if len(defaults) < 10:
    sys.exit("cannot read the defaults from objfs --help (%d found)" % len(defaults))
# the text of each ".It Cm key" entry, up to the next .It or .El
entries, cur = {}, None
for line in man:
    if line.startswith(".It Cm "):
        cur = line.split()[2]
        entries[cur] = []
    elif line.startswith((".It", ".El", ".Sh", ".Ss")):
        cur = None
    elif cur:
        entries[cur].append(line)
bad = 0
for key, value in sorted(defaults.items()):
    text = " ".join(entries.get(key, []))
    # mdoc puts punctuation after a space: "Default: 25." or ".Ql us-east-1 ."
    words = re.split(r"[\s(),]+", text.replace(" .", " "))
    if "Default" not in text or value not in [w.rstrip(".;:") for w in words]:
        print("objfs.1: the entry of %s does not say its default %s" % (key, value))
        bad += 1
sys.exit(1 if bad else 0)
EOF
	pass "every default objfs --help prints is in objfs.1"
	# the subcommands: "  objfs NAME ..." lines of --help against ".It Cm NAME" of COMMANDS
	grep -E '^  objfs [a-z]+' "$HARNESS_DIR/help" | awk '{ print $2 }' | sort -u >"$HARNESS_DIR/cmds"
	awk '/^\.Sh /{ c = ($2 == "COMMANDS") } c && /^\.It Cm / { print $3 }' "$man1" |
		sort -u >"$HARNESS_DIR/cmds.man"
	[[ $(wc -l <"$HARNESS_DIR/cmds") -ge 4 ]] || fail "cannot read the commands from objfs --help"
	d=$(diff "$HARNESS_DIR/cmds" "$HARNESS_DIR/cmds.man" || true)
	[[ -z $d ]] || fail "commands of objfs --help (<) and objfs.1 COMMANDS (>) differ: $d"
	pass "objfs.1 documents exactly the commands objfs --help lists"
else
	if [[ ${CI:-} == true ]]; then
		fail "cannot run $OBJFS_BIN --help to check the defaults"
	fi
	echo "note: $OBJFS_BIN --help does not run; defaults not checked"
fi
