#!/bin/bash
# run.sh: the ckptfs benchmark in one command and one table (issue 11).
#
#   bench/run.sh [options] [CKPTFS_BIN]      (default: build/src/cli/ckptfs of this tree)
#
# Generates seeded bf16 safetensors checkpoints once (gen_ckpt.py: a base and deltas 1,
# 5 and 25 steps from it, 512 MiB each), then drives the measuring scripts on them and
# merges their machine-readable outputs (report.py):
#   save.sh --tsv        save speed: cp into ckptfs vs cp + sync to plain disk vs cp into
#                        the FUSE ceiling (bench/ceiling.c) vs the codec alone, stored
#                        bytes, peak RSS; N interleaved rounds, medians
#   read_bench.py --json cold sequential reads and a shuffled-tensor mmap loader, plain
#                        disk vs passthrough_ll vs the ceiling's /synthetic file (seq) vs
#                        ckptfs, each figure from a freshly started daemon after sync +
#                        drop_caches, plus a warm re-read; N interleaved rounds, medians
#   baselines.py --env   what zstd -1 of the XOR (and, with --full-baselines, zstd
#                        --patch-from and xdelta3) store for the same checkpoints
# It prints one markdown table with a row per checkpoint, details, the peak daemon RSS
# and a Targets section, and saves it in $BENCH_DIR/results/results.md (or
# /tmp/ckptfs-bench-DATE.md). See bench/README.md for the columns.
#
# Needs root (drop_caches, FUSE mounts).
set -euo pipefail
shopt -s inherit_errexit
export LC_ALL=C

BENCH_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TREE=$(dirname "$BENCH_SRC")
PY=/usr/bin/python3

usage() {
	cat <<EOF
usage: $0 [options] [CKPTFS_BIN]

  CKPTFS_BIN          ckptfs binary (default $TREE/build/src/cli/ckptfs)
  --size-mb N         model size in MiB (default 512)
  --steps LIST        checkpoints, in order (default 0,1,5,25; 0 is the base)
  --files N           safetensors shards per checkpoint (default 1)
  --seed N            generator seed (default 1)
  --lr X              simulated Adam learning rate (default 1e-5)
  --repeat N          interleaved rounds; every figure is the median of N (default 3)
  --quick             one round (unless --repeat is given), no baselines: a quick look
  --big               one 2 GiB base and its 1-step delta (--size-mb 2048 --steps 0,1),
                      no baselines, no passthrough_ll
  --full-baselines    baselines also with zstd -19 --patch-from and xdelta3 (7-9 and
                      1-3 minutes per 300 MiB delta)
  --no-baselines      skip baselines.py
  --no-passthrough    skip the passthrough_ll read figures
  --no-codec          skip the codec-alone figure of save.sh
  --keep              keep the scratch directory
  -h, --help

  Self-test of the harness in under a minute: $0 --size-mb 40 --repeat 1
  (or with bench/fake-ckptfs.sh as CKPTFS_BIN: passthrough_ll standing in for ckptfs).

environment:
  BENCH_DIR           scratch directory (default: a new /tmp/ckptfs-bench.XXXXXX)
  CKPTFS_MOUNT_OPTS   extra options after "ckptfs mount -f" (word-split)
  CEILING             a bench/ceiling binary (default build/bench/ceiling, else built)
  CODEC_BENCH         a codec_bench binary (default build/bench/codec_bench)
  PASSTHROUGH_LL      a prebuilt passthrough_ll binary (else built from
                      /usr/share/doc/libfuse3-dev/examples/passthrough_ll.c)
EOF
}

# ----------------------------------------------------------------------------- options

CKPTFS=$TREE/build/src/cli/ckptfs
SIZE_MB=512 STEPS=0,1,5,25 FILES=1 SEED=1 LR=1e-5 REPEAT=3
QUICK=0 BIG=0 BASELINES=fast DO_PT=1 DO_CODEC=1 KEEP=0 SIZE_SET=0 STEPS_SET=0 REPEAT_SET=0

while (($#)); do
	case $1 in
	--size-mb) SIZE_MB=$2; SIZE_SET=1; shift 2 ;;
	--steps) STEPS=$2; STEPS_SET=1; shift 2 ;;
	--files) FILES=$2; shift 2 ;;
	--seed) SEED=$2; shift 2 ;;
	--lr) LR=$2; shift 2 ;;
	--repeat) REPEAT=$2; REPEAT_SET=1; shift 2 ;;
	--quick) QUICK=1; shift ;;
	--big) BIG=1; shift ;;
	--full-baselines) BASELINES=full; shift ;;
	--no-baselines) BASELINES=none; shift ;;
	--no-passthrough) DO_PT=0; shift ;;
	--no-codec) DO_CODEC=0; shift ;;
	--keep) KEEP=1; shift ;;
	-h | --help) usage; exit 0 ;;
	-*) echo "unknown option $1" >&2; usage >&2; exit 2 ;;
	*) CKPTFS=$1; shift ;;
	esac
