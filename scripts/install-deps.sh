#!/bin/sh
# install-deps.sh: the Debian 12 packages ckptfs needs to build, test and
# benchmark. Run as root (or with sudo). Safe to run again. clang-14 and
# libclang-rt-14-dev are for scripts/test.sh's sanitizer pass (clang's UBSan
# checks float-to-integer casts, GCC's does not) and the libFuzzer harnesses.
set -eu
PKGS="meson ninja-build gcc pkg-config libfuse3-dev fuse3 libcurl4-openssl-dev \
libcjson-dev libzstd-dev libxxhash-dev libssl-dev check attr scdoc python3 \
python3-numpy zstd xdelta3 curl procps rsync util-linux clang-14 libclang-rt-14-dev \
libmicrohttpd-dev"
missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
		missing="$missing $p"
done
if [ -n "$missing" ]; then
	echo "install-deps: installing:$missing" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	# shellcheck disable=SC2086
	apt-get install -y -qq $missing >/dev/null
fi
# A real Prometheus scrapes a mount in tests/integration/test_metrics.py
# (its promtool checks the exposition format); nothing it recommends is needed.
if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
	echo "install-deps: installing: prometheus" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
# FUSE needs its kernel module and device.
[ -e /dev/fuse ] || modprobe fuse 2>/dev/null || true
[ -e /dev/fuse ] || { echo "install-deps: /dev/fuse is missing (load the fuse module)" >&2; exit 1; }
