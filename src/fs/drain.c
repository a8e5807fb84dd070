/*
 * drain.c: the daemon's shutdown gave up on a handle still open for
 * writing (src/fuse/mount.c, --shutdown-timeout). fs_release would commit
 * whatever was written so far, a torn file; this drops the handle and its
 * unwritten data instead, so nothing of it is ever committed.
 */
#include "fs/fs.h"

#include <stdlib.h>

#include "fs/fs_int.h"
#include "fs/fs_local.h"

void fs_abandon(struct ckfs *fs, uint64_t fh)
{
	struct handle *h = to_handle(fh);

	if (h->type != H_WRITER) {
		/* Deployment and hotload files are validated at release, a torn
		 * one refused: their release is safe. */
		fs_release(fs, fh);
		return;
	}
	/* Drop this handle's reference without committing: the writer (and
	 * its uncommitted data) goes with the last reference. */
	wslot_unref(fs, h->ws);
	entry_release(&h->ent);
	buf_release(&h->content);
	free(h->ctl_job);
	free(h->ctl_name);
	free(h);
}
