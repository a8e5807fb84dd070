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
	double timeout_s;	/* default 600 */
	int reset_cache;	/* default 1 */
	int warmup;		/* default 0 */
	int lora;		/* vLLM: load as a LoRA adapter; default 0 */
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
 * with a protocol other than vllm, "warmup" with the http protocol (a
 * webhook has no completion endpoint to warm). Trailing '/' of url are
 * dropped. On error @out is left as DEPLOYMENT_INIT.
 */
int deployment_parse(const char *json, size_t len, struct deployment *out,
		     char *err, size_t errlen);
void deployment_release(struct deployment *d);

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
 * (connection refused, 5xx, 429) with backoff until d->timeout_s, confirm.
 * Blocks until confirmed or failed. Never logs or stores the bearer token.
 * Thread-safe; two calls for the same d->url run one after the other (the
 * wait counts against the timeout). Wire details: doc/HOTLOAD.md.
 * @return 0 confirmed; -ETIMEDOUT (deadline passed); -EIO (the server
 *         refused: its message is in res->error); -EINVAL (bad request, e.g.
 *         the token variable is named but unset); -ENOMEM.
 */
int hotload_run(const struct deployment *d, const struct hotload_request *req,
		struct hotload_result *res);

#endif
