/*
 * mount.c: `ckptfs mount [options] STORE MOUNTPOINT` and `mount.ckptfs`.
 *
 * options -> config -> store -> fs -> fuse mount -> (background: fork and
 * wait for readiness) -> loop -> drain -> unwind, in that order and back;
 * no filesystem logic here. Options are parsed with libfuse's fuse_opt so
 * each can be given as --name=value, --name value or, for fstab, inside -o
 * (name=value); unknown -o options pass through to FUSE.
 */
#define FUSE_USE_VERSION 312
#include "fuse/ckfuse.h"

#include <errno.h>
#include <fcntl.h>
#include <fuse.h>
#include <fuse_lowlevel.h>
#include <libgen.h>
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fs/fs.h"
#include "store/store.h"
#include "util/log.h"
#include "util/metrics.h"

struct mount_opts {
	char *store;
	char *mountpoint;
	char *job;
	char *spool_dir;
	char *delta_policy;
	char *cache_dir;
	char *base_cache_dir;
	unsigned base_cache_mib;
	char *hotload_token_env;
	char *fd_socket;
	char *env_file;
	char *metrics;		/* --metrics [ADDR:]PORT */
	char *log_level;	/* --log-level error|warn|info|debug */
	double shutdown_timeout;
	int shutdown_timeout_set;
	unsigned chunk_kib;
	unsigned cache_mib;
	unsigned readahead_mib;
	int readahead_set;
	unsigned s3_cache_mib;
	unsigned base_every;
	unsigned threads;
	unsigned hotload_max;
	double list_ttl;
	double gc_interval;
	long gc_grace;
	int gc_set, gc_grace_set;
	double delta_max_ratio;
	long default_ttl;
	int lora;
	int foreground;
	int debug;
	int read_only;
	int allow_other;	/* allow_other or allow_root was given */
	int insecure_tls;
	int help;
};

enum { KEY_HELP, KEY_FOREGROUND, KEY_DEBUG, KEY_RO, KEY_ALLOW_OTHER };

#define OPT(t, f, v) { t, offsetof(struct mount_opts, f), v }
/* Each option two ways: --name=value, or -o name=value (fstab). A
 * "--name %s" form is not offered: fuse_opt applies every matching
 * template, and it would also match "--name=value". */
#define OPT3(name, f) OPT("--" name "=%s", f, 0), OPT(name "=%s", f, 0)

/* Exit status of a shutdown that had to abandon files still open for
 * writing at --shutdown-timeout (none of them was committed). */
#define EXIT_ABANDONED 3

static const struct fuse_opt opt_spec[] = {
	OPT3("job", job),
	OPT3("spool-dir", spool_dir),
	OPT3("delta-policy", delta_policy),
	OPT3("cache-dir", cache_dir),
	OPT3("base-cache-dir", base_cache_dir),
	OPT("--base-cache-mib=%u", base_cache_mib, 0), OPT("base_cache_mib=%u", base_cache_mib, 0),
	OPT3("hotload-token-env", hotload_token_env),
	OPT("--hotload-max=%u", hotload_max, 0), OPT("hotload_max=%u", hotload_max, 0),
	OPT("--chunk-kib=%u", chunk_kib, 0), OPT("chunk_kib=%u", chunk_kib, 0),
	OPT("--cache-mib=%u", cache_mib, 0), OPT("cache_mib=%u", cache_mib, 0),
	OPT("--readahead-mib=%u", readahead_mib, 0), OPT("readahead_mib=%u", readahead_mib, 0),
	OPT("--readahead-mib=", readahead_set, 1), OPT("readahead_mib=", readahead_set, 1),
	OPT("--cache-size=%u", s3_cache_mib, 0), OPT("cache_size=%u", s3_cache_mib, 0),
	OPT("--base-every=%u", base_every, 0), OPT("base_every=%u", base_every, 0),
	OPT("--threads=%u", threads, 0), OPT("threads=%u", threads, 0),
	OPT("--list-ttl=%lf", list_ttl, 0), OPT("list_ttl=%lf", list_ttl, 0),
	OPT("--delta-max-ratio=%lf", delta_max_ratio, 0),
	OPT("delta_max_ratio=%lf", delta_max_ratio, 0),
	OPT("--default-ttl=%ld", default_ttl, 0), OPT("default_ttl=%ld", default_ttl, 0),
	OPT("--lora", lora, 1), OPT("lora", lora, 1),
	OPT("--gc-interval=%lf", gc_interval, 0), OPT("gc_interval=%lf", gc_interval, 0),
	OPT("--gc-interval=", gc_set, 1), OPT("gc_interval=", gc_set, 1),
	OPT("--gc-grace=%ld", gc_grace, 0), OPT("gc_grace=%ld", gc_grace, 0),
	OPT("--gc-grace=", gc_grace_set, 1), OPT("gc_grace=", gc_grace_set, 1),
	OPT("--insecure-tls", insecure_tls, 1),
	OPT3("fd-socket", fd_socket),
	OPT3("env-file", env_file),
	OPT3("metrics", metrics),
	OPT3("log-level", log_level),
	OPT("log_level=%s", log_level, 0),
	OPT("--shutdown-timeout=%lf", shutdown_timeout, 0),
	OPT("shutdown_timeout=%lf", shutdown_timeout, 0),
	OPT("--shutdown-timeout=", shutdown_timeout_set, 1),
	OPT("shutdown_timeout=", shutdown_timeout_set, 1),
	FUSE_OPT_KEY("-h", KEY_HELP),
	FUSE_OPT_KEY("--help", KEY_HELP),
	FUSE_OPT_KEY("-f", KEY_FOREGROUND),
	FUSE_OPT_KEY("-d", KEY_DEBUG),
	FUSE_OPT_KEY("debug", KEY_DEBUG),
	FUSE_OPT_KEY("ro", KEY_RO),
	FUSE_OPT_KEY("allow_other", KEY_ALLOW_OTHER),
	FUSE_OPT_KEY("allow_root", KEY_ALLOW_OTHER),
	FUSE_OPT_END
};

