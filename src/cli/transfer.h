/* transfer.h: put, get, ls and cat: checkpoints in and out of a store
 * without a mount, through the public API (include/ckptfs.h). */
#ifndef CKPT_TRANSFER_H
#define CKPT_TRANSFER_H

int xfer_put_main(int argc, char **argv);
int xfer_get_main(int argc, char **argv);
int xfer_ls_main(int argc, char **argv);
int xfer_cat_main(int argc, char **argv);

#endif
