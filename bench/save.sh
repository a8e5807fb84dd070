#!/bin/bash
# save.sh: how fast ckptfs saves a checkpoint, against the FUSE ceiling, plain disk and
# the codec alone, interleaved, median of N (issue 11, items 1 and 2).
#
#   bench/save.sh [options] [CKPTFS_BIN]        (default: build/src/cli/ckptfs of this tree)
#
# For each size, gen_ckpt.py writes a bf16 base and deltas (default 1, 5, 25 steps).
# Then N rounds; in each round, for each checkpoint in order, one after the other:
#   disk     cp -r to a directory on the scratch filesystem, then sync (timed together)
#   ceiling  cp -r into bench/ceiling (a minimal FUSE filesystem that discards writes,
#            with ckptfs's max_write/readahead settings: bench/ceiling.c)
#   ckptfs   cp -r into MNT/sampler/step-XXXX of a daemon started for the round on an
#            empty local store (cp returns when close() committed the file durably),
#            then sync (the "cp + sync" column)
#   codec    build/bench/codec_bench -f FILE [-b BASE] -t 2: the chunk codec alone on
#            2 threads, data in memory, no FUSE, no hashing, no I/O
# Sources are read once before each cp (page cache), and sync runs before each one.
# Every figure is the median of the N rounds; ratios are of the medians. After the
# last round every file is compared (cmp) with its source through the mount.
# The daemon's peak RSS is VmHWM at the end of each round (max over rounds).
#
# --data DIR measures checkpoints already generated (DIR/step-XXXX/, one size), and
# --tsv FILE also writes the medians as tab-separated values (bench/run.sh merges them).
#
# The machine is shared: interleaving puts each ckptfs figure seconds away from its
# references, and the header prints the load average. Trust the ratios.
set -euo pipefail
export LC_ALL=C

BENCH_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TREE=$(dirname "$BENCH_SRC")
PY=/usr/bin/python3

usage() {
	cat <<EOF
usage: $0 [options] [CKPTFS_BIN]

  --sizes LIST     checkpoint sizes in MiB (default 512,2048)
  --steps LIST     checkpoints, base first (default 0,1,5,25)
  --big-steps LIST checkpoints for sizes over 1024 MiB (default 0,1)
  --repeat N       rounds; medians of N (default 3)
  --files N        safetensors shards per checkpoint (default 1)
  --lr X           gen_ckpt.py learning rate (default 1e-5)
  --compare BIN    also measure another ckptfs binary (say, a build of main) in the
                   same rounds, right after this one: the "before" column
  --no-codec       skip the codec-alone rows
  --data DIR       use the checkpoints in DIR/step-XXXX/ (made by gen_ckpt.py) instead
                   of generating them; one size only (--sizes names it); DIR is kept
  --tsv FILE       also write the medians as tab-separated values (one row per
                   checkpoint, a header line; seconds, bytes, KiB): bench/run.sh reads it
  --keep           keep the scratch directory
environment: BENCH_DIR (scratch, default a new /tmp/ckptfs-save.XXXXXX),
  CKPTFS_MOUNT_OPTS (extra "ckptfs mount -f" options), COMPARE_MOUNT_OPTS (the same
  for --compare; default CKPTFS_MOUNT_OPTS), CEILING (a ceiling binary),
  CODEC_BENCH (a codec_bench binary)
EOF
}

CKPTFS=$TREE/build/src/cli/ckptfs
SIZES=512,2048 STEPS=0,1,5,25 BIG_STEPS=0,1 REPEAT=3 FILES=1 LR=1e-5 DO_CODEC=1 KEEP=0 CKPTFS_B='' DATA_GIVEN='' TSV=''
while (($#)); do
	case $1 in
	--sizes) SIZES=$2; shift 2 ;;
	--steps) STEPS=$2; shift 2 ;;
	--big-steps) BIG_STEPS=$2; shift 2 ;;
	--repeat) REPEAT=$2; shift 2 ;;
	--files) FILES=$2; shift 2 ;;
	--lr) LR=$2; shift 2 ;;
	--compare) CKPTFS_B=$2; shift 2 ;;
	--no-codec) DO_CODEC=0; shift ;;
	--data) DATA_GIVEN=$(cd "$2" && pwd); shift 2 ;;
	--tsv) TSV=$2; shift 2 ;;
	--keep) KEEP=1; shift ;;
	-h | --help) usage; exit 0 ;;
	-*) echo "unknown option $1" >&2; usage >&2; exit 2 ;;
	*) CKPTFS=$1; shift ;;
	esac
