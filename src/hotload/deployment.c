/*
 * deployment.c: the deployments/<name> file, DESIGN.md section 6.
 *
 * Owns:         the JSON schema of a deployment file, its validation and
 *               defaults, and the rule for deployment names.
 * Does not own: the wire protocols (hotload.c), where the file lives (fs).
 *
 * Validation is strict on purpose: the file is written by hand, and a typo
 * ("reset_cahce") silently ignored would change what a hotload does. So an
 * unknown key, a key given twice or a wrong type is -EINVAL at write time,
 * with a reason, rather than a surprise at hotload time.
 */
#include "hotload/hotload.h"

#include <cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/name.h"

#define URL_MAX 2048
#define TIMEOUT_MAX_S 86400.0
#define TIMEOUT_DEFAULT_S 600.0
#define ADAPTERS_MAX 64

static int fail(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

int deployment_check_name(const char *name)
{
	if (!name)
		return -EINVAL;
	return name_check_key_safe(name);
}

static int parse_protocol(const char *s, enum hotload_protocol *out)
{
	if (!strcmp(s, "sglang"))
		*out = HOTLOAD_SGLANG;
	else if (!strcmp(s, "vllm"))
		*out = HOTLOAD_VLLM;
	else if (!strcmp(s, "http"))
		*out = HOTLOAD_HTTP;
	else
		return -EINVAL;
	return 0;
}

/*
 * http(s)://host[:port][/path], no whitespace or control bytes, no query or
 * fragment: the protocols append their endpoint paths to it, and a query
 * string in the middle of the result would be a silent misconfiguration.
 * Returns NULL if fine, else what is wrong.
 */
static const char *check_url(const char *url)
{
	const char *host;
	const unsigned char *p;

	if (!strncmp(url, "http://", 7))
		host = url + 7;
	else if (!strncmp(url, "https://", 8))
		host = url + 8;
	else
		return "must start with http:// or https://";
	if (!*host || *host == '/' || *host == ':')
		return "has no host";
	if (strlen(url) >= URL_MAX)
		return "is too long";
	for (p = (const unsigned char *)url; *p; p++) {
		if (*p <= ' ' || *p == 0x7f)
			return "contains whitespace or control bytes";
		if (*p == '?' || *p == '#')
			return "must not have a query or fragment";
	}
	return NULL;
}

/* POSIX portable environment variable name: [A-Za-z_][A-Za-z0-9_]*. */
static int check_env_name(const char *s)
{
	const char *p;

	if (!*s || (*s >= '0' && *s <= '9'))
		return -EINVAL;
	for (p = s; *p; p++) {
		char c = *p;

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '_'))
			return -EINVAL;
	}
	return 0;
}

/* The template must expand for some valid request: checks every {field}. */
static int check_template(const char *tmpl)
{
	static const struct hotload_request probe = {
		.deployment = "d", .job = "j", .checkpoint = "c",
		.snapshot = "s", .kind = "base",
	};
	/* Same size as hotload_result.model_path: 1-byte probe values make
	 * the shortest expansion, so too long here is too long always. */
	char out[4096];

	return hotload_expand_path(tmpl, &probe, out, sizeof(out));
}

static int get_string(const cJSON *it, char **dst, char *err, size_t errlen)
{
	if (!cJSON_IsString(it))
		return fail(err, errlen, "\"%s\" must be a string", it->string);
	*dst = strdup(it->valuestring);
	return *dst ? 0 : -ENOMEM;
}

static int get_bool(const cJSON *it, int *dst, char *err, size_t errlen)
{
	if (!cJSON_IsBool(it))
		return fail(err, errlen, "\"%s\" must be true or false", it->string);
	*dst = cJSON_IsTrue(it);
	return 0;
}

static int parse_field(const cJSON *it, struct deployment *d, int *have_proto,
		       char *err, size_t errlen)
{
	const char *key = it->string;
	const char *why;
	int rc;

	if (!strcmp(key, "protocol")) {
		if (!cJSON_IsString(it))
			return fail(err, errlen, "\"protocol\" must be a string");
		if (parse_protocol(it->valuestring, &d->protocol) < 0)
			return fail(err, errlen,
				    "unknown protocol \"%.64s\" (sglang, vllm, http)",
				    it->valuestring);
		*have_proto = 1;
		return 0;
	}
	if (!strcmp(key, "url")) {
		size_t n;

		rc = get_string(it, &d->url, err, errlen);
		if (rc < 0)
			return rc;
		n = strlen(d->url);
		while (n > 0 && d->url[n - 1] == '/')
			d->url[--n] = '\0';
		why = check_url(d->url);
		if (why)
			return fail(err, errlen, "\"url\" %s", why);
		return 0;
	}
	if (!strcmp(key, "model_path")) {
		rc = get_string(it, &d->model_path, err, errlen);
		if (rc < 0)
			return rc;
		if (!*d->model_path)
			return fail(err, errlen, "\"model_path\" is empty");
		rc = check_template(d->model_path);
		if (rc == -ENAMETOOLONG)
			return fail(err, errlen, "\"model_path\" is too long");
		if (rc < 0)
			return fail(err, errlen,
				    "\"model_path\": bad template (fields: {checkpoint} {snapshot} {job})");
		return 0;
	}
	if (!strcmp(key, "token_env") || !strcmp(key, "admin_token_env")) {
		char **dst = key[0] == 't' ? &d->token_env : &d->admin_token_env;

		rc = get_string(it, dst, err, errlen);
		if (rc < 0)
			return rc;
		if (check_env_name(*dst) < 0)
			return fail(err, errlen,
				    "\"%s\" must be an environment variable name", key);
		return 0;
	}
	if (!strcmp(key, "max_adapters")) {
		if (!cJSON_IsNumber(it) || !isfinite(it->valuedouble) ||
		    it->valuedouble != floor(it->valuedouble) ||
		    it->valuedouble < 1 || it->valuedouble > ADAPTERS_MAX)
			return fail(err, errlen,
				    "\"max_adapters\" must be an integer in [1, %d]",
				    ADAPTERS_MAX);
		d->max_adapters = (int)it->valuedouble;
		return 0;
	}
	if (!strcmp(key, "timeout_s")) {
		if (!cJSON_IsNumber(it))
			return fail(err, errlen, "\"timeout_s\" must be a number");
		if (!isfinite(it->valuedouble) || it->valuedouble <= 0 ||
		    it->valuedouble > TIMEOUT_MAX_S)
			return fail(err, errlen, "\"timeout_s\" must be in (0, %.0f]",
				    TIMEOUT_MAX_S);
		d->timeout_s = it->valuedouble;
		return 0;
	}
	if (!strcmp(key, "reset_cache"))
		return get_bool(it, &d->reset_cache, err, errlen);
	if (!strcmp(key, "warmup"))
		return get_bool(it, &d->warmup, err, errlen);
	if (!strcmp(key, "lora"))
		return get_bool(it, &d->lora, err, errlen);
	return fail(err, errlen, "unknown field \"%.64s\"", key);
}

