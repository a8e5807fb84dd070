#!/bin/bash
# fake-ckptfs.sh: a stand-in for the ckptfs binary, to test run.sh before the daemon
# exists. "fake-ckptfs.sh mount -f [OPTIONS] STORE MNT" serves STORE/ through libfuse's
# passthrough_ll example, so it stores raw bytes and has no xattrs:
#
#   bench/run.sh --size-mb 20 --quick bench/fake-ckptfs.sh
#
# passthrough_ll comes from $PASSTHROUGH_LL, else $BENCH_DIR/bin/passthrough_ll (which
# run.sh builds), else it is built into /tmp/fake-ckptfs-passthrough_ll.
set -euo pipefail

case ${1:-} in
--version) echo "fake-ckptfs (libfuse passthrough_ll)"; exit 0 ;;
mount) shift ;;
*) echo "usage: $0 mount -f [OPTIONS] STORE MNT" >&2; exit 2 ;;
esac
if (($# < 3)) || [[ $1 != -f ]]; then
	echo "usage: $0 mount -f [OPTIONS] STORE MNT" >&2
	exit 2
fi
store=${*: -2:1} mnt=${*: -1}

pt=${PASSTHROUGH_LL:-}
if [[ -z $pt && -x ${BENCH_DIR:-/nonexistent}/bin/passthrough_ll ]]; then
	pt=$BENCH_DIR/bin/passthrough_ll
fi
if [[ -z $pt ]]; then
	pt=/tmp/fake-ckptfs-passthrough_ll
	if [[ ! -x $pt ]]; then
		# shellcheck disable=SC2046 # pkg-config output is word-split on purpose
		cc -O2 -o "$pt" /usr/share/doc/libfuse3-dev/examples/passthrough_ll.c \
			$(pkg-config --cflags --libs fuse3)
	fi
fi
mkdir -p "$store/sampler"
exec "$pt" -f -o "source=$store" "$mnt"
