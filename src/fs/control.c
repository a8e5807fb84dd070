/*
 * control.c: the files that do something when written — deployments/<name>
 * and the hotload control file in each checkpoint (DESIGN.md section 6).
 *
 * Owns:         deployment files in the store ("deployments/<name>.json"),
 *               the deployment's current checkpoint ("deploy-state/<name>.json"),
 *               running a hotload and its status JSON.
 * Does not own: the wire protocols (src/hotload), reading checkpoint bytes
 *               (chunks.c).
 *
 * A deployment file is buffered in memory while open and validated when it
 * is closed: an invalid one fails the close with EINVAL and the stored
 * version stays. A hotload runs inside the write(2) of the deployment name,
 * without fs->lock, so the server may read the checkpoint through this very
 * mount while we wait for it.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fs/fs_int.h"
#include "hotload/hotload.h"
#include "util/hash.h"
#include "util/log.h"
#include "util/metrics.h"
#include "util/name.h"

#define DEPLOY_MAX (1u << 20)

static char *deploy_key(const char *prefix, const char *name)
{
	char *enc = name_key_encode(name), *key = NULL;

	if (enc && asprintf(&key, "%s/%s.json", prefix, enc) < 0)
		key = NULL;
	free(enc);
	return key;
}

int ctl_deploy_getattr(struct ckfs *fs, const char *name, struct stat *st)
{
	struct store_stat sst;
	char *key = deploy_key("deployments", name);
	int rc = key ? store_head(fs->st, key, &sst) : -ENOMEM;
	struct handle *h;

	free(key);
	if (rc == -ENOENT) {
		/* Being created: it exists for its writer until the close. */
		pthread_mutex_lock(&fs->lock);
		for (h = fs->deploy_open; h; h = h->next)
			if (!strcmp(h->ctl_name, name))
				break;
		if (h) {
			sst.size = h->content.len;
			sst.mtime = time(NULL);
			rc = 0;
		}
		pthread_mutex_unlock(&fs->lock);
	}
	if (rc < 0)
		return rc;
	memset(st, 0, sizeof(*st));
	st->st_mode = S_IFREG | (fs->cfg.read_only ? 0444 : 0644);
	st->st_nlink = 1;
	st->st_uid = getuid();
	st->st_gid = getgid();
	st->st_size = (off_t)sst.size;
	st->st_mtime = st->st_ctime = st->st_atime = sst.mtime;
	return 0;
}

struct deploy_list {
	int (*add)(void *arg, const char *name);
	void *arg;
};

static int deploy_list_cb(const char *key, const struct store_stat *sst, void *arg)
{
	struct deploy_list *dl = arg;
	const char *leaf = key + strlen("deployments/");
	size_t n = strlen(leaf);
	char *enc, *name;
	int rc = 0;

	(void)sst;
	if (strchr(leaf, '/') || n <= 5 || strcmp(leaf + n - 5, ".json"))
		return 0;
	enc = strndup(leaf, n - 5);
	name = enc ? name_key_decode(enc) : NULL;
	if (name)
		rc = dl->add(dl->arg, name);
	free(enc);
	free(name);
	return rc;
}

int ctl_deploy_readdir(struct ckfs *fs, int (*add)(void *arg, const char *name), void *arg)
{
	struct deploy_list dl = { add, arg };

	return store_list(fs->st, "deployments/", deploy_list_cb, &dl);
}

int ctl_deploy_open(struct ckfs *fs, const char *name, int flags, int create,
		    struct handle *h)
{
	int wants_write = (flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC);
	char *key;
	int rc;

	if (wants_write && fs->cfg.read_only)
		return -EROFS;
	rc = deployment_check_name(name);
	if (rc < 0) {
		log_error("deployment name '%s' is not valid", name);
		return rc;
	}
	key = deploy_key("deployments", name);
	if (!key)
		return -ENOMEM;
	rc = store_get(fs->st, key, &h->content);
	free(key);
	if (rc == -ENOENT && create)
		rc = 0;
	if (rc < 0)
		return rc;
	if (flags & O_TRUNC)
		buf_reset(&h->content);
	h->type = H_DEPLOY;
	h->write_access = wants_write;
	h->dirty = create || (flags & O_TRUNC);
	h->ctl_name = strdup(name);
	if (!h->ctl_name)
		return -ENOMEM;
	pthread_mutex_lock(&fs->lock);
	h->next = fs->deploy_open;
	fs->deploy_open = h;
	pthread_mutex_unlock(&fs->lock);
	return 0;
}

