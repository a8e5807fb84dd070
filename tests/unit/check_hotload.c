/*
 * check_hotload.c: deployment files and the hotload wire protocols.
 *
 * The protocol tests run hotload_run() against a real stand-in server
 * (tests/servers/standin.py) on 127.0.0.1, one per test, and then read back
 * what it received from GET /_test/state: the requests in order, the
 * Authorization headers, and the sha256 of every file it read for a load.
 * The "checkpoint" is a temporary directory of a few files whose sha256s
 * the test computes itself.
 *
 * Environment (set by tests/meson.build): PYTHON3, CKPTFS_TEST_SERVERS.
 */
#include <check.h>
#include <cJSON.h>
#include <curl/curl.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "hotload/hotload.h"
#include "testutil.h"
#include "util/hash.h"
#include "util/log.h"

#define TOKEN "tok-SECRET-8c1f2e"
#define TOKEN_ENV "CKPTFS_TOKEN_CHECK_HOTLOAD"
#define ADMIN "adm-SECRET-41d9e0"
#define ADMIN_ENV "CKPTFS_TOKEN_CHECK_ADMIN"

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- the stand-in server ---- */

struct standin {
	pid_t pid;
	int port;
	char dir[256];
	char url[64];
};

static void standin_start(struct standin *s, const char *proto, ...)
{
	const char *python = getenv("PYTHON3") ? getenv("PYTHON3") : "python3";
	const char *servers = getenv("CKPTFS_TEST_SERVERS");
	char script[512], portfile[300];
	const char *argv[32];
	char *tmp;
	double until;
	va_list ap;
	int n = 0;
	FILE *f;

	tmp = testutil_mkdtemp();
	ck_assert_ptr_nonnull(tmp);
	snprintf(s->dir, sizeof(s->dir), "%s", tmp);
	free(tmp);
	snprintf(script, sizeof(script), "%s/standin.py",
		 servers ? servers : "tests/servers");
	snprintf(portfile, sizeof(portfile), "%s/port", s->dir);

	argv[n++] = python;
	argv[n++] = script;
	argv[n++] = "--protocol";
	argv[n++] = proto;
	argv[n++] = "--port";
	argv[n++] = "0";
	argv[n++] = "--portfile";
	argv[n++] = portfile;
	va_start(ap, proto);
	while (n < 31 && (argv[n] = va_arg(ap, const char *)))
		n++;
	va_end(ap);
	argv[n] = NULL;

	s->pid = fork();
	ck_assert_int_ge(s->pid, 0);
	if (s->pid == 0) {
		/* Dies with the test, even when an assertion ends it early. */
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		execvp(python, (char *const *)argv);
		_exit(127);
	}
	for (until = now_s() + 10; now_s() < until; usleep(10000)) {
		f = fopen(portfile, "r");
		if (f) {
			int ok = fscanf(f, "%d", &s->port) == 1;

			fclose(f);
			if (ok)
				break;
		}
		ck_assert_int_eq(waitpid(s->pid, NULL, WNOHANG), 0);
	}
	ck_assert_int_gt(s->port, 0);
	snprintf(s->url, sizeof(s->url), "http://127.0.0.1:%d", s->port);
}

static void standin_stop(struct standin *s)
{
	if (s->pid > 0) {
		kill(s->pid, SIGTERM);
		waitpid(s->pid, NULL, 0);
		s->pid = 0;
	}
	testutil_rmtree(s->dir);
}

static size_t collect(char *p, size_t size, size_t n, void *arg)
{
	ck_assert_int_eq(buf_append(arg, p, size * n), 0);
	return size * n;
}

/* GET or POST a /_test/ endpoint; returns the parsed JSON reply. */
static cJSON *standin_test_call(const struct standin *s, const char *method,
				const char *path)
{
	struct buf b = BUF_INIT;
	char url[128];
	long status = 0;
	CURL *c = curl_easy_init();
	cJSON *j;

	snprintf(url, sizeof(url), "%s%s", s->url, path);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
	if (!strcmp(method, "POST"))
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
	ck_assert_int_eq(curl_easy_perform(c), CURLE_OK);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	ck_assert_int_eq(status, 200);
	curl_easy_cleanup(c);
	j = cJSON_ParseWithLength((const char *)b.data, b.len);
	ck_assert_ptr_nonnull(j);
	buf_release(&b);
	return j;
}

static cJSON *standin_state(const struct standin *s)
{
	return standin_test_call(s, "GET", "/_test/state");
}

static cJSON *get(const cJSON *j, const char *key)
{
	cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);

	ck_assert_msg(v != NULL, "no \"%s\" in the reply", key);
	return v;
}

static const char *get_str(const cJSON *j, const char *key)
{
	const cJSON *v = get(j, key);

	ck_assert_msg(cJSON_IsString(v), "\"%s\" is not a string", key);
	return v->valuestring;
}

/* The request paths the server saw, as "a b c". */
static void request_paths(const cJSON *state, char *out, size_t size)
{
	const cJSON *r;
	size_t n = 0;

	out[0] = '\0';
	cJSON_ArrayForEach(r, get(state, "requests"))
		n += snprintf(out + n, n < size ? size - n : 0, "%s%s",
			      n ? " " : "", get_str(r, "path"));
	ck_assert_uint_lt(n, size);
}

/* The i-th request's body, which must be a JSON object. */
static const cJSON *request_body(const cJSON *state, int i)
{
	const cJSON *r = cJSON_GetArrayItem(get(state, "requests"), i);

	ck_assert_ptr_nonnull(r);
	ck_assert(cJSON_IsObject(get(r, "body")));
	return get(r, "body");
}

static int count_path(const cJSON *state, const char *path)
{
	const cJSON *r;
	int n = 0;

	cJSON_ArrayForEach(r, get(state, "requests"))
		n += !strcmp(get_str(r, "path"), path);
	return n;
}

/* ---- a checkpoint on disk ---- */

#define CKPT_FILES 4

struct ckpt {
	char *root;			/* holds <root>/<name>/ */
	char dir[512];			/* <root>/<name> */
	char rel[CKPT_FILES][64];
	char sha[CKPT_FILES][HASH_SHA256_HEX_LEN + 1];
	struct hotload_file files[CKPT_FILES];
};

static void ckpt_make(struct ckpt *c, const char *name)
{
	static const struct { const char *rel; size_t size; } spec[CKPT_FILES] = {
		{ "model.safetensors", 200 * 1024 },
		{ "config.json", 300 },
		{ "tokenizer.json", 5000 },
		{ "extra/notes.bin", 1 },
	};
	char path[700];
	uint8_t *data;
	FILE *f;
	int i;

	c->root = testutil_mkdtemp();
	ck_assert_ptr_nonnull(c->root);
	snprintf(c->dir, sizeof(c->dir), "%s/%s", c->root, name);
	ck_assert_int_eq(mkdir(c->dir, 0755), 0);
	snprintf(path, sizeof(path), "%s/extra", c->dir);
	ck_assert_int_eq(mkdir(path, 0755), 0);
	for (i = 0; i < CKPT_FILES; i++) {
		data = malloc(spec[i].size);
		ck_assert_ptr_nonnull(data);
		testutil_fill_random(data, spec[i].size, 1000 + i);
		snprintf(path, sizeof(path), "%s/%s", c->dir, spec[i].rel);
		f = fopen(path, "wb");
		ck_assert_ptr_nonnull(f);
		ck_assert_uint_eq(fwrite(data, 1, spec[i].size, f), spec[i].size);
		fclose(f);
		hash_sha256_hex(data, spec[i].size, c->sha[i]);
		free(data);
		snprintf(c->rel[i], sizeof(c->rel[i]), "%s", spec[i].rel);
		c->files[i].path = c->rel[i];
		c->files[i].size = spec[i].size;
		c->files[i].sha256 = c->sha[i];
	}
}

static void ckpt_free(struct ckpt *c)
{
	testutil_rmtree(c->root);
	free(c->root);
}

/* The server read exactly our files, with our hashes, for load @i. */
static void assert_load_matches(const cJSON *state, int i, const struct ckpt *c)
{
	const cJSON *load = cJSON_GetArrayItem(get(state, "loads"), i);
	const cJSON *files;
	int k;

	ck_assert_ptr_nonnull(load);
	ck_assert_str_eq(get_str(load, "path"), c->dir);
	files = get(load, "files");
	ck_assert_int_eq(cJSON_GetArraySize(files), CKPT_FILES);
	for (k = 0; k < CKPT_FILES; k++) {
		const cJSON *f = get(files, c->rel[k]);

		ck_assert_str_eq(get_str(f, "sha256"), c->sha[k]);
		ck_assert_int_eq((int)get(f, "size")->valuedouble, (int)c->files[k].size);
	}
}

static struct hotload_request make_req(const struct ckpt *c, const char *ckpt,
				       const char *snapshot)
{
	struct hotload_request q = {
		.deployment = "dep-a", .job = "job-1", .checkpoint = ckpt,
		.snapshot = snapshot, .kind = "base", .base = NULL,
		.files = c->files, .n_files = CKPT_FILES,
	};

	return q;
}

