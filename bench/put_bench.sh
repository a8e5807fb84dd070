#!/bin/bash
# put_bench.sh: `ckptfs put` / `ckptfs get` (libckptfs, no mount) against plain
# disk, side by side in one run, on a >= 1 GiB bf16 checkpoint from gen_ckpt.py.
#
#   bench/put_bench.sh [--size-mb 1024] [--lr 1e-5] [--repeat 3] [--base-cache] [--keep] [CKPTFS_BIN]
#
# Measures (seconds, best of --repeat; ratios = plain time / ckptfs time, so
# > 1 means ckptfs is faster):
#   base   put of step 0 into an empty directory store  vs  cp + sync of step 0
#   delta  put of step 1 (a 1-step delta)                vs  cp + sync of step 1
#   get    get of step 1 (caches dropped) to a directory vs  cat of step 1 from plain
#          disk with caches dropped (a cold read)
# and the peak RSS of each put and get (GNU time). The sources are in the page
# cache for both sides of each write comparison (what a trainer that just wrote
# them has). Every put is checked by get + sha256 at the end.
# --base-cache: put and get run with --base-cache-dir (emptied at the start of
# every round, so the base put fills it and the delta put and get use it).
# Needs root for drop_caches (otherwise "cold" is warm, and the table says so).
set -euo pipefail

SIZE_MB=1024
LR=1e-5
REPEAT=3
KEEP=0
BIN=
BASE_CACHE=0
while (($#)); do
	case $1 in
	--size-mb) SIZE_MB=$2; shift 2 ;;
	--lr) LR=$2; shift 2 ;;
	--repeat) REPEAT=$2; shift 2 ;;
	--keep) KEEP=1; shift ;;
	--base-cache) BASE_CACHE=1; shift ;;
	-h|--help) sed -n '2,18p' "$0"; exit 0 ;;
	*) BIN=$1; shift ;;
	esac
done
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${BIN:-$HERE/../build/src/cli/ckptfs}
[[ -x $BIN ]] || { echo "put_bench: no ckptfs binary at $BIN (build first)" >&2; exit 1; }
W=${BENCH_DIR:-$(mktemp -d /var/tmp/ckptfs-putbench.XXXXXX)}
mkdir -p "$W"
cleanup() { ((KEEP)) || rm -rf "$W"; }
trap cleanup EXIT

