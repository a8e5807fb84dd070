/* ckfuse.h: the FUSE operations table and the mount command. */
#ifndef CKPT_CKFUSE_H
#define CKPT_CKFUSE_H

#include <unistd.h>

struct fuse_operations;
const struct fuse_operations *ckfuse_operations(void);

/* `ckptfs mount ...` and `mount.ckptfs ...`: argv[0] is the command name. */
int ckfuse_mount_main(int argc, char **argv);

#endif
