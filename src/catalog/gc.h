/*
 * gc.h: expiring checkpoints and reclaiming unreferenced chunks.
 *
 * Owns:         the TTL sweep (expired checkpoints lose their records and
 *               entries) and mark-and-sweep of "chunks/".
 * Does not own: deciding what a checkpoint references (entries say it).
 *
 * Safety with concurrent writers on any mount: a chunk is stored (and, on
 * every backend, re-stored with a fresh mtime) before the entry naming it,
 * so a chunk younger than the grace period may belong to a write in flight
 * and is never deleted. Every chunk any entry of any job or model names —
 * including the base chunks a delta reads — is live, and so is every chunk
 * named by the entries or pins of a model whose record is not written yet
 * (a promotion in flight), unless those are older than
 * GC_PROMOTION_WINDOW (and the grace period): leftovers of a crash.
 *
 * Promotion (src/fs/promote.c) adds: after publishing a model it makes
 * every chunk the model names young (store touch) and checks each still
 * exists, so a pass that marked before the model existed cannot take them
 * unnoticed; the promotion fails with EIO and removes the model instead.
 */
#ifndef CKPT_GC_H
#define CKPT_GC_H

#include <stdint.h>

#include "store/store.h"

/* Seconds a promotion may take between its first entry and its record. */
#define GC_PROMOTION_WINDOW 3600

struct gc_report {
	uint64_t expired;	/* checkpoints removed for their TTL */
	uint64_t live;		/* distinct chunks referenced */
	uint64_t deleted;	/* chunks deleted (or that would be) */
	uint64_t deleted_bytes;
	uint64_t kept_young;	/* unreferenced but within the grace period */
};

/* A sorted set of chunk keys (sha256 hex). */
struct keyset {
	char **v;
	size_t n, cap;
};

int keyset_add(struct keyset *s, const char *key);
void keyset_sort(struct keyset *s);	/* before keyset_has() */
int keyset_has(const struct keyset *s, const char *key);
void keyset_release(struct keyset *s);

/*
 * The sweep rule, pure: delete the chunk object @key (a "chunks/xx/<hex>"
 * key) with mtime @mtime iff nothing references it and it is not younger
 * than @cutoff (now - grace). Returns 1 delete, 0 keep live, -1 keep young.
 * Right before deleting, gc_run() looks again (head), to the nanosecond
 * where the store knows it.
 */
int gc_sweep_decision(const struct keyset *live, const char *key, int64_t mtime,
		      int64_t cutoff);

/* Mark every chunk referenced by any job's or model's entries. */
int gc_mark(struct store *st, struct keyset *live);

/*
 * One full pass: remove expired checkpoints (as of @now), mark, sweep
 * chunks older than @grace_s. @dry_run changes nothing. 0 or -errno; on a
 * failed mark nothing is deleted.
 */
int gc_run(struct store *st, int64_t grace_s, int dry_run, double now,
	   struct gc_report *r);

/*
 * Progress of gc_run(), for a terminal: called once per chunk object the
 * sweep examines (@items, their @bytes so far) with the fraction of the
 * key space done (keys are SHA-256 hex, so uniform), never under a lock.
 * Process-wide; NULL turns it off (the default; the daemon sets none).
 */
typedef void (*gc_progress_fn)(void *arg, uint64_t items, uint64_t bytes, double frac);
void gc_set_progress(gc_progress_fn fn, void *arg);

#endif
