#!/bin/bash
# daemon_cpu.sh: wall time and daemon CPU seconds of `cp` of a base file, then
# of its next version (a delta), into a fresh mount on an empty local store.
#
#   bench/daemon_cpu.sh BASE_FILE DELTA_FILE LABEL CKPTFS_BIN [MOUNT OPTIONS...]
#
# One daemon per run; CPU is utime + stime of the daemon from /proc/PID/stat
# around each cp. Run it several times, interleaving binaries or options:
# single runs on a shared 2-core machine vary by 20% or more.
set -euo pipefail
BASE=$1 DELTA=$2 LABEL=$3 BIN=$4
shift 4
D=$(mktemp -d /var/tmp/ckptfs-cpu.XXXXXX)
mkdir "$D/store" "$D/mnt"
"$BIN" mount -f "$@" "$D/store" "$D/mnt" 2>"$D/log" &
P=$!
cleanup() { fusermount3 -u "$D/mnt" 2>/dev/null || true; wait "$P" 2>/dev/null || true; rm -rf "$D"; }
trap cleanup EXIT
for _ in $(seq 100); do mountpoint -q "$D/mnt" && break; sleep 0.1; done
mountpoint -q "$D/mnt" || { cat "$D/log" >&2; exit 1; }
cpu() { awk '{ printf "%.2f", ($14 + $15) / 100 }' "/proc/$P/stat"; }
cat "$BASE" "$DELTA" >/dev/null
mkdir "$D/mnt/sampler/s0" "$D/mnt/sampler/s1"
c0=$(cpu); t0=$EPOCHREALTIME
cp "$BASE" "$D/mnt/sampler/s0/"
t1=$EPOCHREALTIME; c1=$(cpu)
cp "$DELTA" "$D/mnt/sampler/s1/$(basename "$BASE")"
t2=$EPOCHREALTIME; c2=$(cpu)
kind=$(getfattr --only-values -n user.ckptfs.kind "$D/mnt/sampler/s1" 2>/dev/null || echo -)
awk -v l="$LABEL" -v a="$t0" -v b="$t1" -v c="$t2" -v x="$c0" -v y="$c1" -v z="$c2" -v k="$kind" \
	'BEGIN { printf "%s base: wall %.2f s, daemon CPU %.2f s | %s: wall %.2f s, daemon CPU %.2f s\n", l, b - a, y - x, k, c - b, z - y }'
