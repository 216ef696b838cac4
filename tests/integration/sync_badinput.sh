#!/usr/bin/env bash
# sync_badinput.sh - what the sync cannot do is refused clearly and blocks nothing else.
#  (a) Cache disk full: cache_dir is a 32 MiB tmpfs and uploads are held back (settle=60s).
#      300 small files, then 1 MiB files until the writer gets ENOSPC: dd exits non-zero saying
#      "No space left on device"; `objfs sync` returns 0 with the disk still full; every file
#      closed successfully before is at the bucket intact (the one that did not fit as far as
#      it got, the same in the mount and the bucket); once uploaded, the space is free again.
#  (b) Keys the store cannot hold (> 1024 bytes): at the bucket root, a 5th level of 250-byte
#      directory names and a 250-byte file name at the 4th level are refused with ENAMETOOLONG
#      ("File name too long") at mkdir/create time; a 1024-byte key is accepted and arrives; a
#      create or rename to 1025 bytes is refused. Below a 100-byte prefix the prefix counts: a
#      1003-byte key is refused. A journal written at the bucket root and replayed below the
#      prefix (umount --lazy, remount) holds a key that no longer fits: it is dropped with a
#      clear last_error (KeyTooLongError) and dropped=1 in objfs status, not retried for ever;
#      the other file arrives and `objfs sync` returns. A name that is not UTF-8 (S3 keys
#      are) is refused at create, mkdir, rename and symlink with EILSEQ, so no upload of it
#      can fail for ever.
#  (c) The journal cannot grow: the cache disk is filled by something else but 64 KiB (and
#      the up to 1 MiB of zeros the journal keeps written ahead of its records, which they
#      use first), and empty files are created until close() says ENOSPC; `objfs sync` still returns 0 (the
#      commits use the journal's reserved space) and every file created is at the server.
#  (A second mount on the same cache_dir is refused: mount_badinput.sh checks it.)
#
# Sizes: a 32 MiB tmpfs (SYNC_TMPFS_MIB) with 1 MiB files, a 4 MiB tmpfs for (c).
# SYNC_PARTS (abc) selects the parts to run.
set -euo pipefail
. "$(dirname "$0")/../lib/harness.sh"
. "$(dirname "$0")/mount_common.sh"
. "$(dirname "$0")/sync_common.sh"

tmpfs_mib=${SYNC_TMPFS_MIB:-32}

harness_init sync_badinput
harness_need_fuse
harness_need md5sum curl python3 dd
harness_start_s3
bucket=$(harness_unique badin)
harness_mkbucket "$bucket"

# make_small DIR N: N files of 4 KiB
make_small() {
	mkdir -p "$1"
	head -c $(($2 * 4096)) /dev/urandom | split -b 4096 -d -a 4 - "$1/s"
}

