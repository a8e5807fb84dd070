/*
 * fuzz_deployment.c: deployment files (src/hotload/deployment.c), which any
 * user who may write deployments/ hands to the daemon.
 *
 * Invariants (hotload.h): a refusal leaves the deployment empty and gives a
 * NUL-terminated reason; an accepted file has an http(s) url without a
 * trailing '/', a model_path, and a timeout in (0, 86400]. The corpus
 * (corpus/deployment) holds the documented examples and the test suite's.
 */
#include "fuzz.h"

#include <string.h>

#include "hotload/hotload.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct deployment d = DEPLOYMENT_INIT;
	char err[256];
	size_t ulen;
	int rc;

	memset(err, 'x', sizeof(err));
	rc = deployment_parse((const char *)data, size, &d, err, sizeof(err));
	if (rc < 0) {
		FUZZ_CHECK(memchr(err, '\0', sizeof(err)) != NULL && err[0] != '\0');
		FUZZ_CHECK(!d.url && !d.model_path && !d.token_env);
		return 0;
	}
	FUZZ_CHECK(rc == 0);
	FUZZ_CHECK(d.url != NULL && d.model_path != NULL && d.model_path[0]);
	FUZZ_CHECK(!strncmp(d.url, "http://", 7) || !strncmp(d.url, "https://", 8));
	ulen = strlen(d.url);
	FUZZ_CHECK(ulen > 0 && d.url[ulen - 1] != '/');
	FUZZ_CHECK(d.timeout_s > 0 && d.timeout_s <= 86400);
	deployment_release(&d);
	return 0;
}
