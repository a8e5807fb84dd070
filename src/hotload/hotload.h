/*
 * hotload.h: pushing a checkpoint into a running inference deployment.
 *
 * Owns:         deployment files (JSON schema, validation) and the wire
 *               protocols (sglang, vllm, http) spoken over libcurl.
 * Does not own: which checkpoint is loadable (fs), reading checkpoint bytes
 *               (the caller passes file sizes and sha256s).
 *
 * Contract: DESIGN.md section 6.
 */
#ifndef CKPT_HOTLOAD_H
#define CKPT_HOTLOAD_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

enum hotload_protocol { HOTLOAD_SGLANG, HOTLOAD_VLLM, HOTLOAD_HTTP };

struct deployment {
	enum hotload_protocol protocol;
	char *url;		/* base URL, no trailing '/' */
	char *model_path;	/* template: {checkpoint} {snapshot} {job} */
	char *token_env;	/* NULL: no token */
	char *admin_token_env;	/* sglang: key for the load routes; NULL: token_env */
	double timeout_s;	/* default 600 */
	int reset_cache;	/* default 1 */
	int warmup;		/* default 0 */
	int lora;		/* sglang, vllm: load as a LoRA adapter; default 0 */
	int max_adapters;	/* with lora: adapters kept loaded; default 1 */
};
#define DEPLOYMENT_INIT { 0 }

/*
 * Parse and validate a deployment file. Unknown fields, a missing or bad
 * protocol/url/model_path, or wrong types are -EINVAL with a reason in @err
 * (NUL-terminated, @errlen bytes). 0 on success; release with
 * deployment_release().
 *
 * Beyond types, also -EINVAL: a url that is not http:// or https://, a
 * model_path with an unknown {field}, a token_env that is not a valid
 * variable name, timeout_s outside (0, 86400], a key given twice, "lora"
 * or "admin_token_env" with a protocol that has none (http; vllm has no
 * admin key), "max_adapters" without "lora" or outside [1, 64], "warmup"
 * with the http protocol (a webhook has no completion endpoint to warm).
 * Trailing '/' of url are dropped. On error @out is left as DEPLOYMENT_INIT.
 * Which variables a mount lets a deployment name is checked separately,
 * by deployment_check_token_envs().
 */
int deployment_parse(const char *json, size_t len, struct deployment *out,
		     char *err, size_t errlen);
void deployment_release(struct deployment *d);

/*
 * May @name be read as a bearer token? Names starting with
 * HOTLOAD_TOKEN_PREFIX always; others only when listed in @allow, a
 * comma-separated list (the mount's --hotload-token-env), else a
 * deployment could make the daemon send any of its secrets (the S3 key)
 * to a URL of the author's choice. 1 or 0.
 */
#define HOTLOAD_TOKEN_PREFIX "CKPTFS_TOKEN_"
int hotload_token_env_allowed(const char *name, const char *allow);

/*
 * Both token variables of @d (token_env, admin_token_env) pass
 * hotload_token_env_allowed(). 0, or -EINVAL with the reason in @err.
 */
int deployment_check_token_envs(const struct deployment *d, const char *allow,
				char *err, size_t errlen);

/*
 * A deployment name (the file name under deployments/): 1-255 bytes of
 * [A-Za-z0-9._-], not "." or "..". 0 or -EINVAL (-ENAMETOOLONG over 255).
 */
int deployment_check_name(const char *name);

struct hotload_file {
	const char *path;	/* relative to the checkpoint */
	uint64_t size;
	const char *sha256;	/* 64 hex digits */
};

/* What is being loaded. All strings borrowed for the call. */
struct hotload_request {
	const char *deployment;	/* its name */
	const char *job;
	const char *checkpoint;	/* e.g. "step-0010" */
	const char *snapshot;	/* e.g. "step-0010-a1b2c3d4": the weight version */
	const char *kind;	/* base, delta, lora */
	const char *base;	/* NULL unless a delta */
	const struct hotload_file *files;	/* for the http protocol */
	size_t n_files;
	const char *token_env_allow;	/* the mount's allow-list; NULL: none */
};

struct hotload_result {
	long http_status;	/* last HTTP status seen, 0 if none */
	double seconds;		/* wall time of the attempt */
	char error[512];	/* "" on success; the server's message on refusal */
	char model_path[4096];	/* the expanded model_path sent */
	char version[256];	/* weight version the server confirmed */
};

/*
 * Expand the model_path template. Returns 0 or -EINVAL (unknown {field},
 * a '{' without its '}', or the field's value missing or not a single path
 * component), -ENAMETOOLONG (the result and its NUL do not fit @outlen).
 */
int hotload_expand_path(const char *tmpl, const struct hotload_request *req,
			char *out, size_t outlen);

/*
 * Run one sync: send the protocol's requests, retry transient failures
 * (connection refused, 5xx other than an engine's own error, 429) with
 * backoff until d->timeout_s, confirm. Blocks until confirmed or failed.
 * Never logs or stores a secret: the tokens, every variable a token may be
 * read from, and the S3 credentials in the environment are masked in
 * server messages before anything is cut to size. Exactly one log line
 * per run (info on success, error on failure). Thread-safe; two calls for
 * the same d->url run one after the other (the wait counts against the
 * timeout). Wire details: doc/HOTLOAD.md.
 * @return 0 confirmed; -ETIMEDOUT (deadline passed); -EIO (the server
 *         refused: its message is in res->error); -EINVAL (bad request, e.g.
 *         a token variable named but unset, or not allowed by
 *         req->token_env_allow); -ENOMEM.
 */
int hotload_run(const struct deployment *d, const struct hotload_request *req,
		struct hotload_result *res);

#endif
