/*
 * metrics_http.c: `--metrics ADDR:PORT`, the Prometheus endpoint, served by
 * libmicrohttpd on threads of its own; and the counting wrapper around the
 * FUSE operations table (requests and errors by op and errno).
 *
 * Owns:         the HTTP server's life and its two answers (/metrics, 404).
 * Does not own: the registry or its format (src/util/metrics.c).
 *
 * The server never takes fs->lock or any filesystem lock: a scrape renders
 * the registry (leaf locks only) into a buffer that the response owns. A
 * hung filesystem cannot stall a scrape and a flood of scrapes cannot
 * stall the filesystem beyond the CPU it takes; connections are capped.
 */
#define FUSE_USE_VERSION 312
#include "fuse/ckfuse.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fuse.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "util/buf.h"
#include "util/log.h"
#include "util/metrics.h"

/* ---------------------------------------------------------------- FUSE */

static const struct fuse_operations *inner;

static int note(const char *op, int rc)
{
	metrics_inc(M_FUSE_OPS, op, NULL, NULL);
	if (rc < 0)
		metrics_inc(M_FUSE_ERRORS, op, metrics_errno_name(rc), NULL);
	return rc;
}

#define WRAP(name, params, args) \
	static int m_##name params { return note(#name, inner->name args); }

WRAP(getattr, (const char *p, struct stat *st, struct fuse_file_info *fi), (p, st, fi))
WRAP(readlink, (const char *p, char *b, size_t n), (p, b, n))
WRAP(mkdir, (const char *p, mode_t m), (p, m))
WRAP(unlink, (const char *p), (p))
WRAP(rmdir, (const char *p), (p))
WRAP(symlink, (const char *t, const char *p), (t, p))
WRAP(rename, (const char *a, const char *b, unsigned int f), (a, b, f))
WRAP(chmod, (const char *p, mode_t m, struct fuse_file_info *fi), (p, m, fi))
WRAP(chown, (const char *p, uid_t u, gid_t g, struct fuse_file_info *fi), (p, u, g, fi))
WRAP(link, (const char *a, const char *b), (a, b))
WRAP(mknod, (const char *p, mode_t m, dev_t d), (p, m, d))
WRAP(truncate, (const char *p, off_t s, struct fuse_file_info *fi), (p, s, fi))
WRAP(open, (const char *p, struct fuse_file_info *fi), (p, fi))
WRAP(read, (const char *p, char *b, size_t n, off_t o, struct fuse_file_info *fi),
     (p, b, n, o, fi))
WRAP(write, (const char *p, const char *b, size_t n, off_t o, struct fuse_file_info *fi),
     (p, b, n, o, fi))
WRAP(statfs, (const char *p, struct statvfs *s), (p, s))
WRAP(flush, (const char *p, struct fuse_file_info *fi), (p, fi))
WRAP(release, (const char *p, struct fuse_file_info *fi), (p, fi))
WRAP(fsync, (const char *p, int d, struct fuse_file_info *fi), (p, d, fi))
WRAP(setxattr, (const char *p, const char *n, const char *v, size_t s, int f),
     (p, n, v, s, f))
WRAP(getxattr, (const char *p, const char *n, char *v, size_t s), (p, n, v, s))
WRAP(listxattr, (const char *p, char *l, size_t s), (p, l, s))
WRAP(removexattr, (const char *p, const char *n), (p, n))
WRAP(opendir, (const char *p, struct fuse_file_info *fi), (p, fi))
WRAP(readdir, (const char *p, void *b, fuse_fill_dir_t f, off_t o, struct fuse_file_info *fi,
	       enum fuse_readdir_flags fl), (p, b, f, o, fi, fl))
WRAP(releasedir, (const char *p, struct fuse_file_info *fi), (p, fi))
WRAP(create, (const char *p, mode_t m, struct fuse_file_info *fi), (p, m, fi))
WRAP(utimens, (const char *p, const struct timespec tv[2], struct fuse_file_info *fi),
     (p, tv, fi))

const struct fuse_operations *ckfuse_metrics_wrap(const struct fuse_operations *ops)
{
	static struct fuse_operations w;

	inner = ops;
	w = *ops;
#define SET(name) w.name = ops->name ? m_##name : NULL
	SET(getattr); SET(readlink); SET(mkdir); SET(unlink); SET(rmdir);
	SET(symlink); SET(rename); SET(chmod); SET(chown); SET(link); SET(mknod);
	SET(truncate); SET(open); SET(read); SET(write); SET(statfs); SET(flush);
	SET(release); SET(fsync); SET(setxattr); SET(getxattr); SET(listxattr);
	SET(removexattr); SET(opendir); SET(readdir); SET(releasedir); SET(create);
	SET(utimens);
#undef SET
	return &w;
}

/* ---------------------------------------------------------------- HTTP */

struct ckfuse_metrics_server {
	struct MHD_Daemon *d;
	char url[96];
};

