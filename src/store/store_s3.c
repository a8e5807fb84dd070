/*
 * store_s3.c: the store contract on an S3-compatible bucket, over libcurl.
 *
 * Owns:         the HTTP requests (path-style URLs, SigV4 signed by libcurl),
 *               retries with backoff inside a per-request deadline, the one
 *               mapping from HTTP status to errno (status_errno()), parsing
 *               the few XML answers S3 gives, multipart upload of large
 *               puts, and a pool of CURL handles reused across threads.
 * Does not own: key rules (store.c), read caching (store_cache.c).
 *
 * What libcurl 7.88 needs from us (each broken rule is a 403 or 411 from the
 * server; doc/S3.md has the list):
 *  - x-amz-content-sha256 is sent by us; curl signs it but never adds it;
 *  - query strings are written in canonical form (sorted, "name=", values
 *    percent-encoded), because curl signs them exactly as written;
 *  - keys are percent-encoded in the path except A-Za-z0-9-._~ and '/';
 *  - every PUT/POST carries a length (CURLOPT_INFILESIZE_LARGE), never
 *    chunked encoding;
 *  - no blanked headers ("Expect:"): curl would sign a header it never sends.
 *
 * Atomicity comes from S3 itself: a PUT or a completed multipart upload
 * replaces the object as a whole, and If-None-Match: * makes the create
 * exclusive on the server.
 */
#include "store/store.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "store/store_s3_parse.h"
#include "util/log.h"
#include "util/metrics.h"

#define POOL_MAX		32		/* idle handles (= warm connections) kept */
#define MULTIPART_ABOVE		(64ull << 20)	/* larger puts are uploaded in parts */
#define PART_BYTES		(16ull << 20)	/* S3 wants >= 5 MiB except the last */
#define BACKOFF_BASE_MS		50
#define BACKOFF_CAP_MS		2000
#define ERRBODY_MAX		4096		/* enough for any S3 <Error> document */
#define DEFAULT_TIMEOUT_S	60.0
#define VERIFY_MAX		(64ull << 20)	/* see s3_put_if_absent() */

struct s3_store {
	struct store base;	/* first member: casts between the two are valid */
	char *endpoint;		/* scheme://host[:port], no trailing '/' */
	char *bucket;
	char *prefix;		/* "" or "some/prefix/" */
	char *sigv4;		/* "aws:amz:REGION:s3" */
	char *access_key;
	char *secret_key;
	char *token_hdr;	/* "x-amz-security-token: ..." or NULL */
	bool insecure_tls;
	long timeout_ms;	/* per request, retries included */
	CURLSH *share;		/* DNS cache and TLS sessions for all handles */
	pthread_mutex_t share_locks[CURL_LOCK_DATA_LAST];
	pthread_mutex_t pool_lock;
	CURL *pool[POOL_MAX];	/* idle handles, most recently used last */
	int pool_n;
};

/* One logical request: what to send, and what came back on the last try. */
struct s3_req {
	const char *method;	/* GET HEAD PUT POST DELETE */
	const char *key;	/* below the store prefix; NULL: the bucket */
	const char *query;	/* canonical query string or NULL */
	const void *body;	/* PUT/POST: body_len bytes (may be 0) */
	size_t body_len;
	const char *range;	/* "bytes=a-b" or NULL */
	bool if_none_match;	/* create only if absent */
	const char *copy_source;	/* PUT: "x-amz-copy-source" value, or NULL */
	struct buf *out;	/* a 2xx body is appended here; NULL: dropped */

	/* Per-try state. */
	CURL *h;
	size_t body_pos;
	size_t out_start;
	bool reserved;
	bool nomem;

	/* Results of the last try. */
	long status;
	char code[64];		/* S3 error <Code>, "" if none */
	char etag[128];
	curl_off_t length;	/* Content-Length, -1 if unknown */
	curl_off_t mtime;	/* Last-Modified (HEAD), -1 if unknown */
	int64_t touched_ns;	/* x-amz-meta-ckptfs-touched (HEAD), 0 if none */
	/* An earlier try may have been applied by the server even though we
	 * saw no answer (the connection broke after the body was sent). */
	bool maybe_applied;
	struct buf errbody;
};

static struct s3_store *to_s3(struct store *st)
{
	return (struct s3_store *)st;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int64_t ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000 };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* Jitter only needs to decorrelate threads, not be unpredictable. */
static uint32_t jitter_rand(void)
{
	static __thread uint64_t x;

	if (!x) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		x = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)(uintptr_t)&x ^ 0x9E3779B97F4A7C15ull;
	}
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	return (uint32_t)((x * 0x2545F4914F6CDD1Dull) >> 32);
}

/* Append @s percent-encoded: everything but A-Za-z0-9-._~ (and '/' when
 * @keep_slash, for paths). Both SigV4 and S3 want exactly this set. */
static int pct_encode(struct buf *b, const char *s, bool keep_slash)
{
	static const char hex[] = "0123456789ABCDEF";
	int rc = 0;

	for (; *s && rc == 0; s++) {
		unsigned char c = (unsigned char)*s;

		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		    (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
		    c == '~' || (c == '/' && keep_slash)) {
			rc = buf_append(b, &c, 1);
		} else {
			char e[3] = { '%', hex[c >> 4], hex[c & 15] };

			rc = buf_append(b, e, 3);
		}
	}
	return rc;
}

/* ---- XML: just enough for S3's answers, which are flat and escaped ---- */

/*
 * Find the first <tag>text</tag> in [p, end). Returns the text start and
 * sets *len and *next (just past the closing tag), or NULL. S3 escapes '<'
 * in text, so a literal "<tag>" can only be markup.
 */
static const char *xml_elem(const char *p, const char *end, const char *tag,
			    size_t *len, const char **next)
{
	char open[64], close[64];
	const char *s, *e;
	int no, nc;

	no = snprintf(open, sizeof(open), "<%s>", tag);
	nc = snprintf(close, sizeof(close), "</%s>", tag);
	if (p >= end)
		return NULL;
	s = memmem(p, (size_t)(end - p), open, (size_t)no);
	if (!s)
		return NULL;
	s += no;
	e = memmem(s, (size_t)(end - s), close, (size_t)nc);
	if (!e)
		return NULL;
	*len = (size_t)(e - s);
	if (next)
		*next = e + nc;
	return s;
}