/* Parse a deployment from printf-built JSON; it must be valid. */
static void make_dep(struct deployment *d, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void make_dep(struct deployment *d, const char *fmt, ...)
{
	char json[2048], err[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(json, sizeof(json), fmt, ap);
	va_end(ap);
	ck_assert_msg(deployment_parse(json, strlen(json), d, err, sizeof(err)) == 0,
		      "%s: %s", json, err);
}

/* ---- captured log lines ---- */

static pthread_mutex_t logs_lock = PTHREAD_MUTEX_INITIALIZER;
static char logs[64 * 1024];
static size_t logs_len;

static void capture(enum log_level lvl, const char *line, void *arg)
{
	(void)lvl;
	(void)arg;
	pthread_mutex_lock(&logs_lock);
	logs_len += snprintf(logs + logs_len,
			     logs_len < sizeof(logs) ? sizeof(logs) - logs_len : 0,
			     "%s\n", line);
	if (logs_len > sizeof(logs))
		logs_len = sizeof(logs);
	pthread_mutex_unlock(&logs_lock);
}

static void setup(void)
{
	/* Loopback must not go through a proxy from the environment. */
	unsetenv("http_proxy");
	unsetenv("HTTP_PROXY");
	unsetenv("all_proxy");
	unsetenv("ALL_PROXY");
	logs_len = 0;
	logs[0] = '\0';
	log_set_level(LOG_LVL_DEBUG);
	log_set_hook(capture, NULL);
}

static void teardown(void)
{
	log_set_hook(NULL, NULL);
}

/* ================= deployment_parse ================= */

static int parse(const char *json, struct deployment *d, char *err, size_t errlen)
{
	return deployment_parse(json, strlen(json), d, err, errlen);
}

START_TEST(parse_valid)
{
	static const char json[] =
		"{ \"protocol\": \"sglang\", \"url\": \"http://10.0.0.7:30000/\","
		"  \"model_path\": \"/mnt/ckpt/sampler/{checkpoint}\","
		"  \"token_env\": \"DEPLOY_TOKEN\", \"timeout_s\": 42.5,"
		"  \"reset_cache\": false, \"warmup\": true }";
	struct deployment d = DEPLOYMENT_INIT;
	char err[256] = "x";

	ck_assert_int_eq(parse(json, &d, err, sizeof(err)), 0);
	ck_assert_str_eq(err, "");
	ck_assert_int_eq(d.protocol, HOTLOAD_SGLANG);
	ck_assert_str_eq(d.url, "http://10.0.0.7:30000");	/* '/' dropped */
	ck_assert_str_eq(d.model_path, "/mnt/ckpt/sampler/{checkpoint}");
	ck_assert_str_eq(d.token_env, "DEPLOY_TOKEN");
	ck_assert_double_eq(d.timeout_s, 42.5);
	ck_assert_int_eq(d.reset_cache, 0);
	ck_assert_int_eq(d.warmup, 1);
	ck_assert_int_eq(d.lora, 0);
	deployment_release(&d);
	ck_assert_ptr_null(d.url);

	ck_assert_int_eq(parse("{\"protocol\":\"vllm\",\"url\":\"https://h\","
			       "\"model_path\":\"/a/{job}/{snapshot}\",\"lora\":true}",
			       &d, err, sizeof(err)), 0);
	ck_assert_int_eq(d.protocol, HOTLOAD_VLLM);
	ck_assert_int_eq(d.lora, 1);
	ck_assert_int_eq(d.max_adapters, 1);
	deployment_release(&d);

	ck_assert_int_eq(parse("{\"protocol\":\"sglang\",\"url\":\"https://h\","
			       "\"model_path\":\"/a/{checkpoint}\",\"lora\":true,"
			       "\"max_adapters\":3,\"token_env\":\"CKPTFS_TOKEN_A\","
			       "\"admin_token_env\":\"CKPTFS_TOKEN_B\"}",
			       &d, err, sizeof(err)), 0);
	ck_assert_int_eq(d.lora, 1);
	ck_assert_int_eq(d.max_adapters, 3);
	ck_assert_str_eq(d.admin_token_env, "CKPTFS_TOKEN_B");
	deployment_release(&d);

	ck_assert_int_eq(parse("{\"protocol\":\"http\",\"url\":\"http://h:1/hook/x\","
			       "\"model_path\":\"s3://b/{checkpoint}\"}",
			       &d, err, sizeof(err)), 0);
	ck_assert_int_eq(d.protocol, HOTLOAD_HTTP);
	ck_assert_str_eq(d.url, "http://h:1/hook/x");
	deployment_release(&d);
}
END_TEST

START_TEST(parse_defaults)
{
	struct deployment d = DEPLOYMENT_INIT;
	char err[256];

	ck_assert_int_eq(parse("{\"protocol\":\"vllm\",\"url\":\"http://h:8000\","
			       "\"model_path\":\"/m/{checkpoint}\"}",
			       &d, err, sizeof(err)), 0);
	ck_assert_double_eq(d.timeout_s, 600);
	ck_assert_int_eq(d.reset_cache, 1);
	ck_assert_int_eq(d.warmup, 0);
	ck_assert_int_eq(d.lora, 0);
	ck_assert_ptr_null(d.token_env);
	deployment_release(&d);
	deployment_release(NULL);
}
END_TEST

/* Each must fail with -EINVAL, leave @d empty and say why. */
static void assert_rejected(const char *json)
{
	struct deployment d = DEPLOYMENT_INIT;
	char err[256] = "";

	ck_assert_msg(parse(json, &d, err, sizeof(err)) == -EINVAL,
		      "accepted: %s", json);
	ck_assert_msg(err[0] != '\0', "no reason for: %s", json);
	ck_assert_ptr_null(d.url);
	ck_assert_ptr_null(d.model_path);
	ck_assert_ptr_null(d.token_env);
}

#define GOOD "\"protocol\":\"sglang\",\"url\":\"http://h:1\",\"model_path\":\"/m\""

START_TEST(parse_invalid_json)
{
	struct deployment d = DEPLOYMENT_INIT;
	char err[256];

	assert_rejected("");
	assert_rejected("{");
	assert_rejected("{" GOOD ",}");
	assert_rejected("{" GOOD "} trailing");
	assert_rejected("[]");
	assert_rejected("null");
	assert_rejected("\"sglang\"");
	/* Length is honoured: the same bytes, cut short, are invalid. */
	ck_assert_int_eq(deployment_parse("{" GOOD "}", 10, &d, err, sizeof(err)),
			 -EINVAL);
	ck_assert_str_eq(err, "invalid JSON");
}
END_TEST

START_TEST(parse_unknown_field)
{
	struct deployment d = DEPLOYMENT_INIT;
	char err[256];

	assert_rejected("{" GOOD ",\"reset_cahce\":true}");
	assert_rejected("{" GOOD ",\"extra\":null}");
	ck_assert_int_eq(parse("{" GOOD ",\"tokenenv\":\"X\"}", &d, err, sizeof(err)),
			 -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "tokenenv"));
}
END_TEST

START_TEST(parse_unknown_protocol)
{
	assert_rejected("{\"protocol\":\"fireworks\",\"url\":\"http://h\",\"model_path\":\"/m\"}");
	assert_rejected("{\"protocol\":\"SGLang\",\"url\":\"http://h\",\"model_path\":\"/m\"}");
	assert_rejected("{\"protocol\":\"\",\"url\":\"http://h\",\"model_path\":\"/m\"}");
}
END_TEST

START_TEST(parse_missing)
{
	struct deployment d = DEPLOYMENT_INIT;
	char err[256];

	ck_assert_int_eq(parse("{\"protocol\":\"sglang\",\"model_path\":\"/m\"}",
			       &d, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "url"));
	assert_rejected("{\"url\":\"http://h\",\"model_path\":\"/m\"}");
	assert_rejected("{\"protocol\":\"sglang\",\"url\":\"http://h\"}");
	assert_rejected("{}");
}
END_TEST

START_TEST(parse_wrong_types)
{
	assert_rejected("{\"protocol\":1,\"url\":\"http://h\",\"model_path\":\"/m\"}");
	assert_rejected("{\"protocol\":\"sglang\",\"url\":[\"http://h\"],\"model_path\":\"/m\"}");
	assert_rejected("{\"protocol\":\"sglang\",\"url\":\"http://h\",\"model_path\":null}");
	assert_rejected("{" GOOD ",\"token_env\":5}");
	assert_rejected("{" GOOD ",\"timeout_s\":\"600\"}");
	assert_rejected("{" GOOD ",\"timeout_s\":true}");
	assert_rejected("{" GOOD ",\"reset_cache\":1}");
	assert_rejected("{" GOOD ",\"reset_cache\":\"true\"}");
	assert_rejected("{" GOOD ",\"warmup\":null}");
	assert_rejected("{\"protocol\":\"vllm\",\"url\":\"http://h\",\"model_path\":\"/m\","
			"\"lora\":{}}");
}
END_TEST

START_TEST(parse_bad_values)
{
	assert_rejected("{\"protocol\":\"sglang\",\"url\":\"ftp://h\",\"model_path\":\"/m\"}");
	assert_rejected("{\"protocol\":\"sglang\",\"url\":\"h:30000\",\"model_path\":\"/m\"}");
	assert_rejected("{\"protocol\":\"sglang\",\"url\":\"http://\",\"model_path\":\"/m\"}");
	assert_rejected("{\"protocol\":\"sglang\",\"url\":\"http://h x\",\"model_path\":\"/m\"}");
	assert_rejected("{\"protocol\":\"sglang\",\"url\":\"http://h/?a=1\",\"model_path\":\"/m\"}");
	assert_rejected("{\"protocol\":\"sglang\",\"url\":\"http://h\",\"model_path\":\"\"}");
	assert_rejected("{\"protocol\":\"sglang\",\"url\":\"http://h\",\"model_path\":\"/m/{step}\"}");
	assert_rejected("{\"protocol\":\"sglang\",\"url\":\"http://h\",\"model_path\":\"/m/{job\"}");
	assert_rejected("{" GOOD ",\"token_env\":\"MY-TOKEN\"}");
	assert_rejected("{" GOOD ",\"token_env\":\"\"}");
	assert_rejected("{" GOOD ",\"timeout_s\":0}");
	assert_rejected("{" GOOD ",\"timeout_s\":-1}");
	assert_rejected("{" GOOD ",\"timeout_s\":1e9}");
	assert_rejected("{\"protocol\":\"http\",\"url\":\"http://h\",\"model_path\":\"/m\","
			"\"lora\":true}");
	assert_rejected("{" GOOD ",\"max_adapters\":2}");	/* without lora */
	assert_rejected("{" GOOD ",\"lora\":true,\"max_adapters\":0}");
	assert_rejected("{" GOOD ",\"lora\":true,\"max_adapters\":1.5}");
	assert_rejected("{" GOOD ",\"lora\":true,\"max_adapters\":65}");
	assert_rejected("{" GOOD ",\"admin_token_env\":\"A-B\"}");
	assert_rejected("{\"protocol\":\"vllm\",\"url\":\"http://h\",\"model_path\":\"/m\","
			"\"admin_token_env\":\"CKPTFS_TOKEN_A\"}");	/* one key level */
	assert_rejected("{\"protocol\":\"http\",\"url\":\"http://h\",\"model_path\":\"/m\","
			"\"warmup\":true}");
	assert_rejected("{" GOOD ",\"url\":\"http://other\"}");	/* twice */
}
END_TEST

/* Issue 9 item 3: a deployment may name only the mount's token variables. */
START_TEST(token_env_allowed)
{
	struct deployment d = DEPLOYMENT_INIT;
	char err[256] = "";

	ck_assert_int_eq(hotload_token_env_allowed("CKPTFS_TOKEN_SG", NULL), 1);
	ck_assert_int_eq(hotload_token_env_allowed("CKPTFS_TOKEN_", NULL), 0);
	ck_assert_int_eq(hotload_token_env_allowed("AWS_SECRET_ACCESS_KEY", NULL), 0);
	ck_assert_int_eq(hotload_token_env_allowed("AWS_SECRET_ACCESS_KEY", "HF_TOKEN"), 0);
	ck_assert_int_eq(hotload_token_env_allowed("HF_TOKEN", "A,HF_TOKEN"), 1);
	ck_assert_int_eq(hotload_token_env_allowed("HF_TOK", "A,HF_TOKEN"), 0);
	ck_assert_int_eq(hotload_token_env_allowed("A", "A,HF_TOKEN"), 1);
	ck_assert_int_eq(hotload_token_env_allowed("", ","), 0);

	ck_assert_int_eq(parse("{" GOOD ",\"token_env\":\"AWS_SECRET_ACCESS_KEY\"}",
			       &d, err, sizeof(err)), 0);
	ck_assert_int_eq(deployment_check_token_envs(&d, NULL, err, sizeof(err)), -EINVAL);
	ck_assert_msg(strstr(err, "AWS_SECRET_ACCESS_KEY"), "%s", err);
	deployment_release(&d);
	ck_assert_int_eq(parse("{" GOOD ",\"token_env\":\"CKPTFS_TOKEN_X\","
			       "\"admin_token_env\":\"AWS_SESSION_TOKEN\"}",
			       &d, err, sizeof(err)), 0);
	ck_assert_int_eq(deployment_check_token_envs(&d, NULL, err, sizeof(err)), -EINVAL);
	ck_assert_msg(strstr(err, "admin_token_env"), "%s", err);
	ck_assert_int_eq(deployment_check_token_envs(&d, "AWS_SESSION_TOKEN", err,
						     sizeof(err)), 0);
	deployment_release(&d);
}
END_TEST

START_TEST(check_name)
{
	ck_assert_int_eq(deployment_check_name("my-deployment"), 0);
	ck_assert_int_eq(deployment_check_name("qwen3_8b.prod-2"), 0);
	ck_assert_int_eq(deployment_check_name(""), -EINVAL);
	ck_assert_int_eq(deployment_check_name("."), -EINVAL);
	ck_assert_int_eq(deployment_check_name(".."), -EINVAL);
	ck_assert_int_eq(deployment_check_name("a/b"), -EINVAL);
	ck_assert_int_eq(deployment_check_name("a b"), -EINVAL);
	ck_assert_int_eq(deployment_check_name(NULL), -EINVAL);
}
END_TEST

/* ================= hotload_expand_path ================= */

START_TEST(expand_path)
{
	struct hotload_request q = {
		.job = "rl-7", .checkpoint = "step-0010", .snapshot = "step-0010-a1b2",
	};
	char out[64];

	ck_assert_int_eq(hotload_expand_path("/mnt/ckpt/jobs/{job}/sampler/{checkpoint}",
					     &q, out, sizeof(out)), 0);
	ck_assert_str_eq(out, "/mnt/ckpt/jobs/rl-7/sampler/step-0010");
	ck_assert_int_eq(hotload_expand_path("{snapshot}-{snapshot}", &q, out,
					     sizeof(out)), 0);
	ck_assert_str_eq(out, "step-0010-a1b2-step-0010-a1b2");
	ck_assert_int_eq(hotload_expand_path("/plain/path}", &q, out, sizeof(out)), 0);
	ck_assert_str_eq(out, "/plain/path}");

	ck_assert_int_eq(hotload_expand_path("/m/{step}", &q, out, sizeof(out)), -EINVAL);
	ck_assert_int_eq(hotload_expand_path("/m/{}", &q, out, sizeof(out)), -EINVAL);
	ck_assert_int_eq(hotload_expand_path("/m/{job", &q, out, sizeof(out)), -EINVAL);
	ck_assert_int_eq(hotload_expand_path("/m/{Job}", &q, out, sizeof(out)), -EINVAL);
	ck_assert_int_eq(hotload_expand_path("/m/{checkpoint}/{job}/{snapshot}/x",
					     &q, out, 30), -ENAMETOOLONG);
	ck_assert_int_eq(hotload_expand_path("/m/{job}", &q, out, 7), -ENAMETOOLONG);
	ck_assert_str_eq(out, "");
	ck_assert_int_eq(hotload_expand_path("/m/{job}", &q, out, 8), 0);
	ck_assert_str_eq(out, "/m/rl-7");

	/* A missing value, or one that would escape its component. */
	q.job = NULL;
	ck_assert_int_eq(hotload_expand_path("/m/{job}", &q, out, sizeof(out)), -EINVAL);
	q.job = "..";
	ck_assert_int_eq(hotload_expand_path("/m/{job}", &q, out, sizeof(out)), -EINVAL);
	q.job = "a/b";
	ck_assert_int_eq(hotload_expand_path("/m/{job}", &q, out, sizeof(out)), -EINVAL);
}
END_TEST

/* ================= sglang ================= */

START_TEST(sglang_success)
{
	struct standin s = { 0 };
	struct ckpt c;
	struct deployment d = DEPLOYMENT_INIT;
	struct hotload_result res;
	struct hotload_request q;
	const cJSON *body;
	cJSON *st;
	char paths[512];

	ckpt_make(&c, "step-0001");
	standin_start(&s, "sglang", NULL);
	make_dep(&d, "{\"protocol\":\"sglang\",\"url\":\"%s\",\"model_path\":\"%s/{checkpoint}\","
		 "\"timeout_s\":20}", s.url, c.root);
	q = make_req(&c, "step-0001", "step-0001-5eed");

	ck_assert_int_eq(hotload_run(&d, &q, &res), 0);
	ck_assert_str_eq(res.error, "");
	ck_assert_str_eq(res.version, "step-0001-5eed");
	ck_assert_str_eq(res.model_path, c.dir);
	ck_assert_int_eq(res.http_status, 200);
	ck_assert(res.seconds >= 0 && res.seconds < 10);

	st = standin_state(&s);
	request_paths(st, paths, sizeof(paths));
	ck_assert_str_eq(paths, "/update_weights_from_disk /model_info");
	body = request_body(st, 0);
	ck_assert_str_eq(get_str(body, "model_path"), c.dir);
	ck_assert_str_eq(get_str(body, "weight_version"), "step-0001-5eed");
	ck_assert(cJSON_IsTrue(get(body, "flush_cache")));
	assert_load_matches(st, 0, &c);
	ck_assert_str_eq(get_str(st, "weight_version"), "step-0001-5eed");
	ck_assert_int_eq((int)get(st, "cache_resets")->valuedouble, 1);
	ck_assert(cJSON_IsNull(cJSON_GetArrayItem(get(st, "auth_seen"), 0)));
	ck_assert_ptr_nonnull(strstr(logs, "confirmed"));
	cJSON_Delete(st);

	/* reset_cache false goes out as flush_cache false. */
	deployment_release(&d);
	make_dep(&d, "{\"protocol\":\"sglang\",\"url\":\"%s\",\"model_path\":\"%s/{checkpoint}\","
		 "\"reset_cache\":false}", s.url, c.root);
	ck_assert_int_eq(hotload_run(&d, &q, &res), 0);
	st = standin_state(&s);
	ck_assert(cJSON_IsFalse(get(request_body(st, 2), "flush_cache")));
	ck_assert_int_eq((int)get(st, "cache_resets")->valuedouble, 1);
	cJSON_Delete(st);

	deployment_release(&d);
	standin_stop(&s);
	ckpt_free(&c);
}
END_TEST

START_TEST(sglang_refused)
{
	struct standin s = { 0 };
	struct ckpt c;
	struct deployment d = DEPLOYMENT_INIT;
	struct hotload_result res;
	struct hotload_request q;
	cJSON *st;

	ckpt_make(&c, "step-0001");
	standin_start(&s, "sglang", "--refuse", NULL);
	make_dep(&d, "{\"protocol\":\"sglang\",\"url\":\"%s\",\"model_path\":\"%s/{checkpoint}\"}",
		 s.url, c.root);
	q = make_req(&c, "step-0001", "step-0001-5eed");

	ck_assert_int_eq(hotload_run(&d, &q, &res), -EIO);
	ck_assert_int_eq(res.http_status, 400);
	ck_assert_msg(strstr(res.error, "stand-in refuses this model"), "%s", res.error);
	ck_assert_str_eq(res.version, "");
	ck_assert_ptr_nonnull(strstr(logs, "stand-in refuses this model"));
	/* Refused means refused: no retry, no confirmation request. */
	st = standin_state(&s);
	ck_assert_int_eq(cJSON_GetArraySize(get(st, "requests")), 1);
	cJSON_Delete(st);

	deployment_release(&d);
	standin_stop(&s);
	ckpt_free(&c);
}
END_TEST

static void retry_then_success(const char *status)
{
	struct standin s = { 0 };
	struct ckpt c;
	struct deployment d = DEPLOYMENT_INIT;
	struct hotload_result res;
	struct hotload_request q;
	char paths[512];
	cJSON *st;

	ckpt_make(&c, "step-0002");
	standin_start(&s, "sglang", "--fail-first", "2", "--status-fail", status, NULL);
	make_dep(&d, "{\"protocol\":\"sglang\",\"url\":\"%s\",\"model_path\":\"%s/{checkpoint}\","
		 "\"timeout_s\":20}", s.url, c.root);
	q = make_req(&c, "step-0002", "step-0002-beef");

	ck_assert_int_eq(hotload_run(&d, &q, &res), 0);
	ck_assert_str_eq(res.version, "step-0002-beef");
	st = standin_state(&s);
	request_paths(st, paths, sizeof(paths));
	ck_assert_str_eq(paths, "/update_weights_from_disk /update_weights_from_disk "
			 "/update_weights_from_disk /model_info");
	ck_assert_int_eq((int)get(cJSON_GetArrayItem(get(st, "requests"), 0),
				  "status")->valuedouble, atoi(status));
	assert_load_matches(st, 0, &c);
	cJSON_Delete(st);
	ck_assert_ptr_nonnull(strstr(logs, "retrying"));

	deployment_release(&d);
	standin_stop(&s);
	ckpt_free(&c);
}

START_TEST(retry_500)
{
	retry_then_success("500");
}
END_TEST

START_TEST(retry_429)
{
	retry_then_success("429");
}
END_TEST

START_TEST(server_down)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);
	struct deployment d = DEPLOYMENT_INIT;
	struct hotload_result res;
	struct hotload_request q;
	struct ckpt c;
	double t0, dt;
	int fd;

	/* A port nobody listens on: bind one, then let it go. */
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	close(fd);

	ckpt_make(&c, "step-0001");
	make_dep(&d, "{\"protocol\":\"sglang\",\"url\":\"http://127.0.0.1:%d\","
		 "\"model_path\":\"%s/{checkpoint}\",\"timeout_s\":2}",
		 ntohs(sa.sin_port), c.root);
	q = make_req(&c, "step-0001", "step-0001-5eed");
	t0 = now_s();
	ck_assert_int_eq(hotload_run(&d, &q, &res), -ETIMEDOUT);
	dt = now_s() - t0;
	ck_assert_msg(dt >= 1.9 && dt < 3.0, "took %.2fs", dt);
	ck_assert_int_eq(res.http_status, 0);
	ck_assert_msg(strstr(res.error, "/update_weights_from_disk"), "%s", res.error);
	ck_assert_ptr_nonnull(strstr(logs, "retrying"));
	deployment_release(&d);
	ckpt_free(&c);
}
END_TEST