static void usage(const char *prog)
{
	printf("usage: %s [options] STORE MOUNTPOINT\n"
	       "       %s [options] --fd-socket=PATH STORE\n"
	       "\n"
	       "STORE is a directory (created if missing) or s3://BUCKET[/PREFIX].\n"
	       "MOUNTPOINT may be /dev/fd/N, a /dev/fuse descriptor mounted by someone\n"
	       "else (mount.fuse3 -o drop_privileges, ckptfs fd-mount).\n"
	       "Without -f the command returns once the mount answers (0) or with\n"
	       "the reason it does not (1). Long options take their value as\n"
	       "--name=VALUE or --name VALUE.\n"
	       "\n"
	       "  -f                     stay in the foreground (logs to stderr;\n"
	       "                         systemd notify when NOTIFY_SOCKET is set)\n"
	       "  -d                     FUSE debug output (implies -f)\n"
	       "  -o OPT[,OPT...]        FUSE options (allow_other, ro, ...) and any\n"
	       "                         option below written as name=value;\n"
	       "                         allow_other/allow_root imply default_permissions\n"
	       "  --job=ID               this mount's job (default: default)\n"
	       "  --delta-policy=P       auto (default) or never\n"
	       "  --base-every=N         start a new base after N deltas (default: off)\n"
	       "  --delta-max-ratio=F    new base when a delta stores > F of its size (0.5)\n"
	       "  --lora                 every sampler checkpoint is a LoRA adapter\n"
	       "  --default-ttl=SECONDS  TTL for new checkpoints (default: none)\n"
	       "  --chunk-kib=N          chunk size in KiB (default 4096)\n"
	       "  --cache-mib=N          decoded-chunk memory cache (default 256)\n"
	       "  --base-cache-dir=DIR   keep decoded base chunks in DIR (private,\n"
	       "                         0700): deltas written or read against a\n"
	       "                         base skip decoding it (default: off)\n"
	       "  --base-cache-mib=N     its size (default 8192)\n"
	       "  --list-ttl=SECONDS     how stale listings may be (default 1)\n"
	       "  --spool-dir=DIR        temp files for out-of-order writes ($TMPDIR)\n"
	       "  --readahead-mib=N      chunks decoded ahead of readers, in flight\n"
	       "                         at once (default 64; 0: off; at most half\n"
	       "                         of --cache-mib)\n"
	       "  --threads=N            encoder/upload threads (default: 3 per CPU)\n"
	       "  --gc-interval=SECONDS  periodic gc (default 600; 0 turns it off)\n"
	       "  --gc-grace=SECONDS     gc keeps unreferenced chunks this young (3600)\n"
	       "  --hotload-max=N        hotloads in flight at once (default 4)\n"
	       "  --hotload-token-env=V[,V...]  token variables deployments may\n"
	       "                         name besides CKPTFS_TOKEN_*\n"
	       "  --cache-dir=DIR        S3: local cache of immutable chunks\n"
	       "  --cache-size=MIB       S3: cache size (default 10240)\n"
	       "  --insecure-tls         S3: do not verify TLS certificates\n"
	       "  --fd-socket=PATH       serve the descriptor `ckptfs fd-mount` passes\n"
	       "                         on PATH (no MOUNTPOINT, no /dev/fuse needed)\n"
	       "  --env-file=FILE        NAME=VALUE lines put in the environment first\n"
	       "                         (S3 credentials from fstab; mode 0600)\n"
	       "  --shutdown-timeout=S   on SIGTERM, wait this long for files open for\n"
	       "                         writing to be closed and committed (30);\n"
	       "                         exit 3 if some had to be abandoned\n"
	       "  --metrics=[ADDR:]PORT  serve Prometheus metrics on /metrics\n"
	       "                         (ADDR defaults to 127.0.0.1; off by default)\n"
	       "  --log-level=L          error, warn, info (default) or debug\n",
	       prog, prog);
}

static int opt_proc(void *data, const char *arg, int key, struct fuse_args *out)
{
	struct mount_opts *o = data;

	(void)out;
	switch (key) {
	case FUSE_OPT_KEY_NONOPT:
		if (!o->store)
			return (o->store = strdup(arg)) ? 0 : -1;
		if (!o->mountpoint)
			return (o->mountpoint = strdup(arg)) ? 0 : -1;
		fprintf(stderr, "ckptfs: unexpected argument '%s'\n", arg);
		return -1;
	case KEY_HELP:
		o->help = 1;
		return 0;
	case KEY_FOREGROUND:
		o->foreground = 1;
		return 0;
	case KEY_DEBUG:
		o->debug = o->foreground = 1;
		return 1;	/* FUSE sees it too */
	case KEY_RO:
		o->read_only = 1;
		return 1;
	case KEY_ALLOW_OTHER:
		o->allow_other = 1;
		return 1;
	default:
		return 1;
	}
}

