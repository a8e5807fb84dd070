/*
 * ceiling.c: the FUSE ceiling of this machine, a minimal FUSE filesystem that
 * does no work. Every ckptfs figure in bench/save.sh is reported as a ratio to
 * it: what the kernel, libfuse and the copies between them cost, and nothing
 * else.
 *
 *   ceiling [-o size=BYTES] MNT       (foreground; fusermount3 -u MNT ends it)
 *
 * - Writes are accepted and discarded; a file keeps only its size, so `cp -r`
 *   and `ls -l` behave (directories and files live in a small in-memory table).
 * - /synthetic is a read-only file of -o size bytes (default 512 MiB) whose
 *   reads are served from a 1 MiB pattern buffer (one memcpy, no I/O); files
 *   written earlier read back as zeros.
 * - The same FUSE settings as ckptfs (src/fuse/fuse_ops.c, src/fuse/mount.c):
 *   high-level API, max_write = max_readahead = 1 MiB, async reads,
 *   attr/entry timeouts 1 s, auto_cache, multithreaded loop of up to 16
 *   threads without clone_fd, default_permissions.
 *
 * Not a test and not part of ckptfs: a measuring instrument. Built by
 * bench/meson.build, or by bench/save.sh with cc + pkg-config fuse3.
 */
#define FUSE_USE_VERSION 35

#include <errno.h>
#include <fcntl.h>
#include <fuse.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PATTERN (1u << 20)
#define SYNTH "/synthetic"

struct node {
	char *path;
	mode_t mode;
	off_t size;
	struct timespec mtime;
	struct node *next_dead;
};

static struct {
	pthread_mutex_t lock;
	struct node **nodes;	/* stable: file handles point at them */
	size_t n, cap;
	uint64_t synth_size;
	uint8_t *pattern;
} g = { .lock = PTHREAD_MUTEX_INITIALIZER, .synth_size = 512ull << 20 };

/* Lock held. */
static struct node *find(const char *path)
{
	size_t i;

	for (i = 0; i < g.n; i++)
		if (!strcmp(g.nodes[i]->path, path))
			return g.nodes[i];
	return NULL;
}

/* Lock held. */
static int add(const char *path, mode_t mode)
{
	struct node *nn;

	if (find(path))
		return -EEXIST;
	if (g.n == g.cap) {
		size_t cap = g.cap ? 2 * g.cap : 64;
		struct node **a = realloc(g.nodes, cap * sizeof(*a));

		if (!a)
			return -ENOMEM;
		g.nodes = a;
		g.cap = cap;
	}
	nn = calloc(1, sizeof(*nn));
	if (!nn)
		return -ENOMEM;
	nn->path = strdup(path);
	if (!nn->path) {
		free(nn);
		return -ENOMEM;
	}
	g.nodes[g.n] = nn;
	nn->mode = mode;
	nn->size = 0;
	clock_gettime(CLOCK_REALTIME, &nn->mtime);
	g.n++;
	return 0;
}

static struct node *node_of(struct fuse_file_info *fi);

static int c_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
	struct node *n;
	int rc = 0;

	memset(st, 0, sizeof(*st));
	st->st_uid = getuid();
	st->st_gid = getgid();
	st->st_nlink = 1;
	/*
	 * nullpath_ok: a getattr on an open file (fstat, or the kernel
	 * revalidating attributes during reads) may come with its handle and no
	 * path. The kernel sends a handle for regular files only, and a regular
	 * file's fh 0 is /synthetic.
	 */
	if (!path && !node_of(fi))
		path = SYNTH;
	if (path && !strcmp(path, "/")) {
		st->st_mode = S_IFDIR | 0755;
		st->st_nlink = 2;
		return 0;
	}
	if (path && !strcmp(path, SYNTH)) {
		st->st_mode = S_IFREG | 0444;
		st->st_size = (off_t)g.synth_size;
		return 0;
	}
	pthread_mutex_lock(&g.lock);
	n = path ? find(path) : node_of(fi);
	if (n) {
		st->st_mode = n->mode;
		st->st_size = n->size;
		st->st_mtim = n->mtime;
		st->st_ctim = n->mtime;
	} else {
		rc = -ENOENT;
	}
	pthread_mutex_unlock(&g.lock);
	return rc;
}

static int c_mkdir(const char *path, mode_t mode)
{
	int rc;

	pthread_mutex_lock(&g.lock);
	rc = add(path, S_IFDIR | (mode & 07777));
	pthread_mutex_unlock(&g.lock);
	return rc;
}

/* fh 0 is /synthetic (and the root directory); any other is a struct node. */
static struct node *node_of(struct fuse_file_info *fi)
{
	return fi ? (struct node *)(uintptr_t)fi->fh : NULL;
}