START_TEST(slow_server)
{
	struct standin s = { 0 };
	struct ckpt c;
	struct deployment d = DEPLOYMENT_INIT;
	struct hotload_result res;
	struct hotload_request q;
	double t0, dt;

	ckpt_make(&c, "step-0001");
	standin_start(&s, "sglang", "--delay", "5", NULL);
	make_dep(&d, "{\"protocol\":\"sglang\",\"url\":\"%s\",\"model_path\":\"%s/{checkpoint}\","
		 "\"timeout_s\":1}", s.url, c.root);
	q = make_req(&c, "step-0001", "step-0001-5eed");
	t0 = now_s();
	ck_assert_int_eq(hotload_run(&d, &q, &res), -ETIMEDOUT);
	dt = now_s() - t0;
	ck_assert_msg(dt >= 0.9 && dt < 2.0, "took %.2fs", dt);
	ck_assert_msg(strstr(res.error, "not confirmed within 1s"), "%s", res.error);
	ck_assert_ptr_nonnull(strstr(logs, strerror(ETIMEDOUT)));
	deployment_release(&d);
	standin_stop(&s);
	ckpt_free(&c);
}
END_TEST

START_TEST(warmup_sent)
{
	struct standin s = { 0 };
	struct ckpt c;
	struct deployment d = DEPLOYMENT_INIT;
	struct hotload_result res;
	struct hotload_request q;
	const cJSON *body;
	char paths[512];
	cJSON *st;

	ckpt_make(&c, "step-0001");
	q = make_req(&c, "step-0001", "step-0001-5eed");

	standin_start(&s, "sglang", NULL);
	make_dep(&d, "{\"protocol\":\"sglang\",\"url\":\"%s\",\"model_path\":\"%s/{checkpoint}\","
		 "\"warmup\":true}", s.url, c.root);
	ck_assert_int_eq(hotload_run(&d, &q, &res), 0);
	st = standin_state(&s);
	request_paths(st, paths, sizeof(paths));
	ck_assert_str_eq(paths, "/update_weights_from_disk /model_info /generate");
	body = request_body(st, 2);
	ck_assert(cJSON_IsString(get(body, "text")));
	ck_assert_int_eq((int)get(get(body, "sampling_params"), "max_new_tokens")->valuedouble, 1);
	ck_assert_int_eq((int)get(st, "warmups")->valuedouble, 1);
	cJSON_Delete(st);
	deployment_release(&d);
	standin_stop(&s);

	standin_start(&s, "vllm", NULL);
	make_dep(&d, "{\"protocol\":\"vllm\",\"url\":\"%s\",\"model_path\":\"%s/{checkpoint}\","
		 "\"warmup\":true,\"reset_cache\":false}", s.url, c.root);
	ck_assert_int_eq(hotload_run(&d, &q, &res), 0);
	st = standin_state(&s);
	ck_assert_int_eq(count_path(st, "/v1/completions"), 1);
	request_paths(st, paths, sizeof(paths));
	ck_assert_msg(strstr(paths, "/weight_info /resume /v1/completions"), "%s", paths);
	body = request_body(st, cJSON_GetArraySize(get(st, "requests")) - 1);
	ck_assert_int_eq((int)get(body, "max_tokens")->valuedouble, 1);
	ck_assert_ptr_null(cJSON_GetObjectItem(body, "model"));	/* the base model */
	cJSON_Delete(st);
	deployment_release(&d);
	standin_stop(&s);
	ckpt_free(&c);
}
END_TEST