/* Undo mountinfo's octal escapes (\040 for a space, ...) in place. */
static void mountinfo_unescape(char *s)
{
	char *d = s;

	for (; *s; s++, d++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
		    s[3] >= '0' && s[3] <= '7') {
			*d = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
			s += 3;
		} else {
			*d = *s;
		}
	}
	*d = '\0';
}

/*
 * The type of the topmost mount at @path ("" when nothing is mounted
 * there). A bind mount or an emptyDir is a mount point too, and mounting
 * over one is what containers do; only our own type at the top matters.
 */
static void top_mount_type(const char *path, char *type, size_t len)
{
	char line[8192], mp[PATH_MAX], fstype[256];
	FILE *f = fopen("/proc/self/mountinfo", "r");

	type[0] = '\0';
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		const char *sep = strstr(line, " - ");

		if (!sep || sscanf(line, "%*s %*s %*s %*s %4095s", mp) != 1 ||
		    sscanf(sep + 3, "%255s", fstype) != 1)
			continue;
		mountinfo_unescape(mp);
		if (!strcmp(mp, path))
			snprintf(type, len, "%s", fstype);	/* later lines are on top */
	}
	fclose(f);
}

/* "/dev/fd/N" with N an open descriptor: its number, else -1. */
static int dev_fd_number(const char *mnt)
{
	char *end;
	long n;

	if (strncmp(mnt, "/dev/fd/", 8) || !mnt[8])
		return -1;
	n = strtol(mnt + 8, &end, 10);
	if (*end || n < 0 || n > INT_MAX)
		return -1;
	return (int)n;
}

