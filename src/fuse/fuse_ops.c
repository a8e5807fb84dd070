/*
 * fuse_ops.c: the only code that speaks FUSE. Each operation decodes its
 * arguments, calls one fs_*() function and returns its result; everything
 * else lives in src/fs.
 */
#define FUSE_USE_VERSION 312
#include "fuse/ckfuse.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <fuse.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fs/fs.h"
#include "util/log.h"

/* How long the kernel may keep a name and its attributes (see held symlinks). */
#define ENTRY_TIMEOUT_S 1.0

static struct ckfs *fs_of(void)
{
	return fuse_get_context()->private_data;
}

static void *op_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
	/* Large requests: FUSE round trips dominate small ones (~27 us each). */
	conn->max_write = 1u << 20;
	conn->max_readahead = 1u << 20;
	conn->want |= conn->capable & FUSE_CAP_ASYNC_READ;
	/* Inode numbers come from src/fs (a hash of what the path names), so
	 * they stay the same when the kernel forgets and looks up again. */
	cfg->use_ino = 1;
	cfg->readdir_ino = 0;
	cfg->nullpath_ok = 1;
	/*
	 * An open file that is unlinked is renamed by libfuse to
	 * ".fuse_hidden<n>" (src/fs/ghost.c makes that rename the unlink), so
	 * fstat() on its descriptor has a path to ask about; with hard_remove
	 * it had none and failed with ESTALE.
	 */
	cfg->hard_remove = 0;
	cfg->auto_cache = 1;		/* drop cached pages when mtime/size change */
	cfg->attr_timeout = ENTRY_TIMEOUT_S;
	cfg->entry_timeout = ENTRY_TIMEOUT_S;
	cfg->negative_timeout = 0;
	return fuse_get_context()->private_data;
}

/*
 * With nullpath_ok, readdir may get no path: the directory handle keeps it.
 * Its first word differs from fs file handles' (FS_HANDLE_MAGIC), so a
 * path-less getattr can tell the two apart.
 */
#define DIR_HANDLE_MAGIC 0x52494448u	/* "HDIR" */

struct dir_handle {
	uint32_t magic;
	char path[];
};

/*
 * Promotion by `ln -s ../sampler/X models/ID` makes a directory, but the
 * kernel insists that what symlink(2) created is a symlink, and it keys its
 * inode by the node libfuse gave the name. Reporting a directory for that
 * node while the kernel still holds it as a symlink makes the kernel mark
 * the inode bad and fail the lstat() with EIO. So for as long as the kernel
 * may hold the symlink (its entry and attributes last ENTRY_TIMEOUT_S from
 * the last answer that called it one), getattr keeps calling models/ID a
 * symlink (readlink leads to models/.pinned/ID, the same directory). Once
 * nobody has looked for that long, the kernel's next access is a LOOKUP,
 * which sees a directory and makes a fresh inode for it.
 *
 * The table is small and bounded: a name that falls out of it early can at
 * worst cost one EIO on a stat racing a burst of more than SYMLINK_HELD
 * promotions, never a wrong byte.
 */
#define SYMLINK_HELD 64
#define SYMLINK_HOLD_NS ((int64_t)(2 * ENTRY_TIMEOUT_S * 1e9))

struct held_symlink {
	int64_t until_ns;		/* 0: free */
	char path[256];
};

static struct held_symlink held[SYMLINK_HELD];
static pthread_mutex_t held_lock = PTHREAD_MUTEX_INITIALIZER;

static int64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Start (or extend) holding @path as a symlink. */
static void hold_symlink(const char *path)
{
	int64_t now = mono_ns();
	struct held_symlink *slot = NULL;

	if (strlen(path) >= sizeof(held[0].path))
		return;
	pthread_mutex_lock(&held_lock);
	for (int i = 0; i < SYMLINK_HELD; i++) {
		struct held_symlink *h = &held[i];

		if (h->until_ns > now && !strcmp(h->path, path)) {
			slot = h;
			break;
		}
		/* Otherwise the free or expired slot, or the one ending first. */
		if (!slot || (slot->until_ns > now && h->until_ns < slot->until_ns))
			slot = h;
	}
	strcpy(slot->path, path);
	slot->until_ns = now + SYMLINK_HOLD_NS;
	pthread_mutex_unlock(&held_lock);
}

/* Whether the kernel may still hold @path as the symlink it created;
 * if so the hold is extended, since this answer renews the kernel's. */
static int symlink_held(const char *path)
{
	int64_t now = mono_ns();
	int found = 0;

	pthread_mutex_lock(&held_lock);
	for (int i = 0; i < SYMLINK_HELD && !found; i++) {
		if (held[i].until_ns > now && !strcmp(held[i].path, path)) {
			held[i].until_ns = now + SYMLINK_HOLD_NS;
			found = 1;
		}
	}
	pthread_mutex_unlock(&held_lock);
	return found;
}

