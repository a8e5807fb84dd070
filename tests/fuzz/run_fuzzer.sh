#!/bin/sh
# run_fuzzer.sh FUZZER CORPUS WORKDIR: run one libFuzzer harness for a fixed
# time (CKPTFS_FUZZ_SECONDS, default 20) from the checked-in CORPUS, keeping
# what it finds in WORKDIR (the checked-in corpus is only read). Crash
# reproducers land in WORKDIR too.
set -eu
fuzzer=$1 corpus=$2 work=$3
mkdir -p "$work/corpus"
exec "$fuzzer" -max_total_time="${CKPTFS_FUZZ_SECONDS:-20}" -timeout=10 \
	-rss_limit_mb=2048 -max_len=65536 -error_exitcode=1 -timeout_exitcode=1 -print_final_stats=1 \
	-artifact_prefix="$work/" "$work/corpus" "$corpus"
