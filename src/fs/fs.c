/*
 * fs.c: the mount as a whole: setup and teardown, the periodic gc, and
 * checkpoints.jsonl. What each operation means lives beside it, one file
 * per concern (see fs_local.h):
 *
 *   path.c      a mount path -> (job, dir, checkpoint, path inside)
 *   lookup.c    checkpoints, entries and writer slots in the cached views
 *   tree.c      getattr, readdir, mkdir, rmdir, unlink, rename, utimens,
 *               chmod, statfs
 *   policy.c    what a new checkpoint becomes (base / delta / lora / state),
 *               who may write or remove where
 *   promote.c   models/ID by symlink or rename
 *   handles.c   open files: writer slots, read, write, commit, truncate
 *   xattr.c     user.ckptfs.* attributes
 *
 * Does not own: chunk I/O (chunks.c), write buffering (writer.c), store
 * listings (view.c), record formats (catalog), deployments and hotload
 * (control.c). Locking: doc/ARCHITECTURE.md.
 */
#include "fs/fs.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "catalog/gc.h"
#include "fs/fs_int.h"
#include "fs/view.h"
#include "util/log.h"
#include "util/name.h"

#include "fs/fs_local.h"

/* ---------------------------------------------------------------- jsonl */

static const enum ckpt_dir jsonl_dirs[] = { CKPT_SAMPLER, CKPT_STATE };

/* One JSON object per live checkpoint of this job. Lock held. */
static int jsonl_build_locked(struct ckfs *fs, struct buf *out)
{
	double now = wall_now();
	size_t d, i;
	int rc = 0;

	for (d = 0; d < 2 && rc == 0; d++) {
		struct view *v = get_view(fs, fs->job, jsonl_dirs[d]);

		if (!v)
			return lookup_errno(fs, fs->job, jsonl_dirs[d]);
		for (i = 0; i < v->n && rc == 0; i++) {
			const struct ckpt *c = v->ckpts[i];
			cJSON *o;
			char snap[600], path[600], *s;

			if (ckpt_is_expired(c, now) || c->bad_record)
				continue;	/* a lost record has nothing true to say */
			o = cJSON_CreateObject();
			if (!o)
				return -ENOMEM;
			snprintf(snap, sizeof(snap), "%s-%s", c->rec.name, c->rec.session);
			snprintf(path, sizeof(path), "%s/%s", ckpt_dir_name(c->rec.dir), c->rec.name);
			cJSON_AddStringToObject(o, "name", c->rec.name);
			cJSON_AddStringToObject(o, "dir", ckpt_dir_name(c->rec.dir));
			cJSON_AddStringToObject(o, "snapshot", snap);
			cJSON_AddStringToObject(o, "kind", ckpt_kind_name(c->rec.kind));
			if (c->rec.base)
				cJSON_AddStringToObject(o, "base", c->rec.base);
			else
				cJSON_AddNullToObject(o, "base");
			cJSON_AddNumberToObject(o, "created", c->rec.created);
			if (c->attrs.ttl)
				cJSON_AddNumberToObject(o, "expires_at",
							c->rec.created + (double)c->attrs.ttl);
			else
				cJSON_AddNullToObject(o, "expires_at");
			cJSON_AddNumberToObject(o, "logical_bytes", (double)ckpt_logical(c));
			cJSON_AddNumberToObject(o, "stored_bytes", (double)ckpt_stored(c));
			{
				struct ckpt_figures f;

				ckpt_figures(c, &f);
				if (f.ratio >= 0)
					cJSON_AddNumberToObject(o, "stored_ratio",
								round(f.ratio * 1e4) / 1e4);
				else
					cJSON_AddNullToObject(o, "stored_ratio");
				if (f.zero_fraction >= 0)
					cJSON_AddNumberToObject(o, "zero_chunk_fraction",
								round(f.zero_fraction * 1e4) / 1e4);
				else
					cJSON_AddNullToObject(o, "zero_chunk_fraction");
				if (f.commit_s >= 0)
					cJSON_AddNumberToObject(o, "commit_seconds",
								round(f.commit_s * 1e3) / 1e3);
				else
					cJSON_AddNullToObject(o, "commit_seconds");
			}
			cJSON_AddBoolToObject(o, "promotable", promotable(c));
			cJSON_AddStringToObject(o, "path", path);
			s = cJSON_PrintUnformatted(o);
			cJSON_Delete(o);
			if (!s)
				return -ENOMEM;
			rc = buf_append_str(out, s);
			if (rc == 0)
				rc = buf_append(out, "\n", 1);
			free(s);
		}
	}
	return rc;
}

