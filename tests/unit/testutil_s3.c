/* testutil_s3.c: bucket calls for unit tests of S3 stores (the store API has none). */
#include "testutil_s3.h"

#include <curl/curl.h>
#include <stdio.h>
#include <string.h>

static size_t drop_body(char *p, size_t s, size_t n, void *u)
{
	(void)p;
	(void)u;
	return s * n;
}

static size_t upload_none(char *p, size_t s, size_t n, void *u)
{
	(void)p;
	(void)s;
	(void)n;
	(void)u;
	return 0;
}

long testutil_s3_bucket_op(const char *endpoint, const char *region, const char *access,
			   const char *secret, const char *bucket, const char *method)
{
	char url[512], sig[128];
	struct curl_slist *hd = curl_slist_append(NULL, "x-amz-content-sha256: UNSIGNED-PAYLOAD");
	CURL *c = curl_easy_init();
	long code = 0;

	snprintf(url, sizeof(url), "%s/%s", endpoint, bucket);
	snprintf(sig, sizeof(sig), "aws:amz:%s:s3", region);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_AWS_SIGV4, sig);
	curl_easy_setopt(c, CURLOPT_USERNAME, access);
	curl_easy_setopt(c, CURLOPT_PASSWORD, secret);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hd);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, drop_body);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
	if (!strcmp(method, "PUT")) {
		curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)0);
		curl_easy_setopt(c, CURLOPT_READFUNCTION, upload_none);
	} else {
		curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	}
	if (curl_easy_perform(c) == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
	curl_easy_cleanup(c);
	curl_slist_free_all(hd);
	return code;
}