done
[[ -x $CKPTFS ]] || { echo "no ckptfs binary at $CKPTFS (build it, or pass its path)" >&2; exit 2; }
[[ -z $CKPTFS_B || -x $CKPTFS_B ]] || { echo "--compare: no binary at $CKPTFS_B" >&2; exit 2; }

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
calc() { awk "BEGIN { printf $1 }"; }
step_name() { printf 'step-%04d' "$1"; }
bytes_of() { find "$1" -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }'; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

BENCH_DIR=${BENCH_DIR:-$(mktemp -d /tmp/ckptfs-save.XXXXXX)}
mkdir -p "$BENCH_DIR"
LOGS=$BENCH_DIR/logs
mkdir -p "$LOGS"
MOUNTED=()
cleanup() {
	local m
	for m in "${MOUNTED[@]}"; do fusermount3 -u -z "$m" 2>/dev/null || true; done
	if ((KEEP)); then log "scratch kept in $BENCH_DIR"; else rm -rf -- "$BENCH_DIR"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The ceiling filesystem: built with the tree, else from its source here.
CEILING=${CEILING:-$TREE/build/bench/ceiling}
if [[ ! -x $CEILING ]]; then
	CEILING=$BENCH_DIR/ceiling
	# shellcheck disable=SC2046 # pkg-config output is word-split on purpose
	cc -O2 -Wall -o "$CEILING" "$BENCH_SRC/ceiling.c" $(pkg-config --cflags --libs fuse3) ||
		{ echo "cannot build bench/ceiling.c (cc + pkg-config fuse3)" >&2; exit 1; }
fi
CODEC_BENCH=${CODEC_BENCH:-$TREE/build/bench/codec_bench}
if ((DO_CODEC)) && [[ ! -x $CODEC_BENCH ]]; then
	log "no codec_bench at $CODEC_BENCH: codec-alone rows skipped"
	DO_CODEC=0
fi

# mount_fs MNT LOG CMD...: start a foreground FUSE daemon, wait for the mount; sets FS_PID
mount_fs() {
	local mnt=$1 lg=$2 i
	shift 2
	mkdir -p "$mnt"
	"$@" >>"$lg" 2>&1 &
	FS_PID=$!
	for ((i = 0; i < 200; i++)); do
		if mountpoint -q "$mnt"; then MOUNTED+=("$mnt"); return 0; fi
		kill -0 "$FS_PID" 2>/dev/null || break
		sleep 0.05
	done
	echo "daemon for $mnt did not mount; see $lg" >&2
	tail -n 20 "$lg" >&2
	exit 1
}
unmount_fs() {
	local mnt=$1 pid=$2 m keep=()
	fusermount3 -u "$mnt"
	wait "$pid" || { echo "daemon on $mnt exited with status $?" >&2; exit 1; }
	for m in "${MOUNTED[@]}"; do [[ $m == "$mnt" ]] || keep+=("$m"); done
	MOUNTED=("${keep[@]}")
}
# timed_cp SRC DST: seconds of cp -r SRC/. DST/ (DST created first, untimed)
timed_cp() {
	local t0
	mkdir -p "$2"
	cat "$1"/* >/dev/null
	sync
	t0=$EPOCHREALTIME
	cp -r -- "$1/." "$2/"
	secs "$t0" "$EPOCHREALTIME"
}

declare -A R          # R[size:step:metric] = space-separated values, one per round
add() { R[$1]="${R[$1]:-} $2"; }

run_size() {
	local mb=$1 steps=$2 data k name t0 t1 t pid cpid bpid='' r base_file f
	IFS=, read -r -a SL <<<"$steps"
	if [[ -n $DATA_GIVEN ]]; then
		data=$DATA_GIVEN
		for k in "${SL[@]}"; do
			[[ -d $data/$(step_name "$k") ]] || { echo "--data: no $data/$(step_name "$k")" >&2; exit 2; }
		done
	else
		data=$BENCH_DIR/data-$mb
		log "$mb MiB: generating steps $steps"
		rm -rf -- "$data"
		$PY "$BENCH_SRC/gen_ckpt.py" --out "$data" --size-mb "$mb" --steps "$steps" --seed 1 \
			--lr "$LR" --files "$FILES" >"$LOGS/gen-$mb.md"
	fi
	for k in "${SL[@]}"; do R[$mb:$k:raw]=$(bytes_of "$data/$(step_name "$k")"); done

	mount_fs "$BENCH_DIR/ceil" "$LOGS/ceiling.log" "$CEILING" -o "size=${R[$mb:0:raw]}" "$BENCH_DIR/ceil"
	cpid=$FS_PID
	for ((r = 1; r <= REPEAT; r++)); do
		# basecache: where a --base-cache-dir in the options should point (emptied per round)
		rm -rf -- "$BENCH_DIR/store" "$BENCH_DIR/disk" "$BENCH_DIR/store-b" "$BENCH_DIR/basecache"
		mkdir -p "$BENCH_DIR/store" "$BENCH_DIR/mnt" "$BENCH_DIR/disk"
		if [[ -n $CKPTFS_B ]]; then
			mkdir -p "$BENCH_DIR/store-b"
			# shellcheck disable=SC2086
			mount_fs "$BENCH_DIR/mnt-b" "$LOGS/ckptfs-b-$mb-$r.log" "$CKPTFS_B" mount -f \
				${COMPARE_MOUNT_OPTS-${CKPTFS_MOUNT_OPTS:-}} "$BENCH_DIR/store-b" "$BENCH_DIR/mnt-b"
			bpid=$FS_PID
		fi
		sync
		# shellcheck disable=SC2086 # CKPTFS_MOUNT_OPTS is word-split on purpose
		mount_fs "$BENCH_DIR/mnt" "$LOGS/ckptfs-$mb-$r.log" "$CKPTFS" mount -f ${CKPTFS_MOUNT_OPTS:-} \
			"$BENCH_DIR/store" "$BENCH_DIR/mnt"
		pid=$FS_PID
		for k in "${SL[@]}"; do
			name=$(step_name "$k")
			log "$mb MiB, round $r/$REPEAT: $name"
			# plain disk: cp, then sync
			t0=$EPOCHREALTIME
			t=$(timed_cp "$data/$name" "$BENCH_DIR/disk/$name")
			t1=$EPOCHREALTIME
			sync
			add "$mb:$k:disk_cp" "$t"
			add "$mb:$k:disk_cpsync" "$(awk -v a="$t" -v s="$(secs "$t1" "$EPOCHREALTIME")" 'BEGIN { printf "%.3f", a + s }')"
			# the ceiling
			add "$mb:$k:ceil" "$(timed_cp "$data/$name" "$BENCH_DIR/ceil/r$r/$name")"
			# ckptfs
			((r == 1)) && { sync; R[$mb:$k:du0]=$(du -sb "$BENCH_DIR/store" | cut -f1); }
			t=$(timed_cp "$data/$name" "$BENCH_DIR/mnt/sampler/$name")
			t1=$EPOCHREALTIME
			sync
			((r == 1)) && R[$mb:$k:du]=$(($(du -sb "$BENCH_DIR/store" | cut -f1) - ${R[$mb:$k:du0]}))
			add "$mb:$k:ck_cp" "$t"
			add "$mb:$k:ck_cpsync" "$(awk -v a="$t" -v s="$(secs "$t1" "$EPOCHREALTIME")" 'BEGIN { printf "%.3f", a + s }')"
			if [[ -n $CKPTFS_B ]]; then
				add "$mb:$k:b_cp" "$(timed_cp "$data/$name" "$BENCH_DIR/mnt-b/sampler/$name")"
			fi
			# the codec alone, 2 threads (memory permitting: it holds the files)
			if ((DO_CODEC)); then
				f=$(find "$data/$name" -type f -printf '%s %f\n' | sort -rn | head -1 | cut -d' ' -f2-)
				base_file=$data/step-0000/$f
				if ((k == 0)); then
					t=$("$CODEC_BENCH" -f "$data/$name/$f" -t 2 -r 1)
					add "$mb:$k:codec" "$(sed -n 's/.*encode \([0-9]*\) MB\/s.*/\1/p' <<<"$t")"
				else
					t=$("$CODEC_BENCH" -f "$data/$name/$f" -b "$base_file" -t 2 -r 1)
					add "$mb:$k:codec" "$(sed -n 's/.*decode base chunk + encode: \([0-9]*\) MB\/s.*/\1/p' <<<"$t")"
					add "$mb:$k:codec_raw" "$(sed -n 's/.*raw base bytes: \([0-9]*\) MB\/s.*/\1/p' <<<"$t")"
				fi
				add "$mb:$k:codec_bytes" "$(stat -c %s "$data/$name/$f")"
			fi
			if ((r == 1)); then
				R[$mb:$k:kind]=$(getfattr --only-values -n user.ckptfs.kind "$BENCH_DIR/mnt/sampler/$name" 2>/dev/null || echo -)
				R[$mb:$k:stored]=$(getfattr --only-values -n user.ckptfs.stored_bytes "$BENCH_DIR/mnt/sampler/$name" 2>/dev/null || echo -)
			fi
			rm -rf -- "$BENCH_DIR/disk/$name" "$BENCH_DIR/ceil/r$r/$name"
		done
		add "$mb:rss" "$(awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status")"
		if [[ -n $CKPTFS_B ]]; then
			add "$mb:rss_b" "$(awk '/^VmHWM:/ { print $2 }' "/proc/$bpid/status")"
			unmount_fs "$BENCH_DIR/mnt-b" "$bpid"
			rm -rf -- "$BENCH_DIR/store-b"
		fi
		if ((r == REPEAT)); then
			for k in "${SL[@]}"; do
				name=$(step_name "$k")
				for f in "$data/$name"/*; do
					cmp -s -- "$f" "$BENCH_DIR/mnt/sampler/$name/$(basename "$f")" ||
						R[$mb:$k:verify]="FAIL: $(basename "$f")"
				done
				: "${R[$mb:$k:verify]:=ok}"
			done
		fi
		unmount_fs "$BENCH_DIR/mnt" "$pid"
	done
	unmount_fs "$BENCH_DIR/ceil" "$cpid"
	[[ -n $DATA_GIVEN ]] || rm -rf -- "$data"
	rm -rf -- "$BENCH_DIR/store" "$BENCH_DIR/disk"
}

# mbps BYTES SECONDS
mbps() { calc "\"%.0f\", $1 / 1e6 / ($2 > 0 ? $2 : 1e-9)"; }
ratio() { calc "\"%.2f\", $1 / ($2 > 0 ? $2 : 1e-9)"; }

report() {
	local mb k steps raw cp cps dcps ceil codec codec_r b ck_mbs ck_s_mbs d_mbs c_mbs rss
	echo "## ckptfs save benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo
	echo "- machine: $(nproc) CPUs, kernel $(uname -r); load average at start / end: $LOAD0 / $(cut -d' ' -f1-3 /proc/loadavg)" \
		"(shared machine: figures are medians of $REPEAT interleaved rounds; trust the ratios)"
	echo "- ckptfs: $CKPTFS mount -f ${CKPTFS_MOUNT_OPTS:-}STORE MNT (local store on $(df --output=fstype "$BENCH_DIR" | tail -1 | tr -d ' '))," \
		"one daemon per round; ceiling: $CEILING; data: gen_ckpt.py --lr $LR --files $FILES"
	echo "- MB/s = raw bytes / wall seconds. ckptfs \"cp\" ends when close() has committed the file durably;" \
		"disk and ckptfs \"cp + sync\" include the sync after it. codec = codec_bench -t 2 on the largest file" \
		"(a delta: decode the base chunk, then encode)."
	echo
	if [[ -n $CKPTFS_B ]]; then
		echo "- \"before\": $CKPTFS_B, measured right after ckptfs in every round (its own daemon and store)."
	fi
	echo
	echo "| MiB | checkpoint | kind | disk cp+sync | ceiling | ckptfs cp | ckptfs cp+sync | ckptfs/ceiling | ckptfs/disk | codec 2 thr | ckptfs/codec | stored/raw | read back |$(
		[[ -n $CKPTFS_B ]] && echo " before: cp | ckptfs/before |")"
	echo "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|$([[ -n $CKPTFS_B ]] && echo "---:|---:|")"
	for mb in "${SIZE_LIST[@]}"; do
		if ((mb > 1024)); then steps=$BIG_STEPS; else steps=$STEPS; fi
		IFS=, read -r -a SL <<<"$steps"
		for k in "${SL[@]}"; do
			raw=${R[$mb:$k:raw]}
			# shellcheck disable=SC2086
			{
				cp=$(median ${R[$mb:$k:ck_cp]}); cps=$(median ${R[$mb:$k:ck_cpsync]})
				dcps=$(median ${R[$mb:$k:disk_cpsync]}); ceil=$(median ${R[$mb:$k:ceil]})
			}
			ck_mbs=$(mbps "$raw" "$cp") ck_s_mbs=$(mbps "$raw" "$cps")
			d_mbs=$(mbps "$raw" "$dcps") c_mbs=$(mbps "$raw" "$ceil")
			codec=- codec_r=-
			if ((DO_CODEC)); then
				# shellcheck disable=SC2086
				codec=$(median ${R[$mb:$k:codec]})
				codec_r=$(ratio "$ck_mbs" "$codec")
			fi
			echo "| $mb | $(step_name "$k") | ${R[$mb:$k:kind]} | $d_mbs | $c_mbs | $ck_mbs | $ck_s_mbs" \
				"| $(ratio "$ck_mbs" "$c_mbs") | $(ratio "$ck_s_mbs" "$d_mbs")" \
				"| $codec | $codec_r" \
				"| $([[ ${R[$mb:$k:stored]} =~ ^[0-9]+$ ]] && calc "\"%.4f\", ${R[$mb:$k:stored]} / $raw" || echo -)" \
				"| ${R[$mb:$k:verify]:--} |$(
					# shellcheck disable=SC2086
					[[ -n $CKPTFS_B ]] && b=$(mbps "$raw" "$(median ${R[$mb:$k:b_cp]})") &&
						echo " $b | $(ratio "$ck_mbs" "$b") |")"
		done
	done
	echo
	echo "Rounds (seconds, in order): ckptfs cp / ceiling cp / disk cp+sync$([[ -n $CKPTFS_B ]] && echo ' / before cp')"
	echo
	for mb in "${SIZE_LIST[@]}"; do
		if ((mb > 1024)); then steps=$BIG_STEPS; else steps=$STEPS; fi
		IFS=, read -r -a SL <<<"$steps"
		for k in "${SL[@]}"; do
			echo "- $mb MiB $(step_name "$k"):${R[$mb:$k:ck_cp]} /${R[$mb:$k:ceil]} /${R[$mb:$k:disk_cpsync]}$(
				[[ -n $CKPTFS_B ]] && echo " /${R[$mb:$k:b_cp]}")"
		done
		# shellcheck disable=SC2086
		rss=$(printf '%s\n' ${R[$mb:rss]} | sort -n | tail -1)
		echo "- $mb MiB: daemon peak RSS (VmHWM, max over rounds): $((rss / 1024)) MiB$(
			# shellcheck disable=SC2086
			[[ -n $CKPTFS_B ]] && echo "; before: $(($(printf '%s\n' ${R[$mb:rss_b]} | sort -n | tail -1) / 1024)) MiB")"
	done
}

# write_tsv FILE: the medians, one row per checkpoint (seconds; bytes; KiB; MB/s for codec)
write_tsv() {
	local mb k steps rss
	printf 'mib\tstep\tkind\traw_bytes\tdisk_cpsync_s\tceiling_s\tckptfs_cp_s\tckptfs_cpsync_s\tcodec_mbps\tstored_bytes\tstore_growth_bytes\tread_back\tdaemon_hwm_kib\trounds_ckptfs_cp_s\trounds_ceiling_s\trounds_disk_cpsync_s\n'
	for mb in "${SIZE_LIST[@]}"; do
		if ((mb > 1024)); then steps=$BIG_STEPS; else steps=$STEPS; fi
		IFS=, read -r -a SL <<<"$steps"
		# shellcheck disable=SC2086
		rss=$(printf '%s\n' ${R[$mb:rss]} | sort -n | tail -1)
		for k in "${SL[@]}"; do
			# shellcheck disable=SC2086
			printf '%s\t' "$mb" "$k" "${R[$mb:$k:kind]}" "${R[$mb:$k:raw]}" \
				"$(median ${R[$mb:$k:disk_cpsync]})" "$(median ${R[$mb:$k:ceil]})" \
				"$(median ${R[$mb:$k:ck_cp]})" "$(median ${R[$mb:$k:ck_cpsync]})" \
				"$( ((DO_CODEC)) && median ${R[$mb:$k:codec]} || echo -)" "${R[$mb:$k:stored]}" \
				"${R[$mb:$k:du]:--}" "${R[$mb:$k:verify]:--}" "$rss" \
				"$(tr ' ' , <<<"${R[$mb:$k:ck_cp]# }")" "$(tr ' ' , <<<"${R[$mb:$k:ceil]# }")"
			tr ' ' , <<<"${R[$mb:$k:disk_cpsync]# }"
		done
	done
}

IFS=, read -r -a SIZE_LIST <<<"$SIZES"
if [[ -n $DATA_GIVEN ]] && ((${#SIZE_LIST[@]} != 1)); then
	echo "--data: give one size (--sizes)" >&2
	exit 2
fi
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
for mb in "${SIZE_LIST[@]}"; do
	if ((mb > 1024)); then run_size "$mb" "$BIG_STEPS"; else run_size "$mb" "$STEPS"; fi
done
mkdir -p "$BENCH_DIR/results"
report | tee "$BENCH_DIR/results/save.md"
[[ -z $TSV ]] || write_tsv >"$TSV"
if ! ((KEEP)); then
	out=/tmp/ckptfs-save-$(date +%Y%m%d-%H%M%S).md
	cp -- "$BENCH_DIR/results/save.md" "$out" && log "results saved in $out"
fi
