#!/usr/bin/env bash
# run-all.sh - the whole test run: the README's test command, and what CI (.ci/run) calls.
#
# Regenerates the build system, builds with warnings as errors in ./build and runs
# `make check` there, then builds with AddressSanitizer/UBSan in ./build-asan and runs
# `make check` again. Failed tests print their logs (VERBOSE=1). Ends with one line
#   tests: N passed, N failed, N skipped
# counted from the .trs files of both builds, and exits non-zero when a build or a test failed.
# First it installs the Debian packages the build and the tests need (contrib/install-deps.sh,
# as root; OBJFS_NO_INSTALL=1 skips that).
# env: JOBS (make -j, default 2), OBJFS_SKIP_ASAN=1 (skip the sanitizer pass, local use only).
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
		build_and_check build-asan --enable-werror --enable-sanitize
fi

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
echo "==== done in $((SECONDS - start)) s"
echo "tests: $pass passed, $fail failed, $skip skipped"
if [[ $fail != 0 || $status != 0 ]]; then
	exit 1
fi
