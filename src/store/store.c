/* store.c: backend selection and the key rules shared by every backend. */
#include "store/store.h"

#include <errno.h>
#include <string.h>

#include "util/log.h"
#include "util/metrics.h"

int store_key_check(const char *key)
{
	size_t n = strlen(key), seg = 0;
	const char *p;

	if (n == 0 || n > 1000 || key[0] == '/' || key[n - 1] == '/')
		return -EINVAL;
	for (p = key; *p; p++) {
		char c = *p;

		if (c == '/') {
			if (seg == 0)
				return -EINVAL;
			seg = 0;
			continue;
		}
		if (seg == 0 && c == '.')	/* no ".", "..", or hidden names */
			return -EINVAL;
		if (++seg > 200)
			return -EINVAL;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '.' || c == '_' ||
		      c == '-' || c == '%'))
			return -EINVAL;
	}
	return 0;
}

int store_open(const char *url, const struct store_options *opt, struct store **out)
{
	struct store *st = NULL;
	int rc;

	if (!strncmp(url, "s3://", 5)) {
		rc = store_s3_open(url, opt, &st);
	} else {
		if (!strncmp(url, "file://", 7))
			url += 7;
		rc = store_local_open(url, opt ? opt->create : 0, &st);
	}
	if (rc < 0)
		return rc;
	/* Only remote stores gain from a local copy of immutable chunks. */
	if (opt && opt->cache_dir && strncmp(url, "s3://", 5) == 0) {
		rc = store_cache_open(st, opt->cache_dir, opt->cache_bytes, &st);
		if (rc < 0)
			return rc;
		store_cache_set_write_through(st, 1);
	}
	*out = st;
	return 0;
}

void store_free(struct store *st)
{
	if (st)
		st->ops->destroy(st);
}

double store_clock(void)
{
	return metrics_now();
}

int store_note(struct store *st, const char *op, double t0, int rc)
{
	const char *backend = st->ops->name;

	metrics_inc(M_STORE_REQUESTS, backend, op, rc >= 0 ? "ok" : metrics_errno_name(rc));
	metrics_observe(M_STORE_SECONDS, metrics_now() - t0, backend, op, NULL);
	return rc;
}
