/*
 * hotload.c: pushing a checkpoint into a running inference deployment.
 *
 * Owns:         the wire protocols (sglang, vllm, http) spoken over libcurl,
 *               retries with backoff inside the deployment's deadline,
 *               confirmation of the loaded weight version, warmup, the
 *               one-at-a-time rule per deployment, and the process-wide
 *               record of vLLM deployments whose weight-transfer engine has
 *               been initialised.
 * Does not own: the deployment file (deployment.c), which checkpoints may be
 *               loaded or their bytes (fs; the caller passes the file list).
 *
 * Every request and response, and the engine source each was checked
 * against, is in doc/HOTLOAD.md; the comments here give only the reasons.
 *
 * Secrets: the bearer token is read from the environment and handed to
 * libcurl (CURLOPT_XOAUTH2_BEARER), which copies it. It is never copied into
 * a buffer of ours, a log line or res->error; server messages are scrubbed
 * of it too, since a server may echo a bad credential back.
 */
#include "hotload/hotload.h"

#include <cJSON.h>
#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/log.h"
#include "util/name.h"

#define BACKOFF_START_S	0.1
#define BACKOFF_CAP_S	2.0
#define CONNECT_CAP_S	10.0		/* one connect attempt, not the whole call */
#define REPLY_MAX	(1u << 20)	/* engines answer in bytes, not megabytes */
#define WARMUP_PROMPT	"Hello"

/* ---- process-wide state, one record per deployment URL ---- */

/*
 * Deployments are keyed by URL, not by name: two names for the same server
 * are the same engine, and must not load into it at the same time. Records
 * are never freed; there is one per server ever targeted.
 */
struct target {
	struct target *next;
	pthread_mutex_t run_lock;	/* held for a whole hotload_run() */
	int vllm_ready;			/* under run_lock: engine initialised */
	char url[];
};

