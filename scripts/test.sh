#!/bin/bash
# test.sh: install what the tests need, build, start the services the tests
# talk to (a Ceph RGW S3 server on 127.0.0.1), and run every test twice:
# once in a normal build with warnings as errors, once under
# AddressSanitizer + UndefinedBehaviorSanitizer.
#
#   sudo scripts/test.sh            everything
#   SKIP_ASAN=1 scripts/test.sh     skip the sanitizer pass
#   SKIP_S3=1 scripts/test.sh       no S3 server (S3 cases report as skipped)
set -euo pipefail
cd "$(dirname "$0")/.."
top=$(pwd)

scripts/install-deps.sh

s3dir=${CKPTFS_S3_DIR:-/tmp/ckptfs-test-s3}
stop_s3() { [ -n "${S3_STARTED:-}" ] && scripts/s3-stop.sh "$s3dir" >/dev/null 2>&1 || true; }
trap stop_s3 EXIT
if [ -z "${SKIP_S3:-}" ]; then
	scripts/s3-start.sh 0 "$s3dir" > "$s3dir.env"
	S3_STARTED=1
	# shellcheck disable=SC1090
	. "$s3dir.env"
	export CKPTFS_TEST_REQUIRE_S3=1
fi

run_suite() {
	local dir=$1; shift
	if [ ! -d "$dir" ]; then
		meson setup "$dir" -Dwerror=true "$@"
	fi
	ninja -C "$dir"
	meson test -C "$dir" --print-errorlogs --num-processes 2
}

run_suite build
if [ -z "${SKIP_ASAN:-}" ]; then
	export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
	export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
	export LSAN_OPTIONS=suppressions=$top/tests/lsan.supp
	run_suite build-asan -Db_sanitize=address,undefined -Dbuildtype=debug
fi
# One plain closing line over both passes (meson's JSON test log).
/usr/bin/python3 - build build-asan <<'PY'
import json, sys
ok = bad = skip = 0
for d in sys.argv[1:]:
    try:
        f = open(d + "/meson-logs/testlog.json")
    except OSError:
        continue
    for line in f:
        r = json.loads(line).get("result")
        ok += r == "OK"
        skip += r == "SKIP"
        bad += r not in ("OK", "SKIP")
print("all test suites passed")
print("%d passed, %d failed, %d skipped" % (ok, bad, skip))
PY