# ---- (a) the cache disk fills up ----
part_a() {
	[[ $(id -u) == 0 ]] || skip "(a) needs root to mount a small tmpfs as cache_dir"
	local cache=$HARNESS_DIR/small-cache i n=0 max=$((2 * tmpfs_mib)) mp rc out
	mkdir -p "$cache" "$HARNESS_DIR/a/big"
	mount -t tmpfs -o size=${tmpfs_mib}m tmpfs "$cache" || fail "(a) cannot mount a tmpfs on $cache"
	harness_register_mount "$cache"
	mp=$(objfs_mountpoint full)
	objfs_mount "s3://$bucket" "$mp" "cache_dir=$cache/c,settle=60s,batch_time=60s"
	# many small files first: their commit records need more journal space than a page
	make_small "$HARNESS_DIR/a/small" 300
	mkdir "$mp/a"
	cp -r "$HARNESS_DIR/a/small" "$mp/a/small" || fail "(a) cp -r of the small files failed"
	mkdir "$mp/a/big"
	for ((i = 0; i < max; i++)); do
		head -c 1048576 /dev/urandom >"$HARNESS_DIR/a/big/f$i"
		rc=0
		dd if="$HARNESS_DIR/a/big/f$i" of="$mp/a/big/f$i" bs=256k status=none \
			2>"$HARNESS_DIR/dd.err" || rc=$?
		[[ $rc == 0 ]] || break
		n=$((n + 1))
	done
	[[ $n -lt $max ]] || fail "(a) $max MiB went into a $tmpfs_mib MiB cache without an error"
	grep -q "No space left on device" "$HARNESS_DIR/dd.err" ||
		fail "(a) the writer failed without ENOSPC: $(cat "$HARNESS_DIR/dd.err")"
	pass "(a) after 300 small and $n 1 MiB files the writer got: $(head -1 "$HARNESS_DIR/dd.err")"
	# the file that did not fit stays as far as it got, like on a full local disk
	rm -f "$HARNESS_DIR/a/big/f$n"
	cp "$mp/a/big/f$n" "$HARNESS_DIR/partial" 2>/dev/null || rm -f "$HARNESS_DIR/partial"

	# with the disk still full, sync what was acknowledged
	timeout 60 "$OBJFS_BIN" sync "$mp" >"$HARNESS_DIR/sync-a.out" 2>&1 ||
		fail "(a) objfs sync with a full cache disk failed: $(cat "$HARNESS_DIR/sync-a.out"; objfs_ctl status | grep -E 'queued|error')"
	pass "(a) objfs sync returned 0 with the cache disk full"
	out=$HARNESS_DIR/back-a
	sync_fetch "$bucket" a/ "$out"
	if [[ -f $HARNESS_DIR/partial ]]; then
		cmp -s "$HARNESS_DIR/partial" "$out/big/f$n" ||
			fail "(a) the partly written a/big/f$n differs between the mount and the bucket"
		rm "$out/big/f$n"
	fi
	diff <(sync_md5_list "$HARNESS_DIR/a") <(sync_md5_list "$out") >/dev/null ||
		fail "(a) acknowledged files are missing or wrong at the server: $(diff <(sync_md5_list "$HARNESS_DIR/a") <(sync_md5_list "$out") | head -5)"
	pass "(a) all $((300 + n)) acknowledged files are at the server intact"
	# uploaded files leave the cache: writing works again
	head -c 4096 /dev/urandom >"$HARNESS_DIR/after"
	cp "$HARNESS_DIR/after" "$mp/a/after" || fail "(a) writing after the sync still fails"
	cmp -s "$HARNESS_DIR/after" "$mp/a/after" || fail "(a) a file written after the sync reads back wrong"
	objfs_umount "$mp"
	assert_eq "$(s3curl "$S3_ENDPOINT/$bucket/a/after" | md5sum)" "$(md5sum <"$HARNESS_DIR/after")" \
		"(a) once space is free again, writes work and arrive"
}

