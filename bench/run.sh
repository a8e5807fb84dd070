#!/bin/bash
# run.sh: the ckptfs benchmark, side by side with plain disk in one run.
#
#   bench/run.sh [options] [CKPTFS_BIN]      (default /work/main/build/src/cli/ckptfs)
#
# Generates seeded bf16 safetensors checkpoints (gen_ckpt.py: a base and deltas 1, 5 and
# 25 steps from it), then for each checkpoint, in order, measures
#   - cp into the ckptfs mount vs cp to plain disk on the same filesystem (and + sync),
#   - cold (caches dropped, daemon restarted) and warm sequential reads, mount vs disk,
#   - stored bytes (du -sb of the store before/after) vs raw, and the tool baselines
#     (baselines.py: zstd -1 of the XOR, zstd --patch-from, xdelta3),
#   - the daemon's peak RSS (VmHWM),
# with libfuse's passthrough_ll example as a FUSE reference when it can be built.
# It prints one table per checkpoint (markdown, ratios mount/disk) and a summary, and
# saves them in $BENCH_DIR/results/results.md. See bench/README.md for the columns.
#
# Needs root for drop_caches (otherwise "cold" reads are warm and say so).
set -euo pipefail
shopt -s inherit_errexit
export LC_ALL=C

BENCH_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PY=/usr/bin/python3

usage() {
	cat <<EOF
usage: $0 [options] [CKPTFS_BIN]

  CKPTFS_BIN          ckptfs binary (default /work/main/build/src/cli/ckptfs); if it
                      is missing the ckptfs column is skipped and the rest still runs
  --size-mb N         model size in MiB (default 300)
  --steps LIST        checkpoints to write, in order (default 0,1,5,25; 0 is the base)
  --files N           safetensors shards per checkpoint (default 2)
  --seed N            generator seed (default 1)
  --lr X              simulated Adam learning rate (default 1e-5)
  --big               one 2 GiB base checkpoint (--size-mb 2048 --steps 0), no
                      baselines or passthrough: write speed, stored bytes, peak RSS
  --quick             baselines without zstd --patch-from and xdelta3 (they take
                      minutes per 300 MB)
  --no-baselines      skip baselines.py entirely
  --no-ckptfs         skip the ckptfs column
  --no-passthrough    skip the passthrough_ll column
  --one-daemon        keep one ckptfs daemon for the whole run (cold reads then only
                      drop the kernel caches, and peak RSS is cumulative)
  --repeat N          warm reads: best of N (default 3)
  --keep              keep the scratch directory
  -h, --help

environment:
  BENCH_DIR           scratch directory (default: a new /tmp/ckptfs-bench.XXXXXX)
  CKPTFS_MOUNT_OPTS   extra options after "ckptfs mount -f" (word-split)
  PASSTHROUGH_LL      a prebuilt passthrough_ll binary (else built from
                      /usr/share/doc/libfuse3-dev/examples/passthrough_ll.c)
EOF
}

# ----------------------------------------------------------------------------- options

CKPTFS=/work/main/build/src/cli/ckptfs
SIZE_MB=300 STEPS=0,1,5,25 FILES=2 SEED=1 LR=1e-5
BIG=0 QUICK=0 DO_BASELINES=1 DO_CKPTFS=1 DO_PT=1 ONE_DAEMON=0 REPEAT=3 KEEP=0
SIZE_SET=0 STEPS_SET=0

while (($#)); do
	case $1 in
	--size-mb) SIZE_MB=$2; SIZE_SET=1; shift 2 ;;
	--steps) STEPS=$2; STEPS_SET=1; shift 2 ;;
	--files) FILES=$2; shift 2 ;;
	--seed) SEED=$2; shift 2 ;;
	--lr) LR=$2; shift 2 ;;
	--big) BIG=1; shift ;;
	--quick) QUICK=1; shift ;;
	--no-baselines) DO_BASELINES=0; shift ;;
	--no-ckptfs) DO_CKPTFS=0; shift ;;
	--no-passthrough) DO_PT=0; shift ;;
	--one-daemon) ONE_DAEMON=1; shift ;;
	--repeat) REPEAT=$2; shift 2 ;;
	--keep) KEEP=1; shift ;;
	-h | --help) usage; exit 0 ;;
	-*) echo "unknown option $1" >&2; usage >&2; exit 2 ;;
	*) CKPTFS=$1; shift ;;
	esac
done
if ((BIG)); then
	((SIZE_SET)) || SIZE_MB=2048
	((STEPS_SET)) || STEPS=0
	DO_BASELINES=0 DO_PT=0
