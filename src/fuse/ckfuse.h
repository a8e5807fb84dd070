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

/* The operations table @ops with every call counted in the metrics
 * (requests and errors by op and errno). Returns a static table. */
const struct fuse_operations *ckfuse_metrics_wrap(const struct fuse_operations *ops);

/* `--metrics [ADDR:]PORT`: serve the metrics registry on /metrics over
 * HTTP on threads of its own (libmicrohttpd). Port 0 picks a free one.
 * 0 or -errno (with a log line). */
struct ckfuse_metrics_server;
int ckfuse_metrics_start(const char *spec, struct ckfuse_metrics_server **out);
const char *ckfuse_metrics_url(const struct ckfuse_metrics_server *m);
void ckfuse_metrics_stop(struct ckfuse_metrics_server *m);	/* NULL is fine */

#endif