static int check_mountpoint(const char *mnt, char *real)
{
	char type[256];
	struct stat sb;
	int fd = dev_fd_number(mnt);

	if (fd >= 0) {
		/* Already mounted by whoever opened /dev/fuse: nothing to check
		 * but that we hold the descriptor. */
		if (fcntl(fd, F_GETFD) < 0) {
			fprintf(stderr, "ckptfs: mountpoint %s: descriptor %d is not open\n",
				mnt, fd);
			return -1;
		}
		snprintf(real, PATH_MAX, "/dev/fd/%d", fd);
		return 0;
	}
	if (!realpath(mnt, real) || stat(real, &sb) < 0) {
		if (errno == ENOTCONN)
			fprintf(stderr, "ckptfs: mountpoint %s: %s (a mount whose daemon "
				"died; `fusermount3 -uz %s` frees it)\n", mnt, strerror(errno), mnt);
		else
			fprintf(stderr, "ckptfs: mountpoint %s: %s\n", mnt, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(sb.st_mode)) {
		fprintf(stderr, "ckptfs: mountpoint %s is not a directory\n", mnt);
		return -1;
	}
	top_mount_type(real, type, sizeof(type));
	if (!strcmp(type, "fuse.ckptfs")) {
		fprintf(stderr, "ckptfs: mountpoint %s is busy: already a live ckptfs mount "
			"(unmount it first: fusermount3 -u %s)\n", mnt, mnt);
		return -1;
	}
	if (access("/dev/fuse", R_OK | W_OK) < 0) {
		fprintf(stderr, "ckptfs: cannot open /dev/fuse: %s (load the fuse module; "
			"in a container pass --device /dev/fuse)\n", strerror(errno));
		return -1;
	}
	return 0;
}

/*
 * GNU long options take their value in the next argument too: rewrite
 * "--name VALUE" to "--name=VALUE" for every "--name=%..." template of
 * opt_spec, which fuse_opt then matches as before. Returns a new argv
 * (strings it made are in @made, freed by the caller) or NULL.
 */
static char **join_long_values(int argc, char **argv, int *argc_out, char ***made, int *nmade)
{
	char **out = calloc((size_t)argc + 1, sizeof(*out));
	int i, n = 0;

	*made = calloc((size_t)argc + 1, sizeof(**made));
	*nmade = 0;
	if (!out || !*made) {
		free(out);
		free(*made);
		return NULL;
	}
	for (i = 0; i < argc; i++) {
		const struct fuse_opt *t;
		int valued = 0;

		if (i > 0 && !strcmp(argv[i], "--")) {
			while (i < argc)
				out[n++] = argv[i++];
			break;
		}
		if (i > 0 && !strncmp(argv[i], "--", 2) && !strchr(argv[i], '=') && i + 1 < argc) {
			size_t len = strlen(argv[i]);

			for (t = opt_spec; t->templ; t++)
				if (!strncmp(t->templ, argv[i], len) && t->templ[len] == '=' &&
				    t->templ[len + 1] == '%')
					valued = 1;
		}
		if (valued) {
			char *j;

			if (asprintf(&j, "%s=%s", argv[i], argv[i + 1]) < 0) {
				while (*nmade)
					free((*made)[--*nmade]);
				free(*made);
				free(out);
				return NULL;
			}
			(*made)[(*nmade)++] = j;
			out[n++] = j;
			i++;
		} else {
			out[n++] = argv[i];
		}
	}
	*argc_out = n;
	return out;
}

/*
 * --env-file: NAME=VALUE lines (blank lines and # comments skipped) put in
 * the environment before the store is opened, so fstab and mount.fuse3
 * can give S3 credentials without showing them in ps. A secret readable by
 * others is refused rather than used.
 */
static int load_env_file(const char *path)
{
	char line[4096];
	struct stat sb;
	FILE *f = fopen(path, "r");
	int lineno = 0;

	if (!f || fstat(fileno(f), &sb) < 0) {
		fprintf(stderr, "ckptfs: --env-file %s: %s\n", path, strerror(errno));
		if (f)
			fclose(f);
		return -1;
	}
	if (sb.st_mode & 077) {
		fprintf(stderr, "ckptfs: --env-file %s is readable by others (mode %03o); "
			"chmod 600 it\n", path, (unsigned)(sb.st_mode & 0777));
		fclose(f);
		return -1;
	}
	while (fgets(line, sizeof(line), f)) {
		char *p = line, *eq, *end;

		lineno++;
		line[strcspn(line, "\r\n")] = '\0';
		while (*p == ' ' || *p == '\t')
			p++;
		if (!*p || *p == '#')
			continue;
		if (!strncmp(p, "export ", 7))
			p += 7;
		eq = strchr(p, '=');
		if (!eq || eq == p) {
			fprintf(stderr, "ckptfs: --env-file %s:%d: not NAME=VALUE\n", path, lineno);
			fclose(f);
			return -1;
		}
		*eq = '\0';
		end = eq + 1 + strlen(eq + 1);
		/* One level of matching quotes, as systemd's EnvironmentFile. */
		if (end - (eq + 1) >= 2 && (eq[1] == '"' || eq[1] == '\'') && end[-1] == eq[1]) {
			end[-1] = '\0';
			eq++;
		}
		if (setenv(p, eq + 1, 1) < 0) {
			fprintf(stderr, "ckptfs: --env-file %s:%d: %s\n", path, lineno, strerror(errno));
			fclose(f);
			return -1;
		}
	}
	fclose(f);
	return 0;
}

static int build_config(const struct mount_opts *o, struct fs_config *cfg)
{
	fs_config_defaults(cfg);
	if (o->job)
		cfg->job = o->job;
	if (o->chunk_kib)
		cfg->chunk_size = o->chunk_kib * 1024u;
	if (o->cache_mib)
		cfg->cache_bytes = (uint64_t)o->cache_mib << 20;
	cfg->base_cache_dir = o->base_cache_dir;
	cfg->base_cache_bytes = (uint64_t)o->base_cache_mib << 20;
	if (o->readahead_set)
		cfg->readahead_bytes = (uint64_t)o->readahead_mib << 20;
	if (o->list_ttl > 0)
		cfg->list_ttl = o->list_ttl;
	if (o->delta_max_ratio > 0)
		cfg->delta_max_ratio = o->delta_max_ratio;
	cfg->spool_dir = o->spool_dir;
	cfg->read_only = o->read_only;
	cfg->lora = o->lora;
	cfg->base_every = (int)o->base_every;
	cfg->default_ttl = o->default_ttl;
	cfg->threads = (int)o->threads;
	if (o->hotload_max)
		cfg->hotload_max = o->hotload_max > 1024 ? 1024 : (int)o->hotload_max;
	cfg->hotload_token_env = o->hotload_token_env;
	if (o->gc_set)
		cfg->gc_interval = o->gc_interval;
	if (o->gc_grace_set)
		cfg->gc_grace = o->gc_grace;
	if (cfg->gc_interval < 0 || cfg->gc_grace < 0) {
		fprintf(stderr, "ckptfs: --gc-interval and --gc-grace must be >= 0\n");
		return -1;
	}
	if (o->delta_policy) {
		if (!strcmp(o->delta_policy, "auto")) {
			cfg->delta_policy = DELTA_AUTO;
		} else if (!strcmp(o->delta_policy, "never")) {
			cfg->delta_policy = DELTA_NEVER;
		} else {
			fprintf(stderr, "ckptfs: --delta-policy must be auto or never\n");
			return -1;
		}
	}
	if (o->default_ttl < 0) {
		fprintf(stderr, "ckptfs: --default-ttl must be >= 0\n");
		return -1;
	}
	return 0;
}

/*
 * Clean shutdown. SIGTERM (or SIGINT, SIGHUP) starts draining: opens for
 * writing fail with EROFS, and the daemon waits up to --shutdown-timeout
 * for every file already open for writing to be released (commits happen
 * then, in fs_release) before it unmounts. The operations table is wrapped
 * here so the count is of FUSE requests, whatever src/fs does inside them.
 */
static struct {
	pthread_mutex_t lock;
	pthread_cond_t idle;
	int draining;
	long writers;		/* handles open for writing, not yet released */
	long busy;		/* flush/fsync requests being served */
	const struct fuse_operations *inner;
} drain = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, NULL };

static int opens_for_writing(int flags)
{
	return (flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC);
}

/* 0 and one more writer, or -EROFS (and its log line) when draining. */
static int drain_enter_writer(const char *what, const char *path)
{
	int rc = 0;

	pthread_mutex_lock(&drain.lock);
	if (drain.draining)
		rc = -EROFS;
	else
		drain.writers++;
	pthread_mutex_unlock(&drain.lock);
	if (rc)
		log_warn("%s %s: refused (EROFS), the mount is shutting down", what, path);
	return rc;
}

