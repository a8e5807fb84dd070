/* ckfuse.h: the FUSE operations table and the mount commands. */
#ifndef CKPT_CKFUSE_H
#define CKPT_CKFUSE_H

#include <stddef.h>
#include <unistd.h>

struct fuse_operations;
const struct fuse_operations *ckfuse_operations(void);

/* `ckptfs mount ...` and `mount.ckptfs ...`: argv[0] is the command name. */
int ckfuse_mount_main(int argc, char **argv);

/* `ckptfs fd-mount ...`: the privileged helper of an unprivileged mount. */
int ckfuse_fd_mount_main(int argc, char **argv);

/*
 * Connect to an fd-mount helper's socket and receive the /dev/fuse
 * descriptor it mounted: returns it (>= 0) and the open connection in
 * *conn_out (the helper unmounts when it closes), the helper's mount point
 * in @mnt; or -errno (-EPROTO: not an fd-mount helper).
 */
int ckfuse_fd_receive(const char *sock_path, int *conn_out, char *mnt, size_t mnt_len);

/* One systemd notify datagram ("READY=1", ...) to $NOTIFY_SOCKET, if set.
 * 0 or -errno. */
int ckfuse_notify(const char *msg);

#endif
