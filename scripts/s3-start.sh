#!/bin/bash
# s3-start.sh: a throw-away S3 server on 127.0.0.1 for the ckptfs tests.
#
# Owns: installing (apt-get, once) and starting a single-node Ceph cluster
# (one ceph-mon, one ceph-osd) with a RADOS Gateway serving S3, then proving
# that SigV4-signed requests work. Does not own: the tests themselves.
#
# usage:  scripts/s3-start.sh [PORT] [BASEDIR] > s3.env || exit 1; . ./s3.env
#   PORT     S3 port on 127.0.0.1; 0 or empty picks a free one    (env S3_PORT)
#   BASEDIR  config, keyring, mon db, OSD store, logs and PIDs go to
#            BASEDIR/ceph; default /tmp/ckptfs-s3                (env S3_DIR)
# env knobs:
#   S3_ACCESS_KEY / S3_SECRET_KEY  user to create (default ckptfs-test / ckptfs-test-secret)
#   S3_CEPH_STORE    memstore (default; RAM only, needs no O_DIRECT) | bluestore (sparse file)
#   S3_STORE_BYTES   memstore cap / bluestore file size (default 4 GiB / 20 GiB)
#   S3_NO_INSTALL=1  never run apt-get; fail if packages are missing
#   S3_START_TIMEOUT seconds to wait for each step (default 120)
#
# stdout carries ONLY `export` lines: S3_ENDPOINT S3_ACCESS_KEY S3_SECRET_KEY
# S3_REGION S3_DIR and the same values as CKPTFS_TEST_S3_* (what
# tests/unit/check_store reads). Progress goes to stderr. The exit status is 0
# only when signed requests work, so never `eval "$(s3-start.sh)"`: a failed
# start would go unnoticed. Write a file and check the status instead.
#
# Each start wipes BASEDIR/ceph and builds a fresh cluster, unless a cluster
# this script started there is still running; then its exports are printed
# again. Stop with scripts/s3-stop.sh BASEDIR [--purge].
set -euo pipefail

PORT=${1:-${S3_PORT:-0}}
BASE=${2:-${S3_DIR:-/tmp/ckptfs-s3}}
AK=${S3_ACCESS_KEY:-ckptfs-test}
SK=${S3_SECRET_KEY:-ckptfs-test-secret}
REGION=us-east-1
STORE=${S3_CEPH_STORE:-memstore}
TMO=${S3_START_TIMEOUT:-120}
mkdir -p "$BASE"
BASE=$(cd "$BASE" && pwd)
D=$BASE/ceph
PIDS=$D/run/pids	# "name pid binary" per line; written by us, not the daemons
T0=$(date +%s%N)

log() {
	awk -v t="$(( $(date +%s%N) - T0 ))" -v m="$*" \
		'BEGIN { printf "[s3-start %6.2fs] %s\n", t / 1e9, m }' >&2
}

# ours PID BINARY: PID still runs BINARY with this cluster's ceph.conf. A
# recycled PID of some other process must never be signalled.
ours() {
	[ -r "/proc/$1/cmdline" ] &&
		tr '\0' ' ' < "/proc/$1/cmdline" | grep -q -- "$2 .*-c $D/ceph.conf"
}

