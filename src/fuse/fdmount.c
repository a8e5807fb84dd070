/*
 * fdmount.c: mounts served from a descriptor someone else opened.
 *
 * `ckptfs fd-mount` is the privileged half: it opens /dev/fuse, mounts it
 * with mount(2) (fd=N) and hands the descriptor over a Unix socket
 * (SCM_RIGHTS) to `ckptfs mount --fd-socket`, the unprivileged half, which
 * then needs neither /dev/fuse nor CAP_SYS_ADMIN. The helper keeps the
 * connection open and unmounts when it closes, i.e. when the daemon exits,
 * so a dead daemon never leaves a mount behind that answers ENOTCONN.
 *
 * Also the systemd notify datagram (sd_notify without libsystemd).
 */
#include "fuse/ckfuse.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* What the helper sends with the descriptor: a tag and its mount point. */
#define FDMSG_TAG "ckptfs-fd1 "

static int unix_addr(const char *path, struct sockaddr_un *sa, socklen_t *len)
{
	size_t n = strlen(path);

	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (n == 0 || n >= sizeof(sa->sun_path))
		return -ENAMETOOLONG;
	memcpy(sa->sun_path, path, n);
	/* systemd's convention: a leading '@' names the abstract namespace. */
	if (path[0] == '@')
		sa->sun_path[0] = '\0';
	*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
	return 0;
}

int ckfuse_notify(const char *msg)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa;
	socklen_t len;
	int fd, rc = 0;

	if (!path || !*path)
		return 0;
	if (unix_addr(path, &sa, &len) < 0)
		return -EINVAL;
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&sa, len) < 0)
		rc = -errno;
	close(fd);
	return rc;
}

int ckfuse_fd_receive(const char *sock_path, int *conn_out, char *mnt, size_t mnt_len)
{
	struct sockaddr_un sa;
	socklen_t len;
	char buf[PATH_MAX + sizeof(FDMSG_TAG)];
	char cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { buf, sizeof(buf) - 1 };
	struct msghdr mh = { 0 };
	struct cmsghdr *cm;
	ssize_t n;
	int s, fd = -1, err;

	if ((err = unix_addr(sock_path, &sa, &len)) < 0)
		return err;
	s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return -errno;
	if (connect(s, (struct sockaddr *)&sa, len) < 0) {
		err = -errno;
		close(s);
		return err;
	}
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = cbuf;
	mh.msg_controllen = sizeof(cbuf);
	do
		n = recvmsg(s, &mh, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		err = -errno;
		close(s);
		return err;
	}
	for (cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm))
		if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS &&
		    cm->cmsg_len == CMSG_LEN(sizeof(int)))
			memcpy(&fd, CMSG_DATA(cm), sizeof(int));
	buf[n] = '\0';
	if (fd < 0 || strncmp(buf, FDMSG_TAG, strlen(FDMSG_TAG))) {
		if (fd >= 0)
			close(fd);
		close(s);
		return -EPROTO;
	}
	snprintf(mnt, mnt_len, "%s", buf + strlen(FDMSG_TAG));
	/* libfuse reads the descriptor from every worker thread: a plain
	 * blocking fd that survives the daemon's fork, not close-on-exec. */
	fcntl(fd, F_SETFD, 0);
	*conn_out = s;
	return fd;
}

static volatile sig_atomic_t helper_stop;

static void helper_signal(int sig)
{
	(void)sig;
	helper_stop = 1;
}

static void fd_mount_usage(FILE *f)
{
	fprintf(f,
		"usage: ckptfs fd-mount [options] MOUNTPOINT\n"
		"\n"
		"Privileged half of an unprivileged mount: opens /dev/fuse, mounts it on\n"
		"MOUNTPOINT (nosuid,nodev,default_permissions,allow_other), passes the\n"
		"descriptor to the first `ckptfs mount --fd-socket PATH` that connects and\n"
		"unmounts when that daemon exits.\n"
		"\n"
		"  --socket PATH   Unix socket to listen on (required)\n"
		"  --uid N         owner of the socket and of the mount (user_id; default 0)\n"
		"  --gid N         group of the socket and of the mount (group_id; default 0)\n"
		"  --ro            mount read-only\n");
}

