/* testutil_s3.h: bucket calls for the unit tests of S3 stores. */
#ifndef CKPT_TESTUTIL_S3_H
#define CKPT_TESTUTIL_S3_H

/* A SigV4-signed "PUT" (create) or "DELETE" of @bucket at @endpoint (libcurl's
 * own signing, not the code under test). The HTTP status, or 0 if none came. */
long testutil_s3_bucket_op(const char *endpoint, const char *region, const char *access,
			   const char *secret, const char *bucket, const char *method);

#endif