# ---- (b) keys longer than S3 allows ----
part_b() {
	local mp l1 l2 l3 l4 deep name20 rc
	l1=$(printf 'a%.0s' {1..250}); l2=$(printf 'b%.0s' {1..250})
	l3=$(printf 'c%.0s' {1..250}); l4=$(printf 'd%.0s' {1..250})
	deep="$l1/$l2/$l3/$l4" # 1003 bytes: its marker "deep/" is 1004
	name20=$(printf 'n%.0s' {1..20})
	mp=$(objfs_mountpoint long)
	objfs_mount "s3://$bucket" "$mp" "settle=100ms"
	mkdir -p "$mp/$deep" || fail "(b) mkdir -p of 4 levels of 250-byte names failed"
	rc=0
	mkdir "$mp/$deep/$(printf 'e%.0s' {1..250})" 2>"$HARNESS_DIR/err" || rc=$?
	[[ $rc != 0 ]] || fail "(b) mkdir of a 5th level (a 1255-byte key) succeeded"
	grep -q "File name too long" "$HARNESS_DIR/err" || fail "(b) 5th level: $(sed "s/.*: //" "$HARNESS_DIR/err")"
	pass "(b) a 5th level of 250-byte names: $(sed "s/.*: //" "$HARNESS_DIR/err")"
	rc=0
	echo x 2>"$HARNESS_DIR/err" >"$mp/$deep/$(printf 'f%.0s' {1..250})" || rc=$?
	[[ $rc != 0 ]] || fail "(b) creating a file with a 1254-byte key succeeded"
	grep -q "File name too long" "$HARNESS_DIR/err" || fail "(b) long file: $(sed "s/.*: //" "$HARNESS_DIR/err")"
	pass "(b) a file with a 1254-byte key: $(sed "s/.*: //" "$HARNESS_DIR/err")"
	echo fits >"$mp/$deep/$name20" || fail "(b) creating a file with a 1024-byte key failed"
	if echo x 2>"$HARNESS_DIR/err" >"$mp/$deep/${name20}x"; then
		fail "(b) creating a file with a 1025-byte key succeeded"
	fi
	grep -q "File name too long" "$HARNESS_DIR/err" || fail "(b) 1025 bytes: $(sed "s/.*: //" "$HARNESS_DIR/err")"
	if mv "$mp/$deep/$name20" "$mp/$deep/${name20}xy" 2>"$HARNESS_DIR/err"; then
		fail "(b) a rename to a 1026-byte key succeeded"
	fi
	grep -q "File name too long" "$HARNESS_DIR/err" || fail "(b) rename: $(sed "s/.*: //" "$HARNESS_DIR/err")"
	pass "(b) 1025-byte keys are refused at create and rename; 1024 bytes are accepted"
	# a directory rename that would lengthen the 1024-byte key below it by one: refused before
	# anything moves ("0first" is renamed first when the walk does not look ahead)
	echo first >"$mp/$l1/0first" || fail "(b) a file next to the deep tree cannot be written"
	if mv "$mp/$l1" "$mp/${l1}z" 2>"$HARNESS_DIR/err"; then
		fail "(b) a directory rename that makes a key below it 1025 bytes succeeded"
	fi
	grep -q "File name too long" "$HARNESS_DIR/err" || fail "(b) directory rename: $(sed "s/.*: //" "$HARNESS_DIR/err")"
	[[ -f $mp/$l1/0first && -f $mp/$deep/$name20 && ! -e $mp/${l1}z ]] ||
		fail "(b) the refused directory rename moved part of the tree: $(ls "$mp" "$mp/$l1" 2>&1 | cut -c1-40)"
	grep -q "refusing a directory rename: '.*/${name20}' below it" "$OBJFS_LOG" ||
		fail "(b) no log line names the key that stopped the directory rename"
	pass "(b) a directory rename that would make a key below it too long is refused; nothing moved"
	local notutf8=$'latin1-\xe9t\xe9' what
	echo other >"$mp/short" || fail "(b) a short file cannot be written"
	for what in create mkdir rename symlink; do
		rc=0
		case $what in
		create) echo x 2>"$HARNESS_DIR/err" >"$mp/$notutf8" || rc=$? ;;
		mkdir) mkdir "$mp/$notutf8" 2>"$HARNESS_DIR/err" || rc=$? ;;
		rename) mv "$mp/short" "$mp/$notutf8" 2>"$HARNESS_DIR/err" || rc=$? ;;
		symlink) ln -s short "$mp/$notutf8" 2>"$HARNESS_DIR/err" || rc=$? ;;
		esac
		[[ $rc != 0 ]] || fail "(b) $what of a name that is not UTF-8 succeeded"
		grep -q "Invalid or incomplete multibyte" "$HARNESS_DIR/err" ||
			fail "(b) $what of a name that is not UTF-8: $(cat "$HARNESS_DIR/err")"
	done
	pass "(b) a name that is not UTF-8 is refused at create, mkdir, rename and symlink (EILSEQ)"
	timeout 60 "$OBJFS_BIN" sync "$mp" >"$HARNESS_DIR/sync-b.out" 2>&1 ||
		fail "(b) objfs sync failed: $(cat "$HARNESS_DIR/sync-b.out")"
	assert_eq "$(s3curl "$S3_ENDPOINT/$bucket/$deep/$name20")" fits "(b) the 1024-byte key is at the server"
	assert_eq "$(s3curl "$S3_ENDPOINT/$bucket/short")" other "(b) other files arrive"

	# a prefix counts: 100 bytes of prefix leave 923 for the key below it
	local pfx
	pfx=$(printf 'p%.0s' {1..99})
	local mp2
	mp2=$(objfs_mountpoint longp)
	objfs_mount "s3://$bucket/$pfx" "$mp2" "settle=100ms"
	mkdir -p "$mp2/$l1/$l2/$l3" || fail "(b) mkdir -p below the prefix failed"
	if echo x 2>"$HARNESS_DIR/err" >"$mp2/$l1/$l2/$l3/$l4"; then
		fail "(b) a 1003-byte key below a 100-byte prefix (1103 in all) was accepted"
	fi
	grep -q "File name too long" "$HARNESS_DIR/err" || fail "(b) prefix: $(sed "s/.*: //" "$HARNESS_DIR/err")"
	pass "(b) below a 100-byte prefix a 1003-byte key is refused: $(sed "s/.*: //" "$HARNESS_DIR/err")"
	objfs_umount "$mp2"

	# the journal of a mount at the bucket root, replayed below the prefix: the key that no
	# longer fits is dropped with a clear error, the rest arrives, objfs sync returns
	local cache=$HARNESS_DIR/cache-replay
	objfs_umount "$mp"
	mp=$(objfs_mountpoint long2)
	objfs_mount "s3://$bucket" "$mp" "cache_dir=$cache,settle=60s,batch_time=60s"
	mkdir -p "$mp/r/$l1/$l2/$l3"
	echo toolong >"$mp/r/$l1/$l2/$l3/$(printf 'g%.0s' {1..200})" ||
		fail "(b) a 955-byte key was refused at the bucket root"
	echo fine >"$mp/r/fine"
	"$OBJFS_BIN" umount --lazy "$mp" >/dev/null 2>&1 || fail "(b) objfs umount --lazy failed"
	harness_wait_for "! kill -0 $OBJFS_PID" 30 || fail "(b) the daemon did not exit after umount --lazy"
	objfs_mount "s3://$bucket/$pfx" "$mp" "cache_dir=$cache"
	timeout 60 "$OBJFS_BIN" sync "$mp" >"$HARNESS_DIR/sync-b2.out" 2>&1 ||
		fail "(b) objfs sync is blocked by a key too long for the destination: $(objfs_ctl status | grep -E 'queued|error|retry')"
	assert_eq "$(s3curl "$S3_ENDPOINT/$bucket/$pfx/r/fine")" fine "(b) after the replay the other file arrived"
	local st
	st=$(objfs_ctl status)
	grep -q '^dropped=[1-9]' <<<"$st" || fail "(b) status shows nothing dropped: $st"
	grep -q '^last_error=.*KeyTooLong' <<<"$st" || fail "(b) status has no clear last_error: $st"
	grep -q '^queued_files=0$' <<<"$st" || fail "(b) the queue is not empty: $st"
	pass "(b) the replayed key that does not fit was dropped: $(sed -n 's/^last_error=//p' <<<"$st")"
	objfs_umount "$mp"
}