static pthread_mutex_t targets_lock = PTHREAD_MUTEX_INITIALIZER;
static struct target *targets;
static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void curl_init_once(void)
{
	curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static struct target *target_get(const char *url)
{
	struct target *t;

	pthread_mutex_lock(&targets_lock);
	for (t = targets; t; t = t->next)
		if (!strcmp(t->url, url))
			goto out;
	t = calloc(1, sizeof(*t) + strlen(url) + 1);
	if (t) {
		pthread_mutex_init(&t->run_lock, NULL);
		strcpy(t->url, url);
		t->next = targets;
		targets = t;
	}
out:
	pthread_mutex_unlock(&targets_lock);
	return t;
}

/* ---- one run ---- */

struct run {
	const struct deployment *d;
	const struct hotload_request *req;
	struct hotload_result *res;
	struct target *tgt;
	const char *name;		/* deployment name, for log lines */
	const char *token;		/* borrowed from the environment; see top */
	CURL *curl;
	struct curl_slist *json_hdrs;	/* requests with a JSON body */
	struct curl_slist *plain_hdrs;	/* GET, and POST without a body */
	double deadline;		/* CLOCK_MONOTONIC seconds */
	unsigned int attempt;		/* transient failures in a row */
	uint64_t rng;
	char curl_err[CURL_ERROR_SIZE];
	char last[384];			/* last transient failure, for ETIMEDOUT */
};

struct reply {
	long status;			/* 0: no HTTP response */
	struct buf body;
	cJSON *json;			/* the body, if it is JSON */
	double retry_after;		/* seconds, from a 429/503 Retry-After */
};

static void reply_release(struct reply *rp)
{
	buf_release(&rp->body);
	cJSON_Delete(rp->json);
	memset(rp, 0, sizeof(*rp));
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void sleep_s(double s)
{
	struct timespec ts;

	if (s <= 0)
		return;
	ts.tv_sec = (time_t)s;
	ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static double remaining(const struct run *r)
{
	return r->deadline - now_s();
}

/* Jitter only; xorshift64 is plenty and needs no shared state. */
static double rand01(struct run *r)
{
	r->rng ^= r->rng << 13;
	r->rng ^= r->rng >> 7;
	r->rng ^= r->rng << 17;
	return (double)(r->rng >> 11) / (double)(1ull << 53);
}

/* snprintf where truncating is intended: messages are cut, never overflowed. */
static void fmt(char *dst, size_t size, const char *f, ...)
	__attribute__((format(printf, 3, 4)));

static void fmt(char *dst, size_t size, const char *f, ...)
{
	va_list ap;

	va_start(ap, f);
	vsnprintf(dst, size, f, ap);
	va_end(ap);
}

/*
 * Replace every occurrence of the token in @s, in place (truncating). One
 * pass over the original, so a token that occurs in the mask cannot loop.
 */
static void scrub(const struct run *r, char *s, size_t size)
{
	static const char mask[] = "[redacted]";
	size_t tlen = r->token ? strlen(r->token) : 0;
	const char *p, *hit;
	struct buf out = BUF_INIT;
	int rc = 0;

	if (!tlen || !size || !strstr(s, r->token))
		return;
	for (p = s; !rc && (hit = strstr(p, r->token)); p = hit + tlen) {
		rc = buf_append(&out, p, hit - p);
		if (!rc)
			rc = buf_append_str(&out, mask);
	}
	if (!rc)
		rc = buf_append(&out, p, strlen(p) + 1);
	/* Zero first: the old tail past the new NUL could hold a piece of it. */
	memset(s, 0, size);
	if (!rc)
		fmt(s, size, "%s", (const char *)out.data);
	buf_release(&out);
}

/*
 * Every log line of this file goes through here, scrubbed: the token can
 * reach a line through a server message or even a path.
 */
static void say(const struct run *r, enum log_level lvl, const char *f, ...)
	__attribute__((format(printf, 3, 4)));

static void say(const struct run *r, enum log_level lvl, const char *f, ...)
{
	char line[1024];
	va_list ap;

	va_start(ap, f);
	vsnprintf(line, sizeof(line), f, ap);
	va_end(ap);
	scrub(r, line, sizeof(line));
	log_msg(lvl, "%s", line);
}

static void set_error(struct run *r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void set_error(struct run *r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(r->res->error, sizeof(r->res->error), fmt, ap);
	va_end(ap);
	scrub(r, r->res->error, sizeof(r->res->error));
}

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
	struct buf *b = arg;

	if (b->len + size * n > REPLY_MAX || buf_append(b, p, size * n) < 0)
		return 0;	/* makes curl fail with CURLE_WRITE_ERROR */
	return size * n;
}

/*
 * What the server said, from whichever shape its error takes: SGLang's
 * {"success": false, "message"}, vLLM/OpenAI's {"error": {"message"}},
 * SGLang's 401 {"error": "Unauthorized"}, FastAPI's {"detail": ...}; else
 * the body's text. Control bytes become spaces so it stays one log line.
 */
static void reply_message(const struct reply *rp, char *out, size_t size)
{
	const cJSON *j = rp->json, *e;
	const char *msg = NULL;
	size_t i, n;

	if (cJSON_IsObject(j)) {
		e = cJSON_GetObjectItemCaseSensitive(j, "message");
		if (cJSON_IsString(e))
			msg = e->valuestring;
		e = cJSON_GetObjectItemCaseSensitive(j, "error");
		if (!msg && cJSON_IsString(e))
			msg = e->valuestring;
		if (!msg && cJSON_IsObject(e)) {
			e = cJSON_GetObjectItemCaseSensitive(e, "message");
			if (cJSON_IsString(e))
				msg = e->valuestring;
		}
		e = cJSON_GetObjectItemCaseSensitive(j, "detail");
		if (!msg && cJSON_IsString(e))
			msg = e->valuestring;
		if (!msg && cJSON_IsArray(e) && cJSON_GetArraySize(e) > 0) {
			e = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(e, 0),
							    "msg");
			if (cJSON_IsString(e))
				msg = e->valuestring;
		}
	}
	if (msg) {
		snprintf(out, size, "%s", msg);
	} else {
		n = rp->body.len < size - 1 ? rp->body.len : size - 1;
		if (n)
			memcpy(out, rp->body.data, n);
		out[n] = '\0';
	}
	for (i = 0; out[i]; i++)
		if ((unsigned char)out[i] < ' ' || out[i] == 0x7f)
			out[i] = ' ';
	/* Trailing spaces from the text bodies' newlines. */
	while (i > 0 && out[i - 1] == ' ')
		out[--i] = '\0';
	if (!*out)
		snprintf(out, size, "(no message)");
}

static int is_transient_curl(CURLcode cc)
{
	switch (cc) {
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
	case CURLE_COULDNT_CONNECT:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
	case CURLE_SSL_CONNECT_ERROR:
		return 1;
	default:
		return 0;
	}
}

/*
 * One HTTP exchange, bounded by what is left of the deadline.
 * 0: a response arrived (any status), in @rp. -EAGAIN: a transport failure
 * worth retrying (described in r->last). -ETIMEDOUT: the deadline passed.
 * -EIO: a transport failure that retrying cannot fix (res->error). -ENOMEM.
 */
static int exchange(struct run *r, const char *method, const char *path,
		    const char *body, struct reply *rp)
{
	struct buf url = BUF_INIT;
	double left = remaining(r);
	curl_off_t retry_after = 0;
	CURLcode cc;
	int rc;

	if (left <= 0)
		return -ETIMEDOUT;
	if (buf_printf(&url, "%s%s", r->d->url, path) < 0 ||
	    buf_append(&url, "", 1) < 0) {
		buf_release(&url);
		return -ENOMEM;
	}
	r->curl_err[0] = '\0';
	curl_easy_setopt(r->curl, CURLOPT_URL, (char *)url.data);
	if (!strcmp(method, "GET")) {
		curl_easy_setopt(r->curl, CURLOPT_HTTPGET, 1L);
		curl_easy_setopt(r->curl, CURLOPT_HTTPHEADER, r->plain_hdrs);
	} else {
		/* An empty POST is still a POST with Content-Length: 0. */
		curl_easy_setopt(r->curl, CURLOPT_POST, 1L);
		curl_easy_setopt(r->curl, CURLOPT_POSTFIELDS, body ? body : "");
		curl_easy_setopt(r->curl, CURLOPT_POSTFIELDSIZE,
				 (long)(body ? strlen(body) : 0));
		curl_easy_setopt(r->curl, CURLOPT_HTTPHEADER,
				 body ? r->json_hdrs : r->plain_hdrs);
	}
	curl_easy_setopt(r->curl, CURLOPT_TIMEOUT_MS, (long)ceil(left * 1000));
	curl_easy_setopt(r->curl, CURLOPT_CONNECTTIMEOUT_MS,
			 (long)ceil(fmin(left, CONNECT_CAP_S) * 1000));
	curl_easy_setopt(r->curl, CURLOPT_WRITEDATA, &rp->body);

	cc = curl_easy_perform(r->curl);
	buf_release(&url);
	if (cc == CURLE_OK) {
		curl_easy_getinfo(r->curl, CURLINFO_RESPONSE_CODE, &rp->status);
		r->res->http_status = rp->status;
#if LIBCURL_VERSION_NUM >= 0x074200
		if (curl_easy_getinfo(r->curl, CURLINFO_RETRY_AFTER,
				      &retry_after) == CURLE_OK)
			rp->retry_after = (double)retry_after;
#endif
		rp->json = cJSON_ParseWithLength((const char *)rp->body.data,
						 rp->body.len);
		return 0;
	}
	if (cc == CURLE_OPERATION_TIMEDOUT && remaining(r) <= 0.001)
		rc = -ETIMEDOUT;
	else if (is_transient_curl(cc))
		rc = -EAGAIN;
	else
		rc = -EIO;
	snprintf(r->last, sizeof(r->last), "%s %s: %s", method, path[0] ? path : "/",
		 r->curl_err[0] ? r->curl_err : curl_easy_strerror(cc));
	scrub(r, r->last, sizeof(r->last));
	if (rc == -EIO) {
		if (cc == CURLE_WRITE_ERROR)
			set_error(r, "%s %s: reply larger than %u bytes", method,
				  path, REPLY_MAX);
		else
			set_error(r, "%s", r->last);
	}
	return rc;
}

/*
 * Wait before the next attempt: exponential from 100 ms, capped at 2 s,
 * with jitter so that many mounts retrying one server do not synchronise;
 * a server's Retry-After wins when it asks for longer. Never sleeps past
 * the deadline. 0, or -ETIMEDOUT when the deadline has passed.
 */
static int backoff(struct run *r, double retry_after)
{
	double delay = BACKOFF_START_S * pow(2.0, r->attempt < 16 ? r->attempt : 16);
	double left;

	r->attempt++;
	if (delay > BACKOFF_CAP_S)
		delay = BACKOFF_CAP_S;
	delay *= 0.5 + 0.5 * rand01(r);
	if (retry_after > delay)
		delay = retry_after;
	/* Powers of two only, so a long outage does not flood the log. */
	if (!(r->attempt & (r->attempt - 1)))
		say(r, LOG_LVL_WARN, "hotload %s: %s; retrying for %.1fs more",
		    r->name, r->last, fmax(remaining(r), 0));
	left = remaining(r);
	if (left <= 0)
		return -ETIMEDOUT;
	sleep_s(fmin(delay, left));
	return remaining(r) <= 0 ? -ETIMEDOUT : 0;
}

enum {
	CALL_RETRY  = 1,	/* retry transient failures here, with backoff */
	CALL_UNINIT = 2,	/* vLLM: "not initialized" is -ENOTCONN */
};

static int says_uninitialised(const char *msg)
{
	return strcasestr(msg, "not initialized") ||
	       strcasestr(msg, "not initialised");
}

/*
 * Send one request until it gets a final answer.
 * 0: 2xx, @rp holds the reply (caller releases it). -EAGAIN: a transient
 * failure and no CALL_RETRY (the caller restarts a sequence, after
 * backoff()). -ENOTCONN: CALL_UNINIT and the server says its engine is not
 * initialised. -EIO: refused (4xx other than 429, a redirect), the server's
 * message in res->error. -ETIMEDOUT. -ENOMEM.
 */
static int call(struct run *r, const char *method, const char *path,
		const cJSON *body, int flags, struct reply *rp)
{
	char *text = NULL;
	char msg[384];
	int rc;

	if (body) {
		text = cJSON_PrintUnformatted(body);
		if (!text)
			return -ENOMEM;
	}
	for (;;) {
		reply_release(rp);
		rc = exchange(r, method, path, text, rp);
		if (rc == 0 && rp->status >= 200 && rp->status < 300) {
			r->attempt = 0;
			break;
		}
		if (rc == 0) {
			reply_message(rp, msg, sizeof(msg));
			fmt(r->last, sizeof(r->last), "%s %s: HTTP %ld: %s",
			    method, path[0] ? path : "/", rp->status, msg);
			scrub(r, r->last, sizeof(r->last));
			if ((flags & CALL_UNINIT) && says_uninitialised(msg)) {
				rc = -ENOTCONN;
				break;
			}
			if (rp->status < 500 && rp->status != 429) {
				set_error(r, "%s", r->last);
				rc = -EIO;
				break;
			}
			rc = -EAGAIN;
		}
		if (rc != -EAGAIN)
			break;
		if (!(flags & CALL_RETRY))
			break;
		rc = backoff(r, rp->retry_after);
		if (rc < 0)
			break;
	}
	cJSON_free(text);
	return rc;
}

/* A string member of the reply, or NULL. */
static const char *reply_str(const struct reply *rp, const char *key)
{
	const cJSON *e = cJSON_GetObjectItemCaseSensitive(rp->json, key);

	return cJSON_IsString(e) ? e->valuestring : NULL;
}

/* The confirmation step: the version the server reports must be ours. */
static int confirm_version(struct run *r, const char *path)
{
	struct reply rp = { 0 };
	const char *v;
	int rc;

	rc = call(r, "GET", path, NULL, CALL_RETRY, &rp);
	if (rc < 0)
		goto out;
	v = reply_str(&rp, "weight_version");
	if (!v || strcmp(v, r->req->snapshot)) {
		set_error(r, "GET %s: server reports weight version %.100s, expected %.100s",
			  path, v ? v : "(none)", r->req->snapshot);
		rc = -EIO;
		goto out;
	}
	snprintf(r->res->version, sizeof(r->res->version), "%s", v);
out:
	reply_release(&rp);
	return rc;
}

/* Warmup is one request through the new weights: a broken load shows here. */
static int warmup(struct run *r, const char *path, cJSON *body)
{
	struct reply rp = { 0 };
	int rc;

	if (!body)
		return -ENOMEM;
	rc = call(r, "POST", path, body, CALL_RETRY, &rp);
	if (rc == -EIO) {
		char why[sizeof(r->res->error)];

		snprintf(why, sizeof(why), "%s", r->res->error);
		set_error(r, "warmup failed: %s", why);
	}
	reply_release(&rp);
	return rc;
}

/* ---- sglang ---- */

static int run_sglang(struct run *r)
{
	struct reply rp = { 0 };
	const cJSON *ok;
	cJSON *body, *sp;
	int rc = -ENOMEM;

	/*
	 * flush_cache is a field of the load request itself, so the radix
	 * cache is flushed by the same call that swaps the weights: no window
	 * where new weights serve KV computed by the old ones.
	 */
	body = cJSON_CreateObject();
	if (!cJSON_AddStringToObject(body, "model_path", r->res->model_path) ||
	    !cJSON_AddStringToObject(body, "weight_version", r->req->snapshot) ||
	    !cJSON_AddBoolToObject(body, "flush_cache", r->d->reset_cache))
		goto out;
	rc = call(r, "POST", "/update_weights_from_disk", body, CALL_RETRY, &rp);
	if (rc < 0)
		goto out;
	ok = cJSON_GetObjectItemCaseSensitive(rp.json, "success");
	if (!cJSON_IsTrue(ok)) {
		char msg[384];

		reply_message(&rp, msg, sizeof(msg));
		set_error(r, "POST /update_weights_from_disk: HTTP %ld: %s",
			  rp.status, msg);
		rc = -EIO;
		goto out;
	}
	rc = confirm_version(r, "/get_weight_version");
	if (rc < 0 || !r->d->warmup)
		goto out;
	cJSON_Delete(body);
	body = cJSON_CreateObject();
	sp = cJSON_AddObjectToObject(body, "sampling_params");
	if (!cJSON_AddStringToObject(body, "text", WARMUP_PROMPT) ||
	    !cJSON_AddNumberToObject(sp, "max_new_tokens", 1) ||
	    !cJSON_AddNumberToObject(sp, "temperature", 0)) {
		rc = -ENOMEM;
		goto out;
	}
	rc = warmup(r, "/generate", body);
out:
	reply_release(&rp);
	cJSON_Delete(body);
	return rc;
}

/* ---- vllm ---- */

/* POST @path with @body (may be NULL: empty body); reply discarded. */
static int vllm_post(struct run *r, const char *path, const cJSON *body,
		     int flags)
{
	struct reply rp = { 0 };
	int rc = call(r, "POST", path, body, flags, &rp);

	reply_release(&rp);
	return rc;
}

/*
 * The weight-transfer flow. A transient failure inside update_weights or
 * finish_weight_update restarts from start_weight_update: the disk engine
 * aborts its session when a step fails, so resending only the failed step
 * would be refused. A "not initialized" answer (the server restarted)
 * re-initialises once and restarts.
 */
static int vllm_transfer(struct run *r)
{
	cJSON *init = NULL, *upd = NULL, *fin = NULL, *o;
	int reinit = 0;
	int rc = -ENOMEM;

	init = cJSON_CreateObject();
	upd = cJSON_CreateObject();
	fin = cJSON_CreateObject();
	/* The disk backend's init info has no fields. */
	if (!cJSON_AddObjectToObject(init, "init_info"))
		goto out;
	o = cJSON_AddObjectToObject(upd, "update_info");
	if (!cJSON_AddStringToObject(o, "path", r->res->model_path) ||
	    !cJSON_AddStringToObject(fin, "weight_version", r->req->snapshot))
		goto out;

	for (;;) {
		if (!r->tgt->vllm_ready) {
			rc = vllm_post(r, "/init_weight_transfer_engine", init,
				       CALL_RETRY);
			if (rc < 0)
				goto out;
			r->tgt->vllm_ready = 1;
		}
		rc = vllm_post(r, "/start_weight_update", NULL,
			       CALL_RETRY | CALL_UNINIT);
		if (rc == 0)
			rc = vllm_post(r, "/update_weights", upd, CALL_UNINIT);
		if (rc == 0)
			rc = vllm_post(r, "/finish_weight_update", fin, CALL_UNINIT);
		if (rc == 0)
			break;
		if (rc == -ENOTCONN) {
			r->tgt->vllm_ready = 0;
			if (reinit++) {
				set_error(r, "%s (after re-initialising)", r->last);
				rc = -EIO;
				goto out;
			}
			say(r, LOG_LVL_INFO, "hotload %s: server lost its weight-transfer engine; initialising again",
			    r->name);
			continue;
		}
		if (rc != -EAGAIN)
			goto out;
		rc = backoff(r, 0);
		if (rc < 0)
			goto out;
	}
	rc = confirm_version(r, "/weight_info");
	if (rc < 0 || !r->d->reset_cache)
		goto out;
	/*
	 * The prefix cache holds KV computed by the old weights. vLLM answers
	 * {"success": false} while blocks are in use and says to retry; older
	 * versions answer 200 with no body.
	 */
	for (;;) {
		struct reply rp = { 0 };
		const cJSON *ok;

		rc = call(r, "POST", "/reset_prefix_cache", NULL, CALL_RETRY, &rp);
		ok = rc ? NULL : cJSON_GetObjectItemCaseSensitive(rp.json, "success");
		reply_release(&rp);
		if (rc < 0 || !cJSON_IsBool(ok) || cJSON_IsTrue(ok))
			break;
		snprintf(r->last, sizeof(r->last),
			 "POST /reset_prefix_cache: success false (blocks in use)");
		rc = backoff(r, 0);
		if (rc < 0)
			break;
	}
out:
	cJSON_Delete(init);
	cJSON_Delete(upd);
	cJSON_Delete(fin);
	return rc;
}

/* Is adapter @name listed by GET /v1/models with root @path? 1, 0, or -errno. */
static int vllm_lora_listed(struct run *r, const char *name, const char *path)
{
	struct reply rp = { 0 };
	const cJSON *m, *id, *root;
	int rc;

	rc = call(r, "GET", "/v1/models", NULL, CALL_RETRY, &rp);
	if (rc < 0)
		goto out;
	cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(rp.json, "data")) {
		id = cJSON_GetObjectItemCaseSensitive(m, "id");
		root = cJSON_GetObjectItemCaseSensitive(m, "root");
		if (cJSON_IsString(id) && !strcmp(id->valuestring, name) &&
		    cJSON_IsString(root) && !strcmp(root->valuestring, path)) {
			rc = 1;
			goto out;
		}
	}
	rc = 0;
out:
	reply_release(&rp);
	return rc;
}

/*
 * LoRA: the adapter is named after the snapshot, so every checkpoint is a
 * new adapter and vLLM's "already loaded" rule never fires for a new one;
 * requests select it by that name. /v1/models is both the idempotence check
 * (a retried run after a lost reply) and the confirmation.
 */
static int vllm_lora(struct run *r)
{
	const char *name = r->req->snapshot, *path = r->res->model_path;
	cJSON *body;
	int rc;

	rc = vllm_lora_listed(r, name, path);
	if (rc < 0)
		return rc;
	if (rc == 0) {
		body = cJSON_CreateObject();
		if (!cJSON_AddStringToObject(body, "lora_name", name) ||
		    !cJSON_AddStringToObject(body, "lora_path", path)) {
			cJSON_Delete(body);
			return -ENOMEM;
		}
		rc = vllm_post(r, "/v1/load_lora_adapter", body, CALL_RETRY);
		cJSON_Delete(body);
		/* A reply lost after the load succeeded: the retry is refused. */
		if (rc == -EIO && vllm_lora_listed(r, name, path) == 1)
			rc = 0;
		if (rc < 0)
			return rc;
		rc = vllm_lora_listed(r, name, path);
		if (rc < 0)
			return rc;
		if (rc == 0) {
			set_error(r, "GET /v1/models: adapter %.100s not listed after loading",
				  name);
			return -EIO;
		}
	}
	snprintf(r->res->version, sizeof(r->res->version), "%s", name);
	return 0;
}

static int run_vllm(struct run *r)
{
	cJSON *body;
	int rc;

	rc = r->d->lora ? vllm_lora(r) : vllm_transfer(r);
	if (rc < 0 || !r->d->warmup)
		return rc;
	body = cJSON_CreateObject();
	/* "model" selects the adapter; the base model is the default. */
	if ((r->d->lora && !cJSON_AddStringToObject(body, "model", r->req->snapshot)) ||
	    !cJSON_AddStringToObject(body, "prompt", WARMUP_PROMPT) ||
	    !cJSON_AddNumberToObject(body, "max_tokens", 1) ||
	    !cJSON_AddNumberToObject(body, "temperature", 0)) {
		cJSON_Delete(body);
		return -ENOMEM;
	}
	rc = warmup(r, "/v1/completions", body);
	cJSON_Delete(body);
	return rc;
}

/* ---- http ---- */

static cJSON *str_or_null(const char *s)
{
	return s ? cJSON_CreateString(s) : cJSON_CreateNull();
}

static int run_http(struct run *r)
{
	const struct hotload_request *q = r->req;
	struct reply rp = { 0 };
	cJSON *body, *files, *f;
	char num[24];
	size_t i;
	int rc = -ENOMEM;

	body = cJSON_CreateObject();
	if (!body ||
	    !cJSON_AddItemToObject(body, "deployment", str_or_null(q->deployment)) ||
	    !cJSON_AddItemToObject(body, "job", str_or_null(q->job)) ||
	    !cJSON_AddItemToObject(body, "name", str_or_null(q->checkpoint)) ||
	    !cJSON_AddItemToObject(body, "snapshot", str_or_null(q->snapshot)) ||
	    !cJSON_AddItemToObject(body, "kind", str_or_null(q->kind)) ||
	    !cJSON_AddItemToObject(body, "base", str_or_null(q->base)) ||
	    !cJSON_AddStringToObject(body, "path", r->res->model_path))
		goto out;
	files = cJSON_AddArrayToObject(body, "files");
	if (!files)
		goto out;
	for (i = 0; i < q->n_files; i++) {
		f = cJSON_CreateObject();
		if (!f || !cJSON_AddItemToArray(files, f))
			goto out;
		/* Raw, so sizes past 2^53 stay exact integers (cJSON uses double). */
		snprintf(num, sizeof(num), "%" PRIu64, q->files[i].size);
		if (!cJSON_AddStringToObject(f, "path", q->files[i].path) ||
		    !cJSON_AddRawToObject(f, "size", num) ||
		    !cJSON_AddStringToObject(f, "sha256", q->files[i].sha256))
			goto out;
	}
	rc = call(r, "POST", "", body, CALL_RETRY, &rp);
	if (rc == 0)
		snprintf(r->res->version, sizeof(r->res->version), "%s", q->snapshot);
out:
	reply_release(&rp);
	cJSON_Delete(body);
	return rc;
}

/* ---- entry points ---- */

int hotload_expand_path(const char *tmpl, const struct hotload_request *req,
			char *out, size_t outlen)
{
	static const struct { const char *name; size_t len; size_t off; } fields[] = {
		{ "checkpoint", 10, offsetof(struct hotload_request, checkpoint) },
		{ "snapshot", 8, offsetof(struct hotload_request, snapshot) },
		{ "job", 3, offsetof(struct hotload_request, job) },
	};
	const char *p = tmpl, *val, *end;
	size_t n = 0, len, i;

	if (!outlen)
		return -ENAMETOOLONG;
	out[0] = '\0';
	while (*p) {
		if (*p != '{') {
			val = p++;
			len = 1;
		} else {
			end = strchr(p, '}');
			if (!end)
				return -EINVAL;
			for (i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
				if ((size_t)(end - p - 1) == fields[i].len &&
				    !memcmp(p + 1, fields[i].name, fields[i].len))
					break;
			if (i == sizeof(fields) / sizeof(fields[0]))
				return -EINVAL;
			val = *(const char *const *)((const char *)req + fields[i].off);
			/* A value is one path component: no '/', no "..". */
			if (!val || name_check_component(val) < 0)
				return -EINVAL;
			len = strlen(val);
			p = end + 1;
		}
		if (n + len >= outlen) {
			out[0] = '\0';
			return -ENAMETOOLONG;
		}
		memcpy(out + n, val, len);
		n += len;
		out[n] = '\0';
	}
	return 0;
}

static int lock_target(struct run *r)
{
	struct timespec ts;
	double left = remaining(r);
	int err;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += (time_t)left;
	ts.tv_nsec += (long)((left - floor(left)) * 1e9);
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	err = pthread_mutex_timedlock(&r->tgt->run_lock, &ts);
	if (err) {
		set_error(r, "another hotload to this deployment did not finish in time");
		return err == ETIMEDOUT ? -ETIMEDOUT : -err;
	}
	return 0;
}

static int setup_curl(struct run *r)
{
	r->curl = curl_easy_init();
	r->json_hdrs = curl_slist_append(NULL, "Content-Type: application/json");
	r->json_hdrs = curl_slist_append(r->json_hdrs, "Accept: application/json");
	/* No "Expect: 100-continue" round trip on bigger bodies. */
	r->json_hdrs = curl_slist_append(r->json_hdrs, "Expect:");
	r->plain_hdrs = curl_slist_append(NULL, "Accept: application/json");
	/* An empty POST is not a form: drop curl's default content type. */
	r->plain_hdrs = curl_slist_append(r->plain_hdrs, "Content-Type:");
	if (!r->curl || !r->json_hdrs || !r->plain_hdrs)
		return -ENOMEM;
	curl_easy_setopt(r->curl, CURLOPT_NOSIGNAL, 1L);	/* threads */
	curl_easy_setopt(r->curl, CURLOPT_ERRORBUFFER, r->curl_err);
	curl_easy_setopt(r->curl, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(r->curl, CURLOPT_USERAGENT, "ckptfs/" CKPTFS_VERSION);
	curl_easy_setopt(r->curl, CURLOPT_TCP_KEEPALIVE, 1L);
	/* A redirect would resend the token elsewhere; treat it as a refusal. */
	curl_easy_setopt(r->curl, CURLOPT_FOLLOWLOCATION, 0L);
#if LIBCURL_VERSION_NUM >= 0x075500
	curl_easy_setopt(r->curl, CURLOPT_PROTOCOLS_STR, "http,https");
#else
	curl_easy_setopt(r->curl, CURLOPT_PROTOCOLS,
			 (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	if (r->token) {
		curl_easy_setopt(r->curl, CURLOPT_HTTPAUTH, (long)CURLAUTH_BEARER);
		curl_easy_setopt(r->curl, CURLOPT_XOAUTH2_BEARER, r->token);
	}
	return 0;
}

static const char *protocol_name(enum hotload_protocol p)
{
	switch (p) {
	case HOTLOAD_SGLANG:
		return "sglang";
	case HOTLOAD_VLLM:
		return "vllm";
	case HOTLOAD_HTTP:
		return "http";
	}
	return "?";
}

int hotload_run(const struct deployment *d, const struct hotload_request *req,
		struct hotload_result *res)
{
	struct hotload_result scratch;
	struct run r = { 0 };
	struct timespec ts;
	double start = now_s();
	int locked = 0;
	int rc;

	if (!res)
		res = &scratch;
	memset(res, 0, sizeof(*res));
	r.d = d;
	r.req = req;
	r.res = res;
	r.name = req && req->deployment ? req->deployment : "?";
	r.deadline = start + (d && d->timeout_s > 0 ? d->timeout_s : 600);
	clock_gettime(CLOCK_REALTIME, &ts);
	r.rng = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)(uintptr_t)&r ^
		(uint64_t)ts.tv_sec;
	r.rng |= 1;

	if (!d || !d->url || !d->model_path || !req || !req->snapshot ||
	    !*req->snapshot || !req->checkpoint) {
		set_error(&r, "incomplete deployment or request");
		rc = -EINVAL;
		goto out;
	}
	if (d->token_env) {
		r.token = getenv(d->token_env);
		if (!r.token || !*r.token) {
			r.token = NULL;
			set_error(&r, "token variable %s is not set", d->token_env);
			rc = -EINVAL;
			goto out;
		}
	}
	rc = hotload_expand_path(d->model_path, req, res->model_path,
				 sizeof(res->model_path));
	if (rc < 0) {
		set_error(&r, "model_path template does not expand for %s",
			  req->checkpoint);
		goto out;
	}
	pthread_once(&curl_once, curl_init_once);
	if (curl_init_rc != CURLE_OK) {
		set_error(&r, "libcurl: %s", curl_easy_strerror(curl_init_rc));
		rc = -ENOMEM;
		goto out;
	}
	r.tgt = target_get(d->url);
	if (!r.tgt) {
		rc = -ENOMEM;
		goto out;
	}
	rc = lock_target(&r);
	if (rc < 0)
		goto out;
	locked = 1;
	rc = setup_curl(&r);
	if (rc < 0)
		goto out;

	say(&r, LOG_LVL_DEBUG, "hotload %s: loading %s (%s) from %s via %s",
	    r.name, req->checkpoint, req->snapshot, res->model_path,
	    protocol_name(d->protocol));
	switch (d->protocol) {
	case HOTLOAD_SGLANG:
		rc = run_sglang(&r);
		break;
	case HOTLOAD_VLLM:
		rc = run_vllm(&r);
		break;
	case HOTLOAD_HTTP:
		rc = run_http(&r);
		break;
	default:
		set_error(&r, "unknown protocol");
		rc = -EINVAL;
	}
	if (rc == -ETIMEDOUT)
		set_error(&r, "not confirmed within %gs; last: %s", d->timeout_s,
			  r.last[0] ? r.last : "(no reply)");
out:
	if (locked)
		pthread_mutex_unlock(&r.tgt->run_lock);
	curl_slist_free_all(r.json_hdrs);
	curl_slist_free_all(r.plain_hdrs);
	if (r.curl)
		curl_easy_cleanup(r.curl);
	res->seconds = now_s() - start;
	/* The result outlives the run (it is shown as the hotload status). */
	scrub(&r, res->model_path, sizeof(res->model_path));
	scrub(&r, res->version, sizeof(res->version));
	if (rc == 0) {
		res->error[0] = '\0';
		say(&r, LOG_LVL_INFO, "hotload %s: %s confirmed as %s in %.2fs",
		    r.name, req->checkpoint, res->version, res->seconds);
	} else {
		if (rc == -ENOMEM && !res->error[0])
			set_error(&r, "out of memory");
		say(&r, LOG_LVL_ERROR, "hotload %s: %s failed (%s) after %.2fs: %s",
		    r.name, req && req->checkpoint ? req->checkpoint : "?",
		    strerror(-rc), res->seconds, res->error);
	}
	return rc;
}
