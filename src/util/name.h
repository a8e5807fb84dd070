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
 * Percent-encode @name for use as one segment of a store key: bytes outside
 * [A-Za-z0-9._-] become %XX. Returns a malloc'd string (caller frees) or NULL.
 */
char *name_key_encode(const char *name);
/* Inverse of name_key_encode(); malloc'd, NULL on bad input (including %00). */
/* Longest encoded name a store key segment holds (see store.h). */
#define NAME_KEY_MAX 200
char *name_key_decode(const char *seg);
#endif
