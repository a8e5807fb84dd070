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
	cfg->attr_timeout = 1.0;
	cfg->entry_timeout = 1.0;
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

/* Set by op_symlink for the getattr libfuse makes right after it. */
static __thread const char *symlink_just_made;

static int op_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
	if (path && symlink_just_made && !strcmp(path, symlink_just_made)) {
		int rc = fs_getattr(fs_of(), path, st);

		symlink_just_made = NULL;
		if (rc == 0) {
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
	return fs_rmdir(fs_of(), path);
}

static int op_unlink(const char *path)
{
	return fs_unlink(fs_of(), path);
}

static int op_rename(const char *from, const char *to, unsigned int flags)
{
	return fs_rename(fs_of(), from, to, flags);
}

/*
 * Promotion by `ln -s ../sampler/X models/ID` makes a directory, but the
 * kernel insists that what a symlink call created is a symlink. So the one
 * getattr libfuse makes right after our symlink, on this thread, reports a
 * symlink (whose readlink leads to the model's directory), and the entry is
 * then invalidated so the next lookup sees the directory.
 */
struct inval {
	struct fuse *fuse;
	char path[];
};

static void *inval_later(void *arg)
{
	struct inval *iv = arg;

	/* Blocks in the kernel until the rename that moved the dentry has
	 * finished, which needs no help from this thread. */
	fuse_invalidate_path(iv->fuse, iv->path);
	free(iv);
	return NULL;
}


/* Drop the kernel's entry for @path from another thread: the kernel
 * processes it once the current request has been answered. */
static void invalidate_later(const char *path)
{
	struct inval *iv = malloc(sizeof(*iv) + strlen(path) + 1);
	pthread_t t;

	if (!iv)
		return;
	iv->fuse = fuse_get_context()->fuse;
	strcpy(iv->path, path);
	if (pthread_create(&t, NULL, inval_later, iv) == 0)
		pthread_detach(t);
	else
		free(iv);
}


static int op_symlink(const char *target, const char *path)
{
	int rc = fs_symlink(fs_of(), target, path);

	if (rc == 0) {
		symlink_just_made = path;
		invalidate_later(path);
	}
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
