/*
 * mount.c: `ckptfs mount [options] STORE MOUNTPOINT` and `mount.ckptfs`.
 *
 * options -> config -> store -> fs -> fuse mount -> loop -> unwind, in
 * that order and back; no filesystem logic here. Options are parsed with
 * libfuse's fuse_opt so each can be given as --name=value or, for fstab,
 * inside -o (name=value); unknown -o options pass through to FUSE.
 */
#define FUSE_USE_VERSION 312
#include "fuse/ckfuse.h"

#include <errno.h>
#include <fuse.h>
#include <limits.h>
#include <malloc.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs/fs.h"
#include "store/store.h"
#include "util/log.h"

struct mount_opts {
	char *store;
	char *mountpoint;
	char *job;
	char *spool_dir;
	char *delta_policy;
	char *cache_dir;
	char *hotload_token_env;
	unsigned chunk_kib;
	unsigned cache_mib;
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

static const struct fuse_opt opt_spec[] = {
	OPT3("job", job),
	OPT3("spool-dir", spool_dir),
	OPT3("delta-policy", delta_policy),
	OPT3("cache-dir", cache_dir),
	OPT3("hotload-token-env", hotload_token_env),
	OPT("--hotload-max=%u", hotload_max, 0), OPT("hotload_max=%u", hotload_max, 0),
	OPT("--chunk-kib=%u", chunk_kib, 0), OPT("chunk_kib=%u", chunk_kib, 0),
	OPT("--cache-mib=%u", cache_mib, 0), OPT("cache_mib=%u", cache_mib, 0),
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
	       "\n"
	       "STORE is a directory (created if missing) or s3://BUCKET[/PREFIX].\n"
	       "\n"
	       "  -f                     stay in the foreground (logs to stderr)\n"
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
	       "  --list-ttl=SECONDS     how stale listings may be (default 1)\n"
	       "  --spool-dir=DIR        temp files for out-of-order writes ($TMPDIR)\n"
	       "  --threads=N            encoder/upload threads (default: 3 per CPU)\n"
	       "  --gc-interval=SECONDS  periodic gc (default 600; 0 turns it off)\n"
	       "  --gc-grace=SECONDS     gc keeps unreferenced chunks this young (3600)\n"
	       "  --hotload-max=N        hotloads in flight at once (default 4)\n"
	       "  --hotload-token-env=V[,V...]  token variables deployments may\n"
	       "                         name besides CKPTFS_TOKEN_*\n"
	       "  --cache-dir=DIR        S3: local cache of immutable chunks\n"
	       "  --cache-size=MIB       S3: cache size (default 10240)\n"
	       "  --insecure-tls         S3: do not verify TLS certificates\n",
	       prog);
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

/* Is @path already a mount point? (/proc/self/mountinfo field 5) */
static int is_mounted(const char *path)
{
	char line[8192], mp[PATH_MAX];
	FILE *f = fopen("/proc/self/mountinfo", "r");
	int found = 0;

	if (!f)
		return 0;
	while (!found && fgets(line, sizeof(line), f))
		if (sscanf(line, "%*s %*s %*s %*s %4095s", mp) == 1 && !strcmp(mp, path))
			found = 1;
	fclose(f);
	return found;
}

static int check_mountpoint(const char *mnt, char *real)
{
	struct stat sb;

	if (!realpath(mnt, real) || stat(real, &sb) < 0) {
		fprintf(stderr, "ckptfs: mountpoint %s: %s\n", mnt, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(sb.st_mode)) {
		fprintf(stderr, "ckptfs: mountpoint %s is not a directory\n", mnt);
		return -1;
	}
	if (is_mounted(real)) {
		fprintf(stderr, "ckptfs: mountpoint %s is busy (already mounted)\n", mnt);
		return -1;
	}
	if (access("/dev/fuse", R_OK | W_OK) < 0) {
		fprintf(stderr, "ckptfs: cannot open /dev/fuse: %s (load the fuse module; "
			"in a container pass --device /dev/fuse)\n", strerror(errno));
		return -1;
	}
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

int ckfuse_mount_main(int argc, char **argv)
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct mount_opts o = { 0 };
	struct store_options sopt = { 0 };
	struct fuse_loop_config *loop_cfg = NULL;
	struct fs_config cfg;
	struct store *st = NULL;
	struct ckfs *fs = NULL;
	struct fuse *fuse = NULL;
	char real[PATH_MAX];
	int rc = 1;

	/*
	 * Chunk buffers are megabytes and come and go on many threads: few
	 * arenas let freed ones be reused rather than kept per thread.
	 */
	mallopt(M_ARENA_MAX, 2);

	if (fuse_opt_parse(&args, &o, opt_spec, opt_proc) < 0)
		goto out_args;
	if (o.help) {
		usage(argv[0]);
		rc = 0;
		goto out_args;
	}
	if (!o.store || !o.mountpoint) {
		usage(argv[0]);
		goto out_args;
	}
	if (build_config(&o, &cfg) < 0 || check_mountpoint(o.mountpoint, real) < 0)
		goto out_args;
	if (!o.foreground)
		log_use_syslog(1);

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
	fuse = fuse_new(&args, ckfuse_operations(), sizeof(struct fuse_operations), fs);
	if (!fuse)
		goto out_fs;
	if (fuse_mount(fuse, real) != 0) {
		fprintf(stderr, "ckptfs: cannot mount on %s\n", real);
		goto out_destroy;
	}
	if (fuse_daemonize(o.foreground) != 0)
		goto out_unmount;
	/* Threads only now: they would not survive the daemon's fork. */
	if (fs_start(fs) < 0) {
		log_error("cannot start worker threads");
		goto out_unmount;
	}
	if (fuse_set_signal_handlers(fuse_get_session(fuse)) != 0)
		goto out_unmount;
	log_info("mounted %s on %s (job %s, session %s)", o.store, real, cfg.job,
		 fs_session(fs));

	loop_cfg = fuse_loop_cfg_create();
	if (!loop_cfg)
		goto out_signals;
	fuse_loop_cfg_set_clone_fd(loop_cfg, 0);
	fuse_loop_cfg_set_max_threads(loop_cfg, 16);
	rc = fuse_loop_mt(fuse, loop_cfg);
	/* libfuse's signal handlers report the signal that ended the loop;
	 * SIGINT, SIGTERM and SIGHUP are the clean way to stop. */
	rc = (rc == 0 || rc == SIGINT || rc == SIGTERM || rc == SIGHUP) ? 0 : 1;
	fuse_loop_cfg_destroy(loop_cfg);
	log_info("unmounting %s", real);

out_signals:
	fuse_remove_signal_handlers(fuse_get_session(fuse));
out_unmount:
	fuse_unmount(fuse);
out_destroy:
	fuse_destroy(fuse);
out_fs:
	fs_free(fs);
out_store:
	store_free(st);
out_args:
	fuse_opt_free_args(&args);
	free(o.store);
	free(o.mountpoint);
	free(o.job);
	free(o.spool_dir);
	free(o.delta_policy);
	free(o.cache_dir);
	free(o.hotload_token_env);
	return rc;
}
