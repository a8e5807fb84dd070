/*
 * catalog.h: what the keys of a store mean, and the JSON records behind them.
 *
 * Owns:         the key layout (doc/FORMAT.md §3), checkpoint records,
 *               file entries (manifests), and their JSON parse/format.
 * Does not own: caching (fs), encoding bytes (codec), I/O mechanics (store).
 *
 * Key layout (all names percent-encoded with name_key_encode()):
 *   format.json                                    store format marker
 *   chunks/<h2>/<sha256>                           immutable chunk frames
 *   jobs/<job>/<dir>/<ckpt>/checkpoint.json        checkpoint record
 *   jobs/<job>/<dir>/<ckpt>/attrs.json             mutable attributes (ttl)
 *   jobs/<job>/<dir>/<ckpt>/entries/<id>.json      one per file or folder
 *   models/<model-id>/checkpoint.json, entries/    a promoted model (same shape)
 *   deployments/<name>.json, deploy-state/<name>.json   hotload targets
 * where <dir> is "sampler" or "state" and <id> is the first 32 hex digits
 * of sha256(relative path): fixed length whatever the path's depth.
 *
 * Crash safety: chunk frames are stored (durably) before the entry naming
 * them; an entry is one put, so a file is either fully listed or absent.
 */
#ifndef CKPT_CATALOG_H
#define CKPT_CATALOG_H

#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

#define CATALOG_FORMAT_VERSION 1
/* Entries written now carry a self-checksum ("sum", doc/FORMAT.md §1.2);
 * version 1 entries (no sum) are still read. */
#define ENTRY_VERSION 2
#define CHUNK_KEY_LEN 64	/* sha256 hex */

/* Where a checkpoint lives: a job's sampler/ or state/, or the store-wide
 * models/ (promoted models, keyed "models/<id>/..." with no job). */
enum ckpt_dir { CKPT_SAMPLER, CKPT_STATE, CKPT_MODEL };
enum ckpt_kind { KIND_BASE, KIND_DELTA, KIND_LORA, KIND_STATE };

const char *ckpt_dir_name(enum ckpt_dir d);		/* "sampler" / "state" */
const char *ckpt_kind_name(enum ckpt_kind k);
int ckpt_kind_parse(const char *s, enum ckpt_kind *out);	/* 0 or -EINVAL */

/* A checkpoint's identity and how it is encoded. Immutable once a file is
 * committed, except kind/base while the checkpoint is still empty. */
struct ckpt_record {
	char *job;
	enum ckpt_dir dir;
	char *name;
	enum ckpt_kind kind;
	char *base;		/* delta: name of the base checkpoint (same job) */
	double created;		/* unix seconds */
	char session[9];	/* 8 hex digits of the creating mount */
	char *promoted_from;	/* models: "<job>/sampler/<name>" of the source */
	char *source_snapshot;	/* models: the source's snapshot name */
};

/* Mutable attributes, replaced as a whole. */
struct ckpt_attrs {
	int64_t ttl;		/* seconds after creation; 0 = none */
	uint32_t mode;		/* directory permission bits; 0 = default (0755) */
	int64_t mtime_ns;	/* directory mtime set by utimens; 0 = created */
};

/* One chunk of a file: the frame key ("" when the delta chunk is all zero)
 * and, for chunks decoded against a base, the base chunk's key. */
struct chunk_ref {
	char key[CHUNK_KEY_LEN + 1];
	char base_key[CHUNK_KEY_LEN + 1];	/* "" unless needs a base */
	uint32_t stored_len;			/* bytes of the frame object */
};

/* A file or folder inside a checkpoint. */
struct entry {
	char *path;		/* relative, '/'-separated, no leading '/' */
	int is_dir;
	uint32_t mode;		/* permission bits */
	int64_t mtime_ns;
	uint64_t size;
	uint32_t chunk_size;
	struct chunk_ref *chunks;	/* ceil(size / chunk_size) of them */
	size_t n_chunks;
	/* Seconds from close (or fsync) until its chunks were durable, as
	 * measured by the mount that committed it; 0: not known. A figure
	 * for users ("commit_s", optional, not covered by "sum"). */
	double commit_s;
};

void ckpt_record_release(struct ckpt_record *r);
/* Deep copy; 0 or -ENOMEM (then @dst is released). */
int ckpt_record_copy(const struct ckpt_record *src, struct ckpt_record *dst);
int ckpt_record_format(const struct ckpt_record *r, struct buf *out);
int ckpt_record_parse(const char *json, size_t len, struct ckpt_record *out);
/* Is @r the record stored under the key of (@job, @dir, @name)? A record
 * whose fields do not match its key (a copied or edited record, a name with
 * '/') is corrupt: 0 or -EBADMSG. */