int jsonl_build(struct ckfs *fs, struct buf *out)
{
	int rc;

	view_ensure(fs, fs->job, jsonl_dirs[0], 0);
	view_ensure(fs, fs->job, jsonl_dirs[1], 0);
	pthread_mutex_lock(&fs->lock);
	rc = jsonl_build_locked(fs, out);
	pthread_mutex_unlock(&fs->lock);
	return rc;
}

/* ---------------------------------------------------------------- setup */

/*
 * The daemon's periodic gc: the same pass as `ckptfs gc`, safe alongside
 * writers on any mount (see catalog/gc.h). Runs without fs->lock.
 */
static void *gc_main(void *arg)
{
	struct ckfs *fs = arg;

	pthread_mutex_lock(&fs->lock);
	while (!fs->gc_stop) {
		struct timespec until;
		struct gc_report r;
		int rc;

		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += (time_t)fs->cfg.gc_interval;
		until.tv_nsec += (long)((fs->cfg.gc_interval - (double)(time_t)fs->cfg.gc_interval) * 1e9);
		if (until.tv_nsec >= 1000000000) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000;
		}
		while (!fs->gc_stop &&
		       pthread_cond_timedwait(&fs->gc_cond, &fs->lock, &until) != ETIMEDOUT)
			;
		if (fs->gc_stop)
			break;
		pthread_mutex_unlock(&fs->lock);
		rc = gc_run(fs->st, fs->cfg.gc_grace, 0, wall_now(), &r);
		if (rc < 0)
			log_error("gc: %s", strerror(-rc));
		else	/* one summary per pass, even of nothing (doc/METRICS.md) */
			log_info("gc: %" PRIu64 " expired checkpoints removed, %" PRIu64
				 " chunks (%" PRIu64 " bytes) reclaimed", r.expired, r.deleted,
				 r.deleted_bytes);
		pthread_mutex_lock(&fs->lock);
		/* Expired checkpoints are gone from the store now. */
		{
			struct view *v;

			for (v = fs->views; v; v = v->next)
				view_mark_stale(fs, v->job, v->dir);
		}
	}
	pthread_mutex_unlock(&fs->lock);
	return NULL;
}

void fs_config_defaults(struct fs_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->job = "default";
	cfg->chunk_size = 4u << 20;
	cfg->cache_bytes = 256ull << 20;
	cfg->readahead_bytes = 64ull << 20;
	cfg->list_ttl = 1.0;
	cfg->delta_policy = DELTA_AUTO;
	cfg->delta_max_ratio = 0.5;
	cfg->gc_interval = 600;
	cfg->gc_grace = 3600;
	cfg->hotload_max = 4;
}

const char *fs_session(const struct ckfs *fs)
{
	return fs->session;
}