static int only_space(const char *p, const char *end)
{
	for (; p < end; p++)
		if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
			return 0;
	return 1;
}

int deployment_parse(const char *json, size_t len, struct deployment *out,
		     char *err, size_t errlen)
{
	struct deployment d = DEPLOYMENT_INIT;
	const cJSON *it, *jt;
	const char *end = NULL;
	cJSON *root;
	int have_proto = 0, have_max = 0;
	int rc;

	if (err && errlen)
		err[0] = '\0';
	*out = (struct deployment)DEPLOYMENT_INIT;
	d.timeout_s = TIMEOUT_DEFAULT_S;
	d.reset_cache = 1;
	d.max_adapters = 1;

	/* cJSON stops after the first value; anything but space after it is
	 * a broken file, not a valid one with a comment. */
	root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
	if (root && !only_space(end, json + len)) {
		cJSON_Delete(root);
		root = NULL;
	}
	if (!root)
		return fail(err, errlen, "invalid JSON");
	if (!cJSON_IsObject(root)) {
		rc = fail(err, errlen, "a deployment must be a JSON object");
		goto out;
	}
	cJSON_ArrayForEach(it, root) {
		/* cJSON keeps duplicate keys; the last would win silently. */
		for (jt = root->child; jt != it; jt = jt->next) {
			if (!strcmp(jt->string, it->string)) {
				rc = fail(err, errlen, "field \"%.64s\" given twice",
					  it->string);
				goto out;
			}
		}
		rc = parse_field(it, &d, &have_proto, err, errlen);
		if (rc < 0)
			goto out;
		have_max |= !strcmp(it->string, "max_adapters");
	}
	rc = -EINVAL;
	if (!have_proto) {
		fail(err, errlen, "missing \"protocol\"");
		goto out;
	}
	if (!d.url) {
		fail(err, errlen, "missing \"url\"");
		goto out;
	}
	if (!d.model_path) {
		fail(err, errlen, "missing \"model_path\"");
		goto out;
	}
	if (d.lora && d.protocol == HOTLOAD_HTTP) {
		fail(err, errlen, "\"lora\" needs the sglang or vllm protocol");
		goto out;
	}
	if (have_max && !d.lora) {
		fail(err, errlen, "\"max_adapters\" needs \"lora\": true");
		goto out;
	}
	/* vLLM has one key level (--api-key); only SGLang has an admin key. */
	if (d.admin_token_env && d.protocol != HOTLOAD_SGLANG) {
		fail(err, errlen, "\"admin_token_env\" is only for the sglang protocol");
		goto out;
	}
	if (d.warmup && d.protocol == HOTLOAD_HTTP) {
		fail(err, errlen, "\"warmup\" needs the sglang or vllm protocol");
		goto out;
	}
	*out = d;
	rc = 0;
out:
	cJSON_Delete(root);
	if (rc < 0)
		deployment_release(&d);
	return rc;
}

void deployment_release(struct deployment *d)
{
	if (!d)
		return;
	free(d->url);
	free(d->model_path);
	free(d->token_env);
	free(d->admin_token_env);
	*d = (struct deployment)DEPLOYMENT_INIT;
}

int hotload_token_env_allowed(const char *name, const char *allow)
{
	size_t n = strlen(name);
	const char *p, *end;

	if (!n)
		return 0;
	if (!strncmp(name, HOTLOAD_TOKEN_PREFIX, strlen(HOTLOAD_TOKEN_PREFIX)) &&
	    n > strlen(HOTLOAD_TOKEN_PREFIX))
		return 1;
	for (p = allow; p && *p; p = *end ? end + 1 : end) {
		end = strchr(p, ',');
		if (!end)
			end = p + strlen(p);
		if ((size_t)(end - p) == n && !memcmp(p, name, n))
			return 1;
	}
	return 0;
}

int deployment_check_token_envs(const struct deployment *d, const char *allow,
				char *err, size_t errlen)
{
	const char *names[2] = { d->token_env, d->admin_token_env };
	const char *keys[2] = { "token_env", "admin_token_env" };
	int i;

	for (i = 0; i < 2; i++)
		if (names[i] && !hotload_token_env_allowed(names[i], allow))
			return fail(err, errlen,
				    "\"%s\": %.64s is not a token variable this mount allows "
				    "(names starting with " HOTLOAD_TOKEN_PREFIX
				    ", or listed in --hotload-token-env)",
				    keys[i], names[i]);
	return 0;
}