static int put_utf8(struct buf *b, unsigned long cp)
{
	uint8_t u[4];
	size_t n;

	if (cp < 0x80) {
		u[0] = (uint8_t)cp;
		n = 1;
	} else if (cp < 0x800) {
		u[0] = (uint8_t)(0xC0 | (cp >> 6));
		u[1] = (uint8_t)(0x80 | (cp & 0x3F));
		n = 2;
	} else if (cp < 0x10000) {
		u[0] = (uint8_t)(0xE0 | (cp >> 12));
		u[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
		u[2] = (uint8_t)(0x80 | (cp & 0x3F));
		n = 3;
	} else if (cp < 0x110000) {
		u[0] = (uint8_t)(0xF0 | (cp >> 18));
		u[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
		u[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
		u[3] = (uint8_t)(0x80 | (cp & 0x3F));
		n = 4;
	} else {
		return -EIO;
	}
	return buf_append(b, u, n);
}

/* Decode XML text [s, s+n) into @out as a NUL-terminated string: the five
 * predefined entities and numeric character references. */
static int xml_unescape(const char *s, size_t n, struct buf *out)
{
	static const struct { const char *name; char c; } ents[] = {
		{ "amp;", '&' }, { "lt;", '<' }, { "gt;", '>' },
		{ "quot;", '"' }, { "apos;", '\'' },
	};
	const char *end = s + n;
	int rc = 0;

	buf_reset(out);
	while (s < end && rc == 0) {
		const char *semi;
		size_t i;

		if (*s != '&') {
			rc = buf_append(out, s++, 1);
			continue;
		}
		s++;
		semi = memchr(s, ';', (size_t)(end - s));
		if (!semi)
			return -EIO;
		if (*s == '#') {
			char num[16], *stop;
			unsigned long cp;
			bool hex = s[1] == 'x' || s[1] == 'X';
			const char *d = s + 1 + hex;

			if (semi - d <= 0 || semi - d >= (long)sizeof(num))
				return -EIO;
			memcpy(num, d, (size_t)(semi - d));
			num[semi - d] = '\0';
			cp = strtoul(num, &stop, hex ? 16 : 10);
			if (*stop || cp == 0)
				return -EIO;
			rc = put_utf8(out, cp);
		} else {
			for (i = 0; i < sizeof(ents) / sizeof(ents[0]); i++)
				if (!strncmp(s, ents[i].name, strlen(ents[i].name)))
					break;
			if (i == sizeof(ents) / sizeof(ents[0]))
				return -EIO;
			rc = buf_append(out, &ents[i].c, 1);
		}
		s = semi + 1;
	}
	if (rc == 0)
		rc = buf_append(out, "", 1);
	if (rc == 0)
		out->len--;	/* keep the NUL out of len */
	return rc;
}

/* Copy the unescaped text of <tag> in [p, end) into @dst (NUL-terminated,
 * truncated to @size). Returns 0, or -ENOENT when absent. */
static int xml_text(const char *p, const char *end, const char *tag,
		    char *dst, size_t size)
{
	struct buf tmp = BUF_INIT;
	const char *s;
	size_t n;
	int rc;

	s = xml_elem(p, end, tag, &n, NULL);
	if (!s)
		return -ENOENT;
	rc = xml_unescape(s, n, &tmp);
	if (rc == 0)
		snprintf(dst, size, "%s", tmp.len ? (char *)tmp.data : "");
	buf_release(&tmp);
	return rc;
}

/* "2024-05-01T12:34:56.000Z" -> seconds since the epoch; -1 if malformed. */
static int64_t parse_iso8601(const char *s, size_t n)
{
	char tmp[40];
	struct tm tm = { 0 };

	if (n >= sizeof(tmp))
		return -1;
	memcpy(tmp, s, n);
	tmp[n] = '\0';
	if (sscanf(tmp, "%4d-%2d-%2dT%2d:%2d:%2d", &tm.tm_year, &tm.tm_mon,
		   &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec) != 6)
		return -1;
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	return (int64_t)timegm(&tm);
}

/* ---- the CURL handle pool ---- */

static void share_lock(CURL *h, curl_lock_data d, curl_lock_access a, void *u)
{
	struct s3_store *s = u;

	(void)h;
	(void)a;
	pthread_mutex_lock(&s->share_locks[d]);
}

static void share_unlock(CURL *h, curl_lock_data d, void *u)
{
	struct s3_store *s = u;

	(void)h;
	pthread_mutex_unlock(&s->share_locks[d]);
}

/* An idle handle keeps its connection open, so taking the most recently
 * returned one usually means no new TCP (or TLS) handshake. */
static CURL *pool_get(struct s3_store *s)
{
	CURL *h = NULL;

	pthread_mutex_lock(&s->pool_lock);
	if (s->pool_n > 0)
		h = s->pool[--s->pool_n];
	pthread_mutex_unlock(&s->pool_lock);
	return h ? h : curl_easy_init();
}

static void pool_put(struct s3_store *s, CURL *h)
{
	pthread_mutex_lock(&s->pool_lock);
	if (s->pool_n < POOL_MAX) {
		s->pool[s->pool_n++] = h;
		h = NULL;
	}
	pthread_mutex_unlock(&s->pool_lock);
	if (h)
		curl_easy_cleanup(h);
}

/* ---- one request, with retries ---- */

static size_t on_write(char *p, size_t size, size_t n, void *u)
{
	struct s3_req *r = u;
	size_t len = size * n;
	long code = 0;

	curl_easy_getinfo(r->h, CURLINFO_RESPONSE_CODE, &code);
	if (code >= 200 && code < 300) {
		if (!r->out)
			return len;
		if (!r->reserved) {
			curl_off_t cl = -1;

			/* One allocation for the whole body instead of doubling. */
			r->reserved = true;
			curl_easy_getinfo(r->h, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
			if (cl > 0 && (uint64_t)cl < SIZE_MAX)
				(void)buf_reserve(r->out, (size_t)cl);
		}
		if (buf_append(r->out, p, len) < 0) {
			r->nomem = true;
			return 0;
		}
		return len;
	}
	if (r->errbody.len < ERRBODY_MAX)
		(void)buf_append(&r->errbody, p,
				 len < ERRBODY_MAX - r->errbody.len ? len : ERRBODY_MAX - r->errbody.len);
	return len;
}

/* Metadata a touch() leaves: when it happened, in nanoseconds, since S3's
 * Last-Modified has whole seconds only. */
#define TOUCHED_HDR "x-amz-meta-ckptfs-touched"

static size_t on_header(char *p, size_t size, size_t n, void *u)
{
	struct s3_req *r = u;
	size_t len = size * n, vlen;
	const char *v;

	if (len > sizeof(TOUCHED_HDR) && !strncasecmp(p, TOUCHED_HDR ":", sizeof(TOUCHED_HDR))) {
		char num[32];

		vlen = len - sizeof(TOUCHED_HDR);
		if (vlen >= sizeof(num))
			vlen = sizeof(num) - 1;
		memcpy(num, p + sizeof(TOUCHED_HDR), vlen);
		num[vlen] = '\0';
		r->touched_ns = strtoll(num, NULL, 10);
	}
	if (len > 5 && !strncasecmp(p, "ETag:", 5)) {
		v = p + 5;
		while (v < p + len && (*v == ' ' || *v == '\t'))
			v++;
		vlen = (size_t)(p + len - v);
		while (vlen && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n' || v[vlen - 1] == ' '))
			vlen--;
		if (vlen < sizeof(r->etag)) {
			memcpy(r->etag, v, vlen);
			r->etag[vlen] = '\0';
		}
	}
	return len;
}

static size_t on_read(char *p, size_t size, size_t n, void *u)
{
	struct s3_req *r = u;
	size_t len = size * n, left = r->body_len - r->body_pos;

	if (len > left)
		len = left;
	if (len) {
		memcpy(p, (const char *)r->body + r->body_pos, len);
		r->body_pos += len;
	}
	return len;
}

/* curl rewinds the body when it must resend it (e.g. on a reused
 * connection the server had closed). */
static int on_seek(void *u, curl_off_t off, int origin)
{
	struct s3_req *r = u;

	if (origin != SEEK_SET || off < 0 || (uint64_t)off > r->body_len)
		return CURL_SEEKFUNC_CANTSEEK;
	r->body_pos = (size_t)off;
	return CURL_SEEKFUNC_OK;
}

static int build_url(struct s3_store *s, const struct s3_req *r, struct buf *url)
{
	int rc;

	rc = buf_printf(url, "%s/%s", s->endpoint, s->bucket);
	if (rc == 0 && r->key) {
		rc = buf_append_str(url, "/");
		if (rc == 0)
			rc = pct_encode(url, s->prefix, true);
		if (rc == 0)
			rc = pct_encode(url, r->key, true);
	}
	if (rc == 0 && r->query)
		rc = buf_printf(url, "?%s", r->query);
	if (rc == 0)
		rc = buf_append(url, "", 1);
	return rc;
}

static int add_header(struct curl_slist **l, const char *h)
{
	struct curl_slist *t = curl_slist_append(*l, h);

	if (!t)
		return -ENOMEM;
	*l = t;
	return 0;
}

/* Set up r->h for one try. *hdrs is the caller's to free, also on error. */
static int setup_try(struct s3_store *s, struct s3_req *r, const char *url,
		     struct curl_slist **hdrs, long budget_ms, char *errbuf)
{
	CURL *h = r->h;
	char range[96];
	int rc;

	/*
	 * UNSIGNED-PAYLOAD: curl 7.88 needs the header to sign at all, and
	 * hashing every body would cost more CPU than the transfer. Bodies are
	 * checked end to end by the layers above (chunk xxh3).
	 */
	rc = add_header(hdrs, "x-amz-content-sha256: UNSIGNED-PAYLOAD");
	if (rc == 0 && s->token_hdr)
		rc = add_header(hdrs, s->token_hdr);
	if (rc == 0 && r->if_none_match)
		rc = add_header(hdrs, "If-None-Match: *");
	if (rc == 0 && r->copy_source) {
		char *hdr = NULL;

		rc = asprintf(&hdr, "x-amz-copy-source: %s", r->copy_source) < 0 ? -ENOMEM : 0;
		if (rc == 0)
			rc = add_header(hdrs, hdr);
		/* Copying an object onto itself is allowed only when something
		 * changes: the metadata, here replaced by none. */
		if (rc == 0)
			rc = add_header(hdrs, "x-amz-metadata-directive: REPLACE");
		free(hdr);
		hdr = NULL;
		if (rc == 0) {
			struct timespec ts;

			clock_gettime(CLOCK_REALTIME, &ts);
			rc = asprintf(&hdr, TOUCHED_HDR ": %lld", (long long)ts.tv_sec *
				      1000000000LL + ts.tv_nsec) < 0 ? -ENOMEM : 0;
		}
		if (rc == 0)
			rc = add_header(hdrs, hdr);
		free(hdr);
	}
	if (rc == 0 && r->range) {
		snprintf(range, sizeof(range), "Range: %s", r->range);
		rc = add_header(hdrs, range);
	}
	if (rc < 0)
		return rc;

	curl_easy_reset(h);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);	/* many threads */
	curl_easy_setopt(h, CURLOPT_SHARE, s->share);
	curl_easy_setopt(h, CURLOPT_AWS_SIGV4, s->sigv4);
	curl_easy_setopt(h, CURLOPT_USERNAME, s->access_key);
	curl_easy_setopt(h, CURLOPT_PASSWORD, s->secret_key);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, *hdrs);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, budget_ms);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, budget_ms);
	curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
	/* Larger buffers: fewer callbacks and syscalls per MiB. */
	curl_easy_setopt(h, CURLOPT_BUFFERSIZE, 256L * 1024);
	curl_easy_setopt(h, CURLOPT_UPLOAD_BUFFERSIZE, 1024L * 1024);
	if (s->insecure_tls) {
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
	}
	if (!strcmp(r->method, "HEAD")) {
		curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
		curl_easy_setopt(h, CURLOPT_FILETIME, 1L);
	} else if (!strcmp(r->method, "PUT") || !strcmp(r->method, "POST")) {
		curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
		if (strcmp(r->method, "PUT"))
			curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, r->method);
		/* A known length: S3 answers 411 to chunked uploads. */
		curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)r->body_len);
		curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
		curl_easy_setopt(h, CURLOPT_READDATA, r);
		curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, on_seek);
		curl_easy_setopt(h, CURLOPT_SEEKDATA, r);
	} else if (strcmp(r->method, "GET")) {
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, r->method);
	}
	return 0;
}

