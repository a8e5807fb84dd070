/*
 * main.c: the ckptfs command: dispatch to mount (FUSE) or to the offline
 * commands (no FUSE). Invoked as mount.ckptfs, it mounts (for fstab).
 */
#include <libgen.h>
#include <stdio.h>
#include <string.h>

#include "cli/admin.h"
#include "cli/transfer.h"
#include "fuse/ckfuse.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: ckptfs COMMAND ...\n"
		"\n"
		"  ckptfs mount [options] STORE MOUNTPOINT   run the filesystem (-f: foreground)\n"
		"  ckptfs fd-mount --socket PATH MOUNTPOINT  privileged half of an unprivileged\n"
		"                                            mount (mount --fd-socket PATH STORE)\n"
		"  ckptfs fsck STORE                         verify every manifest and chunk\n"
		"  ckptfs gc [--dry-run] [--grace S] STORE   reclaim unreferenced data\n"
		"  ckptfs stat [--job J] [--json] STORE      checkpoints, bytes, ratios, totals\n"
		"  ckptfs put STORE[/JOB]/sampler/NAME FILE_OR_DIR...  store a checkpoint\n"
		"                                            (no mount needed; also state/NAME)\n"
		"  ckptfs get STORE[/JOB]/sampler/NAME DIR   fetch a checkpoint's exact bytes\n"
		"  ckptfs ls STORE[/JOB]                     the checkpoints.jsonl view\n"
		"  ckptfs cat STORE[/JOB]/sampler/NAME/FILE  a committed file to stdout\n"
		"  ckptfs --version | --help\n"
		"\n"
		"STORE is a directory or s3://BUCKET[/PREFIX]. `ckptfs mount --help` lists\n"
		"the mount options. See ckptfs(8).\n");
}

int main(int argc, char **argv)
{
	const char *prog = basename(argv[0]);

	if (!strcmp(prog, "mount.ckptfs"))
		return ckfuse_mount_main(argc, argv);
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V")) {
		printf("ckptfs %s\n", CKPTFS_VERSION);
		return 0;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "mount"))
		return ckfuse_mount_main(argc - 1, argv + 1);
	if (!strcmp(argv[1], "fd-mount"))
		return ckfuse_fd_mount_main(argc - 1, argv + 1);
	if (!strcmp(argv[1], "fsck"))
		return admin_fsck_main(argc - 1, argv + 1);
	if (!strcmp(argv[1], "stat"))
		return admin_stat_main(argc - 1, argv + 1);
	if (!strcmp(argv[1], "gc"))
		return admin_gc_main(argc - 1, argv + 1);
	if (!strcmp(argv[1], "put"))
		return xfer_put_main(argc - 1, argv + 1);
	if (!strcmp(argv[1], "get"))
		return xfer_get_main(argc - 1, argv + 1);
	if (!strcmp(argv[1], "ls"))
		return xfer_ls_main(argc - 1, argv + 1);
	if (!strcmp(argv[1], "cat"))
		return xfer_cat_main(argc - 1, argv + 1);
	/* mount.fuse3 (`mount -t fuse.ckptfs`, fstab) runs "ckptfs STORE
	 * MOUNTPOINT -o OPTS": no command word, a store first. */
	if (argc >= 3 && argv[1][0] != '-')
		return ckfuse_mount_main(argc, argv);
	fprintf(stderr, "ckptfs: unknown command '%s'\n", argv[1]);
	usage(stderr);
	return 2;
}
