#!/bin/bash
# container-base.sh: make `FROM debian:bookworm-slim` resolvable without an
# image registry, by building that base image from Debian packages
# (mmdebstrap) and tagging it localhost/debian:bookworm-slim. The image stays
# in podman's storage, so later runs find it and return at once.
#
#   sudo scripts/container-base.sh          ensure podman + base image
#   CKPTFS_CONTAINERS_CONF=FILE             where to write the podman settings
#                                           (default /var/cache/ckptfs/containers.conf)
#
# Prints the containers.conf path on stdout (export CONTAINERS_CONF=<it>).
# Needs root. Installs podman, runc, mmdebstrap and podman-compose (the compose
# recipe's test; it brings python3-yaml, which the Kubernetes tests use) with
# apt-get when missing.
set -euo pipefail

conf=${CKPTFS_CONTAINERS_CONF:-/var/cache/ckptfs/containers.conf}
image=localhost/debian:bookworm-slim

need=()
for p in podman runc mmdebstrap podman-compose; do
	command -v "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
	echo "container-base: installing ${need[*]}" >&2
	apt-get update -qq >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >&2
fi

# Settings podman needs in a nested sandbox and on CI: the default rlimits
# podman asks for can exceed the host's hard limits (EPERM), and crun does
# not run on a hybrid cgroup hierarchy while runc does. A file of our own
# (CONTAINERS_CONF) leaves the machine's configuration alone.
mkdir -p "$(dirname "$conf")"
cat > "$conf.tmp" <<'CONF'
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[engine]
runtime = "runc"
CONF
mv "$conf.tmp" "$conf"
export CONTAINERS_CONF=$conf

if ! podman image exists "$image"; then
	tar=$(mktemp -d /var/tmp/ckptfs-base.XXXXXX)
	trap 'rm -rf "$tar"' EXIT
	echo "container-base: building $image from Debian packages (a few minutes)" >&2
	mmdebstrap --variant=minbase bookworm "$tar/rootfs.tar" >&2
	# An imported tarball carries no environment; without PATH,
	# `podman kube play` cannot find a shell.
	podman import \
		--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
		--change 'CMD ["bash"]' "$tar/rootfs.tar" "$image" >&2
fi
echo "$conf"