void ctl_deploy_release(struct ckfs *fs, struct handle *h)
{
	struct handle **pp;

	pthread_mutex_lock(&fs->lock);
	for (pp = &fs->deploy_open; *pp; pp = &(*pp)->next)
		if (*pp == h) {
			*pp = h->next;
			break;
		}
	pthread_mutex_unlock(&fs->lock);
}

long ctl_deploy_write(struct handle *h, const char *buf, size_t size, uint64_t off)
{
	if (!h->write_access)
		return -EBADF;
	if (off + size > DEPLOY_MAX)
		return -EFBIG;
	if (off + size > h->content.len) {
		size_t grow = (size_t)(off + size - h->content.len);

		if (buf_reserve(&h->content, grow) < 0)
			return -ENOMEM;
		memset(h->content.data + h->content.len, 0, grow);
		h->content.len = (size_t)(off + size);
	}
	memcpy(h->content.data + off, buf, size);
	h->dirty = 1;
	return (long)size;
}

int ctl_deploy_flush(struct ckfs *fs, struct handle *h)
{
	struct deployment d = DEPLOYMENT_INIT;
	char err[256] = "", *key;
	int rc;

	if (!h->write_access || !h->dirty)
		return 0;
	rc = deployment_parse((const char *)h->content.data, h->content.len, &d,
			      err, sizeof(err));
	if (rc == 0)
		rc = deployment_check_token_envs(&d, fs->cfg.hotload_token_env, err,
						 sizeof(err));
	deployment_release(&d);
	if (rc < 0) {
		log_error("deployment %s: %s; the previous version is kept (EINVAL)",
			  h->ctl_name, err[0] ? err : "invalid");
		return -EINVAL;
	}
	key = deploy_key("deployments", h->ctl_name);
	rc = key ? store_put(fs->st, key, h->content.data, h->content.len) : -ENOMEM;
	free(key);
	if (rc == 0)
		h->dirty = 0;
	return rc;
}

int ctl_deploy_unlink(struct ckfs *fs, const char *name)
{
	char *key = deploy_key("deployments", name), *skey = deploy_key("deploy-state", name);
	struct store_stat sst;
	int rc = key && skey ? store_head(fs->st, key, &sst) : -ENOMEM;

	if (fs->cfg.read_only)
		rc = -EROFS;
	if (rc == 0)
		rc = store_remove(fs->st, key);
	if (rc == 0)
		store_remove(fs->st, skey);
	free(key);
	free(skey);
	return rc;
}

int ctl_deploy_getxattr(struct ckfs *fs, const char *name, const char *attr,
			char *out, size_t cap)
{
	struct buf b = BUF_INIT;
	char *key;
	cJSON *o;
	int rc;

	if (strcmp(attr, "user.ckptfs.current"))
		return -ENODATA;
	key = deploy_key("deploy-state", name);
	rc = key ? store_get(fs->st, key, &b) : -ENOMEM;
	free(key);
	if (rc == -ENOENT) {
		struct stat st;

		rc = ctl_deploy_getattr(fs, name, &st);
		return rc < 0 ? rc : -ENODATA;	/* nothing loaded yet */
	}
	if (rc < 0)
		return rc;
	o = cJSON_ParseWithLength((const char *)b.data, b.len);
	rc = -ENODATA;
	if (o && cJSON_IsString(cJSON_GetObjectItem(o, "current")))
		rc = snprintf(out, cap, "%s", cJSON_GetObjectItem(o, "current")->valuestring);
	cJSON_Delete(o);
	buf_release(&b);
	return rc;
}

/* ---- hotload ---- */

static char *status_key(const char *job, enum ckpt_dir dir, const char *name)
{
	char *k = NULL;

	if (asprintf(&k, "%s/%s/%s", job, ckpt_dir_name(dir), name) < 0)
		return NULL;
	return k;
}

int ctl_hotload_status(struct ckfs *fs, const char *job, enum ckpt_dir dir,
		       const char *name, struct buf *out)
{
	char *key = status_key(job, dir, name);
	struct hl_status *s;
	int rc = 0;

	if (!key)
		return -ENOMEM;
	for (s = fs->hl_statuses; s; s = s->next)
		if (!strcmp(s->key, key)) {
			rc = buf_append_str(out, s->json);
			break;
		}
	free(key);
	return rc;
}