/* Stop holding @path (it was removed or renamed away). */
static void release_symlink(const char *path)
{
	pthread_mutex_lock(&held_lock);
	for (int i = 0; i < SYMLINK_HELD; i++)
		if (held[i].until_ns && !strcmp(held[i].path, path))
			held[i].until_ns = 0;
	pthread_mutex_unlock(&held_lock);
}

static int op_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
	if (path && symlink_held(path)) {
		int rc = fs_getattr(fs_of(), path, st);

		if (rc == 0 && S_ISDIR(st->st_mode)) {
			st->st_mode = S_IFLNK | 0777;
			st->st_size = (off_t)strlen(path);
		}
		return rc;
	}
	if (path)
		return fs_getattr(fs_of(), path, st);
	if (!fi || *(const uint32_t *)(uintptr_t)fi->fh == DIR_HANDLE_MAGIC)
		return -ENOENT;		/* a removed directory */
	return fs_fgetattr(fs_of(), fi->fh, st);
}

struct fill_ctx {
	void *buf;
	fuse_fill_dir_t filler;
};

static int fill_one(void *arg, const char *name, const struct stat *st)
{
	struct fill_ctx *fc = arg;

	return fc->filler(fc->buf, name, st, 0, 0);
}

static int op_opendir(const char *path, struct fuse_file_info *fi)
{
	struct dir_handle *d = malloc(sizeof(*d) + strlen(path) + 1);

	if (!d)
		return -ENOMEM;
	d->magic = DIR_HANDLE_MAGIC;
	strcpy(d->path, path);
	fi->fh = (uint64_t)(uintptr_t)d;
	return 0;
}

static int op_releasedir(const char *path, struct fuse_file_info *fi)
{
	(void)path;
	free((void *)(uintptr_t)fi->fh);
	return 0;
}

static int op_readdir(const char *path, void *buf, fuse_fill_dir_t filler, off_t off,
		      struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
	struct fill_ctx fc = { buf, filler };

	(void)path;
	(void)off;
	(void)flags;
	return fs_readdir(fs_of(), ((struct dir_handle *)(uintptr_t)fi->fh)->path,
			  fill_one, &fc);
}

/*
 * ".fuse_hidden*" is how libfuse renames an open file that is unlinked
 * (src/fs/ghost.c): a user's file by that name would vanish from view.
 */
static int reserved_name(const char *op, const char *path)
{
	const char *base = strrchr(path, '/');

	base = base ? base + 1 : path;
	if (strncmp(base, ".fuse_hidden", 12))
		return 0;
	log_warn("%s %s: names starting with .fuse_hidden are reserved (EPERM)", op, path);
	return -EPERM;
}

static int op_mkdir(const char *path, mode_t mode)
{
	int rc = reserved_name("mkdir", path);

	return rc ? rc : fs_mkdir(fs_of(), path, mode);
}

static int op_rmdir(const char *path)
{
	int rc = fs_rmdir(fs_of(), path);

	if (rc == 0)
		release_symlink(path);
	return rc;
}

static int op_unlink(const char *path)
{
	/* rm of what the kernel still holds as the symlink `ln -s` made. */
	int rc = symlink_held(path) ? fs_unpromote(fs_of(), path) : fs_unlink(fs_of(), path);

	if (rc == 0)
		release_symlink(path);
	return rc;
}

static int op_rename(const char *from, const char *to, unsigned int flags)
{
	int rc = fs_rename(fs_of(), from, to, flags);

	/* What now sits at @to is whatever rename(2) moved there, as the
	 * kernel believes it: a held symlink moves along; anything else is
	 * what getattr reports. */
	if (rc == 0) {
		int was_held = symlink_held(from);

		release_symlink(from);
		release_symlink(to);
		if (was_held)
			hold_symlink(to);
	}
	return rc;
}

static int op_symlink(const char *target, const char *path)
{
	int rc = fs_symlink(fs_of(), target, path);

	if (rc == 0)
		hold_symlink(path);
	return rc;
}

static int op_readlink(const char *path, char *buf, size_t size)
{
	return fs_readlink(fs_of(), path, buf, size);
}

static int op_truncate(const char *path, off_t size, struct fuse_file_info *fi)
{
	if (size < 0)
		return -EINVAL;
	return fs_truncate(fs_of(), path, fi ? fi->fh : 0, (uint64_t)size);
}

static int op_utimens(const char *path, const struct timespec tv[2],
		      struct fuse_file_info *fi)
{
	(void)fi;
	return path ? fs_utimens(fs_of(), path, tv) : 0;
}