static bool retryable_curl(CURLcode cc)
{
	switch (cc) {
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_CONNECT:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
		return true;
	default:
		return false;
	}
}

/* Throttling, server trouble and S3's own "try again" answers. */
static bool retryable_status(const struct s3_req *r)
{
	switch (r->status) {
	case 408: case 429: case 500: case 502: case 503: case 504:
		return true;
	case 400:
		return !strcmp(r->code, "RequestTimeout");
	default:
		return false;
	}
}

static const char *req_name(const struct s3_req *r)
{
	return r->key ? r->key : "(bucket)";
}

/*
 * The one place an HTTP answer becomes an errno. Expected answers (404 on
 * an object, 412 on a conditional put) are silent; the rest log one line
 * naming the cause, since the caller only sees the errno.
 */
static int status_errno(struct s3_store *s, const struct s3_req *r)
{
	long st = r->status;

	if (st >= 200 && st < 300)
		return 0;
	if (!strcmp(r->code, "QuotaExceeded") || !strcmp(r->code, "InsufficientStorage") ||
	    st == 507) {
		log_error("s3 %s %s/%s: HTTP %ld %s: no space (quota or storage full)",
			  r->method, s->bucket, req_name(r), st,
			  r->code[0] ? r->code : "Insufficient Storage");
		return -ENOSPC;
	}
	switch (st) {
	case 404:
		if (!strcmp(r->code, "NoSuchBucket") || (!r->key && !r->code[0])) {
			log_error("s3: bucket '%s' does not exist at %s", s->bucket,
				  s->endpoint);
			return -ENOENT;
		}
		return -ENOENT;
	case 403:
		log_error("s3 %s %s/%s: HTTP 403 %s: bad credentials or denied "
			  "(access key '%s')", r->method, s->bucket, req_name(r),
			  r->code[0] ? r->code : "Forbidden", s->access_key);
		return -EACCES;
	case 412:
		return -EEXIST;
	case 409:
		if (!strcmp(r->code, "ConditionalRequestConflict"))
			return -EEXIST;
		break;
	case 416:
		return -ERANGE;		/* get_range turns this into 0 bytes */
	case 408:
		return -ETIMEDOUT;
	default:
		break;
	}
	log_error("s3 %s %s/%s: HTTP %ld %s", r->method, s->bucket, req_name(r), st,
		  r->code[0] ? r->code : "(no error code)");
	return -EIO;
}