static void set_status(struct ckfs *fs, const char *job, enum ckpt_dir dir,
		       const char *name, char *json)
{
	char *key = status_key(job, dir, name);
	struct hl_status *s;

	if (!key) {
		free(json);
		return;
	}
	pthread_mutex_lock(&fs->lock);
	for (s = fs->hl_statuses; s; s = s->next)
		if (!strcmp(s->key, key))
			break;
	if (!s && (s = calloc(1, sizeof(*s))) != NULL) {
		s->key = key;
		key = NULL;
		s->next = fs->hl_statuses;
		fs->hl_statuses = s;
	}
	if (s) {
		free(s->json);
		s->json = json;
		json = NULL;
	}
	pthread_mutex_unlock(&fs->lock);
	free(key);
	free(json);
}

void ctl_free(struct ckfs *fs)
{
	struct hl_status *s, *n;

	for (s = fs->hl_statuses; s; s = n) {
		n = s->next;
		free(s->key);
		free(s->json);
		free(s);
	}
	fs->hl_statuses = NULL;
}

/* What a hotload needs to know about the checkpoint, copied under the lock. */
struct hl_target {
	char *job, *name, *kind, *base, *snapshot;
	struct entry *files;	/* copies */
	size_t n_files;
};

static void target_release(struct hl_target *t)
{
	size_t i;

	for (i = 0; i < t->n_files; i++)
		entry_release(&t->files[i]);
	free(t->files);
	free(t->job);
	free(t->name);
	free(t->kind);
	free(t->base);
	free(t->snapshot);
}

static int target_get(struct ckfs *fs, const struct handle *h, struct hl_target *t)
{
	struct ckpt *c;
	size_t i;
	int rc = 0;

	memset(t, 0, sizeof(*t));
	pthread_mutex_lock(&fs->lock);
	c = fs_find_ckpt(fs, h->ctl_job, h->ctl_dir, h->ctl_name);
	if (!c) {
		rc = -ENOENT;
		goto out;
	}
	/* The caller logs these, once, with the status it records. */
	if (c->bad_key) {
		rc = -EIO;
		goto out;
	}
	if (c->rec.dir == CKPT_STATE ||
	    fs_ckpt_has_writers(fs, c->rec.job, c->rec.dir, c->rec.name)) {
		rc = -EINVAL;
		goto out;
	}
	t->job = strdup(c->rec.job);
	t->name = strdup(c->rec.name);
	t->kind = strdup(ckpt_kind_name(c->rec.kind));
	t->base = c->rec.base ? strdup(c->rec.base) : NULL;
	if (asprintf(&t->snapshot, "%s-%s", c->rec.name, c->rec.session) < 0)
		t->snapshot = NULL;
	t->files = calloc(c->n_ents ? c->n_ents : 1, sizeof(*t->files));
	if (!t->job || !t->name || !t->kind || !t->snapshot || !t->files ||
	    (c->rec.base && !t->base)) {
		rc = -ENOMEM;
		goto out;
	}
	for (i = 0; i < c->n_ents && rc == 0; i++) {
		if (c->ents[i].e->is_dir)
			continue;
		rc = entry_copy(c->ents[i].e, &t->files[t->n_files]);
		if (rc == 0)
			t->n_files++;
	}
out:
	pthread_mutex_unlock(&fs->lock);
	return rc;
}

/* sha256 of a committed file, decoded chunk by chunk (http protocol). */
static int file_sha256(struct ckfs *fs, const struct entry *e, char hex[65])
{
	struct hash_sha256_ctx *h = hash_sha256_new();
	size_t i;

	if (!h)
		return -ENOMEM;
	for (i = 0; i < e->n_chunks; i++) {
		uint64_t off = (uint64_t)i * e->chunk_size;
		size_t len = e->size - off < e->chunk_size ? (size_t)(e->size - off) : e->chunk_size;
		const struct chunk_data *d;
		int rc = chunks_get(fs->chunks, &e->chunks[i], len, &d);

		if (rc < 0) {
			hash_sha256_finish(h, hex);
			return rc;
		}
		hash_sha256_update(h, d->data, len);
		chunks_put(fs->chunks, d);
	}
	hash_sha256_finish(h, hex);
	return 0;
}

