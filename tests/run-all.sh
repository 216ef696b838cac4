#!/usr/bin/env bash
# run-all.sh - the whole test run: the README's test command, and what CI (.ci/run) calls.
#
# Regenerates the build system, builds with warnings as errors in ./build and runs
# `make check` there, then builds with AddressSanitizer/UBSan and the run-time invariant
# checks (--enable-debug-checks) in ./build-asan and runs `make check` again; then, in
# ./build-valgrind, runs every unit test binary of ./build and a few integration tests
# (OBJFS_VALGRIND=1: the harness runs objfs under valgrind memcheck) under valgrind, each
# counted as one test. Failed tests print their logs (VERBOSE=1). Ends
# with one line
#   tests: N passed, N failed, N skipped
# counted from the .trs files of all three, and exits non-zero when a build or a test failed.
# Two more checks count as tests in that line (a PASS or FAIL line each):
#  - distcheck: `make distcheck-unit` in ./build (the tarball builds, passes its unit tests,
#    installs and uninstalls cleanly out of tree; see Makefile.am), and every file git tracks
#    is in the tarball;
#  - no-secret-in-logs: no test log (build*/tests/**/*.log) contains a secret key the test
#    harness generated (harness.sh appends each to $OBJFS_SECRET_LIST).
# First it installs the Debian packages the build and the tests need (contrib/install-deps.sh,
# as root; OBJFS_NO_INSTALL=1 skips that).
# env: JOBS (make -j, default 2), OBJFS_SKIP_ASAN=1 (skip the sanitizer pass, local use only),
# OBJFS_SKIP_VALGRIND=1 (skip the valgrind pass, local use only).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ ${OBJFS_NO_INSTALL:-0} != 1 ]]; then
	./contrib/install-deps.sh
fi
top=$(pwd)
jobs=${JOBS:-2}
start=$SECONDS
status=0
dirs=()
extra_pass=0 extra_fail=0
mkdir -p build
OBJFS_SECRET_LIST=$top/build/test-secrets.list
export OBJFS_SECRET_LIST
: >"$OBJFS_SECRET_LIST"

# extra_result NAME RC: a PASS/FAIL line for a check that is not a make check test
extra_result() {
	if [[ $2 == 0 ]]; then
		echo "PASS: $1"
		extra_pass=$((extra_pass + 1))
	else
		echo "FAIL: $1"
		extra_fail=$((extra_fail + 1))
	fi
}

# distcheck_step: make distcheck-unit in ./build, then the tarball against git ls-files
distcheck_step() {
	local tarball missing rc=0
	echo "==== build: make distcheck-unit"
	if make -C build distcheck-unit >build/distcheck.out 2>&1; then
		tarball=$(ls build/objfs-*.tar.gz 2>/dev/null | head -n 1)
		if [[ -n $tarball ]] && git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
			missing=$(comm -23 <(git ls-files | grep -vx '.gitignore' | sort) \
				<(tar -tzf "$tarball" | sed 's#^[^/]*/##; /\/$/d' | sort))
			if [[ -n $missing ]]; then
				echo "==== distcheck: tracked files missing from $tarball (add them to EXTRA_DIST):" >&2
				echo "$missing" >&2
				rc=1
			fi
		elif [[ -z $tarball ]]; then
			echo "==== distcheck: no tarball in build/" >&2
			rc=1
		fi
	else
		tail -n 60 build/distcheck.out >&2
		rc=1
	fi
	extra_result "distcheck (make distcheck-unit; log build/distcheck.out)" "$rc"
}

# secrets_step: no test log of the builds contains a secret from $OBJFS_SECRET_LIST
secrets_step() {
	local list=$top/build/test-secrets.nonempty leaks=""
	grep -v '^$' "$OBJFS_SECRET_LIST" | sort -u >"$list" || true
	if [[ ! -s $list ]]; then
		echo "==== no-secret-in-logs: no test started an S3 server, nothing to look for"
	else
		leaks=$(find "${dirs[@]}" -path '*/tests/*' -name '*.log' -type f -print0 2>/dev/null |
			xargs -0 -r grep -lF -f "$list" || true)
		[[ -z $leaks ]] || echo "==== test logs that contain a test secret key:$(printf ' %s' $leaks)" >&2
	fi
	extra_result "no-secret-in-logs ($(wc -l <"$list") secret(s) searched)" "$([[ -z $leaks ]] && echo 0 || echo 1)"
}

# build_and_check DIR CONFIGURE-ARGS...: configure + make + make check in DIR
build_and_check() {
	local dir=$1
	shift
	dirs+=("$dir")
	echo "==== $dir: configure $*"
	mkdir -p "$dir"
	find "$dir" -name '*.trs' -delete
	if ! (cd "$dir" && "$top/configure" "$@" >configure.out 2>&1); then
		tail -n 30 "$dir/configure.out" >&2
		echo "==== $dir: configure failed" >&2
		status=1
		return 0
	fi
	echo "==== $dir: make -j$jobs"
	if ! make -C "$dir" -j"$jobs"; then
		echo "==== $dir: build failed" >&2
		status=1
		return 0
	fi
	echo "==== $dir: make check -j$jobs"
	if ! make -C "$dir" -j"$jobs" check VERBOSE=1; then
		echo "==== $dir: make check failed" >&2
		status=1
	fi
}