/*
 * Run @r until it gets a final answer or the deadline passes. Returns the
 * errno of the final answer (0 for 2xx); r->status stays available so
 * callers can treat 404/412/416 as the contract says.
 */
static int s3_request(struct s3_store *s, struct s3_req *r)
{
	int64_t deadline = now_ms() + s->timeout_ms;
	char errbuf[CURL_ERROR_SIZE], cause[CURL_ERROR_SIZE + 64] = "";
	bool conflict_retried = false;
	struct buf url = BUF_INIT;
	unsigned int tries = 0;
	int rc;

	rc = build_url(s, r, &url);
	if (rc < 0)
		return rc;
	r->h = pool_get(s);
	if (!r->h) {
		buf_release(&url);
		return -ENOMEM;
	}
	if (r->out)
		r->out_start = r->out->len;
	r->maybe_applied = false;
	for (;;) {
		int64_t left = deadline - now_ms(), backoff;
		struct curl_slist *hdrs = NULL;
		CURLcode cc;

		if (left <= 0) {
			log_error("s3 %s %s/%s: deadline of %.1f s passed after %u tries "
				  "(last: %s)", r->method, s->bucket, req_name(r),
				  s->timeout_ms / 1000.0, tries, cause);
			rc = -ETIMEDOUT;
			break;
		}
		r->status = 0;
		r->code[0] = r->etag[0] = '\0';
		r->length = r->mtime = -1;
		r->touched_ns = 0;
		r->body_pos = 0;
		r->reserved = r->nomem = false;
		buf_reset(&r->errbody);
		if (r->out)
			r->out->len = r->out_start;	/* drop a broken try's bytes */
		errbuf[0] = '\0';
		rc = setup_try(s, r, (const char *)url.data, &hdrs, (long)left, errbuf);
		if (rc < 0) {
			curl_slist_free_all(hdrs);
			break;
		}
		tries++;
		cc = curl_easy_perform(r->h);
		curl_slist_free_all(hdrs);
		if (cc == CURLE_OK) {
			curl_easy_getinfo(r->h, CURLINFO_RESPONSE_CODE, &r->status);
			curl_easy_getinfo(r->h, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &r->length);
			curl_easy_getinfo(r->h, CURLINFO_FILETIME_T, &r->mtime);
			if (r->errbody.len) {
				const char *b = (const char *)r->errbody.data;

				xml_text(b, b + r->errbody.len, "Code", r->code, sizeof(r->code));
			}
			if (r->status == 409 && !strcmp(r->code, "ConditionalRequestConflict") &&
			    !conflict_retried) {
				/* Another conditional write to this key is in flight;
				 * once it settles the answer is 200 or 412. */
				conflict_retried = true;
			} else if (!retryable_status(r)) {
				rc = status_errno(s, r);
				break;
			}
			if (r->status >= 500)
				r->maybe_applied = true;
			snprintf(cause, sizeof(cause), "HTTP %ld %s", r->status, r->code);
		} else {
			if (r->nomem) {
				rc = -ENOMEM;
				break;
			}
			snprintf(cause, sizeof(cause), "%s%s%s", curl_easy_strerror(cc),
				 errbuf[0] ? ": " : "", errbuf);
			if (!retryable_curl(cc)) {
				log_error("s3 %s %s/%s: %s", r->method, s->bucket,
					  req_name(r), cause);
				rc = -EIO;
				break;
			}
			if (cc != CURLE_COULDNT_CONNECT && cc != CURLE_COULDNT_RESOLVE_HOST)
				r->maybe_applied = true;
		}
		/* Exponential backoff with jitter: half fixed, half random, so
		 * throttled threads spread out instead of retrying in step. */
		backoff = BACKOFF_BASE_MS << (tries < 8 ? tries - 1 : 7);
		if (backoff > BACKOFF_CAP_MS)
			backoff = BACKOFF_CAP_MS;
		backoff = backoff / 2 + jitter_rand() % (backoff / 2 + 1);
		left = deadline - now_ms();
		metrics_inc(M_STORE_RETRIES, "s3", r->method, NULL);
		log_info("s3 %s %s/%s: %s; retry %u in %" PRId64 " ms", r->method,
			  s->bucket, req_name(r), cause, tries, backoff);
		if (backoff > left)
			backoff = left > 0 ? left : 0;
		sleep_ms(backoff);
	}
	if (rc < 0 && r->out)
		r->out->len = r->out_start;	/* no partial body on failure */
	pool_put(s, r->h);
	r->h = NULL;
	buf_release(&url);
	return rc;
}