/* Issue 14 item 4: a tree without /model_info confirms on the old route. */
START_TEST(sglang_old_generation)
{
	struct standin s = { 0 };
	struct ckpt c;
	struct deployment d = DEPLOYMENT_INIT;
	struct hotload_result res;
	struct hotload_request q;
	char paths[512];
	cJSON *st;

	ckpt_make(&c, "step-0001");
	standin_start(&s, "sglang", "--generation", "old", NULL);
	make_dep(&d, "{\"protocol\":\"sglang\",\"url\":\"%s\",\"model_path\":\"%s/{checkpoint}\","
		 "\"timeout_s\":20}", s.url, c.root);
	q = make_req(&c, "step-0001", "step-0001-5eed");
	ck_assert_int_eq(hotload_run(&d, &q, &res), 0);
	ck_assert_str_eq(res.version, "step-0001-5eed");
	st = standin_state(&s);
	request_paths(st, paths, sizeof(paths));
	ck_assert_str_eq(paths, "/update_weights_from_disk /model_info /get_weight_version");
	cJSON_Delete(st);
	deployment_release(&d);
	standin_stop(&s);

	/* The new generation answers 404 on the alias; it is never asked. */
	standin_start(&s, "sglang", "--generation", "new", NULL);
	make_dep(&d, "{\"protocol\":\"sglang\",\"url\":\"%s\",\"model_path\":\"%s/{checkpoint}\","
		 "\"timeout_s\":20}", s.url, c.root);
	ck_assert_int_eq(hotload_run(&d, &q, &res), 0);
	st = standin_state(&s);
	ck_assert_int_eq(count_path(st, "/get_weight_version"), 0);
	ck_assert_int_eq(count_path(st, "/model_info"), 1);
	cJSON_Delete(st);
	deployment_release(&d);
	standin_stop(&s);
	ckpt_free(&c);
}
END_TEST