static int op_chmod(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	(void)fi;
	return path ? fs_chmod(fs_of(), path, mode) : 0;
}

static int op_chown(const char *path, uid_t uid, gid_t gid, struct fuse_file_info *fi)
{
	(void)fi;
	/* Files belong to the mounting user; chown to anyone else is refused
	 * (cp -a then keeps going, as on any filesystem without chown rights). */
	if ((uid != (uid_t)-1 && uid != getuid()) || (gid != (gid_t)-1 && gid != getgid())) {
		log_warn("chown %s: files belong to the mount's owner (EPERM)", path);
		return -EPERM;
	}
	return 0;
}

/* A file is one entry under one name: no hard links (link(2) documents
 * EPERM for a filesystem that does not support them). */
static int op_link(const char *from, const char *to)
{
	log_warn("link %s -> %s: hard links are not supported (EPERM)", to, from);
	return -EPERM;
}

/* Regular files only: a checkpoint holds no devices, FIFOs or sockets. */
static int op_mknod(const char *path, mode_t mode, dev_t rdev)
{
	uint64_t fh;
	int rc;

	(void)rdev;
	rc = reserved_name("mknod", path);
	if (rc)
		return rc;
	if (!S_ISREG(mode)) {
		log_warn("mknod %s: only regular files are supported (EPERM)", path);
		return -EPERM;
	}
	rc = fs_create(fs_of(), path, mode, O_WRONLY | O_EXCL, &fh);
	if (rc == 0) {
		rc = fs_flush(fs_of(), fh);
		fs_release(fs_of(), fh);
	}
	return rc;
}

static int op_create(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	int rc = reserved_name("create", path);

	return rc ? rc : fs_create(fs_of(), path, mode, fi->flags, &fi->fh);
}

static int op_open(const char *path, struct fuse_file_info *fi)
{
	int keep = 0, direct = 0;
	int rc = fs_open(fs_of(), path, fi->flags, &fi->fh, &keep, &direct);

	if (rc == 0) {
		fi->keep_cache = keep;
		fi->direct_io = direct;
	}
	return rc;
}

static int op_read(const char *path, char *buf, size_t size, off_t off,
		   struct fuse_file_info *fi)
{
	(void)path;
	return (int)fs_read(fs_of(), fi->fh, buf, size, (uint64_t)off);
}

static int op_write(const char *path, const char *buf, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	(void)path;
	return (int)fs_write(fs_of(), fi->fh, buf, size, (uint64_t)off);
}

static int op_flush(const char *path, struct fuse_file_info *fi)
{
	(void)path;
	return fs_flush(fs_of(), fi->fh);
}

static int op_fsync(const char *path, int datasync, struct fuse_file_info *fi)
{
	(void)path;
	(void)datasync;
	return fs_fsync(fs_of(), fi->fh);
}

static int op_release(const char *path, struct fuse_file_info *fi)
{
	(void)path;
	fs_release(fs_of(), fi->fh);
	return 0;
}

static int op_statfs(const char *path, struct statvfs *sv)
{
	(void)path;
	return fs_statfs(fs_of(), sv);
}

static int op_setxattr(const char *path, const char *name, const char *value,
		       size_t size, int flags)
{
	return fs_setxattr(fs_of(), path, name, value, size, flags);
}

static int op_getxattr(const char *path, const char *name, char *value, size_t size)
{
	return fs_getxattr(fs_of(), path, name, value, size);
}

static int op_listxattr(const char *path, char *list, size_t size)
{
	return fs_listxattr(fs_of(), path, list, size);
}

static int op_removexattr(const char *path, const char *name)
{
	return fs_removexattr(fs_of(), path, name);
}

static const struct fuse_operations ckfuse_ops = {
	.getattr     = op_getattr,
	.readlink    = op_readlink,
	.mkdir       = op_mkdir,
	.unlink      = op_unlink,
	.rmdir       = op_rmdir,
	.symlink     = op_symlink,
	.rename      = op_rename,
	.chmod       = op_chmod,
	.chown       = op_chown,
	.link        = op_link,
	.mknod       = op_mknod,
	.truncate    = op_truncate,
	.open        = op_open,
	.read        = op_read,
	.write       = op_write,
	.statfs      = op_statfs,
	.flush       = op_flush,
	.release     = op_release,
	.fsync       = op_fsync,
	.setxattr    = op_setxattr,
	.getxattr    = op_getxattr,
	.listxattr   = op_listxattr,
	.removexattr = op_removexattr,
	.opendir     = op_opendir,
	.readdir     = op_readdir,
	.releasedir  = op_releasedir,
	.init        = op_init,
	.create      = op_create,
	.utimens     = op_utimens,
};

const struct fuse_operations *ckfuse_operations(void)
{
	return &ckfuse_ops;
}