static void drain_leave(long *counter)
{
	pthread_mutex_lock(&drain.lock);
	if (--*counter == 0)
		pthread_cond_broadcast(&drain.idle);
	pthread_mutex_unlock(&drain.lock);
}

static int drain_open(const char *path, struct fuse_file_info *fi)
{
	int rc;

	if (!opens_for_writing(fi->flags))
		return drain.inner->open(path, fi);
	if ((rc = drain_enter_writer("open for writing", path)) < 0)
		return rc;
	rc = drain.inner->open(path, fi);
	if (rc < 0)
		drain_leave(&drain.writers);
	return rc;
}

static int drain_create(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	int rc = drain_enter_writer("create", path);

	if (rc < 0)
		return rc;
	rc = drain.inner->create(path, mode, fi);
	if (rc < 0)
		drain_leave(&drain.writers);
	return rc;
}

static int drain_release(const char *path, struct fuse_file_info *fi)
{
	/* libfuse passes the open's flags to release. */
	int writer = opens_for_writing(fi->flags);
	int rc;

	rc = drain.inner->release(path, fi);
	if (writer)
		drain_leave(&drain.writers);
	return rc;
}

static int drain_flush(const char *path, struct fuse_file_info *fi)
{
	int rc;

	pthread_mutex_lock(&drain.lock);
	drain.busy++;
	pthread_mutex_unlock(&drain.lock);
	rc = drain.inner->flush(path, fi);
	drain_leave(&drain.busy);
	return rc;
}

static int drain_fsync(const char *path, int datasync, struct fuse_file_info *fi)
{
	int rc;

	pthread_mutex_lock(&drain.lock);
	drain.busy++;
	pthread_mutex_unlock(&drain.lock);
	rc = drain.inner->fsync(path, datasync, fi);
	drain_leave(&drain.busy);
	return rc;
}

static const struct fuse_operations *drain_operations(void)
{
	static struct fuse_operations ops;

	drain.inner = ckfuse_metrics_wrap(ckfuse_operations());
	ops = *drain.inner;
	ops.open = drain_open;
	ops.create = drain_create;
	ops.release = drain_release;
	ops.flush = drain_flush;
	ops.fsync = drain_fsync;
	return &ops;
}

/*
 * Signals only write to a pipe; the shutdown thread does the rest, outside
 * signal context. A zero byte means "the loop ended by itself" (an external
 * unmount) and just ends the thread.
 */
static int sig_pipe[2] = { -1, -1 };
static pthread_t main_thread;
static atomic_int loop_done;

/*
 * PID 1 in a container (the image's ENTRYPOINT): every orphan of the
 * container is reparented to us and stays a zombie unless we reap it. Our
 * own child (fusermount3 in detach_mount) is waited for by its caller:
 * while one is in flight the reaper leaves all children alone, and the
 * caller reaps what it left once done. (A reaper already past its check
 * when the fork happens could still take that child: detach_mount then
 * fails with ECHILD and the shutdown stops the loop instead, as for any
 * failed unmount. Only a non-root PID 1 unmounts with fusermount3.)
 */
static volatile sig_atomic_t own_child_busy;

static void reap_orphans(int sig)
{
	int saved = errno;

	(void)sig;
	while (!own_child_busy && waitpid(-1, NULL, WNOHANG) > 0)
		;
	errno = saved;
}

static void on_signal(int sig)
{
	int saved = errno;
	char c = (char)sig;

	if (write(sig_pipe[1], &c, 1) < 0) {
		/* a full pipe already holds a wake-up */
	}
	errno = saved;
}

struct shutdown_ctx {
	struct fuse_session *se;
	double timeout;
	const char *mnt;
	int own_mount;		/* we mounted it (not a /dev/fd/N mount) */
};

/*
 * Unmount the way `fusermount3 -u -z` does from outside: the kernel first
 * hands the loop every request still queued (the releases of files just
 * closed), then ends the connection, and the loop returns by itself.
 */
static int detach_mount(const char *mnt)
{
	pid_t pid;
	int status, rc;

	if (geteuid() == 0)
		return umount2(mnt, MNT_DETACH) < 0 ? -errno : 0;
	own_child_busy = 1;
	pid = fork();
	if (pid < 0) {
		own_child_busy = 0;
		return -errno;
	}
	if (pid == 0) {
		execlp("fusermount3", "fusermount3", "-u", "-z", "--", mnt, (char *)NULL);
		_exit(127);
	}
	rc = waitpid(pid, &status, 0) < 0 ? -errno :
	     WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -EIO;
	own_child_busy = 0;
	if (getpid() == 1)
		reap_orphans(0);
	return rc;
}