# ---- (c) the journal cannot grow: finished uploads are still committed ----
part_c() {
	[[ $(id -u) == 0 ]] || skip "(c) needs root to mount a small tmpfs as cache_dir"
	local cache=$HARNESS_DIR/tiny-cache i n=0 mp free
	mkdir -p "$cache"
	mount -t tmpfs -o size=4m tmpfs "$cache" || fail "(c) cannot mount a tmpfs on $cache"
	harness_register_mount "$cache"
	mp=$(objfs_mountpoint jfull)
	objfs_mount "s3://$bucket" "$mp" "cache_dir=$cache/c,settle=60s,batch_time=60s"
	mkdir "$mp/c"
	# something else fills the disk but 64 KiB; empty files need journal space only
	free=$(df --output=avail -k "$cache" | tail -1)
	dd if=/dev/zero of="$cache/filler" bs=1k count=$((free - 64)) status=none ||
		fail "(c) cannot fill $cache"
	for ((i = 0; i < 5000; i++)); do
		touch "$mp/c/e$i" 2>"$HARNESS_DIR/touch.err" || break
		n=$((n + 1))
	done
	[[ $n -lt 5000 ]] || fail "(c) 5000 files went into about 1 MiB of journal space"
	grep -q "No space left on device" "$HARNESS_DIR/touch.err" ||
		fail "(c) the writer failed without ENOSPC: $(cat "$HARNESS_DIR/touch.err")"
	pass "(c) with the disk full, $n empty files were created, then: $(head -1 "$HARNESS_DIR/touch.err")"
	timeout 60 "$OBJFS_BIN" sync "$mp" >"$HARNESS_DIR/sync-c.out" 2>&1 ||
		fail "(c) objfs sync with a full journal disk failed: $(cat "$HARNESS_DIR/sync-c.out"; objfs_ctl status | grep -E 'queued|error')"
	pass "(c) objfs sync returned 0: the uploads were committed on the full disk"
	for ((i = 0; i < n; i++)); do echo "c/e$i"; done | LC_ALL=C sort >"$HARNESS_DIR/c.want"
	# the file whose close failed may be there (empty) when its create was journalled and
	# only touch's later change hit the full disk; nothing else may differ
	sync_keys "$bucket" c/e | grep -vx "c/e$n" >"$HARNESS_DIR/c.have" || true
	diff "$HARNESS_DIR/c.want" "$HARNESS_DIR/c.have" >/dev/null ||
		fail "(c) the bucket does not hold the $n files: $(diff "$HARNESS_DIR/c.want" "$HARNESS_DIR/c.have" | head -5)"
	pass "(c) all $n files are at the server"
	objfs_umount "$mp"
}

for p in $(grep -o . <<<"${SYNC_PARTS:-abc}"); do
	"part_$p"
done
