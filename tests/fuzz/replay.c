/*
 * replay.c: a main() for the harnesses when libFuzzer is not there (gcc
 * builds): run LLVMFuzzerTestOneInput() once on every file of the given
 * corpus directories, so the checked-in corpora are regression tests of
 * every build, the sanitizer ones included.
 */
#include "fuzz.h"

#include <dirent.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

static int run_file(const char *path)
{
	uint8_t *data;
	struct stat sb;
	size_t n;
	FILE *f;

	f = fopen(path, "rb");
	if (!f || fstat(fileno(f), &sb) < 0) {
		fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
		if (f)
			fclose(f);
		return -1;
	}
	/* An exact-size copy, so ASan sees every read past the end. */
	data = malloc(sb.st_size ? (size_t)sb.st_size : 1);
	FUZZ_CHECK(data != NULL);
	n = fread(data, 1, (size_t)sb.st_size, f);
	fclose(f);
	if (n != (size_t)sb.st_size) {
		fprintf(stderr, "replay: %s: short read\n", path);
		free(data);
		return -1;
	}
	LLVMFuzzerTestOneInput(data, n);
	free(data);
	return 0;
}

int main(int argc, char **argv)
{
	size_t files = 0;
	int i, bad = 0;

	LLVMFuzzerInitialize(&argc, &argv);
	for (i = 1; i < argc; i++) {
		struct dirent *de;
		DIR *d = opendir(argv[i]);

		if (!d) {
			fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
			return 1;
		}
		while ((de = readdir(d)) != NULL) {
			char path[4096];

			if (de->d_name[0] == '.')
				continue;
			snprintf(path, sizeof(path), "%s/%s", argv[i], de->d_name);
			bad |= run_file(path) < 0;
			files++;
		}
		closedir(d);
	}
	/* An empty corpus would make this test pass while checking nothing. */
	if (files == 0) {
		fprintf(stderr, "replay: no corpus files\n");
		return 1;
	}
	printf("replay: %zu inputs, no invariant failed\n", files);
	return bad;
}
