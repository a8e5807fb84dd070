#!/bin/bash
# s3-stop.sh: stop the S3 server that scripts/s3-start.sh started.
#
# usage: scripts/s3-stop.sh [BASEDIR] [--purge]     (default BASEDIR: $S3_DIR
#        or /tmp/ckptfs-s3); --purge also deletes BASEDIR/ceph (all data).
#
# Only PIDs recorded in BASEDIR/ceph/run/pids are signalled, and only while
# /proc/PID/cmdline still shows the recorded binary with this cluster's
# ceph.conf: never by name (no pkill/killall), so other clusters and recycled
# PIDs are left alone.
set -uo pipefail

BASE=${S3_DIR:-/tmp/ckptfs-s3}
PURGE=0
for a in "$@"; do
	case $a in
	--purge) PURGE=1 ;;
	*) BASE=$a ;;
	esac
done
if [ ! -d "$BASE/ceph" ]; then
	echo "[s3-stop] nothing at $BASE/ceph" >&2
	exit 0
fi
D=$(cd "$BASE/ceph" && pwd)
PIDS=$D/run/pids

ours() {
	[ -r "/proc/$1/cmdline" ] &&
		tr '\0' ' ' < "/proc/$1/cmdline" | grep -q -- "$2 .*-c $D/ceph.conf"
}

# stop_group REGEX: TERM the matching daemons, wait up to 15 s, then KILL.
stop_group() {
	local sel=() n p b x
	while read -r n p b; do
		if [[ $n =~ $1 ]] && ours "$p" "$b"; then
			kill -TERM "$p" 2>/dev/null
			sel+=("$p:$b:$n")
		fi
	done < "$PIDS"
	for x in ${sel[@]+"${sel[@]}"}; do
		p=${x%%:*}; x=${x#*:}; b=${x%%:*}; n=${x#*:}
		for _ in $(seq 150); do ours "$p" "$b" || break; sleep 0.1; done
		if ours "$p" "$b"; then
			kill -KILL "$p" 2>/dev/null
			echo "[s3-stop] $n ($p) needed SIGKILL" >&2
		fi
		echo "[s3-stop] stopped $n (pid $p)" >&2
	done
}

if [ -f "$PIDS" ]; then
	stop_group '^rgw'	# the gateway first,
	stop_group '^osd'	# then the OSD while the monitor can still ack it,
	stop_group '^mon'	# then the monitor
	rm -f "$PIDS"
fi
if [ $PURGE = 1 ]; then
	rm -rf "$D"
	echo "[s3-stop] removed $D" >&2
fi
exit 0