fi
IFS=, read -r -a STEP_LIST <<<"$STEPS"
[[ ${STEP_LIST[0]} == 0 ]] || { echo "--steps must start with 0 (the base)" >&2; exit 2; }

# ----------------------------------------------------------------------------- helpers
# The measuring functions check errors explicitly (|| return 1): a filesystem under
# test may fail, and the harness must then report it and carry on with the rest.

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
step_name() { printf 'step-%04d' "$1"; }

# timeit CMD...: run CMD with stdout discarded, print its wall seconds.
timeit() {
	local t0=$EPOCHREALTIME
	"$@" >/dev/null || return 1
	local t1=$EPOCHREALTIME
	awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }'
}

calc() { awk "BEGIN { printf $1 }"; }              # calc '"%.2f", 1/3'
mbps() { calc "\"%.0f\", $1 / 1e6 / ($2 > 0 ? $2 : 1e-9)"; }
# speed_ratio T REF_T: speed relative to the reference given seconds (REF_T / T)
speed_ratio() {
	if [[ -n ${1:-} && -n ${2:-} ]]; then calc "\"%.2fx\", $2 / ($1 > 0 ? $1 : 1e-9)"; else echo -; fi
}

files_of() { find "$1" -type f -printf '%P\n' | sort; }
bytes_of() { find "$1" -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }'; }
store_bytes() { du -sb "$1" | cut -f1; }