CAN_DROP=0
if [[ -w /proc/sys/vm/drop_caches ]] && { sync; echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null; then
	CAN_DROP=1
fi
drop_caches() { sync; if ((CAN_DROP)); then echo 3 >/proc/sys/vm/drop_caches; fi; }
now() { date +%s.%N; }
calc() { awk "BEGIN { printf \"%.6f\", $1 }"; }
# Run "$@" under GNU time; print "SECONDS RSS_KIB CPU_SECONDS" (user + sys).
timed() {
	local t0 t1
	t0=$(now)
	/usr/bin/time -f '%M %U %S' -o "$W/time.out" "$@" >/dev/null
	t1=$(now)
	tail -1 "$W/time.out" | awk -v w="$(calc "$t1 - $t0")" '{ print w, $1, $2 + $3 }'
}
min() { printf '%s\n' "$@" | sort -g | head -1; }
max() { printf '%s\n' "$@" | sort -g | tail -1; }
warm() { cat "$1"/* >/dev/null; }

# BENCH_DIR=... --keep once, then again with the same BENCH_DIR: the data is reused.
if [[ -f $W/src/.size-$SIZE_MB-$LR ]]; then
	echo "put_bench: reusing the checkpoints in $W/src" >&2
else
	echo "put_bench: generating a ${SIZE_MB} MiB bf16 checkpoint, steps 0 and 1 (lr $LR) in $W" >&2
	rm -rf "$W/src"
	/usr/bin/python3 "$HERE/gen_ckpt.py" --out "$W/src" --size-mb "$SIZE_MB" --steps 0,1 \
		--lr "$LR" --files 2 --quiet >&2
	touch "$W/src/.size-$SIZE_MB-$LR"
fi
BYTES=$(cat "$W/src/step-0001"/* | wc -c)

OPTS=()
((BASE_CACHE)) && OPTS=(--base-cache-dir="$W/basecache")
declare -a cp0 cp1 put0 put1 rss0 rss1 get1 rssg cold coldcp cpu0 cpu1 cpug
for ((i = 0; i < REPEAT; i++)); do
	rm -rf "$W/store" "$W/plain" "$W/got" "$W/basecache"
	mkdir -p "$W/plain"
	warm "$W/src/step-0000"
	t0=$(now); cp -r "$W/src/step-0000" "$W/plain/s0"; sync; t1=$(now)
	cp0+=("$(calc "$t1 - $t0")")
	warm "$W/src/step-0000"
	read -r t r c < <(timed "$BIN" put -q "${OPTS[@]}" "$W/store/sampler/s0" "$W/src/step-0000"); sync
	put0+=("$t"); rss0+=("$r"); cpu0+=("$c")
	warm "$W/src/step-0001"
	t0=$(now); cp -r "$W/src/step-0001" "$W/plain/s1"; sync; t1=$(now)
	cp1+=("$(calc "$t1 - $t0")")
	warm "$W/src/step-0001"
	read -r t r c < <(timed "$BIN" put -q "${OPTS[@]}" "$W/store/sampler/s1" "$W/src/step-0001"); sync
	put1+=("$t"); rss1+=("$r"); cpu1+=("$c")
	drop_caches
	t0=$(now); cat "$W/plain/s1"/* >/dev/null; t1=$(now)
	cold+=("$(calc "$t1 - $t0")")
	# The same output work as get: a cold copy to a directory (no sync).
	rm -rf "$W/cpout"; drop_caches
	t0=$(now); cp -r "$W/plain/s1" "$W/cpout"; t1=$(now)
	coldcp+=("$(calc "$t1 - $t0")")
	rm -rf "$W/cpout"; drop_caches
	read -r t r c < <(timed "$BIN" get -q "${OPTS[@]}" "$W/store/sampler/s1" "$W/got")
	get1+=("$t"); rssg+=("$r"); cpug+=("$c")
done
# Exact bytes: what get returns is what was put.
want=$(cd "$W/src/step-0001" && sha256sum -- * | sort)
got=$(cd "$W/got" && sha256sum -- * | sort)
[[ $want == "$got" ]] || { echo "put_bench: get returned other bytes than put stored" >&2; exit 1; }
"$BIN" ls "$W/store" > "$W/ls.jsonl"
stored1=$(grep '"name":"s1"' "$W/ls.jsonl" | sed 's/.*"stored_bytes":\([0-9]*\).*/\1/')
kind1=$(grep '"name":"s1"' "$W/ls.jsonl" | sed 's/.*"kind":"\([a-z]*\)".*/\1/')

b_cp0=$(min "${cp0[@]}"); b_put0=$(min "${put0[@]}")
b_cp1=$(min "${cp1[@]}"); b_put1=$(min "${put1[@]}")
b_cold=$(min "${cold[@]}"); b_get1=$(min "${get1[@]}"); b_coldcp=$(min "${coldcp[@]}")
mb() { awk "BEGIN { printf \"%d\", $BYTES / 1048576 / $1 }"; }
printf '\nckptfs put/get vs plain disk: %s MiB per checkpoint (bf16, 2 shards), best of %d%s%s\n' \
	"$((BYTES / 1048576))" "$REPEAT" "$( ((CAN_DROP)) || echo ', NO drop_caches: cold = warm')" \
	"$( ((BASE_CACHE)) && echo ', with --base-cache-dir')"
printf '%-34s %9s %9s %8s %8s\n' "operation" "ckptfs s" "plain s" "ratio" "RSS MiB"
printf '%-34s %9.2f %9.2f %7.2fx %8d\n' "base: put vs cp+sync" "$b_put0" "$b_cp0" \
	"$(calc "$b_cp0 / $b_put0")" "$(($(max "${rss0[@]}") / 1024))"
printf '%-34s %9.2f %9.2f %7.2fx %8d\n' "1-step delta: put vs cp+sync" "$b_put1" "$b_cp1" \
	"$(calc "$b_cp1 / $b_put1")" "$(($(max "${rss1[@]}") / 1024))"
printf '%-34s %9.2f %9.2f %7.2fx %8d\n' "delta: get (cold) vs cold read" "$b_get1" "$b_cold" \
	"$(calc "$b_cold / $b_get1")" "$(($(max "${rssg[@]}") / 1024))"
printf '%-34s %9.2f %9.2f %7.2fx\n' "delta: get (cold) vs cold cp to dir" "$b_get1" "$b_coldcp" \
	"$(calc "$b_coldcp / $b_get1")"
printf 'CPU seconds (user+sys, best): put base %s, put delta %s, get delta %s; CPU pressure avg60 %s\n' \
	"$(min "${cpu0[@]}")" "$(min "${cpu1[@]}")" "$(min "${cpug[@]}")" \
	"$(sed -n 's/^some avg10=[0-9.]* avg60=\([0-9.]*\).*/\1%/p' /proc/pressure/cpu 2>/dev/null)"
printf 'throughput MB/s: put base %s, put delta %s, get delta %s; delta kind %s, stored %s of %s bytes (%.1fx)\n' \
	"$(mb "$b_put0")" "$(mb "$b_put1")" "$(mb "$b_get1")" "$kind1" "$stored1" "$BYTES" \
	"$(calc "$BYTES / $stored1")"
printf 'all runs (s): cp0 %s | put0 %s | cp1 %s | put1 %s | cold %s | coldcp %s | get1 %s\n' \
	"${cp0[*]}" "${put0[*]}" "${cp1[*]}" "${put1[*]}" "${cold[*]}" "${coldcp[*]}" "${get1[*]}"
