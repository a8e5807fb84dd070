# ckptfs image: the daemon in the foreground, serving STORE on a mount point.
#
#   podman build --format docker -t ckptfs .        (docker format: HEALTHCHECK)
#   podman run -d --device /dev/fuse --cap-add SYS_ADMIN \
#       --security-opt apparmor=unconfined \
#       -v /srv/ckpt-store:/store -v /srv/ckpt:/mnt/ckptfs:rshared \
#       ckptfs /store /mnt/ckptfs/c --job rl-7
#
# Arguments are those of `ckptfs mount` (-f is given). See doc/CONTAINERS.md.

FROM debian:bookworm-slim AS build
RUN apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        --no-install-recommends meson ninja-build gcc libc6-dev pkg-config \
        libfuse3-dev libcurl4-openssl-dev libcjson-dev libzstd-dev libxxhash-dev \
        libssl-dev libmicrohttpd-dev scdoc && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN meson setup /build --buildtype=release -Dtests=false -Dwerror=true --prefix=/usr \
    && ninja -C /build \
    && DESTDIR=/out meson install -C /build --no-rebuild \
    && strip /out/usr/bin/ckptfs

FROM debian:bookworm-slim
RUN apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        --no-install-recommends fuse3 libfuse3-3 libcurl4 libcjson1 libzstd1 \
        libxxhash0 libssl3 libmicrohttpd12 ca-certificates \
    && rm -rf /var/lib/apt/lists/* /usr/share/doc /usr/share/man \
    && echo user_allow_other >> /etc/fuse.conf \
    && mkdir -p /store /mnt/ckptfs
COPY --from=build /out/usr/bin/ckptfs /usr/bin/ckptfs
COPY scripts/container-healthcheck.sh /usr/bin/ckptfs-healthcheck
RUN ln -s /usr/bin/ckptfs /sbin/mount.ckptfs
# Where the healthcheck looks; set it when mounting elsewhere, or to "-"
# for an fd-passing daemon, whose mount point lives in another container.
ENV CKPTFS_MOUNTPOINT=/mnt/ckptfs
HEALTHCHECK --interval=10s --timeout=6s --start-period=30s --retries=3 \
    CMD ["/usr/bin/ckptfs-healthcheck"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/ckptfs", "mount", "-f"]
CMD ["/store", "/mnt/ckptfs"]
