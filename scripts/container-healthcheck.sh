#!/bin/sh
# container-healthcheck.sh (installed as /usr/bin/ckptfs-healthcheck in the
# image): healthy when the ckptfs mount at $CKPTFS_MOUNTPOINT answers a stat
# within 5 s. With CKPTFS_MOUNTPOINT=- (an fd-passing daemon, whose mount
# point is in another container) healthy while the daemon runs.
mnt=${CKPTFS_MOUNTPOINT:-/mnt/ckptfs}
if [ "$mnt" = - ]; then
	kill -0 1 2>/dev/null
	exit
fi
# Any mount at or below $mnt of type fuse.ckptfs (a subdirectory of an
# rshared volume is the usual place).
# /proc/mounts escapes blanks in paths (\040): one word per mount.
mounts=$(awk -v m="$mnt" '$3 == "fuse.ckptfs" && ($2 == m || index($2, m "/") == 1) { print $2 }' \
	/proc/mounts)
[ -n "$mounts" ] || { echo "no ckptfs mount at $mnt" >&2; exit 1; }
for p in $mounts; do
	timeout 5 stat -t "$p" >/dev/null || { echo "$p does not answer" >&2; exit 1; }
done
