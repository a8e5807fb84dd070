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
#include <unistd.h>

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
	char **adapters;		/* under run_lock: LoRA adapters we loaded,
					 * oldest first */
	size_t n_adapters;
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

/*
 * Secrets masked in everything a run stores or logs: the two tokens, every
 * variable a deployment may name as a token, and the daemon's own S3
 * credentials (a server may echo back whatever it was sent, and a
 * deployment author may have pointed token_env at anything before the
 * allow-list existed).
 */
#define SECRETS_MAX 32
static const char *const secret_env_names[] = {
	"AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
};

struct run {
	const struct deployment *d;
	const struct hotload_request *req;
	struct hotload_result *res;
	struct target *tgt;
	const char *name;		/* deployment name, for log lines */
	const char *token;		/* borrowed from the environment; see top */
	const char *admin_token;	/* sglang load routes; NULL: token */
	const char *secrets[SECRETS_MAX];	/* longest first */
	size_t n_secrets;
	CURL *curl;
	struct curl_slist *json_hdrs;	/* requests with a JSON body */
	struct curl_slist *plain_hdrs;	/* GET, and POST without a body */
	double deadline;		/* CLOCK_MONOTONIC seconds */
	unsigned int attempt;		/* transient failures in a row */
	uint64_t rng;
	char curl_err[CURL_ERROR_SIZE];
	char last[512];			/* last failure, for ETIMEDOUT and res->error */
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

static void add_secret(struct run *r, const char *s)
{
	size_t i, j, n;

	if (!s || !*s || r->n_secrets == SECRETS_MAX)
		return;
	n = strlen(s);
	for (i = 0; i < r->n_secrets; i++)
		if (!strcmp(r->secrets[i], s))
			return;
	/* Longest first: a secret that contains another is masked whole. */
	for (i = 0; i < r->n_secrets && strlen(r->secrets[i]) >= n; i++)
		;
	for (j = r->n_secrets; j > i; j--)
		r->secrets[j] = r->secrets[j - 1];
	r->secrets[i] = s;
	r->n_secrets++;
}

static void collect_secrets(struct run *r)
{
	const char *allow = r->req ? r->req->token_env_allow : NULL;
	size_t plen = strlen(HOTLOAD_TOKEN_PREFIX), i;
	char **e;

	add_secret(r, r->token);
	add_secret(r, r->admin_token);
	for (i = 0; i < sizeof(secret_env_names) / sizeof(secret_env_names[0]); i++)
		add_secret(r, getenv(secret_env_names[i]));
	for (e = environ; e && *e; e++) {
		const char *eq = strchr(*e, '=');
		char name[256];

		if (!eq || (size_t)(eq - *e) >= sizeof(name))
			continue;
		memcpy(name, *e, (size_t)(eq - *e));
		name[eq - *e] = '\0';
		if (!strncmp(name, HOTLOAD_TOKEN_PREFIX, plen) ||
		    hotload_token_env_allowed(name, allow))
			add_secret(r, eq + 1);
	}
}

/*
 * A copy of @s with every secret replaced by a mask, or NULL (no memory).
 * Done on whole strings, before anything is cut to fit a buffer, so no
 * prefix of a secret can survive at a cut.
 */
static char *mask_dup(const struct run *r, const char *s)
{
	static const char mask[] = "[redacted]";
	char *cur = strdup(s);
	size_t i;

	for (i = 0; cur && i < r->n_secrets; i++) {
		const char *sec = r->secrets[i], *p, *hit;
		size_t slen = strlen(sec);
		struct buf out = BUF_INIT;
		int rc = 0;

		if (!strstr(cur, sec))
			continue;
		for (p = cur; !rc && (hit = strstr(p, sec)); p = hit + slen) {
			rc = buf_append(&out, p, (size_t)(hit - p));
			if (!rc)
				rc = buf_append_str(&out, mask);
		}
		if (!rc)
			rc = buf_append(&out, p, strlen(p) + 1);
		free(cur);
		cur = rc ? NULL : strdup((const char *)out.data);
		buf_release(&out);
	}
	return cur;
}

/* Masked, then cut to @size. On no memory the buffer is left empty rather
 * than unmasked. */
static void vput(const struct run *r, char *dst, size_t size, const char *f,
		 va_list ap) __attribute__((format(printf, 4, 0)));

static void vput(const struct run *r, char *dst, size_t size, const char *f,
		 va_list ap)
{
	char *raw = NULL, *masked;

	if (!size)
		return;
	dst[0] = '\0';
	if (vasprintf(&raw, f, ap) < 0)
		return;
	masked = mask_dup(r, raw);
	free(raw);
	if (masked)
		snprintf(dst, size, "%s", masked);
	free(masked);
}

static void put(const struct run *r, char *dst, size_t size, const char *f, ...)
	__attribute__((format(printf, 4, 5)));

static void put(const struct run *r, char *dst, size_t size, const char *f, ...)
{
	va_list ap;

	va_start(ap, f);
	vput(r, dst, size, f, ap);
	va_end(ap);
}

/* Mask a buffer of ours in place (paths and versions shown as status). */
static void scrub(const struct run *r, char *s, size_t size)
{
	char *copy = strdup(s);

	memset(s, 0, size);
	if (copy)
		put(r, s, size, "%s", copy);
	free(copy);
}

/* Every log line of this file goes through here, masked. */
static void say(const struct run *r, enum log_level lvl, const char *f, ...)
	__attribute__((format(printf, 3, 4)));

static void say(const struct run *r, enum log_level lvl, const char *f, ...)
{
	char line[1024];
	va_list ap;

	va_start(ap, f);
	vput(r, line, sizeof(line), f, ap);
	va_end(ap);
	log_msg(lvl, "%s", line);
}

static void set_error(struct run *r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void set_error(struct run *r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vput(r, r->res->error, sizeof(r->res->error), fmt, ap);
	va_end(ap);
}

static void set_last(struct run *r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void set_last(struct run *r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vput(r, r->last, sizeof(r->last), fmt, ap);
	va_end(ap);
}

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
	struct buf *b = arg;

	if (b->len + size * n > REPLY_MAX || buf_append(b, p, size * n) < 0)
		return 0;	/* makes curl fail with CURLE_WRITE_ERROR */
	return size * n;
}

/*
 * What the server said, whole (freed by the caller; NULL: no memory), from
 * whichever shape its error takes: SGLang's {"success": false, "message"}
 * or {"error_message"} (adapters), vLLM/OpenAI's {"error": {"message"}},
 * the 401/403 {"error": "Unauthorized"} and vLLM's pause/resume
 * {"error": "..."}, FastAPI's {"detail": ...}; else the body's text.
 * Control bytes become spaces so it stays one log line. Never cut here:
 * secrets are masked first, by whoever stores it.
 */
static char *reply_message(const struct reply *rp)
{
	const cJSON *j = rp->json, *e;
	const char *msg = NULL;
	char *out;
	size_t i;

	if (cJSON_IsObject(j)) {
		e = cJSON_GetObjectItemCaseSensitive(j, "message");
		if (cJSON_IsString(e) && *e->valuestring)
			msg = e->valuestring;
		e = cJSON_GetObjectItemCaseSensitive(j, "error_message");
		if (!msg && cJSON_IsString(e) && *e->valuestring)
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
	if (msg)
		out = strdup(msg);
	else
		out = strndup(rp->body.data ? (const char *)rp->body.data : "",
			      rp->body.len);
	if (!out)
		return NULL;
	for (i = 0; out[i]; i++)
		if ((unsigned char)out[i] < ' ' || out[i] == 0x7f)
			out[i] = ' ';
	/* Trailing spaces from the text bodies' newlines. */
	while (i > 0 && out[i - 1] == ' ')
		out[--i] = '\0';
	if (!*out) {
		free(out);
		out = strdup("(no message)");
	}
	return out;
}

/*
 * Is this 5xx the engine's own answer rather than a proxy or a server
 * that is still starting? vLLM turns an engine-side exception (a bad path,
 * wrong shapes) into 500 with its error envelope {"error": {"message",
 * "type", "code"}}, and its pause/resume routes into 500 {"error": "..."}.
 * Retrying those only burns timeout_s; a 502/503/504, or a 500 whose body
 * is not such JSON (uvicorn's plain "Internal Server Error", a proxy's
 * page), is still treated as transient.
 */
static int is_engine_error(const struct reply *rp)
{
	const cJSON *e;

	if (rp->status != 500 || !cJSON_IsObject(rp->json))
		return 0;
	e = cJSON_GetObjectItemCaseSensitive(rp->json, "error");
	if (cJSON_IsString(e))
		return 1;
	if (cJSON_IsObject(e))
		return cJSON_IsString(cJSON_GetObjectItemCaseSensitive(e, "message"));
	return 0;
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

enum {
	CALL_RETRY  = 1,	/* retry transient failures here, with backoff */
	CALL_ADMIN  = 2,	/* sglang: send the admin key, not the normal one */
	CALL_ENGINE = 4,	/* vllm: a 500 with the engine's envelope refuses */
	CALL_404    = 8,	/* a 404 is -ENOENT, for the caller to fall back */
};

/*
 * One HTTP exchange, bounded by what is left of the deadline.
 * 0: a response arrived (any status), in @rp. -EAGAIN: a transport failure
 * worth retrying (described in r->last). -ETIMEDOUT: the deadline passed.
 * -EIO: a transport failure that retrying cannot fix (res->error). -ENOMEM.
 */
static int exchange(struct run *r, const char *method, const char *path,
		    const char *body, int flags, struct reply *rp)
{
	struct buf url = BUF_INIT;
	double left = remaining(r);
	curl_off_t retry_after = 0;
	const char *tok = (flags & CALL_ADMIN) && r->admin_token ? r->admin_token
								 : r->token;
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
	/* Per request: the admin key goes only to the routes that need it. */
	curl_easy_setopt(r->curl, CURLOPT_HTTPAUTH,
			 (long)(tok ? CURLAUTH_BEARER : CURLAUTH_NONE));
	curl_easy_setopt(r->curl, CURLOPT_XOAUTH2_BEARER, tok);
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
	set_last(r, "%s %s: %s", method, path[0] ? path : "/",
		 r->curl_err[0] ? r->curl_err : curl_easy_strerror(cc));
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

/*
 * Send one request until it gets a final answer.
 * 0: 2xx, @rp holds the reply (caller releases it). -EAGAIN: a transient
 * failure and no CALL_RETRY (the caller restarts a sequence, after
 * backoff()). -ENOENT: CALL_404 and the route does not exist. -EIO:
 * refused (4xx other than 429, a redirect, an engine's own 500 with
 * CALL_ENGINE), the server's message in res->error. -ETIMEDOUT. -ENOMEM.
 */
static int call(struct run *r, const char *method, const char *path,
		const cJSON *body, int flags, struct reply *rp)
{
	char *text = NULL, *msg;
	int rc;

	if (body) {
		text = cJSON_PrintUnformatted(body);
		if (!text)
			return -ENOMEM;
	}
	for (;;) {
		reply_release(rp);
		rc = exchange(r, method, path, text, flags, rp);
		if (rc == 0 && rp->status >= 200 && rp->status < 300) {
			r->attempt = 0;
			break;
		}
		if (rc == 0) {
			if ((flags & CALL_404) && rp->status == 404) {
				rc = -ENOENT;
				break;
			}
			msg = reply_message(rp);
			if (!msg) {
				rc = -ENOMEM;
				break;
			}
			set_last(r, "%s %s: HTTP %ld: %s", method,
				 path[0] ? path : "/", rp->status, msg);
			free(msg);
			if ((rp->status < 500 && rp->status != 429) ||
			    ((flags & CALL_ENGINE) && is_engine_error(rp))) {
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

/* POST @path with @body (may be NULL: empty body); reply discarded. */
static int post(struct run *r, const char *path, const cJSON *body, int flags)
{
	struct reply rp = { 0 };
	int rc = call(r, "POST", path, body, flags, &rp);

	reply_release(&rp);
	return rc;
}

/* The weight version in a confirmation reply must be ours. */
static int check_version(struct run *r, const char *path, const struct reply *rp)
{
	const char *v = reply_str(rp, "weight_version");

	if (!v || strcmp(v, r->req->snapshot)) {
		set_error(r, "GET %s: server reports weight version %.100s, expected %.100s",
			  path, v ? v : "(none)", r->req->snapshot);
		return -EIO;
	}
	snprintf(r->res->version, sizeof(r->res->version), "%s", r->req->snapshot);
	return 0;
}

/*
 * The confirmation step: the first of @paths that exists reports the
 * weight version, which must be ours. A route answering 404 is a server of
 * another generation, so the next one is tried.
 */
static int confirm_version(struct run *r, const char *const *paths, size_t n)
{
	struct reply rp = { 0 };
	size_t i;
	int rc = -ENOENT;

	for (i = 0; i < n && rc == -ENOENT; i++) {
		rc = call(r, "GET", paths[i], NULL,
			  CALL_RETRY | (i + 1 < n ? CALL_404 : 0), &rp);
		if (rc == 0)
			rc = check_version(r, paths[i], &rp);
		reply_release(&rp);
	}
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

/* ---- adapters: load the new one, confirm, then unload the oldest ---- */

/* Record @name as the newest adapter we loaded into this server. */
static int adapters_note(struct target *t, const char *name)
{
	char **grown, *copy;
	size_t i;

	for (i = 0; i < t->n_adapters; i++)
		if (!strcmp(t->adapters[i], name))
			break;
	if (i < t->n_adapters) {
		copy = t->adapters[i];
		memmove(t->adapters + i, t->adapters + i + 1,
			(t->n_adapters - i - 1) * sizeof(*t->adapters));
		t->adapters[t->n_adapters - 1] = copy;
		return 0;
	}
	copy = strdup(name);
	grown = copy ? realloc(t->adapters, (t->n_adapters + 1) * sizeof(*grown)) : NULL;
	if (!grown) {
		free(copy);
		return -ENOMEM;
	}
	t->adapters = grown;
	t->adapters[t->n_adapters++] = copy;
	return 0;
}

static int adapters_has(const struct target *t, const char *name)
{
	size_t i;

	for (i = 0; i < t->n_adapters; i++)
		if (!strcmp(t->adapters[i], name))
			return 1;
	return 0;
}

static void adapters_drop_oldest(struct target *t)
{
	free(t->adapters[0]);
	memmove(t->adapters, t->adapters + 1, (t->n_adapters - 1) * sizeof(*t->adapters));
	t->n_adapters--;
}

/*
 * Unload the oldest adapters this process loaded into the server until at
 * most max_adapters remain. The new adapter is already confirmed, so a
 * failure here does not fail the hotload: an adapter the server no longer
 * knows (404, or refused) is forgotten; one a transient failure kept is
 * tried again by the next hotload. One warn line for what is left.
 */
static void adapters_evict(struct run *r, const char *path, int flags)
{
	size_t keep = r->d->max_adapters > 0 ? (size_t)r->d->max_adapters : 1;
	int rc;

	while (r->tgt->n_adapters > keep) {
		cJSON *body = cJSON_CreateObject();
		const char *old = r->tgt->adapters[0];

		if (!cJSON_AddStringToObject(body, "lora_name", old)) {
			cJSON_Delete(body);
			return;
		}
		rc = post(r, path, body, CALL_RETRY | CALL_404 | flags);
		cJSON_Delete(body);
		if (rc == 0 || rc == -ENOENT || rc == -EIO) {
			if (rc == -EIO)
				say(r, LOG_LVL_WARN, "hotload %s: unloading adapter %s: %s; forgetting it",
				    r->name, old, r->res->error);
			r->res->error[0] = '\0';
			adapters_drop_oldest(r->tgt);
			continue;
		}
		say(r, LOG_LVL_WARN, "hotload %s: adapter %s stays loaded for now: %s",
		    r->name, old, rc == -ENOMEM ? "out of memory" : r->last);
		return;
	}
}

/* ---- sglang ---- */

/* Newer trees answer 404 on the deprecated alias, older ones lack /model_info. */
static const char *const sglang_confirm_paths[] = {
	"/model_info", "/get_weight_version", "/get_model_info",
};

static int sglang_warmup(struct run *r, const char *lora)
{
	cJSON *body = cJSON_CreateObject(), *sp;
	int rc;

	sp = cJSON_AddObjectToObject(body, "sampling_params");
	if (!cJSON_AddStringToObject(body, "text", WARMUP_PROMPT) ||
	    !cJSON_AddNumberToObject(sp, "max_new_tokens", 1) ||
	    !cJSON_AddNumberToObject(sp, "temperature", 0) ||
	    (lora && !cJSON_AddStringToObject(body, "lora_path", lora))) {
		cJSON_Delete(body);
		return -ENOMEM;
	}
	rc = warmup(r, "/generate", body);
	cJSON_Delete(body);
	return rc;
}

/*
 * LoRA: the adapter is named after the snapshot. The load reply lists the
 * server's adapters (loaded_adapters: name -> path), which is the
 * confirmation.
 */
static int sglang_lora(struct run *r)
{
	const char *name = r->req->snapshot, *path = r->res->model_path;
	struct reply rp = { 0 };
	const cJSON *ok, *listed, *p;
	cJSON *body = cJSON_CreateObject();
	int rc = -ENOMEM;

	if (!cJSON_AddStringToObject(body, "lora_name", name) ||
	    !cJSON_AddStringToObject(body, "lora_path", path) ||
	    !cJSON_AddBoolToObject(body, "pinned", 0))
		goto out;
	rc = call(r, "POST", "/load_lora_adapter", body, CALL_RETRY | CALL_ADMIN, &rp);
	/*
	 * SGLang has no listing to check first: a name it already holds is
	 * refused. If this daemon loaded that very adapter (same name, so same
	 * snapshot and path) and has not unloaded it, the refusal means it is
	 * there, as after a reply lost on the way back.
	 */
	if (rc == -EIO && strcasestr(r->res->error, "already") &&
	    adapters_has(r->tgt, name)) {
		r->res->error[0] = '\0';
		snprintf(r->res->version, sizeof(r->res->version), "%s", name);
		rc = adapters_note(r->tgt, name);
		if (rc == 0 && r->d->warmup)
			rc = sglang_warmup(r, name);
		goto out;
	}
	if (rc < 0)
		goto out;
	ok = cJSON_GetObjectItemCaseSensitive(rp.json, "success");
	listed = cJSON_GetObjectItemCaseSensitive(rp.json, "loaded_adapters");
	p = cJSON_GetObjectItemCaseSensitive(listed, name);
	if (!cJSON_IsTrue(ok) || !cJSON_IsString(p) || strcmp(p->valuestring, path)) {
		char *msg = reply_message(&rp);

		set_error(r, "POST /load_lora_adapter: HTTP %ld: %s", rp.status,
			  cJSON_IsTrue(ok) ? "adapter not listed in loaded_adapters"
					   : msg ? msg : "refused");
		free(msg);
		rc = -EIO;
		goto out;
	}
	snprintf(r->res->version, sizeof(r->res->version), "%s", name);
	rc = adapters_note(r->tgt, name);
	if (rc < 0)
		goto out;
	adapters_evict(r, "/unload_lora_adapter", CALL_ADMIN);
	if (r->d->warmup)
		rc = sglang_warmup(r, name);
out:
	reply_release(&rp);
	cJSON_Delete(body);
	return rc;
}

static int run_sglang(struct run *r)
{
	struct reply rp = { 0 };
	const cJSON *ok;
	cJSON *body;
	int rc = -ENOMEM;

	if (r->d->lora)
		return sglang_lora(r);
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
	rc = call(r, "POST", "/update_weights_from_disk", body,
		  CALL_RETRY | CALL_ADMIN, &rp);
	if (rc < 0)
		goto out;
	ok = cJSON_GetObjectItemCaseSensitive(rp.json, "success");
	if (!cJSON_IsTrue(ok)) {
		char *msg = reply_message(&rp);

		set_error(r, "POST /update_weights_from_disk: HTTP %ld: %s",
			  rp.status, msg ? msg : "refused");
		free(msg);
		rc = -EIO;
		goto out;
	}
	rc = confirm_version(r, sglang_confirm_paths,
			     sizeof(sglang_confirm_paths) / sizeof(sglang_confirm_paths[0]));
	if (rc == 0 && r->d->warmup)
		rc = sglang_warmup(r, NULL);
out:
	reply_release(&rp);
	cJSON_Delete(body);
	return rc;
}

/* ---- vllm ---- */

static const char *const vllm_confirm_paths[] = { "/weight_info" };

/*
 * The engine is paused for the update, so it must be resumed whatever
 * happened, even past the deadline: a paused engine serves nothing. Its
 * own small budget; a failure is reported with the run's result.
 */
#define RESUME_BUDGET_S 10.0

static int vllm_resume(struct run *r, int rc)
{
	double saved = r->deadline;
	long status = r->res->http_status;
	char first[sizeof(r->res->error)];
	int rc2;

	snprintf(first, sizeof(first), "%s", r->res->error);
	if (remaining(r) < RESUME_BUDGET_S)
		r->deadline = now_s() + RESUME_BUDGET_S;
	rc2 = post(r, "/resume", NULL, CALL_RETRY | CALL_ENGINE);
	r->deadline = saved;
	if (rc2 == 0) {
		/* The status shown is the failing step's, not the resume's. */
		if (rc < 0)
			r->res->http_status = status;
		snprintf(r->res->error, sizeof(r->res->error), "%s", first);
		return rc;
	}
	if (rc2 == -ETIMEDOUT)
		set_error(r, "POST /resume: %s", r->last[0] ? r->last : "no reply");
	if (rc < 0) {
		char why[sizeof(r->res->error)];

		snprintf(why, sizeof(why), "%s", r->res->error);
		set_error(r, "%s; and the engine was not resumed: %s",
			  rc == -ETIMEDOUT ? "not confirmed in time" : first, why);
		return rc;
	}
	return rc2 == -ETIMEDOUT ? -EIO : rc2;
}

/*
 * Full weights, on the routes upstream vLLM has in dev mode: pause (wait
 * for requests in flight), reload_weights on every worker from the
 * directory, set the weight version, confirm it, reset the prefix cache,
 * resume. Reloading from the same directory is idempotent, so a transient
 * failure retries the step itself.
 */
static int vllm_transfer(struct run *r)
{
	cJSON *rpc = cJSON_CreateObject(), *ver = cJSON_CreateObject(), *kw;
	const char *pause = r->d->reset_cache ? "/pause?mode=wait&clear_cache=true"
					      : "/pause?mode=wait&clear_cache=false";
	int rc = -ENOMEM;

	kw = cJSON_AddObjectToObject(rpc, "kwargs");
	if (!cJSON_AddStringToObject(rpc, "method", "reload_weights") ||
	    !cJSON_AddStringToObject(kw, "weights_path", r->res->model_path) ||
	    !cJSON_AddStringToObject(ver, "new_version", r->req->snapshot))
		goto out;
	/*
	 * A pause whose reply was lost may still have paused the engine, so
	 * from here on the engine is resumed whatever the outcome; resuming
	 * an engine that is not paused does nothing.
	 */
	rc = post(r, pause, NULL, CALL_RETRY | CALL_ENGINE);
	if (rc == 0)
		rc = post(r, "/collective_rpc", rpc, CALL_RETRY | CALL_ENGINE);
	if (rc == 0)
		rc = post(r, "/update_weight_version", ver, CALL_RETRY | CALL_ENGINE);
	if (rc == 0)
		rc = confirm_version(r, vllm_confirm_paths, 1);
	/*
	 * The prefix cache holds KV computed by the old weights. vLLM answers
	 * {"success": false} while blocks are in use and says to retry; older
	 * versions answer 200 with no body.
	 */
	while (rc == 0 && r->d->reset_cache) {
		struct reply rp = { 0 };
		const cJSON *ok;

		rc = call(r, "POST", "/reset_prefix_cache", NULL,
			  CALL_RETRY | CALL_ENGINE, &rp);
		ok = rc ? NULL : cJSON_GetObjectItemCaseSensitive(rp.json, "success");
		reply_release(&rp);
		if (rc < 0 || !cJSON_IsBool(ok) || cJSON_IsTrue(ok))
			break;
		set_last(r, "POST /reset_prefix_cache: success false (blocks in use)");
		rc = backoff(r, 0);
	}
	rc = vllm_resume(r, rc);
out:
	cJSON_Delete(rpc);
	cJSON_Delete(ver);
	return rc;
}

/* Is adapter @name listed by GET /v1/models with root @path? 1, 0, or -errno. */
static int vllm_lora_listed(struct run *r, const char *name, const char *path)
{
	struct reply rp = { 0 };
	const cJSON *m, *id, *root;
	int rc;

	rc = call(r, "GET", "/v1/models", NULL, CALL_RETRY | CALL_ENGINE, &rp);
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
		rc = post(r, "/v1/load_lora_adapter", body, CALL_RETRY | CALL_ENGINE);
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
	r->res->error[0] = '\0';
	snprintf(r->res->version, sizeof(r->res->version), "%s", name);
	rc = adapters_note(r->tgt, name);
	if (rc == 0)
		adapters_evict(r, "/v1/unload_lora_adapter", CALL_ENGINE);
	return rc;
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
	collect_secrets(&r);
	{
		const char *envs[2] = { d->token_env, d->admin_token_env };
		const char **dst[2] = { &r.token, &r.admin_token };
		int i;

		for (i = 0; i < 2; i++) {
			if (!envs[i])
				continue;
			if (!hotload_token_env_allowed(envs[i], req->token_env_allow)) {
				set_error(&r, "token variable %s is not allowed by this mount "
					  "(names starting with " HOTLOAD_TOKEN_PREFIX
					  " or listed in --hotload-token-env)", envs[i]);
				rc = -EINVAL;
				goto out;
			}
			*dst[i] = getenv(envs[i]);
			if (!*dst[i] || !**dst[i]) {
				*dst[i] = NULL;
				set_error(&r, "token variable %s is not set", envs[i]);
				rc = -EINVAL;
				goto out;
			}
		}
		/* Now that the tokens are known, mask them too. */
		collect_secrets(&r);
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