./autogen.sh
build_and_check build --enable-werror
if [[ ${OBJFS_SKIP_ASAN:-0} != 1 ]]; then
	ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0} \
	UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
		build_and_check build-asan --enable-werror --enable-sanitize --enable-debug-checks
fi

# vg_result DIR NAME RC: write DIR/NAME.trs (what make check writes) for exit status RC, as
# automake reads it: 0 PASS, 77 SKIP, 99 ERROR, else FAIL; print the log when it did not pass.
vg_result() {
	local dir=$1 name=$2 rc=$3 res
	case $rc in
	0) res=PASS ;;
	77) res=SKIP ;;
	99) res=ERROR ;;
	*) res=FAIL ;;
	esac
	printf ':test-result: %s\n:global-test-result: %s\n:recheck: no\n:copy-in-global-log: no\n' \
		"$res" "$res" >"$dir/$name.trs"
	echo "$res: valgrind $name"
	if [[ $res == FAIL || $res == ERROR ]]; then
		echo "---- $dir/$name.log (last 80 lines)"
		tail -n 80 "$dir/$name.log"
	fi
}

# valgrind_check DIR BUILD: the third pass (before the log checks below, which read DIR too).
# Every unit test binary of BUILD (and the data cache stress tool) under memcheck: an error,
# or a definite leak at exit, in any process fails it. Then the integration tests below with
# OBJFS_VALGRIND=1, with a smaller large object in mount_read.sh (32 MiB: memcheck is slow).
# About 3 minutes on 2 cores.
valgrind_check() {
	local dir=$1 build=$2 t name rc vg=()
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd) # absolute: the unit tests run from $build
	dirs+=("$dir")
	find "$dir" -name '*.trs' -delete
	rm -f "$dir"/*.vg.*
	if [[ ! -x $build/objfs ]]; then
		echo "==== $dir: no objfs in $build to run under valgrind" >&2
		status=1
		return 0
	fi
	vg=(valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite
		--track-fds=no --num-callers=30)
	# suppressions for library internals, with why, go there (none are needed today)
	[[ ! -f $top/tests/valgrind.supp ]] || vg+=(--suppressions="$top/tests/valgrind.supp")
	echo "==== $dir: unit tests under valgrind"
	if ! compgen -G "$build/tests/unit/test_*" >/dev/null; then
		echo "==== $dir: no unit test binaries in $build/tests/unit (make check builds them)" >&2
		status=1
	fi
	for t in "$build"/tests/unit/test_* "$build"/tests/tools/dcache_stress; do
		[[ -f $t && -x $t && $t != *.o ]] || continue
		name=$(basename "$t")
		rc=0
		(cd "$build" && timeout 300 "${vg[@]}" --log-file="$dir/$name.vg.%p" "$t") \
			>"$dir/$name.log" 2>&1 || rc=$?
		if [[ $rc == 0 ]] && grep -qs 'ERROR SUMMARY: [1-9]' "$dir/$name".vg.*; then
			rc=1 # a forked child's report
		fi
		[[ $rc == 0 ]] || cat "$dir/$name".vg.* >>"$dir/$name.log" 2>/dev/null || true
		vg_result "$dir" "$name" "$rc"
	done
	echo "==== $dir: integration tests with objfs under valgrind"
	for t in mount_read mount_write mount_list cli_roundtrip; do
		rc=0
		OBJFS_VALGRIND=1 OBJFS_BIN="$build/objfs" OBJFS_BUILDDIR="$build" OBJFS_SRCDIR="$top" \
			READ_BIG_MIB=32 HARNESS_TIMEOUT=300 \
			bash "$top/tests/integration/$t.sh" </dev/null >"$dir/$t.log" 2>&1 || rc=$?
		vg_result "$dir" "$t" "$rc"
	done
}

if [[ ${OBJFS_SKIP_VALGRIND:-0} != 1 ]]; then
	valgrind_check build-valgrind/tests "$top/build"
fi

if [[ -f build/Makefile ]]; then
	distcheck_step
else
	extra_result "distcheck (build/ was not configured)" 1
fi
secrets_step

pass=0 fail=0 skip=0
for d in "${dirs[@]}"; do
	while read -r r; do
		case $r in
		PASS | XFAIL) pass=$((pass + 1)) ;;
		SKIP) skip=$((skip + 1)) ;;
		*) fail=$((fail + 1)) ;;
		esac
	done < <(find "$d" -name '*.trs' -exec sed -n 's/^:global-test-result: *//p' {} + 2>/dev/null)
done
pass=$((pass + extra_pass))
fail=$((fail + extra_fail))
echo "==== done in $((SECONDS - start)) s"
echo "tests: $pass passed, $fail failed, $skip skipped"
if [[ $fail != 0 || $status != 0 ]]; then
	exit 1
fi