done
if ((QUICK)); then
	((REPEAT_SET)) || REPEAT=1
	BASELINES=none
fi
if ((BIG)); then
	((SIZE_SET)) || SIZE_MB=2048
	((STEPS_SET)) || STEPS=0,1
	BASELINES=none DO_PT=0
fi
IFS=, read -r -a STEP_LIST <<<"$STEPS"
[[ ${STEP_LIST[0]} == 0 ]] || { echo "--steps must start with 0 (the base)" >&2; exit 2; }
[[ -x $CKPTFS ]] || { echo "no ckptfs binary at $CKPTFS (build it, or pass its path)" >&2; exit 2; }
CKPTFS=$(cd "$(dirname "$CKPTFS")" && pwd)/$(basename "$CKPTFS")
[[ -w /proc/sys/vm/drop_caches ]] || { echo "run.sh needs root (drop_caches, cold reads)" >&2; exit 2; }

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
step_name() { printf 'step-%04d' "$1"; }

# ----------------------------------------------------------------------------- scratch

BENCH_DIR_GIVEN=${BENCH_DIR:-}
if [[ -n $BENCH_DIR_GIVEN ]]; then
	mkdir -p "$BENCH_DIR"
	BENCH_DIR=$(cd "$BENCH_DIR" && pwd)
	# Start from a clean slate, but only ever delete the subdirectories we make.
	for d in data save read results logs bin; do
		if findmnt -rno TARGET | grep -q "^$BENCH_DIR/$d\(/\|$\)"; then
			echo "something is mounted under $BENCH_DIR/$d; unmount it first" >&2
			exit 1
		fi
		rm -rf -- "${BENCH_DIR:?}/$d"
	done
else
	BENCH_DIR=$(mktemp -d /tmp/ckptfs-bench.XXXXXX)
fi
FAILED=()
DATA=$BENCH_DIR/data RESULTS=$BENCH_DIR/results LOGS=$BENCH_DIR/logs
mkdir -p "$DATA" "$RESULTS" "$LOGS" "$BENCH_DIR/bin"