static enum MHD_Result answer(void *cls, struct MHD_Connection *conn, const char *url,
			      const char *method, const char *version,
			      const char *upload_data, size_t *upload_size, void **req_cls)
{
	static const char not_found[] = "ckptfs: the metrics are at /metrics\n";
	static const char bad_method[] = "ckptfs: GET or HEAD\n";
	struct MHD_Response *resp;
	struct buf b = BUF_INIT;
	enum MHD_Result ret;
	unsigned status = MHD_HTTP_OK;

	(void)cls;
	(void)version;
	(void)upload_data;
	if (*req_cls == NULL) {		/* first call: headers only */
		*req_cls = conn;
		return MHD_YES;
	}
	*upload_size = 0;		/* a body is ignored */
	if (strcmp(method, MHD_HTTP_METHOD_GET) && strcmp(method, MHD_HTTP_METHOD_HEAD)) {
		resp = MHD_create_response_from_buffer(sizeof(bad_method) - 1,
						       (void *)bad_method,
						       MHD_RESPMEM_PERSISTENT);
		status = MHD_HTTP_METHOD_NOT_ALLOWED;
		if (resp)
			MHD_add_response_header(resp, "Allow", "GET, HEAD");
	} else if (strcmp(url, "/metrics")) {
		resp = MHD_create_response_from_buffer(sizeof(not_found) - 1,
						       (void *)not_found,
						       MHD_RESPMEM_PERSISTENT);
		status = MHD_HTTP_NOT_FOUND;
	} else {
		if (metrics_render(&b) < 0) {
			buf_release(&b);
			return MHD_NO;	/* out of memory: drop the connection */
		}
		resp = MHD_create_response_from_buffer(b.len, b.data, MHD_RESPMEM_MUST_FREE);
		if (!resp)
			buf_release(&b);
		else
			MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
						"text/plain; version=0.0.4; charset=utf-8");
	}
	if (!resp)
		return MHD_NO;
	ret = MHD_queue_response(conn, status, resp);
	MHD_destroy_response(resp);
	return ret;
}

/* "PORT", "ADDR:PORT", "[V6ADDR]:PORT"; the address defaults to 127.0.0.1. */
static int parse_addr(const char *spec, struct sockaddr_storage *ss, socklen_t *len)
{
	char host[64] = "127.0.0.1";
	const char *port = spec, *colon;
	char *end;
	long p;

	if (spec[0] == '[') {
		const char *close = strchr(spec, ']');

		if (!close || close[1] != ':' || (size_t)(close - spec - 1) >= sizeof(host))
			return -EINVAL;
		memcpy(host, spec + 1, (size_t)(close - spec - 1));
		host[close - spec - 1] = '\0';
		port = close + 2;
	} else if ((colon = strrchr(spec, ':'))) {
		if ((size_t)(colon - spec) >= sizeof(host))
			return -EINVAL;
		if (colon > spec) {
			memcpy(host, spec, (size_t)(colon - spec));
			host[colon - spec] = '\0';
		}
		port = colon + 1;
	}
	errno = 0;
	p = strtol(port, &end, 10);
	if (!*port || *end || errno || p < 0 || p > 65535)
		return -EINVAL;
	memset(ss, 0, sizeof(*ss));
	if (strchr(host, ':')) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;

		a->sin6_family = AF_INET6;
		a->sin6_port = htons((uint16_t)p);
		if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1)
			return -EINVAL;
		*len = sizeof(*a);
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)ss;

		a->sin_family = AF_INET;
		a->sin_port = htons((uint16_t)p);
		if (inet_pton(AF_INET, host, &a->sin_addr) != 1)
			return -EINVAL;
		*len = sizeof(*a);
	}
	return 0;
}

int ckfuse_metrics_start(const char *spec, struct ckfuse_metrics_server **out)
{
	struct ckfuse_metrics_server *m;
	struct sockaddr_storage ss;
	socklen_t len;
	const union MHD_DaemonInfo *info;
	char host[INET6_ADDRSTRLEN] = "?";
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL;
	int rc = parse_addr(spec, &ss, &len);

	if (rc < 0) {
		log_error("--metrics %s: want [ADDR:]PORT, e.g. 127.0.0.1:9567 (EINVAL)", spec);
		return rc;
	}
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	if (ss.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	/* Two threads share the epoll set: a slow client does not hold up
	 * the others. At most 256 connections; idle ones close after 10 s. */
	m->d = MHD_start_daemon(flags, 0, NULL, NULL, answer, NULL,
				MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
				MHD_OPTION_THREAD_POOL_SIZE, 2u,
				MHD_OPTION_CONNECTION_LIMIT, 256u,
				MHD_OPTION_CONNECTION_TIMEOUT, 10u,
				MHD_OPTION_LISTENING_ADDRESS_REUSE, 1u,
				MHD_OPTION_END);
	if (!m->d) {
		log_error("--metrics %s: cannot listen there (address in use or not "
			  "local?)", spec);
		free(m);
		return -EADDRINUSE;
	}
	info = MHD_get_daemon_info(m->d, MHD_DAEMON_INFO_BIND_PORT);
	if (ss.ss_family == AF_INET6)
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, host, sizeof(host));
	else
		inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, host, sizeof(host));
	snprintf(m->url, sizeof(m->url), ss.ss_family == AF_INET6 ?
		 "http://[%s]:%u/metrics" : "http://%s:%u/metrics", host,
		 info ? (unsigned)info->port : 0u);
	log_info("metrics at %s", m->url);
	*out = m;
	return 0;
}

const char *ckfuse_metrics_url(const struct ckfuse_metrics_server *m)
{
	return m->url;
}

void ckfuse_metrics_stop(struct ckfuse_metrics_server *m)
{
	if (!m)
		return;
	MHD_stop_daemon(m->d);
	free(m);
}
