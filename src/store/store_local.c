/*
 * store_local.c: the store contract on a local directory.
 *
 * Layout: <root>/<key> for every object, <root>/.tmp/ for uploads in flight.
 * A put writes a temporary file, fsyncs it, renames (or, for
 * put_if_absent, hard-links) it into place and fsyncs the parent directory,
 * so a crash leaves the old object or the new one, never a partial one.
 * All path work is *at() relative to one directory fd.
 *
 * Temp files (store_local.h has the rules): unnamed (O_TMPFILE) where the
 * filesystem allows it, else random names; locked while named; leftovers of
 * dead daemons swept at open and by gc.
 */
#include "store/store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store/store_local.h"

#include "util/io.h"
#include "util/log.h"

struct local_store {
	struct store base;	/* first member: casts between the two are valid */
	int root_fd;
	char *root;
	int use_tmpfile;	/* 1: O_TMPFILE + linkat work in .tmp */
};

/* ".tmp/" + 32 hex digits + NUL */
#define TMP_NAME_LEN 40

/* A temp file being written: its fd (locked while named) and its name, ""
 * while it has none (O_TMPFILE). */
struct tmp_file {
	int fd;
	char name[TMP_NAME_LEN];
};

static struct local_store *to_local(struct store *st)
{
	return (struct local_store *)st;
}

