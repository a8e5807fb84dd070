#!/bin/bash
# test.sh: install what the tests need, build, start the services the tests
# talk to (a Ceph RGW S3 server on 127.0.0.1), and run the tests in three
# passes:
#   build       gcc, warnings as errors: every test (unit, integration,
#               integration-s3; the fuzz corpora replay as unit tests)
#   build-asan  clang, AddressSanitizer + UndefinedBehaviorSanitizer (clang's
#               UBSan includes float-cast-overflow, GCC's does not), warnings
#               as errors: every test, plus the libFuzzer harnesses of
#               tests/fuzz for a fixed time each (suite `fuzz`)
#               (all but the `containers` suite, which builds an image, and
#               the `bench` harness self-test)
#   build-tsan  gcc, ThreadSanitizer: the unit tests and the `stress` and
#               `stress-fuse` suites
# and end with one plain line over all passes: "N passed, N failed, N skipped".
# Every pass runs even when an earlier one failed; the exit status is 1 if
# anything failed.
#
#   sudo scripts/test.sh               everything
#   SKIP_ASAN=1 scripts/test.sh        skip the clang ASan/UBSan pass (and fuzzing)
#   SKIP_FUZZ=1 scripts/test.sh        ASan pass without the fuzzers (their corpora
#                                      still replay as unit tests)
#   SKIP_TSAN=1 scripts/test.sh        skip the ThreadSanitizer pass
#   SKIP_S3=1 scripts/test.sh          no S3 server (S3 cases report as skipped)
#   SKIP_CONTAINERS=1 scripts/test.sh  skip test_containers' podman cases (image build,
#                                      compose/kube recipes; they report as skipped)
#   CKPTFS_FUZZ_SECONDS=N              seconds per fuzzer (default 20)
#   CKPTFS_CRASHLOOP_TRIALS=N          kill -9 trials of test_crashloop (default 8;
#                                      bench/crashloop.sh runs many)
set -euo pipefail
cd "$(dirname "$0")/.."
top=$(pwd)

scripts/install-deps.sh

s3dir=${CKPTFS_S3_DIR:-/tmp/ckptfs-test-s3}
stop_s3() { [ -n "${S3_STARTED:-}" ] && scripts/s3-stop.sh "$s3dir" >/dev/null 2>&1 || true; }
trap stop_s3 EXIT
if [ -z "${SKIP_S3:-}" ]; then
	# 8 GiB of RAM for the objects: several suites write GiB-sized checkpoints.
	S3_STORE_BYTES=${S3_STORE_BYTES:-$((8 << 30))} scripts/s3-start.sh 0 "$s3dir" > "$s3dir.env"
	S3_STARTED=1
	# shellcheck disable=SC1090
	. "$s3dir.env"
	export CKPTFS_TEST_REQUIRE_S3=1
fi

failed_passes=""
passes=()

# setup_build DIR CC ARGS...: configure DIR with compiler CC, or reconfigure
# it when test.sh made it with the same compiler (anything else is wiped:
# meson cannot change the compiler of a build directory).
setup_build() {
	local dir=$1 cc=$2; shift 2
	if [ -d "$dir" ] && [ "$(cat "$dir/.test-sh-cc" 2>/dev/null)" != "$cc" ]; then
		rm -rf "$dir"
	fi
	if [ -d "$dir" ]; then
		meson configure "$dir" -Dwerror=true "$@" >/dev/null
	else
		CC=$cc meson setup "$dir" -Dwerror=true "$@" && echo "$cc" > "$dir/.test-sh-cc"
	fi
}