cleanup() {
	local m
	# the measuring scripts unmount what they mounted; this is for an interrupted run
	while read -r m; do fusermount3 -u -z "$m" 2>/dev/null || true; done < <(
		findmnt -rno TARGET | grep "^$BENCH_DIR/" | sort -r)
	if ((KEEP)) || [[ -n $BENCH_DIR_GIVEN ]]; then
		log "scratch kept in $BENCH_DIR"
	else
		m=/tmp/ckptfs-bench-$(date +%Y%m%d-%H%M%S)
		if [[ -f $RESULTS/results.md ]]; then
			cp -- "$RESULTS/results.md" "$m.md" && log "results saved in $m.md"
		fi
		if ((${#FAILED[@]})); then
			# the logs outlive the scratch directory when something failed
			mkdir -p "$m.logs"
			cp -r -- "$LOGS" "$m.logs/run" 2>/dev/null || true
			cp -r -- "$BENCH_DIR/save/logs" "$m.logs/save" 2>/dev/null || true
			cp -- "$BENCH_DIR/read/daemon.log" "$m.logs/read-daemon.log" 2>/dev/null || true
			log "logs kept in $m.logs"
		fi
		rm -rf -- "$BENCH_DIR"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ----------------------------------------------------------------------------- instruments

CEILING=${CEILING:-$TREE/build/bench/ceiling}
if [[ ! -x $CEILING ]]; then
	CEILING=$BENCH_DIR/bin/ceiling
	# shellcheck disable=SC2046 # pkg-config output is word-split on purpose
	cc -O2 -Wall -o "$CEILING" "$BENCH_SRC/ceiling.c" $(pkg-config --cflags --libs fuse3) ||
		{ echo "cannot build bench/ceiling.c (cc + pkg-config fuse3)" >&2; exit 1; }
fi
export CEILING
NOTES=()
if ((DO_PT)) && [[ -z ${PASSTHROUGH_LL:-} ]]; then
	c=/usr/share/doc/libfuse3-dev/examples/passthrough_ll.c
	# shellcheck disable=SC2046 # pkg-config output is word-split on purpose
	if [[ -r $c ]] && cc -O2 -Wall -o "$BENCH_DIR/bin/passthrough_ll" "$c" \
		$(pkg-config --cflags --libs fuse3) >"$LOGS/passthrough-build.log" 2>&1; then
		export PASSTHROUGH_LL=$BENCH_DIR/bin/passthrough_ll
	else
		NOTES+=("passthrough_ll skipped: cannot build $c (see $LOGS/passthrough-build.log)")
		DO_PT=0
	fi
fi

# ----------------------------------------------------------------------------- run

LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
T0=$SECONDS

log "generating ${SIZE_MB} MiB checkpoints (steps $STEPS) into $DATA"
$PY "$BENCH_SRC/gen_ckpt.py" --out "$DATA" --size-mb "$SIZE_MB" --steps "$STEPS" \
	--seed "$SEED" --lr "$LR" --files "$FILES" >"$RESULTS/gen.md"

log "save: bench/save.sh, $REPEAT rounds"
save_opts=(--sizes "$SIZE_MB" --steps "$STEPS" --big-steps "$STEPS" --repeat "$REPEAT"
	--files "$FILES" --lr "$LR" --data "$DATA" --tsv "$RESULTS/save.tsv" --keep)
((DO_CODEC)) || save_opts+=(--no-codec)
if ! BENCH_DIR=$BENCH_DIR/save "$BENCH_SRC/save.sh" "${save_opts[@]}" "$CKPTFS" \
	>"$RESULTS/save.md" 2> >(tee "$LOGS/save.log" >&2); then
	FAILED+=("save.sh failed (log: $LOGS/save.log; daemon logs: $BENCH_DIR/save/logs)")
	rm -f -- "$RESULTS/save.tsv"
fi

log "reads: bench/read_bench.py, $REPEAT rounds"
targets=disk,ceiling,ckptfs
((DO_PT)) && targets+=,passthrough_ll
read_opts=(--data "$DATA" --steps "$STEPS" --repeat "$REPEAT" --dir "$BENCH_DIR/read"
	--ckptfs "$CKPTFS" --ceiling "$CEILING" --warm --targets "$targets"
	--json "$RESULTS/read.json" --opts "${CKPTFS_MOUNT_OPTS:-}")
((DO_PT)) || read_opts+=(--no-passthrough)
if ! $PY "$BENCH_SRC/read_bench.py" "${read_opts[@]}" >"$RESULTS/read.md" \
	2> >(tee "$LOGS/read.log" >&2); then
	FAILED+=("read_bench.py failed (log: $LOGS/read.log; daemon log: $BENCH_DIR/read/daemon.log)")
	rm -f -- "$RESULTS/read.json"
fi
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)
T1=$SECONDS

if [[ $BASELINES != none ]]; then
	bl_opts=()
	[[ $BASELINES == full ]] || bl_opts+=(--no-patch-from --no-xdelta)
	for k in "${STEP_LIST[@]}"; do
		name=$(step_name "$k")
		log "$name: baselines${bl_opts[*]:+ (${bl_opts[*]})}"
		if ((k == 0)); then args=("$DATA/$name"); else args=("$DATA/step-0000" "$DATA/$name" "${bl_opts[@]}"); fi
		$PY "$BENCH_SRC/baselines.py" "${args[@]}" --env "$RESULTS/bl-$name.env" \
			>"$RESULTS/baselines-$name.md" 2>>"$LOGS/baselines.log" ||
			FAILED+=("baselines.py failed on $name (log: $LOGS/baselines.log)")
	done
fi

# ----------------------------------------------------------------------------- report

# shellcheck disable=SC2046
$PY "$BENCH_SRC/report.py" --steps "$STEPS" --save "$RESULTS/save.tsv" --read "$RESULTS/read.json" \
	--gen "$RESULTS/gen.md" $([[ $BASELINES != none ]] && echo --baselines "$RESULTS") \
	>"$RESULTS/table.md" || FAILED+=("incomplete: a ckptfs figure is missing or a file did not read back (see the end)")
{
	echo "## ckptfs benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo
	echo "- machine: $(nproc) CPUs, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM," \
		"kernel $(uname -r); scratch $BENCH_DIR ($(df --output=fstype "$BENCH_DIR" | tail -1 | tr -d ' '))"
	echo "- load average at start / end of the timed part: $LOAD0 / $LOAD1; timed part $((T1 - T0)) s" \
		"(shared machine: every figure is the median of $REPEAT interleaved rounds; trust the ratios)"
	echo "- ckptfs: $CKPTFS mount -f ${CKPTFS_MOUNT_OPTS:+$CKPTFS_MOUNT_OPTS }STORE MNT (local store);" \
		"saves into one daemon per round, every read figure from a freshly started daemon"
	echo "- ceiling: $CEILING (bench/ceiling.c: writes discarded; reads of /synthetic, the checkpoint's size)"
	echo "- data: gen_ckpt.py --size-mb $SIZE_MB --steps $STEPS --seed $SEED --lr $LR --files $FILES"
	for n in "${NOTES[@]}" "${FAILED[@]}"; do echo "- **$n**"; done
	echo
	cat "$RESULTS/table.md"
} >"$RESULTS/results.md"
cat "$RESULTS/results.md"
if ((KEEP)) || [[ -n $BENCH_DIR_GIVEN ]]; then log "results saved in $RESULTS/results.md"; fi
((${#FAILED[@]} == 0))
