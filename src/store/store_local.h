/*
 * store_local.h: what only the local-directory backend offers beyond store.h.
 *
 * Temporary files. A put writes its bytes to a file under <root>/.tmp/
 * first. Where the filesystem supports O_TMPFILE that file has no name
 * until it is linked into place, so a killed daemon leaves nothing behind;
 * otherwise (and for the instant between naming and renaming over an
 * existing key) it has a random 128-bit name from getrandom(), which no
 * restarted daemon can pick again, whatever its PID. A writer holds an
 * exclusive flock() on its temp file for as long as the file has a name,
 * so a sweep can tell a live writer's file from a dead daemon's leftover.
 */
#ifndef CKPT_STORE_LOCAL_H
#define CKPT_STORE_LOCAL_H

#include <stdint.h>

#include "store/store.h"

/*
 * A temp file younger than this is never swept, locked or not: a named temp
 * file is created a moment before its writer locks it, and a writer on
 * another host sharing the directory may not see our locks.
 */
#define STORE_LOCAL_TMP_STALE_S 600

/*
 * Remove every regular file under <root>/.tmp/ whose mtime is at least
 * @min_age_s seconds old and that no writer holds locked. Sets *@removed
 * (may be NULL) to the count. 0, -EOPNOTSUPP if @st is not a local store,
 * or -errno if .tmp cannot be read. One info line when something was
 * removed. store_local_open() runs it with STORE_LOCAL_TMP_STALE_S.
 */
int store_local_sweep_tmp(struct store *st, int64_t min_age_s, uint64_t *removed);

/*
 * Whether puts use O_TMPFILE (the default where the filesystem supports it)
 * or named random temp files. For tests of the fallback. 0; -EOPNOTSUPP if
 * @st is not a local store or @on and the filesystem lacks O_TMPFILE.
 */
int store_local_set_tmpfile(struct store *st, int on);

#endif