static int fsync_dirat(int root_fd, const char *dir)
{
	int fd = openat(root_fd, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc = 0;

	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		rc = -errno;
	close(fd);
	return rc;
}

/* mkdir -p of the directories above @key; new directories are made durable. */
static int make_parents(struct local_store *ls, const char *key)
{
	char path[PATH_MAX];
	char *slash;

	snprintf(path, sizeof(path), "%s", key);
	for (slash = strchr(path, '/'); slash; slash = strchr(slash + 1, '/')) {
		*slash = '\0';
		if (mkdirat(ls->root_fd, path, 0755) == 0) {
			char *up = strrchr(path, '/');
			int rc;

			if (up) {
				*up = '\0';
				rc = fsync_dirat(ls->root_fd, path);
				*up = '/';
			} else {
				rc = fsync_dirat(ls->root_fd, ".");
			}
			if (rc < 0)
				return rc;
		} else if (errno != EEXIST) {
			return -errno;
		}
		*slash = '/';
	}
	return 0;
}

static int parent_fsync(struct local_store *ls, const char *key)
{
	char path[PATH_MAX];
	char *slash;

	snprintf(path, sizeof(path), "%s", key);
	slash = strrchr(path, '/');
	if (!slash)
		return fsync_dirat(ls->root_fd, ".");
	*slash = '\0';
	return fsync_dirat(ls->root_fd, path);
}

/* A ".tmp/<32 hex>" name. Random, not <pid>-<seq>: a restarted daemon
 * often has the same PID (always 1 in a container) and must never meet a
 * dead one's leftover under the name it wants. */
static int random_tmp_name(char name[TMP_NAME_LEN])
{
	static const char hex[] = "0123456789abcdef";
	uint8_t r[16];
	size_t got = 0, i;
	char *p;

	while (got < sizeof(r)) {
		ssize_t n = getrandom(r + got, sizeof(r) - got, 0);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		got += (size_t)n;
	}
	p = name + snprintf(name, TMP_NAME_LEN, ".tmp/");
	for (i = 0; i < sizeof(r); i++) {
		*p++ = hex[r[i] >> 4];
		*p++ = hex[r[i] & 15];
	}
	*p = '\0';
	return 0;
}

/* Give the unnamed file @fd the name @dst. linkat(AT_EMPTY_PATH) would need
 * CAP_DAC_READ_SEARCH; the /proc link is what open(2) documents for
 * O_TMPFILE without privileges. */
static int link_fd(int root_fd, int fd, const char *dst)
{
	char proc[40];

	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	if (linkat(AT_FDCWD, proc, root_fd, dst, AT_SYMLINK_FOLLOW) < 0)
		return -errno;
	return 0;
}

/* Link the unnamed @t to a fresh random name in .tmp (it stays locked). */
static int name_tmp(struct local_store *ls, struct tmp_file *t)
{
	int tries, rc = -EIO;

	/* Held from now on: the name never exists unlocked. */
	if (flock(t->fd, LOCK_EX) < 0)
		return -errno;
	for (tries = 0; tries < 8; tries++) {
		rc = random_tmp_name(t->name);
		if (rc == 0)
			rc = link_fd(ls->root_fd, t->fd, t->name);
		if (rc != -EEXIST)
			break;
	}
	if (rc < 0)
		t->name[0] = '\0';
	return rc;
}

/* Create a temp file, locked before anyone can find it by name. */
static int open_tmp(struct local_store *ls, struct tmp_file *t)
{
	int tries;

	t->name[0] = '\0';
	if (ls->use_tmpfile) {
		t->fd = openat(ls->root_fd, ".tmp", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0644);
		if (t->fd < 0)
			return -errno;
		/* Unnamed, so no sweep can see it: name_tmp() locks it before
		 * it gets a name in .tmp (most never do, see do_put). */
		return 0;
	}
	for (tries = 0; tries < 8; tries++) {
		int rc = random_tmp_name(t->name);

		if (rc < 0)
			return rc;
		t->fd = openat(ls->root_fd, t->name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
			       0644);
		if (t->fd >= 0)
			break;
		if (errno != EEXIST)
			return -errno;
	}
	if (t->fd < 0)
		return -EIO;	/* eight 128-bit collisions: getrandom is broken */
	/* Unlocked only for this instant; sweeps skip files that young. */
	if (flock(t->fd, LOCK_EX | LOCK_NB) < 0) {
		int e = errno;

		unlinkat(ls->root_fd, t->name, 0);
		close(t->fd);
		return -e;
	}
	return 0;
}

/* Drop @t: unlink its name if it still has one, then unlock by closing. */
static void close_tmp(struct local_store *ls, struct tmp_file *t)
{
	if (t->name[0])
		unlinkat(ls->root_fd, t->name, 0);
	close(t->fd);
}

/* Write @data to a fresh durable temp file @t (open on success). */
static int write_tmp(struct local_store *ls, const void *data, size_t len,
		     struct tmp_file *t)
{
	int rc = open_tmp(ls, t);

	if (rc < 0)
		return rc;
	rc = io_write_all(t->fd, data, len);
	if (rc == 0 && fsync(t->fd) < 0)
		rc = -errno;
	if (rc < 0)
		close_tmp(ls, t);
	return rc;
}

static int do_put(struct store *st, const char *key, const void *data,
		  size_t len, int exclusive)
{
	struct local_store *ls = to_local(st);
	struct tmp_file t;
	int rc, tries;

	rc = store_key_check(key);
	if (rc < 0)
		return rc;
	rc = write_tmp(ls, data, len, &t);
	if (rc < 0)
		goto out;
	/*
	 * An unnamed temp file whose key does not exist yet (every new chunk)
	 * is linked straight to its key, like an exclusive create: the same
	 * atomic, durable result as the rename below, without naming it in
	 * .tmp first (a getrandom, a flock, a link and a rename per put, and
	 * two directories changed instead of one). Only when the key exists
	 * (an overwrite) does it need a name for rename() to move.
	 */
	if (!exclusive && !t.name[0]) {
		for (tries = 0; tries < 5; tries++) {
			rc = make_parents(ls, key);
			if (rc == 0)
				rc = link_fd(ls->root_fd, t.fd, key);
			if (rc != -ENOENT)
				break;
		}
		if (rc == 0) {
			close_tmp(ls, &t);
			rc = parent_fsync(ls, key);
			goto out;
		}
		if (rc != -EEXIST) {
			close_tmp(ls, &t);
			goto out;
		}
	}
	/* rename() needs a name to move; an exclusive create links the
	 * unnamed file straight to its key. */
	if (!exclusive && !t.name[0]) {
		rc = name_tmp(ls, &t);
		if (rc < 0) {
			close_tmp(ls, &t);
			goto out;
		}
	}
	/* A concurrent remove() may prune an empty parent between mkdir and
	 * rename; then the rename sees ENOENT and we make the parents again. */
	for (tries = 0; tries < 5; tries++) {
		rc = make_parents(ls, key);
		if (rc < 0)
			break;
		if (exclusive && !t.name[0])
			rc = link_fd(ls->root_fd, t.fd, key);
		else if (exclusive)
			rc = linkat(ls->root_fd, t.name, ls->root_fd, key, 0) < 0 ? -errno : 0;
		else
			rc = renameat(ls->root_fd, t.name, ls->root_fd, key) < 0 ? -errno : 0;
		if (rc != -ENOENT)
			break;
	}
	if (!exclusive && rc == 0)
		t.name[0] = '\0';	/* renamed: the name is the key now */
	close_tmp(ls, &t);
	if (rc == 0)
		rc = parent_fsync(ls, key);
out:
	if (rc < 0 && rc != -EEXIST)
		log_error("local store: put %s: %s", key, strerror(-rc));
	return rc;
}

static int local_put(struct store *st, const char *key, const void *data, size_t len)
{
	return do_put(st, key, data, len, 0);
}

static int local_put_if_absent(struct store *st, const char *key,
			       const void *data, size_t len)
{
	return do_put(st, key, data, len, 1);
}

static int local_get_range(struct store *st, const char *key, uint64_t off,
			   size_t len, struct buf *out)
{
	struct local_store *ls = to_local(st);
	struct stat sb;
	size_t want;
	int fd, rc = 0;

	if (store_key_check(key) < 0)
		return -EINVAL;
	fd = openat(ls->root_fd, key, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOTDIR ? -ENOENT : -errno;
	if (fstat(fd, &sb) < 0) {
		rc = -errno;
		goto out;
	}
	if (off >= (uint64_t)sb.st_size)
		goto out;
	want = (uint64_t)sb.st_size - off;
	if (len < want)
		want = len;
	rc = buf_reserve(out, want);
	if (rc < 0)
		goto out;
	while (want > 0) {
		ssize_t n = pread(fd, out->data + out->len, want, (off_t)off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			break;
		}
		if (n == 0)
			break;
		out->len += (size_t)n;
		off += (uint64_t)n;
		want -= (size_t)n;
	}
out:
	close(fd);
	return rc;
}

/* Every put renames a new inode into place, so inode + mtime identify a
 * version of an object. */
static void stat_version(const struct stat *sb, char version[48])
{
	snprintf(version, 48, "%llx.%llx.%lx", (unsigned long long)sb->st_ino,
		 (unsigned long long)sb->st_mtim.tv_sec, (long)sb->st_mtim.tv_nsec);
}

static int local_head(struct store *st, const char *key, struct store_stat *out)
{
	struct local_store *ls = to_local(st);
	struct stat sb;

	if (store_key_check(key) < 0)
		return -EINVAL;
	if (fstatat(ls->root_fd, key, &sb, 0) < 0)
		return errno == ENOTDIR ? -ENOENT : -errno;
	if (!S_ISREG(sb.st_mode))
		return -ENOENT;
	out->size = (uint64_t)sb.st_size;
	out->mtime = sb.st_mtime;
	out->mtime_ns = (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec;
	stat_version(&sb, out->version);
	return 0;
}

struct key_list {
	char **keys;
	struct store_stat *stats;
	size_t n, cap;
};

static int key_list_add(struct key_list *kl, const char *key, const struct stat *sb)
{
	if (kl->n == kl->cap) {
		size_t cap = kl->cap ? kl->cap * 2 : 64;
		char **k = realloc(kl->keys, cap * sizeof(*k));
		struct store_stat *s;

		if (!k)
			return -ENOMEM;
		kl->keys = k;
		s = realloc(kl->stats, cap * sizeof(*s));
		if (!s)
			return -ENOMEM;
		kl->stats = s;
		kl->cap = cap;
	}
	kl->keys[kl->n] = strdup(key);
	if (!kl->keys[kl->n])
		return -ENOMEM;
	kl->stats[kl->n].size = (uint64_t)sb->st_size;
	kl->stats[kl->n].mtime = sb->st_mtime;
	stat_version(sb, kl->stats[kl->n].version);
	kl->n++;
	return 0;
}

/* Collect every regular file under directory @dir (a key prefix ending in '/'
 * or "" for the root) whose key starts with @prefix. */
static int walk(struct local_store *ls, const char *dir, const char *prefix,
		struct key_list *kl)
{
	DIR *d;
	struct dirent *de;
	int fd, rc = 0;

	fd = openat(ls->root_fd, dir[0] ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return (errno == ENOENT || errno == ENOTDIR) ? 0 : -errno;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -errno;
	}
	while ((de = readdir(d)) != NULL) {
		char key[PATH_MAX];
		size_t plen = strlen(prefix), klen;
		struct stat sb;

		if (de->d_name[0] == '.')	/* ".", "..", ".tmp" */
			continue;
		snprintf(key, sizeof(key), "%s%s", dir, de->d_name);
		klen = strlen(key);
		/* Prune subtrees that cannot contain a matching key. */
		if (strncmp(key, prefix, klen < plen ? klen : plen) != 0)
			continue;
		if (fstatat(dirfd(d), de->d_name, &sb, AT_SYMLINK_NOFOLLOW) < 0)
			continue;	/* removed while we walked */
		if (S_ISDIR(sb.st_mode)) {
			char sub[PATH_MAX];

			if (klen + 2 > sizeof(sub))
				continue;	/* deeper than any key can be */
			memcpy(sub, key, klen);
			sub[klen] = '/';
			sub[klen + 1] = '\0';
			rc = walk(ls, sub, prefix, kl);
		} else if (S_ISREG(sb.st_mode) && klen >= plen) {
			rc = key_list_add(kl, key, &sb);
		}
		if (rc < 0)
			break;
	}
	closedir(d);
	return rc;
}

static int cmp_idx(const void *a, const void *b, void *arg)
{
	char **keys = arg;

	return strcmp(keys[*(const size_t *)a], keys[*(const size_t *)b]);
}

static int local_list(struct store *st, const char *prefix, store_list_cb cb,
		      void *arg)
{
	struct local_store *ls = to_local(st);
	struct key_list kl = { 0 };
	char dir[PATH_MAX];
	const char *slash = strrchr(prefix, '/');
	size_t *order = NULL, i;
	int rc;

	/* Start at the deepest directory the prefix names. */
	if (slash)
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash - prefix + 1), prefix);
	else
		dir[0] = '\0';
	rc = walk(ls, dir, prefix, &kl);
	if (rc < 0)
		goto out;
	order = malloc((kl.n ? kl.n : 1) * sizeof(*order));
	if (!order) {
		rc = -ENOMEM;
		goto out;
	}
	for (i = 0; i < kl.n; i++)
		order[i] = i;
	qsort_r(order, kl.n, sizeof(*order), cmp_idx, kl.keys);
	for (i = 0; i < kl.n && rc == 0; i++)
		rc = cb(kl.keys[order[i]], &kl.stats[order[i]], arg);
out:
	for (i = 0; i < kl.n; i++)
		free(kl.keys[i]);
	free(kl.keys);
	free(kl.stats);
	free(order);
	return rc;
}

static int local_remove(struct store *st, const char *key)
{
	struct local_store *ls = to_local(st);
	char path[PATH_MAX];
	char *slash;

	if (store_key_check(key) < 0)
		return -EINVAL;
	if (unlinkat(ls->root_fd, key, 0) < 0) {
		if (errno == ENOENT || errno == ENOTDIR)
			return 0;
		return -errno;
	}
	/* Prune now-empty parents so the tree does not fill with empty dirs;
	 * ENOTEMPTY simply stops the walk. */
	snprintf(path, sizeof(path), "%s", key);
	while ((slash = strrchr(path, '/')) != NULL) {
		*slash = '\0';
		if (unlinkat(ls->root_fd, path, AT_REMOVEDIR) < 0)
			break;
	}
	/* The unlink is done; a failed directory fsync only weakens the
	 * durability of a delete, which gc tolerates. */
	(void)parent_fsync(ls, key);
	return 0;
}

static void local_destroy(struct store *st)
{
	struct local_store *ls = to_local(st);

	close(ls->root_fd);
	free(ls->root);
	free(ls);
}

static int local_touch(struct store *st, const char *key)
{
	struct local_store *ls = to_local(st);

	struct timespec ts[2];

	if (store_key_check(key) < 0)
		return -EINVAL;
	/* The precise clock, not the file system's coarse one (which may lag
	 * by a tick): gc compares this instant with the start of its pass. */
	clock_gettime(CLOCK_REALTIME, &ts[0]);
	ts[1] = ts[0];
	if (utimensat(ls->root_fd, key, ts, 0) < 0)
		return (errno == ENOTDIR || errno == ENOENT) ? -ENOENT : -errno;
	return 0;
}

static const struct store_ops local_ops = {
	.name          = "local",
	.put           = local_put,
	.put_if_absent = local_put_if_absent,
	.get_range     = local_get_range,
	.head          = local_head,
	.list          = local_list,
	.remove        = local_remove,
	.touch         = local_touch,
	.destroy       = local_destroy,
};

/* Can .tmp hold an O_TMPFILE that we can later link by name? Some
 * filesystems (and a missing /proc) say no; then temp files are named. */
static int probe_tmpfile(int root_fd)
{
	char name[TMP_NAME_LEN];
	int fd, ok;

	fd = openat(root_fd, ".tmp", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
	if (fd < 0)
		return 0;
	ok = random_tmp_name(name) == 0 && link_fd(root_fd, fd, name) == 0;
	if (ok)
		unlinkat(root_fd, name, 0);
	close(fd);
	return ok;
}

int store_local_sweep_tmp(struct store *st, int64_t min_age_s, uint64_t *removed)
{
	struct local_store *ls;
	uint64_t n = 0, bytes = 0;
	struct dirent *de;
	time_t now = time(NULL);
	DIR *d;
	int dfd;

	if (removed)
		*removed = 0;
	if (st->ops != &local_ops)
		return -EOPNOTSUPP;
	ls = to_local(st);
	dfd = openat(ls->root_fd, ".tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return errno == ENOENT ? 0 : -errno;
	d = fdopendir(dfd);
	if (!d) {
		int e = errno;

		close(dfd);
		return -e;
	}
	while ((de = readdir(d)) != NULL) {
		struct stat sb, fsb;
		int fd;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (fstatat(dfd, de->d_name, &sb, AT_SYMLINK_NOFOLLOW) < 0 ||
		    !S_ISREG(sb.st_mode))
			continue;
		if ((int64_t)now - (int64_t)sb.st_mtime < min_age_s)
			continue;
		fd = openat(dfd, de->d_name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
		if (fd < 0)
			continue;
		/* A live writer holds its lock until the name is gone; the
		 * inode check makes sure we lock what we stat'ed. */
		if (flock(fd, LOCK_EX | LOCK_NB) == 0 && fstat(fd, &fsb) == 0 &&
		    fsb.st_ino == sb.st_ino && fsb.st_dev == sb.st_dev &&
		    unlinkat(dfd, de->d_name, 0) == 0) {
			n++;
			bytes += (uint64_t)sb.st_size;
		}
		close(fd);
	}
	closedir(d);
	if (n)
		log_info("local store %s: removed %llu stale temporary files (%llu bytes) "
			 "from .tmp", ls->root, (unsigned long long)n,
			 (unsigned long long)bytes);
	if (removed)
		*removed = n;
	return 0;
}

int store_local_set_tmpfile(struct store *st, int on)
{
	struct local_store *ls;

	if (st->ops != &local_ops)
		return -EOPNOTSUPP;
	ls = to_local(st);
	if (on && !probe_tmpfile(ls->root_fd))
		return -EOPNOTSUPP;
	ls->use_tmpfile = on;
	return 0;
}

int store_local_open(const char *dir, int create, struct store **out)
{
	struct local_store *ls;
	int fd;

	if (create && mkdir(dir, 0755) < 0 && errno != EEXIST) {
		int e = errno;

		log_error("store %s: cannot create: %s", dir, strerror(e));
		return -e;
	}
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;

		log_error("store %s: %s", dir, strerror(e));
		return -e;
	}
	/* A read-only store (a read-only volume) opens: its puts fail, with
	 * EROFS, when they are tried. */
	if (mkdirat(fd, ".tmp", 0755) < 0 && errno != EEXIST && errno != EROFS &&
	    errno != EACCES) {
		int e = errno;

		log_error("store %s: cannot create .tmp: %s", dir, strerror(e));
		close(fd);
		return -e;
	}
	ls = calloc(1, sizeof(*ls));
	if (!ls) {
		close(fd);
		return -ENOMEM;
	}
	ls->base.ops = &local_ops;
	ls->root_fd = fd;
	ls->root = strdup(dir);
	if (!ls->root) {
		close(fd);
		free(ls);
		return -ENOMEM;
	}
	ls->use_tmpfile = probe_tmpfile(fd);
	/* Leftovers of a daemon killed mid-put; failing to read .tmp only
	 * leaves garbage, which gc retries. */
	(void)store_local_sweep_tmp(&ls->base, STORE_LOCAL_TMP_STALE_S, NULL);
	*out = &ls->base;
	return 0;
}