static int c_create(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	struct node *n;
	int rc;

	pthread_mutex_lock(&g.lock);
	rc = add(path, S_IFREG | (mode & 07777));
	n = find(path);
	if (rc == -EEXIST) {
		rc = S_ISREG(n->mode) ? 0 : -EISDIR;
		if (rc == 0 && (fi->flags & O_TRUNC))
			n->size = 0;
	}
	if (rc == 0)
		fi->fh = (uintptr_t)n;
	pthread_mutex_unlock(&g.lock);
	return rc;
}

static int c_open(const char *path, struct fuse_file_info *fi)
{
	struct node *n;
	int rc = 0;

	fi->fh = 0;
	if (!strcmp(path, SYNTH))
		return (fi->flags & O_ACCMODE) == O_RDONLY ? 0 : -EACCES;
	pthread_mutex_lock(&g.lock);
	n = find(path);
	if (!n)
		rc = -ENOENT;
	else if (fi->flags & O_TRUNC)
		n->size = 0;
	if (n)
		fi->fh = (uintptr_t)n;
	pthread_mutex_unlock(&g.lock);
	return rc;
}

static int c_read(const char *path, char *buf, size_t size, off_t off,
		  struct fuse_file_info *fi)
{
	struct node *n = node_of(fi);
	uint64_t end;
	size_t done = 0;

	(void)path;
	if (n) {
		off_t fsize;

		pthread_mutex_lock(&g.lock);
		fsize = n->size;
		pthread_mutex_unlock(&g.lock);
		if (off >= fsize)
			return 0;
		if ((off_t)size > fsize - off)
			size = (size_t)(fsize - off);
		memset(buf, 0, size);
		return (int)size;
	}
	end = g.synth_size;
	if ((uint64_t)off >= end)
		return 0;
	if (size > end - (uint64_t)off)
		size = (size_t)(end - (uint64_t)off);
	while (done < size) {
		size_t in = (size_t)(((uint64_t)off + done) % PATTERN);
		size_t k = PATTERN - in < size - done ? PATTERN - in : size - done;

		memcpy(buf + done, g.pattern + in, k);
		done += k;
	}
	return (int)size;
}

static int c_write(const char *path, const char *buf, size_t size, off_t off,
		   struct fuse_file_info *fi)
{
	struct node *n = node_of(fi);

	(void)path;
	(void)buf;
	if (!n)
		return -EBADF;
	pthread_mutex_lock(&g.lock);
	if (off + (off_t)size > n->size)
		n->size = off + (off_t)size;
	clock_gettime(CLOCK_REALTIME, &n->mtime);
	pthread_mutex_unlock(&g.lock);
	return (int)size;	/* discarded */
}

static int c_truncate(const char *path, off_t size, struct fuse_file_info *fi)
{
	struct node *n;
	int rc = 0;

	pthread_mutex_lock(&g.lock);
	n = node_of(fi);
	if (!n && path)
		n = find(path);
	if (n && S_ISREG(n->mode))
		n->size = size;
	else
		rc = n ? -EISDIR : -EACCES;
	pthread_mutex_unlock(&g.lock);
	return rc;
}

/* Removed nodes stay allocated (an open handle may still point at one). */
static struct node *dead;

static int c_remove(const char *path)
{
	struct node *n;
	size_t i;
	int rc = -ENOENT;

	pthread_mutex_lock(&g.lock);
	for (i = 0; i < g.n; i++) {
		n = g.nodes[i];
		if (strcmp(n->path, path))
			continue;
		g.nodes[i] = g.nodes[--g.n];
		n->next_dead = dead;
		dead = n;
		rc = 0;
		break;
	}
	pthread_mutex_unlock(&g.lock);
	return rc;
}

static int c_opendir(const char *path, struct fuse_file_info *fi)
{
	struct node *n;
	int rc = 0;

	fi->fh = 0;
	if (!strcmp(path, "/"))
		return 0;
	pthread_mutex_lock(&g.lock);
	n = find(path);
	if (!n || !S_ISDIR(n->mode))
		rc = n ? -ENOTDIR : -ENOENT;
	else
		fi->fh = (uintptr_t)n;
	pthread_mutex_unlock(&g.lock);
	return rc;
}

static int c_readdir(const char *path, void *buf, fuse_fill_dir_t fill, off_t off,
		     struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
	struct node *d = node_of(fi);
	const char *dir;
	size_t plen, i;

	(void)path;
	(void)off;
	(void)flags;
	fill(buf, ".", NULL, 0, 0);
	fill(buf, "..", NULL, 0, 0);
	pthread_mutex_lock(&g.lock);
	dir = d ? d->path : "";
	plen = strlen(dir);
	if (!d)
		fill(buf, &SYNTH[1], NULL, 0, 0);
	for (i = 0; i < g.n; i++) {
		const char *p = g.nodes[i]->path;

		if (!strncmp(p, dir, plen) && p[plen] == '/' && !strchr(p + plen + 1, '/'))
			fill(buf, p + plen + 1, NULL, 0, 0);
	}
	pthread_mutex_unlock(&g.lock);
	return 0;
}

