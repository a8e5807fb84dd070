/* admin.h: the offline commands, built on the core without FUSE. */
#ifndef CKPT_ADMIN_H
#define CKPT_ADMIN_H

int admin_fsck_main(int argc, char **argv);
int admin_stat_main(int argc, char **argv);
int admin_gc_main(int argc, char **argv);

#endif