CAN_DROP=0
if [[ -w /proc/sys/vm/drop_caches ]] && { sync; echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null; then
	CAN_DROP=1
fi
drop_caches() {
	sync
	if ((CAN_DROP)); then echo 3 >/proc/sys/vm/drop_caches; fi
}

# Read every file of a checkpoint directory sequentially, as `cat file > /dev/null`.
read_dir() {
	local d=$1 f
	while IFS= read -r f; do
		cat -- "$d/$f" || return 1
	done < <(files_of "$d")
}
# Best (lowest) of REPEAT warm reads.
warm_read() {
	local best='' t i
	for ((i = 0; i < REPEAT; i++)); do
		t=$(timeit read_dir "$1") || return 1
		if [[ -z $best ]] || awk -v a="$t" -v b="$best" 'BEGIN { exit !(a < b) }'; then best=$t; fi
	done
	echo "$best"
}
# Copy a checkpoint as a user would: cp -r of its files into an existing directory.
copy_dir() { cp -r -- "$1/." "$2/"; }
# Make sure the source checkpoint is in the page cache, so cp measures the write side.
warm_source() { read_dir "$1" >/dev/null; }

# verify_dir SRC DST: "ok" if every file of SRC reads back identically from DST.
verify_dir() {
	local f
	while IFS= read -r f; do
		cmp -s -- "$1/$f" "$2/$f" || { echo "FAIL: $f"; return 0; }
	done < <(files_of "$1")
	echo ok
}

# tree_hwm PID: peak RSS in KiB (VmHWM), the max over PID and its descendants.
tree_hwm() {
	local pid=$1 max=0 v c f
	[[ -r /proc/$pid/status ]] || { echo 0; return 0; }
	v=$(awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || true)
	[[ -n $v ]] && max=$v
	for f in /proc/"$pid"/task/*/children; do
		[[ -r $f ]] || continue
		for c in $(<"$f"); do
			v=$(tree_hwm "$c")
			if ((v > max)); then max=$v; fi
		done
	done
	echo "$max"
}

# ----------------------------------------------------------------------------- FUSE daemons

MOUNTED=()       # mountpoints we mounted, for cleanup
FS_PID=''        # pid of the daemon fs_mount started last

# fs_mount MNT CMD...: run a FUSE daemon (foreground mode) in the background and wait
# for the mount. Sets FS_PID. Daemon output goes to $LOGS/<basename of MNT>.log.
fs_mount() {
	local mnt=$1 i
	shift
	mkdir -p "$mnt"
	"$@" >>"$LOGS/$(basename "$mnt").log" 2>&1 &
	FS_PID=$!
	for ((i = 0; i < 300; i++)); do
		if mountpoint -q "$mnt"; then
			MOUNTED+=("$mnt")
			return 0
		fi
		if ! kill -0 "$FS_PID" 2>/dev/null; then
			log "daemon for $mnt exited before mounting; see $LOGS/$(basename "$mnt").log"
			wait "$FS_PID" 2>/dev/null || true
			FS_PID=''
			return 1
		fi
		sleep 0.05
	done
	log "timeout waiting for $mnt to be mounted"
	kill "$FS_PID" 2>/dev/null || true
	FS_PID=''
	return 1
}

# fs_unmount MNT PID: unmount and wait for the daemon to exit (it must, by itself).
fs_unmount() {
	local mnt=$1 pid=$2 i rc=0 m keep=()
	if mountpoint -q "$mnt"; then
		fusermount3 -u "$mnt" 2>/dev/null || { sleep 1; fusermount3 -u -z "$mnt"; } || rc=1
	fi
	if [[ -n $pid ]]; then
		for ((i = 0; i < 600; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.05
		done
		if kill -0 "$pid" 2>/dev/null; then
			log "daemon $pid still running 30 s after unmount; killing it"
			kill "$pid" 2>/dev/null || true
			rc=1
		fi
		wait "$pid" 2>/dev/null || { log "daemon $pid exited with status $? (see $LOGS)"; rc=1; }
	fi
	for m in "${MOUNTED[@]}"; do [[ $m == "$mnt" ]] || keep+=("$m"); done
	MOUNTED=("${keep[@]}")
	return $rc
}

cleanup() {
	local m
	for m in "${MOUNTED[@]}"; do fusermount3 -u -z "$m" 2>/dev/null || true; done
	if ((KEEP)) || [[ -n ${BENCH_DIR_GIVEN:-} ]]; then
		log "scratch kept in $BENCH_DIR"
	elif [[ -n ${BENCH_DIR:-} && -d $BENCH_DIR ]]; then
		if [[ -f $BENCH_DIR/results/results.md ]]; then
			m=/tmp/ckptfs-bench-$(date +%Y%m%d-%H%M%S).md
			cp -- "$BENCH_DIR/results/results.md" "$m" && log "results saved in $m"
		fi
		rm -rf -- "$BENCH_DIR"
	fi
}

declare -A R       # R[step:metric] = value; see the report section

# fail MESSAGE: record why filesystem $fs failed on checkpoint $k (the caller's locals).
fail() {
	R[$k:${fs}_error]=$1
	log "$fs, $(step_name "$k"): $1"
}

# fuse_checkpoint FS STEP DEST: measure one FUSE filesystem on one checkpoint.
# FS names a family of functions and one variable, so ckptfs and passthrough_ll share
# this procedure:  FS_mount (starts the daemon, sets ${FS^^}_PID), FS_unmount,
# FS_after_write STEP (daemon stopped unless --one-daemon), FS_after_read STEP
# (daemon up). Results go to R[STEP:FS_*]: cp, cpsync, cold, warm (seconds), verify,
# hwm_w, hwm_r (KiB), or R[STEP:FS_error]. Returns 1 on failure.
fuse_checkpoint() {
	local fs=$1 k=$2 dest=$3 src t0 t1 t2 v
	local -n pid=${fs^^}_PID
	src=$DATA/$(step_name "$k")

	if [[ -z $pid ]] || ! kill -0 "$pid" 2>/dev/null; then "${fs}_mount" || { fail "mount failed"; return 1; }; fi
	mkdir -- "$dest" || { fail "mkdir $dest failed"; return 1; }
	warm_source "$src" || return 1
	sync
	t0=$EPOCHREALTIME
	copy_dir "$src" "$dest" || { fail "cp into the mount failed"; return 1; }
	t1=$EPOCHREALTIME
	sync
	t2=$EPOCHREALTIME
	R[$k:${fs}_cp]=$(calc "\"%.3f\", $t1 - $t0")
	R[$k:${fs}_cpsync]=$(calc "\"%.3f\", $t2 - $t0")
	R[$k:${fs}_hwm_w]=$(tree_hwm "$pid")
	if ! ((ONE_DAEMON)); then "${fs}_unmount" || { fail "unmount after writing failed"; return 1; }; fi
	"${fs}_after_write" "$k" || return 1

	drop_caches
	if [[ -z $pid ]] || ! kill -0 "$pid" 2>/dev/null; then "${fs}_mount" || { fail "remount failed"; return 1; }; fi
	v=$(timeit read_dir "$dest") || { fail "cold read failed"; return 1; }
	R[$k:${fs}_cold]=$v
	v=$(warm_read "$dest") || { fail "warm read failed"; return 1; }
	R[$k:${fs}_warm]=$v
	R[$k:${fs}_verify]=$(verify_dir "$src" "$dest")
	R[$k:${fs}_hwm_r]=$(tree_hwm "$pid")
	"${fs}_after_read" "$k" || return 1
	if ! ((ONE_DAEMON)); then "${fs}_unmount" || { fail "unmount after reading failed"; return 1; }; fi
	return 0
}

# --- plain disk -------------------------------------------------------------------

disk_checkpoint() {
	local k=$1 src dest t0 t1 t2
	src=$DATA/$(step_name "$k")
	dest=$DISK/$(step_name "$k")
	mkdir -p "$dest"
	warm_source "$src"
	sync
	t0=$EPOCHREALTIME
	copy_dir "$src" "$dest"
	t1=$EPOCHREALTIME
	sync
	t2=$EPOCHREALTIME
	R[$k:disk_cp]=$(calc "\"%.3f\", $t1 - $t0")
	R[$k:disk_cpsync]=$(calc "\"%.3f\", $t2 - $t0")
	drop_caches
	R[$k:disk_cold]=$(timeit read_dir "$dest")
	R[$k:disk_warm]=$(warm_read "$dest")
}

# --- ckptfs -----------------------------------------------------------------------
# Everything that needs the ckptfs daemon is here: ckptfs_checkpoint and its hooks.

CKPTFS_STORE='' CKPTFS_MNT='' CKPTFS_PID='' CKPTFS_STORE_BEFORE=0

ckptfs_mount() {
	# CKPTFS_MOUNT_OPTS is word-split on purpose.
	# shellcheck disable=SC2086
	fs_mount "$CKPTFS_MNT" "$CKPTFS" mount -f ${CKPTFS_MOUNT_OPTS:-} "$CKPTFS_STORE" "$CKPTFS_MNT" ||
		return 1
	CKPTFS_PID=$FS_PID
}
ckptfs_unmount() {
	local pid=$CKPTFS_PID
	CKPTFS_PID=''
	fs_unmount "$CKPTFS_MNT" "$pid"
}
# After the copy (and, without --one-daemon, after the daemon exited): the store's
# growth is what this checkpoint cost.
ckptfs_after_write() {
	local k=$1 after
	sync
	after=$(store_bytes "$CKPTFS_STORE")
	R[$k:ckptfs_stored]=$((after - CKPTFS_STORE_BEFORE))
}
# With the daemon up: what it says about the checkpoint.
ckptfs_after_read() {
	local k=$1 dir
	dir=$CKPTFS_MNT/sampler/$(step_name "$k")
	R[$k:ckptfs_kind]=$(getfattr --only-values -n user.ckptfs.kind -- "$dir" 2>/dev/null || echo -)
	R[$k:ckptfs_xstored]=$(getfattr --only-values -n user.ckptfs.stored_bytes -- "$dir" 2>/dev/null ||
		echo -)
}

# ckptfs_checkpoint STEP: mkdir MNT/sampler/step-XXXX, cp the checkpoint into it, and
# measure cp, stored bytes, cold/warm reads, read-back, peak RSS and the kind xattr.
ckptfs_checkpoint() {
	local k=$1
	sync
	CKPTFS_STORE_BEFORE=$(store_bytes "$CKPTFS_STORE")
	fuse_checkpoint ckptfs "$k" "$CKPTFS_MNT/sampler/$(step_name "$k")"
}

# --- libfuse passthrough_ll reference ---------------------------------------------

PT_BIN='' PT_SRC='' PT_MNT='' PT_PID='' PT_NOTE=''

build_passthrough() {
	if [[ -n ${PASSTHROUGH_LL:-} ]]; then
		PT_BIN=$PASSTHROUGH_LL
		return 0
	fi
	local c=/usr/share/doc/libfuse3-dev/examples/passthrough_ll.c
	if [[ ! -r $c ]]; then
		PT_NOTE="skipped: $c not found (install libfuse3-dev or set PASSTHROUGH_LL)"
		return 1
	fi
	mkdir -p "$BENCH_DIR/bin"
	# shellcheck disable=SC2046 # pkg-config output is word-split on purpose
	if ! cc -O2 -Wall -o "$BENCH_DIR/bin/passthrough_ll" "$c" \
		$(pkg-config --cflags --libs fuse3) >"$LOGS/passthrough-build.log" 2>&1; then
		PT_NOTE="skipped: building $c failed (see $LOGS/passthrough-build.log)"
		return 1
	fi
	PT_BIN=$BENCH_DIR/bin/passthrough_ll
}
pt_mount() {
	# cache=always: keep the page cache across opens, as immutable checkpoint files may.
	fs_mount "$PT_MNT" "$PT_BIN" -f -o "source=$PT_SRC,cache=always" "$PT_MNT" || return 1
	PT_PID=$FS_PID
}
pt_unmount() {
	local pid=$PT_PID
	PT_PID=''
	fs_unmount "$PT_MNT" "$pid"
}
pt_after_write() { :; }
pt_after_read() { :; }
pt_checkpoint() {
	mkdir -p "$PT_SRC/sampler"
	fuse_checkpoint pt "$1" "$PT_MNT/sampler/$(step_name "$1")"
}

# stop_fs FS: after a failure, tear the filesystem down and drop its column's later rows.
stop_fs() {
	local fs=$1 log_file
	local -n pid=${fs^^}_PID
	if [[ -n $pid ]]; then "${fs}_unmount" || true; fi
	log_file=$LOGS/$([[ $fs == pt ]] && echo pt-mnt || echo mnt).log
	if [[ -s $log_file ]]; then
		log "last lines of $log_file:"
		tail -n 20 "$log_file" >&2
	fi
}

# ----------------------------------------------------------------------------- report

fmt_mib() {
	if [[ -n ${1:-} && $1 != - && $1 != 0 ]]; then calc "\"%.0f\", $1 / 1024"; else echo -; fi
}
fmt_ratio() {   # fmt_ratio A B FORMAT: A / B, or - when either is missing
	if [[ -n ${1:-} && -n ${2:-} && $1 != - ]]; then calc "\"${3:-%.4f}\", $1 / ($2 > 0 ? $2 : 1)"; else echo -; fi
}

# The columns of the per-checkpoint tables: plain disk, then each FUSE filesystem run.
COLS=()

# speed_row LABEL METRIC BYTES K: MB/s per column, and each FUSE column's ratio to disk
speed_row() {
	local label=$1 m=$2 bytes=$3 k=$4 line c t d
	d=${R[$k:disk_$m]}
	line="| $label | $(mbps "$bytes" "$d")"
	for c in "${COLS[@]}"; do
		t=${R[$k:${c}_$m]:-}
		if [[ -n $t ]]; then line+=" | $(mbps "$bytes" "$t") | $(speed_ratio "$t" "$d")"; else line+=" | - | -"; fi
	done
	echo "$line |"
}
# text_row LABEL DISK_VALUE then one value per FUSE column (ratio cells left empty)
text_row() {
	local line="| $1 | $2" v
	shift 2
	for v in "$@"; do line+=" | $v | "; done
	echo "$line |"
}

# target LABEL VALUE OP LIMIT: a PASS/FAIL line (VALUE and LIMIT are numbers)
target() {
	local label=$1 v=$2 op=$3 lim=$4 ok
	if [[ -z $v || $v == - ]]; then
		echo "- $label: n/a"
		return 0
	fi
	ok=$(awk -v v="$v" -v l="$lim" "BEGIN { print (v $op l) ? \"PASS\" : \"FAIL\" }")
	echo "- $label: **$ok** ($v $op $lim)"
}

report_checkpoint() {
	local k=$1 name raw kind c line
	name=$(step_name "$k")
	raw=${R[$k:raw]}
	if ((k == 0)); then kind=base; elif ((k == 1)); then kind="delta, 1 step from the base"
	else kind="delta, $k steps from the base"; fi
	echo
	echo "### $name ($kind): $raw bytes ($(calc "\"%.1f\", $raw / 1048576") MiB) in ${R[$k:nfiles]} files$(
		((k > 0)) && echo ", ${R[$k:changed]:-?} of bf16 values changed")"
	echo
	line="| | plain disk"
	for c in "${COLS[@]}"; do line+=" | ${LABEL[$c]} | ${LABEL[$c]}/disk"; done
	echo "$line |"
	line="|---|---:"
	for c in "${COLS[@]}"; do line+="|---:|---:"; done
	echo "$line|"
	speed_row "cp, MB/s" cp "$raw" "$k"
	speed_row "cp + sync, MB/s" cpsync "$raw" "$k"
	speed_row "cold read, MB/s$( ((CAN_DROP)) || echo ' (NOT cold: cannot drop caches)')" cold "$raw" "$k"
	speed_row "warm read, MB/s (best of $REPEAT)" warm "$raw" "$k"
	local secs=() bytes=() rss=() ver=()
	for c in "${COLS[@]}"; do
		secs+=("${R[$k:${c}_cp]:--} / ${R[$k:${c}_cpsync]:--} / ${R[$k:${c}_cold]:--} / ${R[$k:${c}_warm]:--}")
		rss+=("$(fmt_mib "${R[$k:${c}_hwm_w]:-}") / $(fmt_mib "${R[$k:${c}_hwm_r]:-}")")
		ver+=("${R[$k:${c}_verify]:--}${R[$k:${c}_error]:+ (error: ${R[$k:${c}_error]})}")
	done
	text_row "seconds: cp / cp+sync / cold / warm" \
		"${R[$k:disk_cp]} / ${R[$k:disk_cpsync]} / ${R[$k:disk_cold]} / ${R[$k:disk_warm]}" "${secs[@]}"
	line="| stored bytes (ratio: / raw) | $raw"
	for c in "${COLS[@]}"; do
		if [[ $c == ckptfs ]]; then
			line+=" | ${R[$k:ckptfs_stored]:--} | $(fmt_ratio "${R[$k:ckptfs_stored]:-}" "$raw")"
		else
			line+=" | $raw | 1.0000"
		fi
	done
	echo "$line |"
	text_row "daemon peak RSS, MiB: write / read" - "${rss[@]}"
	text_row "read back = written" - "${ver[@]}"
	for c in "${COLS[@]}"; do
		if [[ -n ${R[$k:${c}_error]:-} ]]; then
			echo
			echo "**${LABEL[$c]} failed on $name: ${R[$k:${c}_error]}** (daemon log: $LOGS/$([[ $c == pt ]] && echo pt-mnt || echo mnt).log); its later checkpoints were not run."
		fi
	done
	if ((DO_CKPTFS)); then
		local xa=()
		for c in "${COLS[@]}"; do
			if [[ $c == ckptfs ]]; then xa+=("${R[$k:ckptfs_kind]:--} / ${R[$k:ckptfs_xstored]:--}"); else xa+=(-); fi
		done
		text_row "xattrs user.ckptfs.kind / .stored_bytes" - "${xa[@]}"
	fi

	if ((DO_BASELINES)) && [[ -f $RESULTS/baselines-$name.md ]]; then
		echo
		sed -n '/^| method/,/^$/p' "$RESULTS/baselines-$name.md" | sed '/^$/d' |
			sed "1s/^| method/| size of $name: method/"
		if [[ -n ${R[$k:ckptfs_stored]:-} ]]; then
			echo "| **ckptfs** | ${R[$k:ckptfs_stored]} | $(fmt_ratio "$raw" "${R[$k:ckptfs_stored]}" "%.2fx") | $(fmt_ratio "${R[$k:ckptfs_stored]}" "${R[$k:BL_XOR_ZSTD1]:-}" "%.3f") | ${R[$k:ckptfs_cp]} (cp) | $(mbps "$raw" "${R[$k:ckptfs_cp]}") | $(fmt_mib "${R[$k:ckptfs_hwm_w]:-}") MiB |"
		fi
	fi

	if ((DO_CKPTFS)); then
		local stored=${R[$k:ckptfs_stored]:-} cp_r cps_r warm_r
		cp_r=$(speed_ratio "${R[$k:ckptfs_cp]:-}" "${R[$k:disk_cp]}" | tr -d x)
		cps_r=$(speed_ratio "${R[$k:ckptfs_cpsync]:-}" "${R[$k:disk_cpsync]}" | tr -d x)
		warm_r=$(speed_ratio "${R[$k:ckptfs_warm]:-}" "${R[$k:disk_warm]}" | tr -d x)
		echo
		echo "Targets:"
		if ((k == 0)); then
			target "stored <= 0.75 x raw" "$(fmt_ratio "$stored" "$raw")" "<=" 0.75
			target "warm read >= 0.8 x disk" "$warm_r" ">=" 0.8
			target "write (cp) >= 0.6 x disk" "$cp_r" ">=" 0.6
			target "write (cp + sync) >= 0.6 x disk" "$cps_r" ">=" 0.6
			target "peak RSS <= 512 MiB while writing$( ((raw < 2000000000)) &&
				echo ' (the target is for a 2 GB checkpoint: run --big)')" \
				"$(fmt_mib "${R[$k:ckptfs_hwm_w]:-}")" "<=" 512
		else
			target "stored <= 0.85 x (xor + zstd -1)" \
				"$(fmt_ratio "$stored" "${R[$k:BL_XOR_ZSTD1]:-}" "%.3f")" "<=" 0.85
			if ((k == 1)); then
				target "1-step delta <= raw / 20" "$(fmt_ratio "$stored" "$raw")" "<=" 0.05
			fi
			target "cp >= 1.0 x plain-disk cp" "$cp_r" ">=" 1.0
			target "cp + sync >= 1.0 x plain-disk cp + sync" "$cps_r" ">=" 1.0
			target "warm read >= 0.7 x plain disk" "$warm_r" ">=" 0.7
		fi
	fi
}

report_summary() {
	local k raw st ref max=0 v
	echo
	echo "### Summary: ckptfs vs plain disk (speed ratios), stored bytes vs raw and vs xor+zstd-1"
	echo
	echo "| checkpoint | values changed | raw MiB | ckptfs stored/raw | xor+zstd-1/raw | ckptfs/xor+zstd-1 | cp | cp+sync | cold read | warm read | RSS w/r MiB |"
	echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
	for k in "${STEP_LIST[@]}"; do
		raw=${R[$k:raw]} st=${R[$k:ckptfs_stored]:-} ref=${R[$k:BL_XOR_ZSTD1]:-}
		echo "| $(step_name "$k") | ${R[$k:changed]:-base} | $(calc "\"%.1f\", $raw / 1048576")" \
			"| $(fmt_ratio "$st" "$raw") | $(fmt_ratio "$ref" "$raw") | $(fmt_ratio "$st" "$ref" "%.3f")" \
			"| $(speed_ratio "${R[$k:ckptfs_cp]:-}" "${R[$k:disk_cp]}")" \
			"| $(speed_ratio "${R[$k:ckptfs_cpsync]:-}" "${R[$k:disk_cpsync]}")" \
			"| $(speed_ratio "${R[$k:ckptfs_cold]:-}" "${R[$k:disk_cold]}")" \
			"| $(speed_ratio "${R[$k:ckptfs_warm]:-}" "${R[$k:disk_warm]}")" \
			"| $(fmt_mib "${R[$k:ckptfs_hwm_w]:-}") / $(fmt_mib "${R[$k:ckptfs_hwm_r]:-}") |"
		for v in "${R[$k:ckptfs_hwm_w]:-0}" "${R[$k:ckptfs_hwm_r]:-0}"; do
			if ((v > max)); then max=$v; fi
		done
	done
	if ((DO_CKPTFS)); then
		echo
		echo "ckptfs daemon peak RSS over the run: $(fmt_mib "$max") MiB" \
			"($( ((ONE_DAEMON)) && echo 'one daemon' || echo 'max over the daemon instances'))"
	fi
}

# ----------------------------------------------------------------------------- main

declare -A LABEL=([ckptfs]=ckptfs [pt]=passthrough_ll)

main() {
	local k name d notes=()
	BENCH_DIR_GIVEN=${BENCH_DIR:-}
	if [[ -n $BENCH_DIR_GIVEN ]]; then
		mkdir -p "$BENCH_DIR"
		BENCH_DIR=$(cd "$BENCH_DIR" && pwd)
		# Start from a clean slate, but only ever delete the subdirectories we make.
		for d in data disk store mnt pt-src pt-mnt results logs bin; do
			if mountpoint -q "$BENCH_DIR/$d" 2>/dev/null; then
				echo "$BENCH_DIR/$d is mounted; unmount it first" >&2
				exit 1
			fi
			rm -rf -- "${BENCH_DIR:?}/$d"
		done
	else
		BENCH_DIR=$(mktemp -d /tmp/ckptfs-bench.XXXXXX)
	fi
	export BENCH_DIR
	trap cleanup EXIT
	trap 'exit 130' INT TERM
	DATA=$BENCH_DIR/data DISK=$BENCH_DIR/disk RESULTS=$BENCH_DIR/results LOGS=$BENCH_DIR/logs
	mkdir -p "$DATA" "$DISK" "$RESULTS" "$LOGS"

	if ((DO_CKPTFS)) && [[ ! -x $CKPTFS ]]; then
		notes+=("ckptfs column skipped: $CKPTFS is not an executable (build it, or pass its path)")
		DO_CKPTFS=0
	elif ((DO_CKPTFS)); then
		CKPTFS_STORE=$BENCH_DIR/store CKPTFS_MNT=$BENCH_DIR/mnt
		mkdir -p "$CKPTFS_STORE" "$CKPTFS_MNT"
		COLS+=(ckptfs)
	else
		notes+=("ckptfs column skipped (--no-ckptfs)")
	fi
	if ((DO_PT)); then
		if build_passthrough; then
			PT_SRC=$BENCH_DIR/pt-src PT_MNT=$BENCH_DIR/pt-mnt
			mkdir -p "$PT_SRC" "$PT_MNT"
			COLS+=(pt)
			notes+=("passthrough_ll: the libfuse $(pkg-config --modversion fuse3 2>/dev/null || echo 3) example\
 built from its source, default options (multithreaded loop) + -o cache=always; stores raw bytes")
		else
			notes+=("passthrough_ll column $PT_NOTE")
			DO_PT=0
		fi
	elif ((BIG)); then
		notes+=("passthrough_ll column skipped in --big mode")
	else
		notes+=("passthrough_ll column skipped (--no-passthrough)")
	fi
	((CAN_DROP)) || notes+=("WARNING: cannot write /proc/sys/vm/drop_caches (not root?): cold reads are warm")
	for d in "${notes[@]}"; do log "$d"; done

	log "generating ${SIZE_MB} MiB checkpoints (steps $STEPS) into $DATA"
	$PY "$BENCH_SRC/gen_ckpt.py" --out "$DATA" --size-mb "$SIZE_MB" --steps "$STEPS" \
		--seed "$SEED" --lr "$LR" --files "$FILES" >"$RESULTS/gen.md"
	cat "$RESULTS/gen.md" >&2
	for k in "${STEP_LIST[@]}"; do
		name=$(step_name "$k")
		R[$k:raw]=$(bytes_of "$DATA/$name")
		R[$k:nfiles]=$(files_of "$DATA/$name" | wc -l)
		R[$k:changed]=$(awk -F'|' -v k="$k" '$2 + 0 == k && $3 ~ /%/ { gsub(/ /, "", $3); print $3 }' \
			"$RESULTS/gen.md")
	done

	local load0 load1
	load0=$(cut -d' ' -f1-3 /proc/loadavg)
	for k in "${STEP_LIST[@]}"; do
		name=$(step_name "$k")
		log "$name: plain disk"
		disk_checkpoint "$k"
		if ((DO_CKPTFS)) && [[ -z ${CKPTFS_FAILED:-} ]]; then
			log "$name: ckptfs"
			ckptfs_checkpoint "$k" || { CKPTFS_FAILED=1; stop_fs ckptfs; }
		fi
		if ((DO_PT)) && [[ -z ${PT_FAILED:-} ]]; then
			log "$name: passthrough_ll"
			pt_checkpoint "$k" || { PT_FAILED=1; stop_fs pt; }
		fi
	done
	if [[ -n $CKPTFS_PID ]]; then ckptfs_unmount || true; fi
	if [[ -n $PT_PID ]]; then pt_unmount || true; fi
	load1=$(cut -d' ' -f1-3 /proc/loadavg)

	if ((DO_BASELINES)); then
		local bl_opts=()
		((QUICK)) && bl_opts+=(--no-patch-from --no-xdelta)
		for k in "${STEP_LIST[@]}"; do
			name=$(step_name "$k")
			log "$name: baselines${bl_opts[*]:+ (${bl_opts[*]})}"
			if ((k == 0)); then
				$PY "$BENCH_SRC/baselines.py" "$DATA/$name" --env "$RESULTS/bl-$name.env" \
					>"$RESULTS/baselines-$name.md"
			else
				$PY "$BENCH_SRC/baselines.py" "$DATA/step-0000" "$DATA/$name" "${bl_opts[@]}" \
					--env "$RESULTS/bl-$name.env" >"$RESULTS/baselines-$name.md"
			fi
			R[$k:BL_XOR_ZSTD1]=$(sed -n 's/^BL_XOR_ZSTD1=//p' "$RESULTS/bl-$name.env")
		done
	fi

	{
		echo "## ckptfs benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
		echo
		echo "- machine: $(nproc) CPUs, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM," \
			"kernel $(uname -r); scratch $BENCH_DIR on $(df --output=source "$BENCH_DIR" | tail -1)" \
			"($(df --output=fstype "$BENCH_DIR" | tail -1 | tr -d ' '))"
		echo "- load average at start / end of the timed part: $load0 / $load1" \
			"(single runs on a shared machine are noisy: compare the ratios)"
		if ((DO_CKPTFS)); then
			echo "- ckptfs: $CKPTFS mount -f ${CKPTFS_MOUNT_OPTS:+$CKPTFS_MOUNT_OPTS }STORE MNT;" \
				"$( ((ONE_DAEMON)) && echo 'one daemon for the whole run' ||
					echo 'daemon restarted after each write and before each cold read')"
		fi
		for d in "${notes[@]}"; do echo "- $d"; done
		echo "- data: gen_ckpt.py --size-mb $SIZE_MB --steps $STEPS --seed $SEED --lr $LR --files $FILES"
		echo
		sed -n '/^| step/,$p' "$RESULTS/gen.md"
		for k in "${STEP_LIST[@]}"; do report_checkpoint "$k"; done
		report_summary
	} | tee "$RESULTS/results.md"
	if ((KEEP)) || [[ -n $BENCH_DIR_GIVEN ]]; then log "results saved in $RESULTS/results.md"; fi
}

main