static void req_release(struct s3_req *r)
{
	buf_release(&r->errbody);
}

/* ---- the store operations ---- */

static int s3_head(struct store *st, const char *key, struct store_stat *out);

static int put_single(struct s3_store *s, const char *key, const void *data,
		      size_t len, bool exclusive, bool *maybe_applied)
{
	struct s3_req r = {
		.method = "PUT", .key = key, .body = data, .body_len = len,
		.if_none_match = exclusive,
	};
	int rc;

	rc = s3_request(s, &r);
	if (maybe_applied)
		*maybe_applied = r.maybe_applied;
	req_release(&r);
	return rc;
}

static int xml_escape_append(struct buf *b, const char *s)
{
	int rc = 0;

	for (; *s && rc == 0; s++) {
		switch (*s) {
		case '&': rc = buf_append_str(b, "&amp;"); break;
		case '<': rc = buf_append_str(b, "&lt;"); break;
		case '>': rc = buf_append_str(b, "&gt;"); break;
		default: rc = buf_append(b, s, 1); break;
		}
	}
	return rc;
}

static int upload_query(struct buf *q, const char *upload_id, unsigned int part)
{
	int rc = 0;

	buf_reset(q);
	if (part)	/* canonical order: partNumber < uploadId */
		rc = buf_printf(q, "partNumber=%u&", part);
	if (rc == 0)
		rc = buf_append_str(q, "uploadId=");
	if (rc == 0)
		rc = pct_encode(q, upload_id, false);
	if (rc == 0)
		rc = buf_append(q, "", 1);
	return rc;
}

/*
 * Objects above MULTIPART_ABOVE go up in PART_BYTES parts, each its own
 * request with its own deadline and retries, so one slow stretch of a large
 * upload does not restart all of it. The object appears only when the upload
 * completes, which keeps put() all-or-nothing; on failure the upload is
 * aborted so no parts linger (and bill).
 */
static int put_multipart(struct s3_store *s, const char *key, const uint8_t *data,
			 size_t len)
{
	struct buf xml = BUF_INIT, q = BUF_INIT, done = BUF_INIT;
	char upload_id[512];
	unsigned int part;
	size_t off;
	int rc;
	struct s3_req r = {
		.method = "POST", .key = key, .query = "uploads=", .out = &xml,
	};

	rc = s3_request(s, &r);
	req_release(&r);
	if (rc < 0)
		goto out;
	rc = xml_text((char *)xml.data, (char *)xml.data + xml.len, "UploadId",
		      upload_id, sizeof(upload_id));
	if (rc < 0 || !upload_id[0]) {
		log_error("s3 multipart %s/%s: no UploadId in the answer", s->bucket, key);
		rc = -EIO;
		goto out;
	}
	rc = buf_append_str(&done, "<CompleteMultipartUpload>");
	for (part = 1, off = 0; rc == 0 && off < len; part++, off += PART_BYTES) {
		struct s3_req p = {
			.method = "PUT", .key = key, .body = data + off,
			.body_len = len - off < PART_BYTES ? len - off : PART_BYTES,
		};

		rc = upload_query(&q, upload_id, part);
		if (rc < 0)
			break;
		p.query = (const char *)q.data;
		rc = s3_request(s, &p);
		if (rc == 0 && !p.etag[0]) {
			log_error("s3 multipart %s/%s: part %u has no ETag", s->bucket, key, part);
			rc = -EIO;
		}
		if (rc == 0)
			rc = buf_printf(&done, "<Part><PartNumber>%u</PartNumber><ETag>", part);
		if (rc == 0)
			rc = xml_escape_append(&done, p.etag);
		if (rc == 0)
			rc = buf_append_str(&done, "</ETag></Part>");
		req_release(&p);
	}
	if (rc == 0)
		rc = buf_append_str(&done, "</CompleteMultipartUpload>");
	if (rc == 0)
		rc = upload_query(&q, upload_id, 0);
	if (rc == 0) {
		struct s3_req c = {
			.method = "POST", .key = key, .query = (const char *)q.data,
			.body = done.data, .body_len = done.len, .out = &xml,
		};

		buf_reset(&xml);
		rc = s3_request(s, &c);
		if (rc == -ENOENT && !strcmp(c.code, "NoSuchUpload") && c.maybe_applied) {
			/* Our first try completed it and the answer got lost. */
			struct store_stat sb;

			rc = s3_head(&s->base, key, &sb) == 0 && sb.size == len ? 0 : -EIO;
			if (rc == 0)
				goto done;
		}
		/* S3 may answer 200 and put the failure in the body. */
		if (rc == 0 && xml.len && memmem(xml.data, xml.len, "<Error>", 7)) {
			char code[64] = "";

			xml_text((char *)xml.data, (char *)xml.data + xml.len, "Code",
				 code, sizeof(code));
			log_error("s3 multipart %s/%s: complete failed: %s", s->bucket,
				  key, code);
			rc = -EIO;
		}
done:
		req_release(&c);
	}
	if (rc < 0 && upload_id[0] && upload_query(&q, upload_id, 0) == 0) {
		struct s3_req a = {
			.method = "DELETE", .key = key, .query = (const char *)q.data,
		};

		(void)s3_request(s, &a);
		req_release(&a);
	}
out:
	buf_release(&xml);
	buf_release(&q);
	buf_release(&done);
	return rc;
}

