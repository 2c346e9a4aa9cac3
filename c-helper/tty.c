/*
 * Terminals and the attach socket.
 *
 * With --tty the container gets a pty of its own devpts instance. The
 * child opens that instance's ptmx through the fd of /dev/pts and gets the
 * peer with TIOCGPTPEER. There is no lookup of /dev/pts/N, which the
 * container could have replaced (CVE-2025-52565). The child sets the window
 * size before the exec and makes the peer its controlling terminal. The
 * master goes to the monitor over a socketpair with SCM_RIGHTS, and no fd
 * of the caller's terminal reaches the container.
 */
#define _GNU_SOURCE
#include "spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

#ifndef TIOCGPTPEER
#define TIOCGPTPEER _IO('T', 0x41)   /* Linux 4.13 */
#endif

/* Open /dev/pts of the current root; it must be a devpts mount. */
static int open_devpts(struct hutch_error *err)
{
	cleanup_fd int dev = open("/dev", O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	struct statfs fs;
	int pts;

	if (dev < 0)
		return err_sys(err, errno, "open", "/dev");
	pts = openat(dev, "pts", O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (pts < 0)
		return err_sys(err, errno, "open", "/dev/pts");
	if (fstatfs(pts, &fs) < 0 || fs.f_type != DEVPTS_SUPER_MAGIC) {
		close(pts);
		return err_msg(err, "open `/dev/pts`: not a devpts mount");
	}
	return pts;
}

int open_pty(const struct spawn_plan *plan, int *master, int *peer, struct hutch_error *err)
{
	struct winsize size = { .ws_row = plan->tty_rows, .ws_col = plan->tty_cols };
	cleanup_fd int pts = open_devpts(err);
	cleanup_fd int ptmx = -1;
	struct stat st;
	int unlock = 0;
	int fd;

	if (pts < 0)
		return -1;
	ptmx = openat(pts, "ptmx", O_RDWR | O_NOCTTY | O_NOFOLLOW | O_CLOEXEC);
	if (ptmx < 0)
		return err_sys(err, errno, "open", "/dev/pts/ptmx");
	if (fstat(ptmx, &st) < 0)
		return err_sys(err, errno, "fstat", "/dev/pts/ptmx");
	if (!S_ISCHR(st.st_mode) || major(st.st_rdev) != 5 || minor(st.st_rdev) != 2)
		return err_msg(err, "open `/dev/pts/ptmx`: not the character device 5:2");
	if (ioctl(ptmx, TIOCSPTLCK, &unlock) < 0)
		return err_sys(err, errno, "ioctl TIOCSPTLCK", "/dev/pts/ptmx");
	fd = ioctl(ptmx, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (fd < 0)
		return err_sys(err, errno, "ioctl TIOCGPTPEER", "/dev/pts/ptmx");
	/* Before the exec, so that the program's first TIOCGWINSZ already returns it. */
	if (ioctl(fd, TIOCSWINSZ, &size) < 0) {
		err_sys(err, errno, "ioctl TIOCSWINSZ", "pty");
		close(fd);
		return -1;
	}
	*peer = fd;
	*master = ptmx;
	ptmx = -1;
	return 0;
}

int make_controlling_terminal(int peer, struct hutch_error *err)
{
	if (setsid() < 0)
		return err_sys(err, errno, "setsid", NULL);
	if (ioctl(peer, TIOCSCTTY, 0) < 0)
		return err_sys(err, errno, "ioctl TIOCSCTTY", "pty");
	for (int fd = 0; fd <= 2; fd++) {
		if (dup2(peer, fd) < 0)
			return err_sys(err, errno, "dup2", "pty");
	}
	if (peer > 2)
		close(peer);
	return 0;
}

int send_fd(int sock, int fd, struct hutch_error *err)
{
	char byte = 'm';
	struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
	union {
		struct cmsghdr header;
		char space[CMSG_SPACE(sizeof(int))];
	} control = { 0 };
	struct msghdr msg = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = control.space,
		.msg_controllen = sizeof(control.space),
	};
	struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);

	cmsg->cmsg_level = SOL_SOCKET;
	cmsg->cmsg_type = SCM_RIGHTS;
	cmsg->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cmsg), &fd, sizeof(int));
	while (sendmsg(sock, &msg, MSG_NOSIGNAL) < 0) {
		if (errno != EINTR)
			return err_sys(err, errno, "sendmsg", "pty master");
	}
	return 0;
}

/* Receive one fd sent by send_fd; returns it (CLOEXEC) or -1. */
int receive_fd(int sock, struct hutch_error *err)
{
	char byte;
	struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
	union {
		struct cmsghdr header;
		char space[CMSG_SPACE(sizeof(int))];
	} control = { 0 };
	struct msghdr msg = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = control.space,
		.msg_controllen = sizeof(control.space),
	};
	struct cmsghdr *cmsg;
	ssize_t n;
	int fd;

	do
		n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return err_sys(err, errno, "recvmsg", "pty master");
	cmsg = CMSG_FIRSTHDR(&msg);
	if (n != 1 || cmsg == NULL || cmsg->cmsg_level != SOL_SOCKET ||
	    cmsg->cmsg_type != SCM_RIGHTS || cmsg->cmsg_len != CMSG_LEN(sizeof(int)))
		return err_msg(err, "recvmsg `pty master`: the container process sent no fd");
	memcpy(&fd, CMSG_DATA(cmsg), sizeof(int));
	return fd;
}

int create_attach_socket(const char *path, struct hutch_error *err)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	cleanup_fd int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	mode_t old_umask;
	int rc;
	int result;

	if (fd < 0)
		return err_sys(err, errno, "socket", path);
	/* The option parser checked that PATH fits in sun_path. */
	strcpy(addr.sun_path, path);
	/* 0177 rather than 077: the socket is created 0600, with no window at a wider mode. */
	old_umask = umask(0177);
	rc = bind(fd, (struct sockaddr *)&addr, sizeof(addr));
	umask(old_umask);
	if (rc < 0)
		return err_sys(err, errno, "bind", path);
	if (listen(fd, 1) < 0) {
		err_sys(err, errno, "listen", path);
		unlink(path);
		return -1;
	}
	result = fd;
	fd = -1;
	return result;
}