int ckfuse_fd_mount_main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "uid", required_argument, NULL, 'u' },
		{ "gid", required_argument, NULL, 'g' },
		{ "ro", no_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	const char *sock_path = NULL;
	unsigned long uid = 0, gid = 0;
	unsigned long mflags = MS_NOSUID | MS_NODEV;
	char real[PATH_MAX], opts[256], msg[PATH_MAX + sizeof(FDMSG_TAG)];
	char cbuf[CMSG_SPACE(sizeof(int))] = { 0 };
	struct sockaddr_un sa;
	struct sigaction act = { 0 };
	struct stat sb;
	socklen_t len;
	int c, fuse_fd = -1, lsock = -1, conn = -1, rc = 1;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", lopts, NULL)) != -1) {
		switch (c) {
		case 's': sock_path = optarg; break;
		case 'u': uid = strtoul(optarg, NULL, 10); break;
		case 'g': gid = strtoul(optarg, NULL, 10); break;
		case 'r': mflags |= MS_RDONLY; break;
		case 'h': fd_mount_usage(stdout); return 0;
		default: fd_mount_usage(stderr); return 2;
		}
	}
	if (!sock_path || optind != argc - 1) {
		fd_mount_usage(stderr);
		return 2;
	}
	if (!realpath(argv[optind], real) || stat(real, &sb) < 0 || !S_ISDIR(sb.st_mode)) {
		fprintf(stderr, "ckptfs fd-mount: mountpoint %s: %s\n", argv[optind],
			errno ? strerror(errno) : "not a directory");
		return 1;
	}
	if (unix_addr(sock_path, &sa, &len) < 0) {
		fprintf(stderr, "ckptfs fd-mount: socket path %s is too long\n", sock_path);
		return 2;
	}

	/* Listen before mounting: a daemon started next to us may connect at once. */
	lsock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (sock_path[0] != '@')
		unlink(sock_path);
	if (lsock < 0 || bind(lsock, (struct sockaddr *)&sa, len) < 0 || listen(lsock, 1) < 0) {
		fprintf(stderr, "ckptfs fd-mount: socket %s: %s\n", sock_path, strerror(errno));
		goto out;
	}
	/* Only the daemon's user may take the descriptor: whoever holds it
	 * serves (and so decides) every byte of the mount. */
	if (sock_path[0] != '@' &&
	    (chown(sock_path, (uid_t)uid, (gid_t)gid) < 0 || chmod(sock_path, 0600) < 0)) {
		fprintf(stderr, "ckptfs fd-mount: socket %s: %s\n", sock_path, strerror(errno));
		goto out;
	}

	fuse_fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
	if (fuse_fd < 0) {
		fprintf(stderr, "ckptfs fd-mount: cannot open /dev/fuse: %s\n", strerror(errno));
		goto out;
	}
	snprintf(opts, sizeof(opts),
		 "fd=%d,rootmode=%o,user_id=%lu,group_id=%lu,default_permissions,allow_other",
		 fuse_fd, (unsigned)(sb.st_mode & S_IFMT), uid, gid);
	if (mount("ckptfs", real, "fuse.ckptfs", mflags, opts) < 0) {
		fprintf(stderr, "ckptfs fd-mount: mount on %s: %s\n", real, strerror(errno));
		goto out;
	}

	act.sa_handler = helper_signal;
	sigaction(SIGTERM, &act, NULL);
	sigaction(SIGINT, &act, NULL);
	signal(SIGPIPE, SIG_IGN);
	fprintf(stderr, "ckptfs fd-mount: mounted %s, waiting on %s\n", real, sock_path);

	while (!helper_stop && conn < 0) {
		struct pollfd p = { lsock, POLLIN, 0 };

		if (poll(&p, 1, -1) > 0)
			conn = accept4(lsock, NULL, NULL, SOCK_CLOEXEC);
	}
	if (conn >= 0) {
		struct iovec iov = { msg, 0 };
		struct msghdr mh = { 0 };
		struct cmsghdr *cm;

		iov.iov_len = (size_t)snprintf(msg, sizeof(msg), FDMSG_TAG "%s", real);
		mh.msg_iov = &iov;
		mh.msg_iovlen = 1;
		mh.msg_control = cbuf;
		mh.msg_controllen = sizeof(cbuf);
		cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &fuse_fd, sizeof(int));
		if (sendmsg(conn, &mh, MSG_NOSIGNAL) < 0) {
			fprintf(stderr, "ckptfs fd-mount: sending the descriptor: %s\n",
				strerror(errno));
		} else {
			char b;

			/* The daemon has it; our copy would keep a dead mount alive. */
			close(fuse_fd);
			fuse_fd = -1;
			fprintf(stderr, "ckptfs fd-mount: descriptor handed over\n");
			while (!helper_stop) {
				ssize_t r = read(conn, &b, 1);

				if (r == 0 || (r < 0 && errno != EINTR))
					break;
			}
			rc = 0;
		}
	}
	if (umount2(real, MNT_DETACH) < 0)
		fprintf(stderr, "ckptfs fd-mount: unmount %s: %s\n", real, strerror(errno));
	else
		fprintf(stderr, "ckptfs fd-mount: unmounted %s\n", real);
out:
	if (conn >= 0)
		close(conn);
	if (fuse_fd >= 0)
		close(fuse_fd);
	if (lsock >= 0) {
		close(lsock);
		if (sock_path[0] != '@')
			unlink(sock_path);
	}
	return rc;
}