int ckpt_record_check(const struct ckpt_record *r, const char *job, enum ckpt_dir dir,
		      const char *name);

int ckpt_attrs_format(const struct ckpt_attrs *a, struct buf *out);
int ckpt_attrs_parse(const char *json, size_t len, struct ckpt_attrs *out);

void entry_release(struct entry *e);
void entry_free(struct entry *e);	/* release + free; NULL is fine */
int entry_copy(const struct entry *src, struct entry *dst);
int entry_format(const struct entry *e, struct buf *out);
/* -EBADMSG for anything malformed or inconsistent (chunk count vs size, a
 * chunk item without "k", a version 2 entry whose "sum" does not match). */
int entry_parse(const char *json, size_t len, struct entry *out);
/* Does @e belong at store key @key (its entries/<id>.json leaf)? 0 or -EBADMSG. */
int entry_check_key(const struct entry *e, const char *key);
uint64_t entry_stored_bytes(const struct entry *e);

/* Key builders; each returns a malloc'd string or NULL. */
char *catalog_dir_prefix(const char *job, enum ckpt_dir dir);	/* ends in '/' */
char *catalog_ckpt_prefix(const char *job, enum ckpt_dir dir, const char *name);	/* ends in '/' */
char *catalog_record_key(const char *job, enum ckpt_dir dir, const char *name);
char *catalog_attrs_key(const char *job, enum ckpt_dir dir, const char *name);
char *catalog_entry_key(const char *job, enum ckpt_dir dir, const char *name,
			const char *relpath);
void catalog_chunk_key(const char *hex, char *out, size_t outlen);	/* "chunks/ab/abcd..." */

/* --- store operations --- */

/* Create the format marker if absent, check it otherwise. */
int catalog_init_store(struct store *st);
/* Create @r exclusively. -EEXIST if it exists (then read it back). */
int catalog_record_create(struct store *st, const struct ckpt_record *r);
/* Replace @r (used only while the checkpoint holds no files). */
int catalog_record_replace(struct store *st, const struct ckpt_record *r);
int catalog_record_get(struct store *st, const char *job, enum ckpt_dir dir,
		       const char *name, struct ckpt_record *out);
int catalog_attrs_get(struct store *st, const char *job, enum ckpt_dir dir,
		      const char *name, struct ckpt_attrs *out);	/* absent: zeros */
int catalog_attrs_put(struct store *st, const char *job, enum ckpt_dir dir,
		      const char *name, const struct ckpt_attrs *a);
int catalog_entry_put(struct store *st, const char *job, enum ckpt_dir dir,
		      const char *name, const struct entry *e);
int catalog_entry_remove(struct store *st, const char *job, enum ckpt_dir dir,
			 const char *name, const char *relpath);

/* Calls @cb for each job name in the store. */
int catalog_list_jobs(struct store *st, int (*cb)(const char *job, void *arg), void *arg);
/* Calls @cb for each checkpoint name of (job, dir) that has a record. */
int catalog_list_ckpts(struct store *st, const char *job, enum ckpt_dir dir,
		       int (*cb)(const char *name, void *arg), void *arg);
/* Loads every entry of a checkpoint; @cb takes ownership of @e (must
 * entry_free it). Unparseable entries are logged and reported as -EBADMSG
 * after the others are delivered. */
int catalog_load_entries(struct store *st, const char *job, enum ckpt_dir dir,
			 const char *name,
			 int (*cb)(struct entry *e, void *arg), void *arg);
/*
 * Visit every checkpoint of every job (sampler/ then state/), then, with
 * @with_models, every promoted model. @where is the job, or "(models)".
 *  - on_ckpt(): return < 0 to stop the walk, 1 to skip the entries.
 *  - on_entry(): called for each entry of the checkpoint (borrowed).
 *  - on_problem(): an unreadable record (ENOENT excepted: removed while
 *    walking) or malformed entries (-EBADMSG); its return value decides
 *    whether the walk stops (< 0) or goes on (0).
 *  - on_bad_key(): which object was corrupt, and why.
 * Any callback may be NULL.
 */
struct catalog_walk_ops {
	int (*on_ckpt)(const char *where, const struct ckpt_record *r, void *arg);
	int (*on_entry)(const char *where, const struct ckpt_record *r,
			const struct entry *e, void *arg);
	int (*on_problem)(const char *where, enum ckpt_dir dir, const char *name,
			  int err, void *arg);
	/* Each corrupt record or entry, by store key, before on_problem(). */
	void (*on_bad_key)(const char *key, const char *why, void *arg);
};

int catalog_walk(struct store *st, int with_models, const struct catalog_walk_ops *ops,
		 void *arg);

/* Removes every key of a checkpoint: entries first, the record last. */
int catalog_ckpt_remove(struct store *st, const char *job, enum ckpt_dir dir,
			const char *name);

#endif
