/* name.c: name validation rules of DESIGN.md section 2. */
#include "util/name.h"

#include <errno.h>
#include <string.h>

int name_check_component(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || strchr(name, '/') || !strcmp(name, ".") || !strcmp(name, ".."))
		return -EINVAL;
	if (n > 255)
		return -ENAMETOOLONG;
	return 0;
}

int name_check_key_safe(const char *name)
{
	int rc = name_check_component(name);
	const char *p;

	if (rc < 0)
		return rc;
	for (p = name; *p; p++) {
		char c = *p;

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
			return -EINVAL;
	}
	return 0;
}

int name_check_model_id(const char *id)
{
	size_t n = strlen(id), i;

	if (n < 1 || n > 63)
		return -EINVAL;
	for (i = 0; i < n; i++) {
		char c = id[i];

		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
			return -EINVAL;
	}
	return 0;
}

#include <stdlib.h>

static int is_key_safe(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

char *name_key_encode(const char *name)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = strlen(name), i, o = 0;
	char *out = malloc(3 * n + 1);

	if (!out)
		return NULL;
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)name[i];

		/* A leading '.' is encoded too: store key segments never
		 * start with one (no ".", "..", or hidden files). */
		if (is_key_safe(c) && !(i == 0 && c == '.')) {
			out[o++] = (char)c;
		} else {
			out[o++] = '%';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		}
	}
	out[o] = '\0';
	return out;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

char *name_key_decode(const char *seg)
{
	size_t n = strlen(seg), i, o = 0;
	char *out = malloc(n + 1);

	if (!out)
		return NULL;
	for (i = 0; i < n; i++) {
		if (seg[i] == '%') {
			int hi, lo;

			if (i + 2 >= n)
				goto bad;
			hi = hexval(seg[i + 1]);
			lo = hi < 0 ? -1 : hexval(seg[i + 2]);
			if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
				goto bad;	/* %00 would cut the name short */
			out[o++] = (char)(hi << 4 | lo);
			i += 2;
		} else {
			out[o++] = seg[i];
		}
	}
	out[o] = '\0';
	return out;
bad:
	free(out);
	return NULL;
}

static int is_alnum(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

int name_temp_final(const char *rel, char *out, size_t cap)
{
	static const char *const suffixes[] = { ".tmp", ".part", ".incomplete" };
	const char *slash = strrchr(rel, '/');
	const char *base = slash ? slash + 1 : rel;
	size_t dir_len = (size_t)(base - rel), len = strlen(base), i;
	const char *name = NULL;
	size_t name_len = 0;

	/* rsync: "." NAME "." XXXXXX */
	if (len >= 1 + 1 + 1 + 6 && base[0] == '.' && base[len - 7] == '.') {
		for (i = len - 6; i < len && is_alnum(base[i]); i++)
			;
		if (i == len) {
			name = base + 1;
			name_len = len - 1 - 7;
		}
	}
	for (i = 0; !name && i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
		size_t sl = strlen(suffixes[i]);

		if (len > sl && !strcmp(base + len - sl, suffixes[i])) {
			name = base;
			name_len = len - sl;
		}
	}
	if (!name || name_len == 0 || dir_len + name_len + 1 > cap)
		return 0;
	memcpy(out, rel, dir_len);
	memcpy(out + dir_len, name, name_len);
	out[dir_len + name_len] = '\0';
	return 1;
}