static int s3_put(struct store *st, const char *key, const void *data, size_t len)
{
	struct s3_store *s = to_s3(st);

	if (store_key_check(key) < 0)
		return -EINVAL;
	if (len > MULTIPART_ABOVE)
		return put_multipart(s, key, data, len);
	return put_single(s, key, data, len, false, NULL);
}

/*
 * A single conditional PUT, whatever the size (S3 takes up to 5 GiB in
 * one PUT): a multipart completion cannot be made exclusive on every
 * S3-compatible server.
 *
 * If a try may have been applied before its answer was lost, a retry sees
 * our own object and gets 412. Then the object is read back: equal bytes
 * mean we (most likely) created it, and reporting -EEXIST would make the
 * caller believe someone else won.
 */
static int s3_put_if_absent(struct store *st, const char *key, const void *data,
			    size_t len)
{
	struct s3_store *s = to_s3(st);
	struct buf got = BUF_INIT;
	bool maybe_applied = false;
	int rc;

	if (store_key_check(key) < 0)
		return -EINVAL;
	rc = put_single(s, key, data, len, true, &maybe_applied);
	if (rc != -EEXIST || !maybe_applied || len > VERIFY_MAX)
		return rc;
	if (store_get(st, key, &got) == 0 && got.len == len &&
	    (len == 0 || !memcmp(got.data, data, len))) {
		log_warn("s3 put_if_absent %s/%s: answer lost, object has our bytes: "
			 "taking it as created", s->bucket, key);
		rc = 0;
	}
	buf_release(&got);
	return rc;
}

static int s3_get_range(struct store *st, const char *key, uint64_t off,
			size_t len, struct buf *out)
{
	struct s3_store *s = to_s3(st);
	struct s3_req r = { .method = "GET", .key = key, .out = out };
	char range[64];
	size_t got;
	int rc;

	if (store_key_check(key) < 0)
		return -EINVAL;
	if (len == 0) {		/* nothing to read, but absence must show */
		struct store_stat sb;

		return s3_head(st, key, &sb);
	}
	if (len == STORE_TO_END || off + len - 1 < off) {
		if (off > 0) {
			snprintf(range, sizeof(range), "bytes=%" PRIu64 "-", off);
			r.range = range;
		}
		len = STORE_TO_END;
	} else {
		snprintf(range, sizeof(range), "bytes=%" PRIu64 "-%" PRIu64, off,
			 off + len - 1);
		r.range = range;
	}
	rc = s3_request(s, &r);
	if (rc == -ERANGE)
		rc = 0;		/* 416: the range starts at or past the end */
	else if (rc == 0 && r.status == 200 && r.range) {
		/* The server ignored Range and sent everything: cut it. */
		got = out->len - r.out_start;
		if (off >= got) {
			out->len = r.out_start;
		} else {
			if (len > got - off)
				len = got - off;
			memmove(out->data + r.out_start, out->data + r.out_start + off, len);
			out->len = r.out_start + len;
		}
	}
	req_release(&r);
	return rc;
}

static int s3_head(struct store *st, const char *key, struct store_stat *out)
{
	struct s3_store *s = to_s3(st);
	struct s3_req r = { .method = "HEAD", .key = key };
	int rc;

	if (store_key_check(key) < 0)
		return -EINVAL;
	rc = s3_request(s, &r);
	if (rc == 0) {
		out->size = r.length > 0 ? (uint64_t)r.length : 0;
		out->mtime = r.mtime >= 0 ? (int64_t)r.mtime : 0;
		out->mtime_ns = out->mtime * 1000000000;
		if (r.touched_ns > out->mtime_ns)
			out->mtime_ns = r.touched_ns;
		snprintf(out->version, sizeof(out->version), "%.47s", r.etag);
	}
	req_release(&r);
	return rc;
}

/* Call @cb for each <Contents> of one ListObjectsV2 page. */
static int list_page(struct s3_store *s, const struct buf *xml, store_list_cb cb,
		     void *arg, char *token, size_t token_size, bool *truncated)
{
	const char *p = (const char *)xml->data, *end = p + xml->len, *c;
	size_t plen = strlen(s->prefix), n, cn;
	struct buf key = BUF_INIT;
	char flag[8] = "";
	int rc = 0;

	while (rc == 0 && (c = xml_elem(p, end, "Contents", &cn, &p)) != NULL) {
		struct store_stat sb = { 0 };
		const char *v;

		v = xml_elem(c, c + cn, "Key", &n, NULL);
		if (!v) {
			rc = -EIO;
			break;
		}
		rc = xml_unescape(v, n, &key);
		if (rc < 0)
			break;
		v = xml_elem(c, c + cn, "Size", &n, NULL);
		if (v)
			sb.size = strtoull(v, NULL, 10);
		v = xml_elem(c, c + cn, "LastModified", &n, NULL);
		if (v)
			sb.mtime = parse_iso8601(v, n);
		v = xml_elem(c, c + cn, "ETag", &n, NULL);
		if (v && n < sizeof(sb.version))
			memcpy(sb.version, v, n);	/* may hold &quot;: fine as a tag */
		/* S3 matched the full prefix, so ours is there to strip. Keys
		 * other tools wrote that break our rules are not ours. */
		if (key.len < plen || memcmp(key.data, s->prefix, plen) ||
		    store_key_check((char *)key.data + plen) < 0) {
			log_debug("s3 list %s: skipping foreign key %s", s->bucket,
				  (char *)key.data);
			continue;
		}
		rc = cb((char *)key.data + plen, &sb, arg);
	}
	buf_release(&key);
	if (rc)
		return rc;
	end = (const char *)xml->data + xml->len;
	xml_text((const char *)xml->data, end, "IsTruncated", flag, sizeof(flag));
	*truncated = !strcmp(flag, "true");
	token[0] = '\0';
	if (*truncated) {
		xml_text((const char *)xml->data, end, "NextContinuationToken", token,
			 token_size);
		if (!token[0]) {
			log_error("s3 list %s: truncated page without a continuation token",
				  s->bucket);
			return -EIO;
		}
	}
	return 0;
}