/*
 * Issue 14 item 5: with --api-key and --admin-api-key, the load goes with
 * the admin key and confirm/warmup with the normal one.
 */
START_TEST(sglang_admin_key)
{
	struct standin s = { 0 };
	struct ckpt c;
	struct deployment d = DEPLOYMENT_INIT;
	struct hotload_result res;
	struct hotload_request q;
	const cJSON *r;
	cJSON *st;

	ckpt_make(&c, "step-0001");
	standin_start(&s, "sglang", "--api-key", TOKEN, "--admin-api-key", ADMIN, NULL);
	setenv(TOKEN_ENV, TOKEN, 1);
	setenv(ADMIN_ENV, ADMIN, 1);
	q = make_req(&c, "step-0001", "step-0001-5eed");

	/* One token cannot pass both levels: the load is refused. */
	make_dep(&d, "{\"protocol\":\"sglang\",\"url\":\"%s\",\"model_path\":\"%s/{checkpoint}\","
		 "\"token_env\":\"" TOKEN_ENV "\"}", s.url, c.root);
	ck_assert_int_eq(hotload_run(&d, &q, &res), -EIO);
	ck_assert_int_eq(res.http_status, 401);
	deployment_release(&d);

	make_dep(&d, "{\"protocol\":\"sglang\",\"url\":\"%s\",\"model_path\":\"%s/{checkpoint}\","
		 "\"token_env\":\"" TOKEN_ENV "\",\"admin_token_env\":\"" ADMIN_ENV "\","
		 "\"warmup\":true}", s.url, c.root);
	ck_assert_int_eq(hotload_run(&d, &q, &res), 0);
	st = standin_state(&s);
	ck_assert_int_eq(cJSON_GetArraySize(get(st, "requests")), 4);
	r = cJSON_GetArrayItem(get(st, "requests"), 1);	/* after the refused one */
	ck_assert_str_eq(get_str(r, "path"), "/update_weights_from_disk");
	ck_assert_str_eq(get_str(r, "auth"), "Bearer " ADMIN);
	ck_assert_int_eq((int)get(r, "status")->valuedouble, 200);
	r = cJSON_GetArrayItem(get(st, "requests"), 2);
	ck_assert_str_eq(get_str(r, "path"), "/model_info");
	ck_assert_str_eq(get_str(r, "auth"), "Bearer " TOKEN);
	r = cJSON_GetArrayItem(get(st, "requests"), 3);
	ck_assert_str_eq(get_str(r, "path"), "/generate");
	ck_assert_str_eq(get_str(r, "auth"), "Bearer " TOKEN);
	ck_assert_int_eq(count_path(st, "/generate"), 1);
	cJSON_Delete(st);
	unsetenv(TOKEN_ENV);
	unsetenv(ADMIN_ENV);
	ck_assert_ptr_null(strstr(logs, TOKEN));
	ck_assert_ptr_null(strstr(logs, ADMIN));

	deployment_release(&d);
	standin_stop(&s);
	ckpt_free(&c);
}
END_TEST

/* Issue 14 item 6: SGLang adapters: load, confirm, unload beyond the bound. */
START_TEST(sglang_lora)
{
	struct standin s = { 0 };
	struct ckpt c;
	struct deployment d = DEPLOYMENT_INIT;
	struct hotload_result res;
	struct hotload_request q;
	const cJSON *body;
	char paths[1024];
	cJSON *st;

	ckpt_make(&c, "lora-0001");
	standin_start(&s, "sglang", NULL);
	make_dep(&d, "{\"protocol\":\"sglang\",\"url\":\"%s\",\"model_path\":\"%s/{checkpoint}\","
		 "\"lora\":true,\"max_adapters\":2,\"warmup\":true}", s.url, c.root);
	q = make_req(&c, "lora-0001", "lora-0001-a");
	q.kind = "lora";
	ck_assert_int_eq(hotload_run(&d, &q, &res), 0);
	ck_assert_str_eq(res.version, "lora-0001-a");
	q.snapshot = "lora-0001-b";
	ck_assert_int_eq(hotload_run(&d, &q, &res), 0);
	q.snapshot = "lora-0001-c";
	ck_assert_int_eq(hotload_run(&d, &q, &res), 0);

	st = standin_state(&s);
	request_paths(st, paths, sizeof(paths));
	ck_assert_str_eq(paths, "/load_lora_adapter /generate /load_lora_adapter /generate "
			 "/load_lora_adapter /unload_lora_adapter /generate");
	body = request_body(st, 0);
	ck_assert_str_eq(get_str(body, "lora_name"), "lora-0001-a");
	ck_assert_str_eq(get_str(body, "lora_path"), c.dir);
	ck_assert(cJSON_IsFalse(get(body, "pinned")));
	ck_assert_str_eq(get_str(request_body(st, 5), "lora_name"), "lora-0001-a");
	ck_assert_str_eq(get_str(request_body(st, 6), "lora_path"), "lora-0001-c");
	ck_assert_int_eq(cJSON_GetArraySize(get(st, "loras")), 2);
	assert_load_matches(st, 2, &c);
	cJSON_Delete(st);
	/* Again: the server says "already loaded"; we loaded it, so it is there. */
	ck_assert_int_eq(hotload_run(&d, &q, &res), 0);
	ck_assert_str_eq(res.error, "");
	ck_assert_str_eq(res.version, "lora-0001-c");
	deployment_release(&d);
	standin_stop(&s);

	/* Refused: EIO with the engine's error_message. */
	standin_start(&s, "sglang", "--refuse", NULL);
	make_dep(&d, "{\"protocol\":\"sglang\",\"url\":\"%s\",\"model_path\":\"%s/{checkpoint}\","
		 "\"lora\":true}", s.url, c.root);
	ck_assert_int_eq(hotload_run(&d, &q, &res), -EIO);
	ck_assert_msg(strstr(res.error, "stand-in refuses this adapter"), "%s", res.error);
	deployment_release(&d);
	standin_stop(&s);
	ckpt_free(&c);
}
END_TEST

/* ================= vllm ================= */

START_TEST(vllm_success)
{
	struct standin s = { 0 };
	struct ckpt c1, c2;
	struct deployment d = DEPLOYMENT_INIT, d2 = DEPLOYMENT_INIT;
	struct hotload_result res;
	struct hotload_request q;
	const cJSON *body;
	char paths[1024];
	cJSON *st;

	ckpt_make(&c1, "step-0001");
	ckpt_make(&c2, "step-0002");
	standin_start(&s, "vllm", NULL);
	make_dep(&d, "{\"protocol\":\"vllm\",\"url\":\"%s\",\"model_path\":\"%s/{checkpoint}\","
		 "\"timeout_s\":20}", s.url, c1.root);

	q = make_req(&c1, "step-0001", "step-0001-aaaa");
	ck_assert_int_eq(hotload_run(&d, &q, &res), 0);
	ck_assert_str_eq(res.version, "step-0001-aaaa");

	/* Same server, second load, reset_cache off: no prefix-cache reset. */
	make_dep(&d2, "{\"protocol\":\"vllm\",\"url\":\"%s\",\"model_path\":\"%s/{checkpoint}\","
		 "\"reset_cache\":false}", s.url, c2.root);
	q = make_req(&c2, "step-0002", "step-0002-bbbb");
	ck_assert_int_eq(hotload_run(&d2, &q, &res), 0);
	ck_assert_str_eq(res.version, "step-0002-bbbb");

	st = standin_state(&s);
	request_paths(st, paths, sizeof(paths));
	ck_assert_str_eq(paths,
		"/pause /collective_rpc /update_weight_version /weight_info "
		"/reset_prefix_cache /resume "
		"/pause /collective_rpc /update_weight_version /weight_info /resume");
	/* Issue 14 item 3: the engine is paused, waiting for requests in flight. */
	ck_assert_ptr_nonnull(strstr(get_str(cJSON_GetArrayItem(get(st, "requests"), 0),
					     "query"), "mode=wait"));
	body = request_body(st, 1);
	ck_assert_str_eq(get_str(body, "method"), "reload_weights");
	ck_assert_str_eq(get_str(get(body, "kwargs"), "weights_path"), c1.dir);
	ck_assert_str_eq(get_str(request_body(st, 2), "new_version"), "step-0001-aaaa");
	ck_assert_str_eq(get_str(get(request_body(st, 7), "kwargs"), "weights_path"), c2.dir);
	ck_assert_str_eq(get_str(request_body(st, 8), "new_version"), "step-0002-bbbb");
	assert_load_matches(st, 0, &c1);
	assert_load_matches(st, 1, &c2);
	ck_assert_int_eq((int)get(st, "cache_resets")->valuedouble, 1);
	ck_assert_int_eq((int)get(st, "resumes")->valuedouble, 2);
	ck_assert_int_eq((int)get(st, "reloads_while_serving")->valuedouble, 0);
	ck_assert(cJSON_IsFalse(get(st, "paused")));
	ck_assert_str_eq(get_str(st, "weight_version"), "step-0002-bbbb");
	cJSON_Delete(st);

	deployment_release(&d);
	deployment_release(&d2);
	standin_stop(&s);
	ckpt_free(&c1);
	ckpt_free(&c2);
}
END_TEST