static void *shutdown_thread(void *arg)
{
	struct shutdown_ctx *sc = arg;
	struct timespec deadline;
	char c = 0;
	long writers, busy;

	while (read(sig_pipe[0], &c, 1) < 0 && errno == EINTR)
		;
	if (c == 0)
		return NULL;
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += (time_t)sc->timeout;
	deadline.tv_nsec += (long)((sc->timeout - (double)(time_t)sc->timeout) * 1e9);
	if (deadline.tv_nsec >= 1000000000L) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
	ckfuse_notify("STOPPING=1\nSTATUS=draining: waiting for files open for writing");
	pthread_mutex_lock(&drain.lock);
	drain.draining = 1;
	log_info("signal %d: shutting down %s, %ld files open for writing, waiting up to %g s",
		 (int)c, sc->mnt, drain.writers, sc->timeout);
	while ((drain.writers > 0 || drain.busy > 0) &&
	       pthread_cond_timedwait(&drain.idle, &drain.lock, &deadline) != ETIMEDOUT)
		;
	writers = drain.writers;
	busy = drain.busy;
	pthread_mutex_unlock(&drain.lock);
	if (writers || busy)
		log_warn("shutdown timeout (%g s) reached with %ld files open for writing",
			 sc->timeout, writers);
	if (!writers && !busy && sc->own_mount) {
		int rc = detach_mount(sc->mnt), i;

		if (rc < 0)
			log_warn("unmount %s: %s; stopping the loop instead", sc->mnt,
				 strerror(-rc));
		/* The loop ends once the kernel has closed the connection. */
		for (i = 0; rc == 0 && i < 100 && !atomic_load(&loop_done); i++)
			usleep(100 * 1000);
		if (atomic_load(&loop_done))
			return NULL;
	}
	fuse_session_exit(sc->se);
	/*
	 * fuse_loop_mt's main thread sleeps in sem_wait until a signal
	 * interrupts it; repeat in case the first one lands just before it
	 * goes to sleep.
	 */
	while (!atomic_load(&loop_done)) {
		pthread_kill(main_thread, SIGTERM);
		usleep(100 * 1000);
	}
	return NULL;
}

static int install_signals(void)
{
	struct sigaction act = { 0 };

	if (pipe2(sig_pipe, O_CLOEXEC | O_NONBLOCK) < 0)
		return -errno;
	/* The reader blocks; only the signal handler's end must never block. */
	fcntl(sig_pipe[0], F_SETFL, 0);
	act.sa_handler = on_signal;
	sigemptyset(&act.sa_mask);
	if (sigaction(SIGTERM, &act, NULL) < 0 || sigaction(SIGINT, &act, NULL) < 0 ||
	    sigaction(SIGHUP, &act, NULL) < 0)
		return -errno;
	signal(SIGPIPE, SIG_IGN);
	if (getpid() == 1) {
		act.sa_handler = reap_orphans;
		act.sa_flags = SA_RESTART | SA_NOCLDSTOP;
		if (sigaction(SIGCHLD, &act, NULL) < 0)
			return -errno;
	}
	return 0;
}

static void restore_signals(void)
{
	signal(SIGTERM, SIG_DFL);
	signal(SIGINT, SIG_DFL);
	signal(SIGHUP, SIG_DFL);
}

/*
 * Readiness. Without -f the command forks; the parent waits on a pipe for
 * one message from the daemon: "0" once the mount answered a request, or
 * "1<reason>". With -f, systemd's notify protocol says the same.
 */
static int ready_fd = -1;

static void report_ready(int ok, const char *reason)
{
	char buf[512];

	if (ready_fd >= 0) {
		int n = snprintf(buf, sizeof(buf), "%d%s", ok ? 0 : 1, ok ? "" : reason);

		if (write(ready_fd, buf, (size_t)n) < 0) {
			/* the parent is gone: nobody to tell */
		}
		close(ready_fd);
		ready_fd = -1;
	}
	if (!ok) {
		snprintf(buf, sizeof(buf), "STATUS=failed: %s", reason);
		ckfuse_notify(buf);
	}
}

/* Parent: returns the command's exit status. Child: returns -1, with
 * ready_fd set, detached from the terminal. */
static int daemonize(void)
{
	int p[2], nul;
	pid_t pid;

	if (pipe2(p, O_CLOEXEC) < 0) {
		fprintf(stderr, "ckptfs: pipe: %s\n", strerror(errno));
		return 1;
	}
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		fprintf(stderr, "ckptfs: fork: %s\n", strerror(errno));
		return 1;
	}
	if (pid > 0) {
		char msg[512];
		ssize_t n, got = 0;
		int status;

		close(p[1]);
		while (got < (ssize_t)sizeof(msg) - 1 &&
		       ((n = read(p[0], msg + got, sizeof(msg) - 1 - (size_t)got)) > 0 ||
			(n < 0 && errno == EINTR)))
			got += n > 0 ? n : 0;
		msg[got] = '\0';
		if (got > 0 && msg[0] == '0')
			return 0;
		if (got > 0) {
			fprintf(stderr, "ckptfs: mount failed: %s\n", msg + 1);
			return 1;
		}
		waitpid(pid, &status, 0);
		fprintf(stderr, "ckptfs: the daemon exited before the mount was ready "
			"(status %d; see the system log)\n",
			WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
		return 1;
	}
	close(p[0]);
	ready_fd = p[1];
	setsid();
	if (chdir("/") < 0) {
		/* "/" always exists; nothing depends on the directory */
	}
	nul = open("/dev/null", O_RDWR);
	if (nul >= 0) {
		dup2(nul, 0);
		dup2(nul, 1);
		dup2(nul, 2);
		if (nul > 2)
			close(nul);
	}
	return -1;
}

struct probe_ctx {
	const char *path;	/* NULL: a descriptor mount, nothing to stat */
	char status[256];
};