# run_pass DIR CC [SETUP ARGS...] -- [TEST PREFIX...] -- [MESON TEST ARGS...]
run_pass() {
	local dir=$1 cc=$2; shift 2
	local setup=() prefix=() targs=()
	while [ $# -gt 0 ] && [ "$1" != -- ]; do setup+=("$1"); shift; done
	shift
	while [ $# -gt 0 ] && [ "$1" != -- ]; do prefix+=("$1"); shift; done
	shift
	targs=("$@")
	passes+=("$dir")
	rm -f "$dir/meson-logs/testlog.json"
	if ! setup_build "$dir" "$cc" "${setup[@]}" || ! ninja -C "$dir"; then
		echo "test.sh: $dir: build failed" >&2
		failed_passes="$failed_passes $dir(build)"
		return 0
	fi
	if ! "${prefix[@]}" meson test -C "$dir" --print-errorlogs --num-processes 2 "${targs[@]}"; then
		failed_passes="$failed_passes $dir"
	fi
}

# How this machine can run ThreadSanitizer binaries: as they are, with ASLR
# off for them (setarch -R: kernels whose mmap_rnd_bits exceed what this
# TSan runtime maps around), or after lowering vm.mmap_rnd_bits to 28.
tsan_prefix() {
	local probe ok=""
	probe=$(mktemp -d)
	printf '#include <pthread.h>\nstatic void *f(void *a) { return a; }\nint main(void) { pthread_t t; pthread_create(&t, 0, f, 0); return pthread_join(t, 0); }\n' \
		> "$probe/p.c"
	if gcc -fsanitize=thread "$probe/p.c" -o "$probe/p" 2>/dev/null; then
		if "$probe/p" >/dev/null 2>&1; then
			ok=plain
		elif setarch "$(uname -m)" -R "$probe/p" >/dev/null 2>&1; then
			ok=setarch
		elif sysctl -qw vm.mmap_rnd_bits=28 2>/dev/null && "$probe/p" >/dev/null 2>&1; then
			ok=plain
		fi
	fi
	rm -rf "$probe"
	case $ok in
	plain) echo "" ;;
	setarch) echo "setarch $(uname -m) -R" ;;
	*) return 1 ;;
	esac
}

# test_stress (suite stress-fuse, 15 s through a real mount) runs once, in
# the TSan pass; its fs_*() twin stress_fs runs in every pass.
run_pass build gcc -- -- --no-suite stress-fuse

if [ -z "${SKIP_ASAN:-}" ]; then
	export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
	export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
	export LSAN_OPTIONS=suppressions=$top/tests/lsan.supp
	fuzz=true
	[ -n "${SKIP_FUZZ:-}" ] && fuzz=false
	# b_lundef=false: meson's --no-undefined does not know that clang links
	# its sanitizer runtimes into executables only (meson warns otherwise).
	run_pass build-asan clang-14 -Db_sanitize=address,undefined -Db_lundef=false \
		-Dbuildtype=debug -Dfuzz=$fuzz -- -- --no-suite containers --no-suite stress-fuse --no-suite bench
fi

if [ -z "${SKIP_TSAN:-}" ]; then
	if prefix=$(tsan_prefix); then
		# shellcheck disable=SC2206
		pre=(env TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 $prefix)
		# The unit tests and the many-thread stress suites.
		run_pass build-tsan gcc -Db_sanitize=thread -Dbuildtype=debug -- "${pre[@]}" -- \
			--suite unit --suite stress --suite stress-fuse
	else
		echo "test.sh: ThreadSanitizer binaries cannot run here (not even with setarch -R" \
		     "or vm.mmap_rnd_bits=28)" >&2
		failed_passes="$failed_passes build-tsan(cannot run)"
	fi
fi

# One plain closing line over every pass (meson's JSON test logs).
/usr/bin/python3 - "$failed_passes" "${passes[@]}" <<'PY'
import json, sys
failed_passes = sys.argv[1].split()
ok = bad = skip = 0
for d in sys.argv[2:]:
    try:
        f = open(d + "/meson-logs/testlog.json")
    except OSError:
        continue
    for line in f:
        r = json.loads(line).get("result")
        ok += r == "OK"
        skip += r == "SKIP"
        bad += r not in ("OK", "SKIP")
# A pass that failed to build or could not run counts as one failure.
bad += sum(1 for p in failed_passes if "(" in p)
if bad == 0:
    print("all test suites passed")
else:
    print("FAILED:", " ".join(failed_passes))
print("%d passed, %d failed, %d skipped" % (ok, bad, skip))
sys.exit(1 if bad else 0)
PY