/* A transient failure (a proxy's 503) of the reload retries the reload. */
START_TEST(vllm_transient_retried)
{
	struct standin s = { 0 };
	struct ckpt c;
	struct deployment d = DEPLOYMENT_INIT;
	struct hotload_result res;
	struct hotload_request q;
	char paths[1024];
	cJSON *st;

	ckpt_make(&c, "step-0001");
	standin_start(&s, "vllm", "--fail-first", "1", "--fail-path", "/collective_rpc",
		      "--status-fail", "503", NULL);
	make_dep(&d, "{\"protocol\":\"vllm\",\"url\":\"%s\",\"model_path\":\"%s/{checkpoint}\","
		 "\"reset_cache\":false,\"timeout_s\":20}", s.url, c.root);
	q = make_req(&c, "step-0001", "step-0001-aaaa");
	ck_assert_int_eq(hotload_run(&d, &q, &res), 0);
	st = standin_state(&s);
	request_paths(st, paths, sizeof(paths));
	ck_assert_str_eq(paths,
		"/pause /collective_rpc /collective_rpc /update_weight_version "
		"/weight_info /resume");
	assert_load_matches(st, 0, &c);
	cJSON_Delete(st);

	deployment_release(&d);
	standin_stop(&s);
	ckpt_free(&c);
}
END_TEST

/*
 * Issue 14 items 2 and 3: an engine error is HTTP 500 with vLLM's envelope;
 * it is a refusal (EIO, at once, with the engine's message), not a
 * transient failure retried until timeout_s; and the engine is resumed.
 */
START_TEST(vllm_refused)
{
	struct standin s = { 0 };
	struct ckpt c;
	struct deployment d = DEPLOYMENT_INIT;
	struct hotload_result res;
	struct hotload_request q;
	char paths[1024];
	double t0;
	cJSON *st;

	ckpt_make(&c, "step-0001");
	standin_start(&s, "vllm", "--refuse", NULL);
	make_dep(&d, "{\"protocol\":\"vllm\",\"url\":\"%s\",\"model_path\":\"%s/{checkpoint}\","
		 "\"timeout_s\":60}", s.url, c.root);
	q = make_req(&c, "step-0001", "step-0001-aaaa");
	t0 = now_s();
	ck_assert_int_eq(hotload_run(&d, &q, &res), -EIO);
	ck_assert_msg(now_s() - t0 < 5, "took %.1fs", now_s() - t0);
	ck_assert_msg(strstr(res.error, "/collective_rpc") &&
		      strstr(res.error, "HTTP 500") &&
		      strstr(res.error, "shape mismatch"), "%s", res.error);
	st = standin_state(&s);
	request_paths(st, paths, sizeof(paths));
	ck_assert_str_eq(paths, "/pause /collective_rpc /resume");
	ck_assert(cJSON_IsFalse(get(st, "paused")));
	cJSON_Delete(st);
	deployment_release(&d);

	/* A path the engine cannot load is the engine's refusal too. */
	make_dep(&d, "{\"protocol\":\"vllm\",\"url\":\"%s\",\"model_path\":\"%s/{checkpoint}/x\"}",
		 s.url, c.root);
	t0 = now_s();
	ck_assert_int_eq(hotload_run(&d, &q, &res), -EIO);
	ck_assert_msg(now_s() - t0 < 5, "took %.1fs", now_s() - t0);
	ck_assert_msg(strstr(res.error, "Cannot find any model weights"), "%s", res.error);
	st = standin_state(&s);
	ck_assert_int_eq((int)get(st, "resumes")->valuedouble, 2);
	ck_assert(cJSON_IsFalse(get(st, "paused")));
	cJSON_Delete(st);

	deployment_release(&d);
	standin_stop(&s);
	ckpt_free(&c);
}
END_TEST

/* Resumed even when the deadline passed while paused (a slow reload). */
START_TEST(vllm_resumed_after_timeout)
{
	struct standin s = { 0 };
	struct ckpt c;
	struct deployment d = DEPLOYMENT_INIT;
	struct hotload_result res;
	struct hotload_request q;
	cJSON *st;
	int i;

	ckpt_make(&c, "step-0001");
	standin_start(&s, "vllm", "--delay", "3", NULL);
	make_dep(&d, "{\"protocol\":\"vllm\",\"url\":\"%s\",\"model_path\":\"%s/{checkpoint}\","
		 "\"timeout_s\":1}", s.url, c.root);
	q = make_req(&c, "step-0001", "step-0001-aaaa");
	ck_assert_int_eq(hotload_run(&d, &q, &res), -ETIMEDOUT);
	/* The stand-in may still be reading; the resume is what matters. */
	for (i = 0; i < 100; i++) {
		st = standin_state(&s);
		if ((int)get(st, "resumes")->valuedouble == 1)
			break;
		cJSON_Delete(st);
		st = NULL;
		usleep(50000);
	}
	ck_assert_ptr_nonnull(st);
	ck_assert_int_eq(count_path(st, "/resume"), 1);
	cJSON_Delete(st);

	deployment_release(&d);
	standin_stop(&s);
	ckpt_free(&c);
}
END_TEST

START_TEST(vllm_lora)
{
	struct standin s = { 0 };
	struct ckpt c;
	struct deployment d = DEPLOYMENT_INIT;
	struct hotload_result res;
	struct hotload_request q;
	const cJSON *body;
	char paths[1024];
	cJSON *st;

	ckpt_make(&c, "lora-0003");
	standin_start(&s, "vllm", NULL);
	make_dep(&d, "{\"protocol\":\"vllm\",\"url\":\"%s\",\"model_path\":\"%s/{checkpoint}\","
		 "\"lora\":true,\"warmup\":true}", s.url, c.root);
	q = make_req(&c, "lora-0003", "lora-0003-cafe");
	q.kind = "lora";
	ck_assert_int_eq(hotload_run(&d, &q, &res), 0);
	ck_assert_str_eq(res.version, "lora-0003-cafe");

	st = standin_state(&s);
	request_paths(st, paths, sizeof(paths));
	ck_assert_str_eq(paths, "/v1/models /v1/load_lora_adapter /v1/models /v1/completions");
	body = request_body(st, 1);
	ck_assert_str_eq(get_str(body, "lora_name"), "lora-0003-cafe");
	ck_assert_str_eq(get_str(body, "lora_path"), c.dir);
	assert_load_matches(st, 0, &c);
	ck_assert_str_eq(get_str(get(st, "loras"), "lora-0003-cafe"), c.dir);
	/* The warmup goes through the adapter. */
	ck_assert_str_eq(get_str(request_body(st, 3), "model"), "lora-0003-cafe");
	ck_assert_int_eq(count_path(st, "/pause"), 0);
	cJSON_Delete(st);

	/* Loading it again is a no-op, not vLLM's "already loaded" error. */
	ck_assert_int_eq(hotload_run(&d, &q, &res), 0);
	st = standin_state(&s);
	ck_assert_int_eq(count_path(st, "/v1/load_lora_adapter"), 1);
	ck_assert_int_eq(count_path(st, "/v1/unload_lora_adapter"), 0);
	cJSON_Delete(st);

	/* Issue 14 item 6: the next adapter replaces it: load, confirm, unload. */
	q.snapshot = "lora-0003-beef";
	ck_assert_int_eq(hotload_run(&d, &q, &res), 0);
	st = standin_state(&s);
	request_paths(st, paths, sizeof(paths));
	ck_assert_msg(strstr(paths, "/v1/load_lora_adapter /v1/models /v1/unload_lora_adapter "
			     "/v1/completions"), "%s", paths);
	ck_assert_str_eq(get_str(request_body(st, cJSON_GetArraySize(get(st, "requests")) - 2),
				 "lora_name"), "lora-0003-cafe");
	ck_assert_int_eq(cJSON_GetArraySize(get(st, "loras")), 1);
	ck_assert_str_eq(get_str(get(st, "loras"), "lora-0003-beef"), c.dir);
	cJSON_Delete(st);

	deployment_release(&d);
	standin_stop(&s);
	ckpt_free(&c);
}
END_TEST