/* ListObjectsV2 returns keys in byte order (UTF-8 binary), which for our
 * ASCII keys is the contract's lexicographic order. */
static int s3_list(struct store *st, const char *prefix, store_list_cb cb, void *arg)
{
	struct s3_store *s = to_s3(st);
	struct buf q = BUF_INIT, xml = BUF_INIT, full = BUF_INIT;
	char token[1024] = "";
	bool truncated;
	int rc;

	rc = buf_printf(&full, "%s%s", s->prefix, prefix);
	if (rc < 0)
		goto out;
	do {
		struct s3_req r = { .method = "GET" };

		buf_reset(&q);
		buf_reset(&xml);
		/* Canonical: parameters sorted by name, values encoded. */
		if (token[0]) {
			rc = buf_append_str(&q, "continuation-token=");
			if (rc == 0)
				rc = pct_encode(&q, token, false);
			if (rc == 0)
				rc = buf_append_str(&q, "&");
		}
		if (rc == 0)
			rc = buf_append_str(&q, "list-type=2&prefix=");
		if (rc == 0)
			rc = pct_encode(&q, (const char *)full.data, false);
		if (rc == 0)
			rc = buf_append(&q, "", 1);
		if (rc < 0)
			break;
		r.query = (const char *)q.data;
		r.out = &xml;
		rc = s3_request(s, &r);
		req_release(&r);
		if (rc < 0)
			break;
		rc = list_page(s, &xml, cb, arg, token, sizeof(token), &truncated);
	} while (rc == 0 && truncated);
out:
	buf_release(&q);
	buf_release(&xml);
	buf_release(&full);
	return rc;
}

static int s3_remove(struct store *st, const char *key)
{
	struct s3_store *s = to_s3(st);
	struct s3_req r = { .method = "DELETE", .key = key };
	int rc;

	if (store_key_check(key) < 0)
		return -EINVAL;
	rc = s3_request(s, &r);
	/* S3 answers 204 for absent keys anyway; other servers say 404. */
	if (rc == -ENOENT && strcmp(r.code, "NoSuchBucket"))
		rc = 0;
	req_release(&r);
	return rc;
}

static void s3_destroy(struct store *st)
{
	struct s3_store *s = to_s3(st);
	int i;

	for (i = 0; i < s->pool_n; i++)
		curl_easy_cleanup(s->pool[i]);
	if (s->share)
		curl_share_cleanup(s->share);
	for (i = 0; i < CURL_LOCK_DATA_LAST; i++)
		pthread_mutex_destroy(&s->share_locks[i]);
	pthread_mutex_destroy(&s->pool_lock);
	free(s->endpoint);
	free(s->bucket);
	free(s->prefix);
	free(s->sigv4);
	free(s->access_key);
	free(s->secret_key);
	free(s->token_hdr);
	free(s);
}

/* S3 has no "touch": copy the object onto itself, which gives it a new
 * Last-Modified and keeps its bytes. */
static int s3_touch(struct store *st, const char *key)
{
	struct s3_store *s = to_s3(st);
	struct buf src = BUF_INIT, body = BUF_INIT;
	struct s3_req r = { .method = "PUT", .key = key, .out = &body };
	int rc;

	if (store_key_check(key) < 0)
		return -EINVAL;
	rc = buf_printf(&src, "/%s/", s->bucket);
	if (rc == 0)
		rc = pct_encode(&src, s->prefix, true);
	if (rc == 0)
		rc = pct_encode(&src, key, true);
	if (rc == 0)
		rc = buf_append(&src, "", 1);
	if (rc == 0) {
		r.copy_source = (const char *)src.data;
		rc = s3_request(s, &r);
	}
	/* A copy can fail after its 200 header was sent: the error is then
	 * in the body. */
	if (rc == 0 && body.len && memmem(body.data, body.len, "<Error>", 7)) {
		log_error("s3 copy %s/%s onto itself: %.*s", s->bucket, key,
			  (int)(body.len > 300 ? 300 : body.len), (const char *)body.data);
		rc = -EIO;
	}
	req_release(&r);
	buf_release(&src);
	buf_release(&body);
	return rc;
}

static const struct store_ops s3_ops = {
	.name          = "s3",
	.put           = s3_put,
	.put_if_absent = s3_put_if_absent,
	.get_range     = s3_get_range,
	.head          = s3_head,
	.list          = s3_list,
	.remove        = s3_remove,
	.touch         = s3_touch,
	.destroy       = s3_destroy,
};

/* ---- open ---- */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