int fs_new(struct store *st, const struct fs_config *cfg, struct ckfs **out)
{
	struct ckfs *fs;
	uint32_t rnd = 0;
	const char *tmp;
	long ncpu;
	int rc;

	rc = name_check_component(cfg->job);
	if (rc == 0) {
		char *enc = name_key_encode(cfg->job);

		if (!enc || strlen(enc) > NAME_KEY_MAX)
			rc = -ENAMETOOLONG;
		free(enc);
	}
	if (rc < 0) {
		log_error("job name '%s' is not valid (%s)", cfg->job, strerror(-rc));
		return rc;
	}
	if (cfg->chunk_size < 4096 || cfg->chunk_size > CODEC_CHUNK_MAX) {
		log_error("chunk size %u out of range", cfg->chunk_size);
		return -EINVAL;
	}
	fs = calloc(1, sizeof(*fs));
	if (!fs)
		return -ENOMEM;
	fs->st = st;
	fs->cfg = *cfg;
	pthread_mutex_init(&fs->lock, NULL);
	pthread_cond_init(&fs->view_cond, NULL);
	pthread_cond_init(&fs->ns_cond, NULL);
	fs->job = strdup(cfg->job);
	tmp = cfg->spool_dir ? cfg->spool_dir : getenv("TMPDIR");
	fs->spool_dir = strdup(tmp ? tmp : "/var/tmp");
	fs->statfs_path = cfg->statfs_path ? strdup(cfg->statfs_path) : NULL;
	fs->cfg.job = fs->job;
	if (getrandom(&rnd, sizeof(rnd), 0) != sizeof(rnd))
		rnd = (uint32_t)getpid() ^ (uint32_t)time(NULL);
	snprintf(fs->session, sizeof(fs->session), "%08x", rnd);
	ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	if (ncpu <= 0)
		ncpu = 2;
	/* Workers encode (CPU) and put chunks (I/O: an fsync locally, a PUT
	 * remotely); while some wait on I/O, others keep the CPUs busy.
	 * Measured on 2 cores: 3 per CPU beats 1 per CPU by ~15% locally. */
	fs->n_threads = cfg->threads > 0 ? cfg->threads : (int)(3 * ncpu);
	/* Chunks decoded ahead of a sequential reader: two hide decoding
	 * locally; a remote store also has a round trip per chunk to hide. */
	fs->readahead = strcmp(st->ops->name, "local") ? fs->n_threads : 2;
	fs->chunks = chunks_new(st, cfg->cache_bytes);
	/* Chunks decoded ahead wait in the cache for their reader: more in
	 * flight than half the cache would evict them before they are read. */
	fs->ra = fs->chunks ? ra_new(fs->chunks, cfg->readahead_bytes < cfg->cache_bytes / 2 ?
				     cfg->readahead_bytes : cfg->cache_bytes / 2,
				     fs->readahead) : NULL;
	if (!fs->job || !fs->spool_dir || !fs->chunks || !fs->ra) {
		fs_free(fs);
		return -ENOMEM;
	}
	if (cfg->base_cache_dir) {
		struct store *raw;

		rc = store_cache_open_local(cfg->base_cache_dir, cfg->base_cache_bytes ?
					    cfg->base_cache_bytes : 8ull << 30, &raw);
		if (rc == -EBUSY) {
			/* Another mount or put has it: slower, not wrong. */
			log_warn("base cache %s is in use by another process; running without it",
				 cfg->base_cache_dir);
		} else if (rc < 0) {
			fs_free(fs);
			return rc;
		} else {
			chunks_set_raw(fs->chunks, raw);
		}
	}
	fs->wenv = (struct writer_env){
		.chunks = fs->chunks,
		.chunk_size = cfg->chunk_size,
		.spool_dir = fs->spool_dir,
		.max_inflight = fs->n_threads + 1,
	};
	pthread_cond_init(&fs->gc_cond, NULL);
	rc = catalog_init_store(st);
	if (rc < 0) {
		fs_free(fs);
		return rc;
	}
	*out = fs;
	return 0;
}

int fs_start(struct ckfs *fs)
{
	if (fs->pool)
		return 0;
	fs->pool = pool_new(fs->n_threads);
	if (!fs->pool)
		return -ENOMEM;
	fs->wenv.pool = fs->pool;
	ra_set_pool(fs->ra, fs->pool);
	if (fs->cfg.gc_interval > 0 && !fs->cfg.read_only) {
		if (pthread_create(&fs->gc_thread, NULL, gc_main, fs) == 0)
			fs->gc_running = 1;
		else
			log_warn("gc thread did not start; run `ckptfs gc` instead");
	}
	return 0;
}

void fs_free(struct ckfs *fs)
{
	struct view *v, *vn;

	if (!fs)
		return;
	pthread_mutex_lock(&fs->lock);
	while (fs->bg_refreshes)	/* they use the views */
		pthread_cond_wait(&fs->view_cond, &fs->lock);
	pthread_mutex_unlock(&fs->lock);
	if (fs->gc_running) {
		pthread_mutex_lock(&fs->lock);
		fs->gc_stop = 1;
		pthread_cond_broadcast(&fs->gc_cond);
		pthread_mutex_unlock(&fs->lock);
		pthread_join(fs->gc_thread, NULL);
	}
	free_all_handles(fs);	/* before the wslots, ctl and ra they hold */
	free_all_wslots(fs);
	ghost_free_all(fs);
	ctl_free(fs);
	pool_free(fs->pool);
	ra_free(fs->ra);	/* after the pool: queued read-ahead uses it */
	chunks_free(fs->chunks);
	for (v = fs->views; v; v = vn) {
		vn = v->next;
		view_free(v);
	}
	pthread_mutex_destroy(&fs->lock);
	pthread_cond_destroy(&fs->view_cond);
	pthread_cond_destroy(&fs->ns_cond);
	free(fs->job);
	free(fs->spool_dir);
	free(fs->statfs_path);
	free(fs);
}