/* ================= http ================= */

START_TEST(http_success)
{
	struct standin s = { 0 };
	struct ckpt c;
	struct deployment d = DEPLOYMENT_INIT;
	struct hotload_result res;
	struct hotload_request q;
	const cJSON *body, *f;
	cJSON *st;
	int i;

	ckpt_make(&c, "step-0004");
	standin_start(&s, "http", NULL);
	make_dep(&d, "{\"protocol\":\"http\",\"url\":\"%s/hooks/ckptfs\","
		 "\"model_path\":\"%s/{checkpoint}\"}", s.url, c.root);
	q = make_req(&c, "step-0004", "step-0004-d00d");
	q.kind = "delta";
	q.base = "step-0001";
	ck_assert_int_eq(hotload_run(&d, &q, &res), 0);
	ck_assert_str_eq(res.version, "step-0004-d00d");
	ck_assert_int_eq(res.http_status, 200);

	st = standin_state(&s);
	ck_assert_int_eq(cJSON_GetArraySize(get(st, "requests")), 1);
	ck_assert_str_eq(get_str(cJSON_GetArrayItem(get(st, "requests"), 0), "path"),
			 "/hooks/ckptfs");
	body = request_body(st, 0);
	ck_assert_str_eq(get_str(body, "deployment"), "dep-a");
	ck_assert_str_eq(get_str(body, "job"), "job-1");
	ck_assert_str_eq(get_str(body, "name"), "step-0004");
	ck_assert_str_eq(get_str(body, "snapshot"), "step-0004-d00d");
	ck_assert_str_eq(get_str(body, "kind"), "delta");
	ck_assert_str_eq(get_str(body, "base"), "step-0001");
	ck_assert_str_eq(get_str(body, "path"), c.dir);
	ck_assert_int_eq(cJSON_GetArraySize(get(body, "files")), CKPT_FILES);
	for (i = 0; i < CKPT_FILES; i++) {
		f = cJSON_GetArrayItem(get(body, "files"), i);
		ck_assert_str_eq(get_str(f, "path"), c.rel[i]);
		ck_assert_int_eq((int)get(f, "size")->valuedouble, (int)c.files[i].size);
		ck_assert_str_eq(get_str(f, "sha256"), c.sha[i]);
	}
	/* The server checked the listed files against the ones on disk. */
	assert_load_matches(st, 0, &c);
	cJSON_Delete(st);

	/* A base checkpoint: base is null. A wrong hash: refused. */
	q.kind = "base";
	q.base = NULL;
	ck_assert_int_eq(hotload_run(&d, &q, &res), 0);
	st = standin_state(&s);
	ck_assert(cJSON_IsNull(get(request_body(st, 1), "base")));
	cJSON_Delete(st);
	c.files[1].sha256 = c.sha[0];
	ck_assert_int_eq(hotload_run(&d, &q, &res), -EIO);
	ck_assert_msg(strstr(res.error, "do not match"), "%s", res.error);

	deployment_release(&d);
	standin_stop(&s);
	ckpt_free(&c);
}
END_TEST

/* ================= tokens ================= */

START_TEST(token_bearer)
{
	struct standin s = { 0 };
	struct ckpt c;
	struct deployment d = DEPLOYMENT_INIT;
	struct hotload_result res;
	struct hotload_request q;
	const cJSON *a;
	cJSON *st;

	ckpt_make(&c, "step-0001");
	standin_start(&s, "vllm", "--token", TOKEN, NULL);
	make_dep(&d, "{\"protocol\":\"vllm\",\"url\":\"%s\",\"model_path\":\"%s/{checkpoint}\","
		 "\"token_env\":\"" TOKEN_ENV "\",\"warmup\":true}", s.url, c.root);
	q = make_req(&c, "step-0001", "step-0001-aaaa");

	setenv(TOKEN_ENV, TOKEN, 1);
	ck_assert_int_eq(hotload_run(&d, &q, &res), 0);
	st = standin_state(&s);
	ck_assert_int_ge(cJSON_GetArraySize(get(st, "auth_seen")), 7);
	cJSON_ArrayForEach(a, get(st, "auth_seen"))
		ck_assert_str_eq(a->valuestring, "Bearer " TOKEN);
	cJSON_Delete(st);

	/* A wrong token: refused, and neither token appears anywhere. */
	setenv(TOKEN_ENV, "tok-WRONG-77aa", 1);
	ck_assert_int_eq(hotload_run(&d, &q, &res), -EIO);
	ck_assert_int_eq(res.http_status, 401);
	ck_assert_msg(strstr(res.error, "Unauthorized"), "%s", res.error);
	ck_assert_ptr_null(strstr(res.error, "tok-"));
	ck_assert_ptr_nonnull(strstr(logs, "Unauthorized"));
	ck_assert_msg(!strstr(logs, TOKEN) && !strstr(logs, "tok-WRONG"), "%s", logs);
	ck_assert_ptr_null(memmem(&res, sizeof(res), "tok-", 4));
	unsetenv(TOKEN_ENV);

	deployment_release(&d);
	standin_stop(&s);
	ckpt_free(&c);
}
END_TEST

/* A server that echoes the token back: the message is kept, the token not. */
START_TEST(token_scrubbed)
{
	struct standin s = { 0 };
	struct ckpt c;
	struct deployment d = DEPLOYMENT_INIT;
	struct hotload_result res;
	struct hotload_request q;

	ckpt_make(&c, "step-0001");
	standin_start(&s, "http", "--token", TOKEN, NULL);
	/* The stand-in's "no such directory: <path>" quotes the path. */
	make_dep(&d, "{\"protocol\":\"http\",\"url\":\"%s\",\"token_env\":\"" TOKEN_ENV "\","
		 "\"model_path\":\"/nonexistent/" TOKEN "/{checkpoint}\"}", s.url);
	q = make_req(&c, "step-0001", "step-0001-aaaa");
	setenv(TOKEN_ENV, TOKEN, 1);
	ck_assert_int_eq(hotload_run(&d, &q, &res), -EIO);
	unsetenv(TOKEN_ENV);
	ck_assert_msg(strstr(res.error, "no such directory: /nonexistent/[redacted]/step-0001"),
		      "%s", res.error);
	ck_assert_ptr_null(strstr(res.error, TOKEN));
	ck_assert_ptr_null(strstr(logs, TOKEN));
	ck_assert_ptr_nonnull(strstr(logs, "[redacted]"));
	ck_assert_ptr_null(memmem(&res, sizeof(res), TOKEN, strlen(TOKEN)));

	deployment_release(&d);
	standin_stop(&s);
	ckpt_free(&c);
}
END_TEST

START_TEST(token_unset)
{
	struct standin s = { 0 };
	struct ckpt c;
	struct deployment d = DEPLOYMENT_INIT;
	struct hotload_result res;
	struct hotload_request q;
	cJSON *st;

	ckpt_make(&c, "step-0001");
	standin_start(&s, "sglang", NULL);
	make_dep(&d, "{\"protocol\":\"sglang\",\"url\":\"%s\",\"model_path\":\"%s/{checkpoint}\","
		 "\"token_env\":\"" TOKEN_ENV "\"}", s.url, c.root);
	q = make_req(&c, "step-0001", "step-0001-aaaa");
	unsetenv(TOKEN_ENV);
	ck_assert_int_eq(hotload_run(&d, &q, &res), -EINVAL);
	ck_assert_msg(strstr(res.error, TOKEN_ENV), "%s", res.error);
	setenv(TOKEN_ENV, "", 1);
	ck_assert_int_eq(hotload_run(&d, &q, &res), -EINVAL);
	unsetenv(TOKEN_ENV);
	/* Nothing was sent. */
	st = standin_state(&s);
	ck_assert_int_eq(cJSON_GetArraySize(get(st, "requests")), 0);
	cJSON_Delete(st);

	deployment_release(&d);
	standin_stop(&s);
	ckpt_free(&c);
}
END_TEST

/* Issue 9 item 3: a variable the mount does not allow is never read. */
START_TEST(token_not_allowed)
{
	struct standin s = { 0 };
	struct ckpt c;
	struct deployment d = DEPLOYMENT_INIT;
	struct hotload_result res;
	struct hotload_request q;
	cJSON *st;

	ckpt_make(&c, "step-0001");
	standin_start(&s, "http", NULL);
	setenv("AWS_SECRET_ACCESS_KEY", "aws-SECRET-0f1e2d3c", 1);
	make_dep(&d, "{\"protocol\":\"http\",\"url\":\"%s\",\"model_path\":\"%s/{checkpoint}\","
		 "\"token_env\":\"AWS_SECRET_ACCESS_KEY\"}", s.url, c.root);
	q = make_req(&c, "step-0001", "step-0001-aaaa");
	ck_assert_int_eq(hotload_run(&d, &q, &res), -EINVAL);
	ck_assert_msg(strstr(res.error, "not allowed"), "%s", res.error);
	/* Allowed by the mount's list: sent. */
	q.token_env_allow = "HF_TOKEN,AWS_SECRET_ACCESS_KEY";
	ck_assert_int_eq(hotload_run(&d, &q, &res), 0);
	unsetenv("AWS_SECRET_ACCESS_KEY");
	st = standin_state(&s);
	ck_assert_int_eq(cJSON_GetArraySize(get(st, "requests")), 1);
	cJSON_Delete(st);
	ck_assert_ptr_null(strstr(logs, "aws-SECRET"));

	deployment_release(&d);
	standin_stop(&s);
	ckpt_free(&c);
}
END_TEST