/* The mount answers once a stat of its root does (served by the loop). */
static void *probe_thread(void *arg)
{
	struct probe_ctx *pc = arg;
	struct stat sb;
	char msg[300];

	if (pc->path && stat(pc->path, &sb) < 0) {
		snprintf(msg, sizeof(msg), "stat %s: %s", pc->path, strerror(errno));
		log_error("mount not ready: %s", msg);
		report_ready(0, msg);
		return NULL;
	}
	report_ready(1, NULL);
	snprintf(msg, sizeof(msg), "READY=1\nSTATUS=%s\nMAINPID=%ld", pc->status, (long)getpid());
	ckfuse_notify(msg);
	return NULL;
}

/* The disk cache of an S3 store keeps its own counters: mirror them. */
static void collect_cache(void *arg)
{
	struct store_cache_stats cs;

	if (store_cache_stats(arg, &cs) < 0)
		return;
	metrics_set(M_CACHE_HITS, (double)cs.hits, "disk", NULL, NULL);
	metrics_set(M_CACHE_MISSES, (double)cs.misses, "disk", NULL, NULL);
	metrics_set(M_CACHE_FETCHED_BYTES, (double)cs.inner_bytes, "disk", NULL, NULL);
	metrics_set(M_CACHE_BYTES, (double)cs.cached_bytes, "disk", NULL, NULL);
}