static char *status_json(const char *deployment, const struct hl_target *t,
			 const struct hotload_result *res, double started, int rc)
{
	cJSON *o = cJSON_CreateObject();
	char *s;

	if (!o)
		return NULL;
	cJSON_AddStringToObject(o, "deployment", deployment);
	cJSON_AddStringToObject(o, "checkpoint", t->name ? t->name : "");
	cJSON_AddStringToObject(o, "snapshot", t->snapshot ? t->snapshot : "");
	cJSON_AddStringToObject(o, "state", rc == 0 ? "confirmed" : "failed");
	cJSON_AddNumberToObject(o, "started", started);
	cJSON_AddNumberToObject(o, "seconds", res->seconds);
	cJSON_AddNumberToObject(o, "http_status", (double)res->http_status);
	if (rc == 0)
		cJSON_AddNullToObject(o, "error");
	else
		cJSON_AddStringToObject(o, "error", res->error[0] ? res->error : strerror(-rc));
	cJSON_AddStringToObject(o, "errno", rc == 0 ? "" :
				strerrorname_np(-rc) ? strerrorname_np(-rc) : "EIO");
	cJSON_AddStringToObject(o, "model_path", res->model_path);
	if (res->version[0])
		cJSON_AddStringToObject(o, "version", res->version);
	s = cJSON_Print(o);
	cJSON_Delete(o);
	if (s) {
		char *nl = NULL;

		if (asprintf(&nl, "%s\n", s) < 0)
			nl = NULL;
		free(s);
		s = nl;
	}
	return s;
}

static int record_current(struct ckfs *fs, const char *deployment, const struct hl_target *t)
{
	cJSON *o = cJSON_CreateObject();
	char *s, *key = deploy_key("deploy-state", deployment);
	int rc = -ENOMEM;

	if (o && key) {
		cJSON_AddStringToObject(o, "current", t->snapshot);
		cJSON_AddStringToObject(o, "job", t->job);
		cJSON_AddStringToObject(o, "checkpoint", t->name);
		cJSON_AddNumberToObject(o, "at", (double)time(NULL));
		s = cJSON_PrintUnformatted(o);
		if (s) {
			rc = store_put(fs->st, key, s, strlen(s));
			free(s);
		}
	}
	cJSON_Delete(o);
	free(key);
	return rc;
}

/*
 * A hotload waits for a server for up to its timeout_s inside write(2), on
 * one of the FUSE loop's threads. Bounding how many run at once keeps the
 * other threads for everything else when a server hangs: one more is
 * EBUSY at once.
 */
static int hl_slot_take(struct ckfs *fs)
{
	int ok;

	pthread_mutex_lock(&fs->lock);
	ok = fs->hl_inflight < fs->cfg.hotload_max;
	if (ok)
		fs->hl_inflight++;
	pthread_mutex_unlock(&fs->lock);
	return ok;
}

static void hl_slot_give(struct ckfs *fs)
{
	pthread_mutex_lock(&fs->lock);
	fs->hl_inflight--;
	pthread_mutex_unlock(&fs->lock);
}

