#!/bin/bash
# crashloop.sh: the crash-loop test of tests/integration/test_crashloop.py
# with many trials. Each trial mounts, verifies the previous trial's files,
# writes a checkpoint (alternately a forced base and a delta) and is killed
# with SIGKILL at a random point; the last mount verifies every file of
# every trial (acknowledged: byte-exact; unacknowledged: absent; close()
# failed: absent or exact) and `ckptfs fsck` must be clean.
#
#   bench/crashloop.sh [N] [BUILD_DIR]     N trials (default 100), BUILD_DIR
#                                          default ./build
#   CKPTFS_CRASHLOOP_SEED=S                replay one run (the seed is printed)
#   CKPTFS_TEST_BACKEND=s3                 on the test S3 server (needs the
#                                          CKPTFS_TEST_S3_* variables)
#
# Needs /dev/fuse and fusermount3 (root or the fuse group), python3-numpy.
# Prints one summary line; exits non-zero on the first lost or wrong byte.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-100}
build=${2:-build}
case $n in ''|*[!0-9]*) echo "usage: $0 [N] [BUILD_DIR]" >&2; exit 2 ;; esac
[ -x "$build/src/cli/ckptfs" ] || { echo "$0: no $build/src/cli/ckptfs (build first)" >&2; exit 2; }
export CKPTFS_BIN=$PWD/$build/src/cli/ckptfs CKPTFS_CRASHLOOP_TRIALS=$n PYTHONDONTWRITEBYTECODE=1
exec /usr/bin/python3 tests/integration/test_crashloop.py CrashLoop
