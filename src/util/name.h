/*
 * name.h: validation of user-supplied names, and their encoding into store keys.
 */
#ifndef CKPT_NAME_H
#define CKPT_NAME_H

#include <stddef.h>

/*
 * A checkpoint, job or deployment name, or one path component inside a
 * checkpoint: 1-255 bytes, no '/', no NUL, not "." or "..".
 * Returns 0, or -EINVAL (-ENAMETOOLONG when over 255 bytes).
 */
int name_check_component(const char *name);
/* Job and checkpoint names additionally use only [A-Za-z0-9._-]; 0 or -EINVAL. */
int name_check_key_safe(const char *name);
/* A model id: 1-63 characters of [a-z0-9-]; 0 or -EINVAL. */
int name_check_model_id(const char *id);

/*
 * The final name a writer means when it writes @rel (a relative path) under
 * a temporary name and renames it afterwards: rsync's ".NAME.XXXXXX" (six
 * characters of [A-Za-z0-9]), and "NAME.tmp", "NAME.part", "NAME.incomplete"
 * (torch.distributed.checkpoint, downloaders). The directory part is kept.
 * Returns 1 with the path in @out, 0 if @rel is not such a name (or @out is
 * too small).
 */
int name_temp_final(const char *rel, char *out, size_t cap);



/*
 * Percent-encode @name for use as one segment of a store key: bytes outside
 * [A-Za-z0-9._-] become %XX. Returns a malloc'd string (caller frees) or NULL.
 */
char *name_key_encode(const char *name);
/* Inverse of name_key_encode(); malloc'd, NULL on bad input (including %00). */
/* Longest encoded name a store key segment holds (see store.h). */
#define NAME_KEY_MAX 200
char *name_key_decode(const char *seg);
#endif