int ckfuse_mount_main(int argc, char **argv)
{
	struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
	struct mount_opts o = { 0 };
	struct store_options sopt = { 0 };
	struct fuse_loop_config *loop_cfg = NULL;
	struct shutdown_ctx sc = { 0 };
	/* Static: the probe thread is detached, and may still be waiting for
	 * its stat when a shutdown signal ends the loop. */
	static struct probe_ctx pc;
	pthread_t sd_tid, probe_tid;
	int sd_started = 0;
	struct fs_config cfg;
	struct store *st = NULL;
	struct ckfs *fs = NULL;
	struct fuse *fuse = NULL;
	char real[PATH_MAX], helper_mnt[PATH_MAX] = "", prog[64];
	char **jargv, **made = NULL;
	int rc = 1, jargc = 0, nmade = 0, fd_conn = -1, is_fd = 0;
	long abandoned = 0;
	struct ckfuse_metrics_server *msrv = NULL;

	/*
	 * Chunk buffers are megabytes and come and go on many threads: few
	 * arenas let freed ones be reused rather than kept per thread.
	 */
	mallopt(M_ARENA_MAX, 2);

	/* "ckptfs mount" reaches here with argv[0] "mount". */
	snprintf(prog, sizeof(prog), "%s", basename(argv[0]));
	if (!strcmp(prog, "mount"))
		snprintf(prog, sizeof(prog), "ckptfs mount");
	jargv = join_long_values(argc, argv, &jargc, &made, &nmade);
	if (!jargv) {
		fprintf(stderr, "ckptfs: out of memory\n");
		return 1;
	}
	args.argc = jargc;
	args.argv = jargv;
	if (fuse_opt_parse(&args, &o, opt_spec, opt_proc) < 0)
		goto out_args;
	if (o.help) {
		usage(prog);
		rc = 0;
		goto out_args;
	}
	if (!o.store || (!o.mountpoint && !o.fd_socket)) {
		usage(prog);
		goto out_args;
	}
	if (o.fd_socket && o.mountpoint) {
		fprintf(stderr, "ckptfs: --fd-socket takes the mount from the helper; "
			"give no MOUNTPOINT\n");
		goto out_args;
	}
	if (!o.shutdown_timeout_set)
		o.shutdown_timeout = 30;
	if (o.shutdown_timeout < 0) {
		fprintf(stderr, "ckptfs: --shutdown-timeout must be >= 0\n");
		goto out_args;
	}
	if (build_config(&o, &cfg) < 0)
		goto out_args;
	if (o.log_level) {
		static const char *const lv[] = { "error", "warn", "info", "debug" };
		int i;

		for (i = 0; i < 4 && strcmp(o.log_level, lv[i]); i++)
			;
		if (i == 4) {
			fprintf(stderr, "ckptfs: --log-level must be error, warn, info or debug\n");
			goto out_args;
		}
		log_set_level((enum log_level)i);
	}
	if (o.env_file && load_env_file(o.env_file) < 0)
		goto out_args;
	if (o.fd_socket) {
		int fd, waited = 0;

		/* Started beside the helper (a pod, a compose file), the daemon
		 * may come first: wait up to 30 s for the socket to appear. */
		while ((fd = ckfuse_fd_receive(o.fd_socket, &fd_conn, helper_mnt,
					       sizeof(helper_mnt))) < 0 &&
		       (fd == -ENOENT || fd == -ECONNREFUSED) && waited++ < 300)
			usleep(100 * 1000);
		if (fd < 0) {
			fprintf(stderr, "ckptfs: --fd-socket %s: %s\n", o.fd_socket,
				fd == -EPROTO ? "no descriptor from a ckptfs fd-mount helper"
					      : strerror(-fd));
			goto out_args;
		}
		snprintf(real, sizeof(real), "/dev/fd/%d", fd);
		is_fd = 1;
	} else {
		if (check_mountpoint(o.mountpoint, real) < 0)
			goto out_args;
		is_fd = dev_fd_number(real) >= 0;
	}
	sopt.create = 1;
	sopt.cache_dir = o.cache_dir;
	sopt.cache_bytes = (uint64_t)(o.s3_cache_mib ? o.s3_cache_mib : 10240) << 20;
	sopt.insecure_tls = o.insecure_tls;
	if (store_open(o.store, &sopt, &st) < 0) {
		fprintf(stderr, "ckptfs: cannot open store %s (see the log line above)\n", o.store);
		goto out_args;
	}
	if (strncmp(o.store, "s3://", 5))
		cfg.statfs_path = o.store;
	if (fs_new(st, &cfg, &fs) < 0) {
		fprintf(stderr, "ckptfs: cannot start on store %s\n", o.store);
		goto out_store;
	}
	/*
	 * Other users reach the mount only through allow_other (or
	 * allow_root); the kernel must then check the modes and owners getattr
	 * reports, or every local user could read, write, chmod and remove
	 * whatever the mount owner can.
	 */
	if (o.allow_other)
		fuse_opt_add_arg(&args, "-odefault_permissions");
	fuse_opt_add_arg(&args, "-ofsname=ckptfs");
	fuse_opt_add_arg(&args, "-osubtype=ckptfs");
	fuse = fuse_new(&args, drain_operations(), sizeof(struct fuse_operations), fs);
	if (!fuse)
		goto out_fs;
	if (fuse_mount(fuse, real) != 0) {
		fprintf(stderr, "ckptfs: cannot mount on %s\n", real);
		goto out_destroy;
	}
	if (!o.foreground) {
		int prc = daemonize();

		if (prc >= 0) {
			/* The parent: the daemon owns the mount now. */
			fuse_opt_free_args(&args);
			_exit(prc);
		}
	}
	/* Errors until here went to the terminal; the daemon's go to syslog. */
	if (!o.foreground)
		log_use_syslog(1);
	/* Threads only now: they would not survive the daemon's fork. */
	if (fs_start(fs) < 0) {
		log_error("cannot start worker threads");
		report_ready(0, "cannot start worker threads");
		goto out_unmount;
	}
	main_thread = pthread_self();
	sc.se = fuse_get_session(fuse);
	sc.timeout = o.shutdown_timeout;
	sc.mnt = is_fd && helper_mnt[0] ? helper_mnt : real;
	sc.own_mount = !is_fd;
	if (install_signals() < 0 || pthread_create(&sd_tid, NULL, shutdown_thread, &sc) != 0) {
		log_error("cannot set up signal handling");
		report_ready(0, "cannot set up signal handling");
		goto out_signals;
	}
	sd_started = 1;
	metrics_add_collector(collect_cache, st);
	if (o.metrics && ckfuse_metrics_start(o.metrics, &msrv) < 0) {
		report_ready(0, "cannot serve --metrics (see the log)");
		goto out_signals;
	}
	log_info("mounted %s on %s (job %s, session %s)", o.store, sc.mnt, cfg.job,
		 fs_session(fs));

	loop_cfg = fuse_loop_cfg_create();
	if (!loop_cfg) {
		report_ready(0, "out of memory");
		goto out_signals;
	}
	fuse_loop_cfg_set_clone_fd(loop_cfg, 0);
	fuse_loop_cfg_set_max_threads(loop_cfg, 16);
	/* A descriptor mount's path may be in another mount namespace: the
	 * kernel queues requests until the loop reads them, so serving starts
	 * with the loop. */
	pc.path = is_fd ? NULL : real;
	snprintf(pc.status, sizeof(pc.status), "serving %s on %s", o.store, sc.mnt);
	if (pthread_create(&probe_tid, NULL, probe_thread, &pc) != 0) {
		report_ready(0, "cannot start the readiness probe");
		goto out_loop;
	}
	pthread_detach(probe_tid);
	rc = fuse_loop_mt(fuse, loop_cfg);
	rc = rc == 0 ? 0 : 1;
out_loop:
	atomic_store(&loop_done, 1);
	fuse_loop_cfg_destroy(loop_cfg);
	log_info("unmounting %s", sc.mnt);

out_signals:
	if (sd_started) {
		char zero = 0;

		if (write(sig_pipe[1], &zero, 1) < 0) {
			/* the pipe is full of signals: the thread is awake anyway */
		}
		pthread_join(sd_tid, NULL);
	}
	restore_signals();
	ckfuse_metrics_stop(msrv);
	metrics_remove_collector(collect_cache, st);
	/* Handles still open for writing now never get their release (the
	 * loop is over): fs_free drops them without committing anything of
	 * them (fs->open_handles). */
	pthread_mutex_lock(&drain.lock);
	abandoned = drain.writers;
	pthread_mutex_unlock(&drain.lock);
	if (abandoned > 0) {
		log_error("shutdown abandoned %ld files open for writing; none of them was "
			  "committed (exit status %d)", abandoned, EXIT_ABANDONED);
		if (rc == 0)
			rc = EXIT_ABANDONED;
	}
out_unmount:
	fuse_unmount(fuse);
out_destroy:
	fuse_destroy(fuse);
out_fs:
	fs_free(fs);
out_store:
	store_free(st);
out_args:
	if (fd_conn >= 0)
		close(fd_conn);		/* tells the fd-mount helper to unmount */
	fuse_opt_free_args(&args);
	while (nmade)
		free(made[--nmade]);
	free(made);
	free(jargv);
	free(o.store);
	free(o.mountpoint);
	free(o.job);
	free(o.spool_dir);
	free(o.delta_policy);
	free(o.cache_dir);
	free(o.base_cache_dir);
	free(o.hotload_token_env);
	free(o.fd_socket);
	free(o.env_file);
	free(o.metrics);
	free(o.log_level);
	return rc;
}