/* No 6-byte piece of @secret in @hay (@n bytes). */
static void assert_no_piece(const void *hay, size_t n, const char *secret)
{
	size_t i, len = strlen(secret);

	for (i = 0; i + 6 <= len; i++)
		ck_assert_msg(!memmem(hay, n, secret + i, 6), "leaked \"%.6s\"", secret + i);
}

/*
 * Issue 9 item 3: a server echoing the token in a long message, across
 * byte 384 of the error text: masked before anything is cut, so no piece
 * of it reaches the result or the log. The daemon's S3 secret is masked the same way.
 */
START_TEST(token_masked_before_cut)
{
	static const char wrong[] = "tok-WRONG-5a6b7c8d9e0f1a2b3c4d";
	static const char aws[] = "aws-SECRET-77e1d2c3b4a5";
	struct standin s = { 0 };
	struct ckpt c;
	struct deployment d = DEPLOYMENT_INIT;
	struct hotload_result res;
	struct hotload_request q;

	ckpt_make(&c, "step-0001");
	standin_start(&s, "http", "--token", TOKEN, "--echo-auth", "315", NULL);
	make_dep(&d, "{\"protocol\":\"http\",\"url\":\"%s\",\"model_path\":\"%s/{checkpoint}\","
		 "\"token_env\":\"" TOKEN_ENV "\"}", s.url, c.root);
	q = make_req(&c, "step-0001", "step-0001-aaaa");
	setenv(TOKEN_ENV, wrong, 1);
	ck_assert_int_eq(hotload_run(&d, &q, &res), -EIO);
	unsetenv(TOKEN_ENV);
	ck_assert_int_eq(res.http_status, 401);
	ck_assert_msg(strstr(res.error, "Unauthorized: xxxx"), "%s", res.error);
	assert_no_piece(&res, sizeof(res), wrong);
	assert_no_piece(logs, logs_len, wrong);
	deployment_release(&d);

	/* The S3 secret, echoed back in a path the server quotes. */
	setenv("AWS_SECRET_ACCESS_KEY", aws, 1);
	make_dep(&d, "{\"protocol\":\"http\",\"url\":\"%s\","
		 "\"model_path\":\"/nonexistent/%s/{checkpoint}\"}", s.url, aws);
	standin_stop(&s);
	standin_start(&s, "http", NULL);
	deployment_release(&d);
	make_dep(&d, "{\"protocol\":\"http\",\"url\":\"%s\","
		 "\"model_path\":\"/nonexistent/%s/{checkpoint}\"}", s.url, aws);
	ck_assert_int_eq(hotload_run(&d, &q, &res), -EIO);
	unsetenv("AWS_SECRET_ACCESS_KEY");
	ck_assert_msg(strstr(res.error, "/nonexistent/[redacted]/step-0001"), "%s", res.error);
	assert_no_piece(&res, sizeof(res), aws);
	assert_no_piece(logs, logs_len, aws);

	deployment_release(&d);
	standin_stop(&s);
	ckpt_free(&c);
}
END_TEST

/* ================= concurrency ================= */

struct runner {
	const struct deployment *d;
	struct hotload_request q;
	struct hotload_result res;
	int rc;
};

static void *run_thread(void *arg)
{
	struct runner *r = arg;

	r->rc = hotload_run(r->d, &r->q, &r->res);
	return NULL;
}

/* Two hotload_run() at once; both must succeed if @must_succeed. */
static void run_two(const struct deployment *d1, const struct deployment *d2,
		    const struct ckpt *c, int must_succeed)
{
	struct runner r[2] = {
		{ .d = d1, .q = make_req(c, "step-0001", "step-0001-one") },
		{ .d = d2, .q = make_req(c, "step-0001", "step-0001-two") },
	};
	pthread_t t[2];
	int i;

	for (i = 0; i < 2; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, run_thread, &r[i]), 0);
	for (i = 0; i < 2; i++) {
		pthread_join(t[i], NULL);
		ck_assert_msg(!must_succeed || r[i].rc == 0, "%d: %s", r[i].rc,
			      r[i].res.error);
	}
}

START_TEST(concurrent_serialized)
{
	struct standin s = { 0 };
	struct ckpt c;
	struct deployment d = DEPLOYMENT_INIT, d2 = DEPLOYMENT_INIT;
	const cJSON *l0, *l1;
	cJSON *st;

	ckpt_make(&c, "step-0001");
	standin_start(&s, "sglang", "--delay", "0.4", NULL);
	make_dep(&d, "{\"protocol\":\"sglang\",\"url\":\"%s\",\"model_path\":\"%s/{checkpoint}\","
		 "\"timeout_s\":20}", s.url, c.root);

	run_two(&d, &d, &c, 1);
	st = standin_state(&s);
	ck_assert_int_eq(cJSON_GetArraySize(get(st, "loads")), 2);
	ck_assert(cJSON_IsFalse(get(st, "overlap")));
	ck_assert_int_eq((int)get(st, "max_active_loads")->valuedouble, 1);
	l0 = cJSON_GetArrayItem(get(st, "loads"), 0);
	l1 = cJSON_GetArrayItem(get(st, "loads"), 1);
	ck_assert(get(l1, "t_start")->valuedouble >= get(l0, "t_end")->valuedouble);
	cJSON_Delete(st);
	standin_stop(&s);

	/*
	 * The detector is not vacuous: two URLs for one server are two
	 * deployments to hotload_run, so their loads do overlap. (Either may
	 * then fail its confirmation, seeing the other's version: the race
	 * serialization exists to prevent.)
	 */
	standin_start(&s, "sglang", "--delay", "0.4", NULL);
	deployment_release(&d);
	make_dep(&d, "{\"protocol\":\"sglang\",\"url\":\"%s\",\"model_path\":\"%s/{checkpoint}\","
		 "\"timeout_s\":20}", s.url, c.root);
	make_dep(&d2, "{\"protocol\":\"sglang\",\"url\":\"http://localhost:%d\","
		 "\"model_path\":\"%s/{checkpoint}\",\"timeout_s\":20}", s.port, c.root);
	run_two(&d, &d2, &c, 0);
	st = standin_state(&s);
	ck_assert(cJSON_IsTrue(get(st, "overlap")));
	cJSON_Delete(st);

	deployment_release(&d);
	deployment_release(&d2);
	standin_stop(&s);
	ckpt_free(&c);
}
END_TEST

static Suite *hotload_suite(void)
{
	Suite *s = suite_create("hotload");
	TCase *tc;

	tc = tcase_create("deployment");
	tcase_add_test(tc, parse_valid);
	tcase_add_test(tc, parse_defaults);
	tcase_add_test(tc, parse_invalid_json);
	tcase_add_test(tc, parse_unknown_field);
	tcase_add_test(tc, parse_unknown_protocol);
	tcase_add_test(tc, parse_missing);
	tcase_add_test(tc, parse_wrong_types);
	tcase_add_test(tc, parse_bad_values);
	tcase_add_test(tc, check_name);
	tcase_add_test(tc, token_env_allowed);
	tcase_add_test(tc, expand_path);
	suite_add_tcase(s, tc);

	tc = tcase_create("protocols");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, sglang_success);
	tcase_add_test(tc, sglang_refused);
	tcase_add_test(tc, retry_500);
	tcase_add_test(tc, retry_429);
	tcase_add_test(tc, server_down);
	tcase_add_test(tc, slow_server);
	tcase_add_test(tc, warmup_sent);
	tcase_add_test(tc, sglang_old_generation);
	tcase_add_test(tc, sglang_admin_key);
	tcase_add_test(tc, sglang_lora);
	tcase_add_test(tc, vllm_success);
	tcase_add_test(tc, vllm_transient_retried);
	tcase_add_test(tc, vllm_refused);
	tcase_add_test(tc, vllm_resumed_after_timeout);
	tcase_add_test(tc, vllm_lora);
	tcase_add_test(tc, http_success);
	tcase_add_test(tc, token_bearer);
	tcase_add_test(tc, token_scrubbed);
	tcase_add_test(tc, token_unset);
	tcase_add_test(tc, token_not_allowed);
	tcase_add_test(tc, token_masked_before_cut);
	tcase_add_test(tc, concurrent_serialized);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(hotload_suite());
	int failed;

	curl_global_init(CURL_GLOBAL_DEFAULT);
	srunner_run_all(sr, CK_ENV);	/* CK_VERBOSITY, default normal */
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	curl_global_cleanup();
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