/* Metadata calls that cp -a or a trainer may make: accepted, no effect. */
static int c_utimens(const char *path, const struct timespec tv[2],
		     struct fuse_file_info *fi)
{
	(void)path; (void)tv; (void)fi;
	return 0;
}

static int c_chmod(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	(void)path; (void)mode; (void)fi;
	return 0;
}

static int c_chown(const char *path, uid_t uid, gid_t gid, struct fuse_file_info *fi)
{
	(void)path; (void)uid; (void)gid; (void)fi;
	return 0;
}

static int c_flush(const char *path, struct fuse_file_info *fi)
{
	(void)path; (void)fi;
	return 0;
}

static int c_fsync(const char *path, int datasync, struct fuse_file_info *fi)
{
	(void)path; (void)datasync; (void)fi;
	return 0;
}

static void *c_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
	/* As ckptfs's op_init. */
	conn->max_write = 1u << 20;
	conn->max_readahead = 1u << 20;
	conn->want |= conn->capable & FUSE_CAP_ASYNC_READ;
	cfg->nullpath_ok = 1;
	cfg->auto_cache = 1;
	cfg->attr_timeout = 1.0;
	cfg->entry_timeout = 1.0;
	cfg->negative_timeout = 0;
	return NULL;
}

static const struct fuse_operations ops = {
	.init = c_init,
	.getattr = c_getattr,
	.mkdir = c_mkdir,
	.create = c_create,
	.open = c_open,
	.read = c_read,
	.write = c_write,
	.truncate = c_truncate,
	.unlink = c_remove,
	.rmdir = c_remove,
	.opendir = c_opendir,
	.readdir = c_readdir,
	.utimens = c_utimens,
	.chmod = c_chmod,
	.chown = c_chown,
	.flush = c_flush,
	.fsync = c_fsync,
};

struct opts {
	char *size;
	char *mnt;
};

static const struct fuse_opt opt_spec[] = {
	{ "size=%s", offsetof(struct opts, size), 0 },
	FUSE_OPT_END
};

static int opt_proc(void *data, const char *arg, int key, struct fuse_args *out)
{
	struct opts *o = data;

	(void)out;
	if (key == FUSE_OPT_KEY_NONOPT && !o->mnt) {
		o->mnt = strdup(arg);
		return 0;
	}
	return 1;
}

int main(int argc, char **argv)
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct fuse_loop_config *lc;
	struct opts o = { 0 };
	struct fuse *fuse;
	size_t i;
	int rc = 1;

	if (fuse_opt_parse(&args, &o, opt_spec, opt_proc) < 0 || !o.mnt) {
		fprintf(stderr, "usage: %s [-o size=BYTES] MNT\n", argv[0]);
		return 2;
	}
	if (o.size)
		g.synth_size = strtoull(o.size, NULL, 0);
	g.pattern = malloc(PATTERN);
	if (!g.pattern)
		return 1;
	for (i = 0; i < PATTERN; i++)		/* bf16-ish bytes, not zeros */
		g.pattern[i] = (uint8_t)(i * 2654435761u >> 13);
	fuse_opt_add_arg(&args, "-odefault_permissions");
	fuse_opt_add_arg(&args, "-ofsname=ceiling");
	fuse_opt_add_arg(&args, "-osubtype=ceiling");
	fuse = fuse_new(&args, &ops, sizeof(ops), NULL);
	if (!fuse)
		return 1;
	if (fuse_mount(fuse, o.mnt) != 0)
		goto out;
	if (fuse_set_signal_handlers(fuse_get_session(fuse)) != 0)
		goto out_unmount;
	lc = fuse_loop_cfg_create();
	if (!lc)
		goto out_unmount;
	fuse_loop_cfg_set_clone_fd(lc, 0);
	fuse_loop_cfg_set_max_threads(lc, 16);
	rc = fuse_loop_mt(fuse, lc) ? 1 : 0;
	fuse_loop_cfg_destroy(lc);
	fuse_remove_signal_handlers(fuse_get_session(fuse));
out_unmount:
	fuse_unmount(fuse);
out:
	fuse_destroy(fuse);
	fuse_opt_free_args(&args);
	free(o.size);
	free(o.mnt);
	free(g.pattern);
	for (i = 0; i < g.n; i++) {
		free(g.nodes[i]->path);
		free(g.nodes[i]);
	}
	free(g.nodes);
	while (dead) {
		struct node *n = dead;

		dead = n->next_dead;
		free(n->path);
		free(n);
	}
	return rc;
}