# Stop what we recorded, gateway first, monitor last (the OSD needs the
# monitor to acknowledge its shutdown). Same order as s3-stop.sh.
stop_cluster() {
	local grp n p b x sel
	[ -f "$PIDS" ] || return 0
	for grp in '^rgw' '^osd' '^mon'; do
		sel=()
		while read -r n p b; do
			if [[ $n =~ $grp ]] && ours "$p" "$b"; then
				kill -TERM "$p" 2>/dev/null && sel+=("$p:$b")
			fi
		done < "$PIDS"
		for x in ${sel[@]+"${sel[@]}"}; do
			p=${x%%:*}; b=${x#*:}
			for _ in $(seq 150); do ours "$p" "$b" || break; sleep 0.1; done
			ours "$p" "$b" && kill -KILL "$p" 2>/dev/null
		done
	done
	rm -f "$PIDS"
}

die() {
	local f
	log "ERROR: $*"
	if [ -d "$D/log" ]; then
		for f in "$D"/log/*; do
			echo "--- $f (tail)" >&2
			tail -n 15 "$f" >&2 || true
		done
	fi
	stop_cluster
	exit 1
}

exports() {
	cat <<EOF
export S3_ENDPOINT=http://127.0.0.1:$1
export S3_ACCESS_KEY=$AK
export S3_SECRET_KEY=$SK
export S3_REGION=$REGION
export S3_DIR=$BASE
export CKPTFS_TEST_S3_ENDPOINT=http://127.0.0.1:$1
export CKPTFS_TEST_S3_ACCESS_KEY=$AK
export CKPTFS_TEST_S3_SECRET_KEY=$SK
export CKPTFS_TEST_S3_REGION=$REGION
EOF
}

# ---- 1. packages (idempotent): Debian 12 ships Ceph 16.2 with radosgw ----
need=()
for b in ceph-mon:ceph-mon ceph-osd:ceph-osd radosgw:radosgw ceph:ceph-common \
	 monmaptool:ceph-base uuidgen:uuid-runtime curl:curl python3:python3; do
	command -v "${b%%:*}" >/dev/null 2>&1 || need+=("${b#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
	if [ "${S3_NO_INSTALL:-0}" = 1 ]; then
		echo "[s3-start] missing packages: ${need[*]} (S3_NO_INSTALL=1)" >&2
		exit 1
	fi
	if [ "$(id -u)" != 0 ]; then
		echo "[s3-start] missing packages: ${need[*]}; run as root or:" \
		     "sudo apt-get install --no-install-recommends ${need[*]}" >&2
		exit 1
	fi
	log "installing ${need[*]} (apt-get, about 57 packages, ~60 s once)"
	export DEBIAN_FRONTEND=noninteractive
	apt-get -o DPkg::Lock::Timeout=600 update -q >&2 || true
	apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends \
		"${need[@]}" >&2
	T0=$(date +%s%N)
fi

# ---- 2. already running from an earlier start? ----
if [ -f "$PIDS" ] && [ -f "$D/port" ]; then
	all=1
	while read -r n p b; do ours "$p" "$b" || all=0; done < "$PIDS"
	if [ $all = 1 ] && curl -s -o /dev/null "http://127.0.0.1:$(cat "$D/port")/"; then
		log "cluster in $D already running"
		exports "$(cat "$D/port")"
		exit 0
	fi
	log "stale state in $D: stopping leftovers"
	stop_cluster
fi

# ---- 3. a fresh configuration ----
free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
[ "$PORT" = 0 ] && PORT=$(free_port)
if curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$PORT/"; then
	log "ERROR: port $PORT already answers (another server?)"
	exit 1
fi
MONPORT=${S3_MON_PORT:-$(free_port)}
rm -rf "$D"
mkdir -p "$D"/{run,log,mon.a,osd.0,rgw.a}
echo "$PORT" > "$D/port"
FSID=$(uuidgen)
if [ "$STORE" = memstore ]; then
	BYTES=${S3_STORE_BYTES:-4294967296}
else
	BYTES=${S3_STORE_BYTES:-21474836480}
fi
# Why the less obvious settings are there:
#  - cephx stays on: with auth off radosgw hangs for 300 s at start;
#  - paxos propose interval 0.1: a lone monitor commits pool creation in ~1 s
#    instead of ~9 s;
#  - 8 PGs per pool and mon max pg per osd 1000: radosgw creates many pools and
#    the single OSD would otherwise hit its PG limit;
#  - every address on 127.0.0.1: nothing listens beyond loopback;
#  - rgw gc: see below.
cat > "$D/ceph.conf" <<EOF
[global]
fsid = $FSID
mon host = v2:127.0.0.1:$MONPORT
mon initial members = a
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind ipv6 = false
run dir = $D/run
admin socket = $D/run/\$name.asok
log file = $D/log/\$name.log
keyring = $D/keyring
auth allow insecure global id reclaim = false
client mount timeout = 60
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon data avail warn = 1
mon data avail crit = 0
mon max pg per osd = 1000
[mon]
mon data = $D/mon.\$id
paxos propose interval = 0.1
paxos min wait = 0.01
[osd]
osd data = $D/osd.\$id
osd objectstore = $STORE
osd memory target = 1073741824
memstore device bytes = $BYTES
bluestore block path = $D/osd.\$id/block.file
bluestore block create = true
bluestore block size = $BYTES
[client.rgw.a]
rgw frontends = beast endpoint=127.0.0.1:$PORT
rgw data = $D/rgw.a
rgw thread pool size = 32
# Collect the data of deleted and overwritten objects within seconds, not the
# default 2 h: with memstore that garbage is RAM, and repeated test runs would
# otherwise fill the store until writes fail.
rgw gc obj min wait = 5
rgw gc processor period = 10
rgw gc processor max time = 10
EOF
export CEPH_CONF=$D/ceph.conf
K=$D/keyring
ceph-authtool --create-keyring "$K" --gen-key -n mon. --cap mon 'allow *' >/dev/null
ceph-authtool "$K" --gen-key -n client.admin --cap mon 'allow *' --cap osd 'allow *' \
	--cap mgr 'allow *' --cap mds 'allow *' >/dev/null
ceph-authtool "$K" --gen-key -n client.rgw.a --cap mon 'allow rw' --cap osd 'allow rwx' \
	--cap mgr 'allow rw' >/dev/null
monmaptool --create --addv a "[v2:127.0.0.1:$MONPORT]" --fsid "$FSID" "$D/monmap" >/dev/null

# run BINARY NAME ARGS...: a daemon in the foreground (-f) in its own session,
# so it outlives this script; its PID is recorded for s3-stop.sh.
run() {
	local bin=$1 name=$2
	shift 2
	setsid "$bin" -f -c "$D/ceph.conf" "$@" >"$D/log/$name.out" 2>&1 </dev/null &
	echo "$name $! $bin" >> "$PIDS"
}

waitfor() {
	local what=$1 end=$(( $(date +%s) + TMO ))
	shift
	until "$@" >/dev/null 2>&1; do
		[ "$(date +%s)" -lt "$end" ] || die "timeout waiting for $what"
		while read -r n p b; do
			ours "$p" "$b" || die "$n (pid $p) died while waiting for $what"
		done < "$PIDS"
		sleep 0.1
	done
}
C=(timeout 60 ceph -c "$D/ceph.conf" --connect-timeout 30)

# ---- 4. monitor ----
ceph-mon -c "$D/ceph.conf" --mkfs -i a --monmap "$D/monmap" --keyring "$K" \
	>"$D/log/mon-mkfs.out" 2>&1 || die "ceph-mon --mkfs"
: > "$PIDS"
run ceph-mon mon.a -i a
waitfor "monitor quorum" "${C[@]}" mon stat
log "monitor up on 127.0.0.1:$MONPORT"

# ---- 5. one OSD ----
OSD_UUID=$(uuidgen)
OSD_KEY=$(ceph-authtool --gen-print-key)
ID=$(echo "{\"cephx_secret\": \"$OSD_KEY\"}" | "${C[@]}" osd new "$OSD_UUID" -i -) ||
	die "ceph osd new"
ceph-authtool "$K" --add-key "$OSD_KEY" -n "osd.$ID" >/dev/null
ceph-osd -c "$D/ceph.conf" -i "$ID" --mkfs --osd-uuid "$OSD_UUID" \
	>"$D/log/osd-mkfs.out" 2>&1 || die "ceph-osd --mkfs"
run ceph-osd "osd.$ID" -i "$ID"
osd_up() { "${C[@]}" osd dump | grep -q "^osd.$ID up"; }
waitfor "osd.$ID up" osd_up
log "osd.$ID ($STORE) up"

# ---- 6. RADOS Gateway and the S3 user ----
run radosgw rgw.a -n client.rgw.a
waitfor "radosgw on :$PORT" curl -sf -o /dev/null "http://127.0.0.1:$PORT/"
timeout 60 radosgw-admin -c "$D/ceph.conf" user create --uid ckptfs-test \
	--display-name "ckptfs test" --access-key "$AK" --secret-key "$SK" \
	>"$D/log/user-create.out" 2>&1 || die "radosgw-admin user create"
log "radosgw answers on 127.0.0.1:$PORT"

# ---- 7. signed warm-up ----
# Proves SigV4 works and makes radosgw create its index/data pools now: the
# first bucket after a start otherwise takes seconds, which a test with a
# short deadline would see as a timeout.
s3() {
	local m=$1 p=$2
	shift 2
	curl -sf -o /dev/null --aws-sigv4 "aws:amz:$REGION:s3" --user "$AK:$SK" \
		-H "x-amz-content-sha256: UNSIGNED-PAYLOAD" -X "$m" "$@" \
		"http://127.0.0.1:$PORT$p"
}
s3 PUT /s3-warmup || die "signed CreateBucket failed"
s3 PUT /s3-warmup/o --data-binary warmup || die "signed PutObject failed"
s3 DELETE /s3-warmup/o || log "warning: could not delete the warm-up object"
s3 DELETE /s3-warmup || log "warning: could not delete the warm-up bucket"
log "S3 ready: http://127.0.0.1:$PORT (store=$STORE, dir=$D)"
exports "$PORT"