/* curl_global_init() is not thread-safe in every build; do it exactly once. */
static void curl_init_once(void)
{
	curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static const char *env_nonempty(const char *name)
{
	const char *v = getenv(name);

	return v && v[0] ? v : NULL;
}

/* S3 bucket rules: 3-63 characters of [a-z0-9.-] (plus legacy '_' and
 * capitals, which old buckets may have); path-style needs nothing else. */
static bool bucket_ok(const char *b, size_t n)
{
	size_t i;

	if (n < 3 || n > 63)
		return false;
	for (i = 0; i < n; i++) {
		char c = b[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_'))
			return false;
	}
	return true;
}

static int parse_url(struct s3_store *s, const char *url)
{
	const char *b = url + 5, *slash = strchr(b, '/');
	size_t blen = slash ? (size_t)(slash - b) : strlen(b);
	char *pfx;
	size_t n;

	if (!bucket_ok(b, blen)) {
		log_error("store %s: bad bucket name (3-63 characters of a-z 0-9 . -)", url);
		return -EINVAL;
	}
	s->bucket = strndup(b, blen);
	pfx = strdup(slash ? slash + 1 : "");
	if (!s->bucket || !pfx) {
		free(pfx);
		return -ENOMEM;
	}
	n = strlen(pfx);
	while (n > 0 && pfx[n - 1] == '/')
		pfx[--n] = '\0';
	if (n > 0 && (n > 800 || store_key_check(pfx) < 0)) {
		log_error("store %s: bad prefix '%s' (key rules apply)", url, pfx);
		free(pfx);
		return -EINVAL;
	}
	if (n > 0) {
		s->prefix = malloc(n + 2);
		if (s->prefix)
			snprintf(s->prefix, n + 2, "%s/", pfx);
	} else {
		s->prefix = strdup("");
	}
	free(pfx);
	return s->prefix ? 0 : -ENOMEM;
}

static int configure(struct s3_store *s, const struct store_options *opt)
{
	const char *region, *endpoint, *ak, *sk, *token, *tmo;
	double timeout_s = DEFAULT_TIMEOUT_S;
	size_t n;

	region = opt && opt->region ? opt->region : env_nonempty("AWS_REGION");
	if (!region)
		region = "us-east-1";
	endpoint = opt && opt->endpoint ? opt->endpoint : env_nonempty("AWS_ENDPOINT_URL");
	ak = env_nonempty("AWS_ACCESS_KEY_ID");
	sk = env_nonempty("AWS_SECRET_ACCESS_KEY");
	token = env_nonempty("AWS_SESSION_TOKEN");
	if (!ak || !sk) {
		log_error("s3://%s: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
			  s->bucket);
		return -EINVAL;
	}
	if (opt && opt->request_timeout_s > 0)
		timeout_s = opt->request_timeout_s;
	tmo = env_nonempty("CKPTFS_S3_TIMEOUT");	/* lets tests shorten it */
	if (tmo && strtod(tmo, NULL) > 0)
		timeout_s = strtod(tmo, NULL);
	s->timeout_ms = (long)(timeout_s * 1000);
	if (s->timeout_ms < 1)
		s->timeout_ms = 1;
	s->insecure_tls = opt && opt->insecure_tls;

	if (endpoint) {
		s->endpoint = strdup(endpoint);
	} else if (asprintf(&s->endpoint, "https://s3.%s.amazonaws.com", region) < 0) {
		s->endpoint = NULL;
	}
	if (asprintf(&s->sigv4, "aws:amz:%s:s3", region) < 0)
		s->sigv4 = NULL;
	s->access_key = strdup(ak);
	s->secret_key = strdup(sk);
	if (token && asprintf(&s->token_hdr, "x-amz-security-token: %s", token) < 0)
		s->token_hdr = NULL;
	if (!s->endpoint || !s->sigv4 || !s->access_key || !s->secret_key ||
	    (token && !s->token_hdr))
		return -ENOMEM;
	n = strlen(s->endpoint);
	while (n > 0 && s->endpoint[n - 1] == '/')
		s->endpoint[--n] = '\0';
	if (strncmp(s->endpoint, "http://", 7) && strncmp(s->endpoint, "https://", 8)) {
		log_error("s3: endpoint '%s' must start with http:// or https://",
			  s->endpoint);
		return -EINVAL;
	}
	return 0;
}

int store_s3_open(const char *url, const struct store_options *opt, struct store **out)
{
	struct s3_store *s;
	struct s3_req probe = { .method = "GET" };
	struct buf q = BUF_INIT, xml = BUF_INIT;
	int i, rc;

	if (strncmp(url, "s3://", 5))
		return -EINVAL;
	pthread_once(&curl_once, curl_init_once);
	if (curl_init_rc != CURLE_OK) {
		log_error("s3: curl_global_init: %s", curl_easy_strerror(curl_init_rc));
		return -EIO;
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->base.ops = &s3_ops;
	pthread_mutex_init(&s->pool_lock, NULL);
	for (i = 0; i < CURL_LOCK_DATA_LAST; i++)
		pthread_mutex_init(&s->share_locks[i], NULL);
	rc = parse_url(s, url);
	if (rc == 0)
		rc = configure(s, opt);
	if (rc < 0)
		goto fail;
	s->share = curl_share_init();
	if (!s->share) {
		rc = -ENOMEM;
		goto fail;
	}
	curl_share_setopt(s->share, CURLSHOPT_LOCKFUNC, share_lock);
	curl_share_setopt(s->share, CURLSHOPT_UNLOCKFUNC, share_unlock);
	curl_share_setopt(s->share, CURLSHOPT_USERDATA, s);
	curl_share_setopt(s->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
	curl_share_setopt(s->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);

	/*
	 * Prove the bucket and the credentials now, with a one-key listing of
	 * our prefix (that works under prefix-scoped policies where HEAD bucket
	 * may not): a wrong secret or bucket name should stop the mount with a
	 * clear message, not surface later as EIO on the first read.
	 */
	rc = buf_append_str(&q, "list-type=2&max-keys=1&prefix=");
	if (rc == 0)
		rc = pct_encode(&q, s->prefix, false);
	if (rc == 0)
		rc = buf_append(&q, "", 1);
	if (rc < 0)
		goto fail;
	probe.query = (const char *)q.data;
	probe.out = &xml;
	rc = s3_request(s, &probe);
	req_release(&probe);
	buf_release(&q);
	buf_release(&xml);
	if (rc == -ENOENT || rc == -EACCES) {
		/* status_errno() logged the line naming the cause */
		goto fail;
	} else if (rc < 0) {
		log_error("store %s: cannot use bucket at %s: %s", url, s->endpoint,
			  strerror(-rc));
		goto fail;
	}
	*out = &s->base;
	return 0;
fail:
	buf_release(&q);
	buf_release(&xml);
	s3_destroy(&s->base);
	return rc;
}

int s3_list_page_parse(const char *bucket, const char *prefix, const char *xml,
		       size_t len, store_list_cb cb, void *arg, char *token,
		       size_t token_size, bool *truncated)
{
	/* list_page() reads only the bucket and the prefix of its store. */
	struct s3_store s = { .bucket = (char *)bucket, .prefix = (char *)prefix };
	struct buf page = { .data = (uint8_t *)xml, .len = len, .cap = len };

	return list_page(&s, &page, cb, arg, token, token_size, truncated);
}