long ctl_hotload_write(struct ckfs *fs, struct handle *h, const char *buf, size_t size)
{
	struct deployment d = DEPLOYMENT_INIT;
	struct hotload_result res;
	struct hotload_request req = { 0 };
	struct hotload_file *files = NULL;
	char (*hexes)[65] = NULL;
	struct hl_target t;
	struct buf dj = BUF_INIT;
	char name[256] = "", err[200] = "", *key = NULL;
	struct timespec ts;
	double started, t0 = metrics_now();
	size_t n = size, i;
	int rc, ran = 0, slot = 0;

	memset(&res, 0, sizeof(res));
	clock_gettime(CLOCK_REALTIME, &ts);
	started = (double)ts.tv_sec + ts.tv_nsec / 1e9;
	memset(&t, 0, sizeof(t));
	/* "echo NAME > hotload": one deployment name, trailing newline fine. */
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
		n--;
	if (n == 0 || n >= sizeof(name) || memchr(buf, '\n', n)) {
		rc = -EINVAL;
		snprintf(res.error, sizeof(res.error), "write one deployment name");
		goto done;
	}
	memcpy(name, buf, n);
	name[n] = '\0';
	/* Before any store or network I/O: a full mount answers at once. */
	slot = hl_slot_take(fs);
	if (!slot) {
		rc = -EBUSY;
		snprintf(res.error, sizeof(res.error),
			 "%d hotloads already in flight on this mount (--hotload-max)",
			 fs->cfg.hotload_max);
		goto done;
	}
	rc = deployment_check_name(name);
	if (rc < 0) {
		rc = -ENOENT;	/* no deployment can have that name */
		snprintf(res.error, sizeof(res.error), "no deployment named '%s'", name);
		goto done;
	}
	key = deploy_key("deployments", name);
	rc = key ? store_get(fs->st, key, &dj) : -ENOMEM;
	if (rc == -ENOENT)
		snprintf(res.error, sizeof(res.error), "no deployment named '%s'", name);
	if (rc < 0)
		goto done;
	rc = deployment_parse((const char *)dj.data, dj.len, &d, err, sizeof(err));
	/* Stored before the allow-list (or by a mount with another one). */
	if (rc == 0)
		rc = deployment_check_token_envs(&d, fs->cfg.hotload_token_env, err,
						 sizeof(err));
	if (rc < 0) {
		snprintf(res.error, sizeof(res.error), "deployment %.200s: %s", name, err);
		rc = -EINVAL;
		goto done;
	}
	rc = target_get(fs, h, &t);
	if (rc < 0) {
		if (rc == -EINVAL)
			snprintf(res.error, sizeof(res.error), "%s",
				 h->ctl_dir == CKPT_STATE ? "train-state checkpoints are not hotloaded"
							  : "files are still open for writing");
		else if (rc == -EIO)
			snprintf(res.error, sizeof(res.error), "%s",
				 "a store object of this checkpoint is corrupt (see fsck)");
		goto done;
	}
	files = calloc(t.n_files ? t.n_files : 1, sizeof(*files));
	hexes = calloc(t.n_files ? t.n_files : 1, sizeof(*hexes));
	if (!files || !hexes) {
		rc = -ENOMEM;
		goto done;
	}
	for (i = 0; i < t.n_files; i++) {
		files[i].path = t.files[i].path;
		files[i].size = t.files[i].size;
		files[i].sha256 = hexes[i];
		/* Only the webhook lists hashes; hashing reads every byte. */
		if (d.protocol == HOTLOAD_HTTP) {
			rc = file_sha256(fs, &t.files[i], hexes[i]);
			if (rc < 0)
				goto done;
		}
	}
	req.deployment = name;
	req.job = t.job;
	req.checkpoint = t.name;
	req.snapshot = t.snapshot;
	req.kind = t.kind;
	req.base = t.base;
	req.files = files;
	req.n_files = t.n_files;
	req.token_env_allow = fs->cfg.hotload_token_env;
	/* No fs->lock here: the server reads the checkpoint through this mount. */
	log_info("hotload %s -> %s: start (%s, %zu files)", t.name, name,
		 t.kind, t.n_files);
	rc = hotload_run(&d, &req, &res);
	ran = 1;	/* hotload_run() logged the outcome, once */
	if (rc == 0) {
		int rc2 = record_current(fs, name, &t);

		if (rc2 < 0)
			log_warn("hotload %s -> %s: confirmed, but recording it failed: %s",
				 t.name, name, strerror(-rc2));
	}
done:
	if (rc < 0 && !ran)
		log_error("hotload %s -> %s: %s (%s)", h->ctl_name, name[0] ? name : "?",
			  res.error[0] ? res.error : strerror(-rc),
			  strerrorname_np(-rc) ? strerrorname_np(-rc) : "?");
	if (slot)
		hl_slot_give(fs);
	{
		/* Only names of stored deployments become label values (and the
		 * registry caps how many): a typo is "unknown". */
		const char *dl = dj.len ? name : "unknown";

		metrics_inc(M_HOTLOADS, dl, rc == 0 ? "ok" : metrics_errno_name(rc), NULL);
		metrics_observe(M_HOTLOAD_SECONDS, metrics_now() - t0, dl, NULL, NULL);
	}
	if (!t.name)
		t.name = strdup(h->ctl_name);
	set_status(fs, h->ctl_job, h->ctl_dir, h->ctl_name,
		   status_json(name, &t, &res, started, rc));
	target_release(&t);
	deployment_release(&d);
	buf_release(&dj);
	free(files);
	free(hexes);
	free(key);
	return rc < 0 ? rc : (long)size;
}
