#!/usr/bin/env bash
# mount_model.sh - random operations (tests/tools/fsmodel.py: writes, appends, truncates,
# renames of files and directories onto existing names, unlinks, mkdir/rmdir, symlinks on a
# few colliding names, and pwrite/pread/fstat/ftruncate through descriptors kept open across
# the others) give the same results and the same tree on the mount as on a local
# directory, checked after every operation. Each seed runs twice: with a 30 s settle
# everything stays pending in the journal; with 20 ms, uploads, server-side copies and deletes
# commit while the next operations look the names up. After each run objfs sync, and a
# fresh mount with an empty cache shows the model's tree exactly.
# MODEL_SEEDS ("1 2 3 4 5 6") and MODEL_OPS (300) set the size.
set -euo pipefail
. "$(dirname "$0")/../lib/harness.sh"
. "$(dirname "$0")/mount_common.sh"

harness_init mount_model
harness_need_fuse
harness_need python3 diff
harness_start_s3
tool=$(cd "$(dirname "$0")/../tools" && pwd)/fsmodel.py
nops=${MODEL_OPS:-300}

for seed in ${MODEL_SEEDS:-1 2 3 4 5 6}; do
	for settle in 30s 20ms; do
		bucket=$(harness_unique "model$seed")
		harness_mkbucket "$bucket"
		model=$HARNESS_DIR/model-$seed-$settle
		mkdir -p "$model"
		mp=$(objfs_mountpoint "model$seed")
		objfs_mount "s3://$bucket" "$mp" "settle=$settle,batch_time=50ms"
		python3 "$tool" "$mp" "$model" "$nops" "$seed" >"$HARNESS_DIR/model.out" 2>&1 ||
			fail "seed $seed, settle $settle: $(cat "$HARNESS_DIR/model.out")"
		"$OBJFS_BIN" sync "$mp" >/dev/null || fail "seed $seed, settle $settle: objfs sync failed"
		objfs_umount "$mp"
		objfs_mount "s3://$bucket" "$mp" "cache_dir=$HARNESS_DIR/fresh-$seed-$settle"
		diff -r --no-dereference "$model" "$mp" >"$HARNESS_DIR/diff.out" 2>&1 ||
			fail "seed $seed, settle $settle: after a remount the tree differs: $(head -5 "$HARNESS_DIR/diff.out")"
		objfs_umount "$mp"
		pass "seed $seed, settle $settle: $(cat "$HARNESS_DIR/model.out"); the same after a remount"
	done
done
