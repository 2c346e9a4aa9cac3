/*
 * hutch-cgroup's process hygiene: the steps at entry, the declared fds that
 * reach hutch-spawn, and the verified drop to the real ids before the exec.
 *
 * An administrator may install hutch-cgroup setuid root, so any local user
 * can start it with any argv, environment, fds, signal dispositions and
 * rlimits. Setuid mode is decided once, at entry, from the ids the kernel
 * gave the process, and kept in struct caller.
 */
#define _GNU_SOURCE
#include "cgroup.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/fsuid.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/*
 * Reject a setuid start with any LD_ variable in the original environment.
 * ld.so has already removed the unsafe ones from environ for a setuid
 * program (glibc's secure mode), so this reads /proc/self/environ, which
 * still shows the strings the caller passed to execve.
 */
static int reject_loader_variables(struct hutch_error *err)
{
	cleanup_fd int fd = open("/proc/self/environ", O_RDONLY | O_CLOEXEC);
	char name[65];
	size_t name_len = 0;  /* bytes of the current entry seen so far, up to sizeof(name) - 1 */
	bool in_name = true;  /* still before the first '=' of the current entry */
	char buf[4096];
	ssize_t n;

	if (fd < 0)
		return err_sys(err, errno, "open", "/proc/self/environ");
	while ((n = read_retry(fd, buf, sizeof(buf))) > 0) {
		for (ssize_t i = 0; i < n; i++) {
			char c = buf[i];

			if (c == '\0') {
				name_len = 0;
				in_name = true;
				continue;
			}
			if (!in_name)
				continue;
			if (c == '=')
				in_name = false;
			else if (name_len < sizeof(name) - 1)
				name[name_len++] = c;
			if (name_len >= 3 && strncmp(name, "LD_", 3) == 0 && !in_name) {
				name[name_len] = '\0';
				return err_msg(err, "refusing to run setuid with `%s` in the environment "
					       "(loader variables are never honoured here; unset it)",
					       name);
			}
		}
	}
	if (n < 0)
		return err_sys(err, errno, "read", "/proc/self/environ");
	/* An entry without '=' cannot set a loader variable, but a cut-off one still counts. */
	if (in_name && name_len >= 3 && strncmp(name, "LD_", 3) == 0)
		return err_msg(err, "refusing to run setuid with an LD_ variable in the environment");
	return 0;
}

int harden_process(struct caller *caller, struct hutch_error *err)
{
	caller->uid = getuid();
	caller->gid = getgid();
	caller->setuid_mode = geteuid() == 0 && caller->uid != 0;

	if (getauxval(AT_SECURE) != 0 && geteuid() != 0)
		return err_msg(err, "refusing to run setgid or with file capabilities "
			       "(install it setuid root or without privilege)");
	if (caller->setuid_mode && reject_loader_variables(err) < 0)
		return -1;
	if (clearenv() != 0)
		return err_msg(err, "clearenv failed");
	if (ensure_stdio(err) < 0)
		return -1;
	/* Until keep_declared_fds, no fd of the caller above 2 survives an exec. */
	if (close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) < 0)
		return err_sys(err, errno, "close_range", NULL);
	/* Non-dumpable: the caller cannot ptrace it or read /proc/PID/mem while it has privilege. */
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
		return err_sys(err, errno, "prctl PR_SET_DUMPABLE", NULL);
	if (reset_signals(err) < 0)
		return -1;
	umask(022);
	return 0;
}

/*
 * Close every fd above 2 except those named by --keep-fd, which lose
 * CLOEXEC so that hutch-spawn gets them. Runs after argv is parsed and
 * before any fd of hutch-cgroup's own is opened.
 */
int keep_declared_fds(const struct cgroup_request *req, struct hutch_error *err)
{
	unsigned next = 3;
	int sorted[KEEP_FD_MAX];
	size_t count = req->keep_fd_count;

	memcpy(sorted, req->keep_fds, count * sizeof(sorted[0]));
	for (size_t i = 1; i < count; i++) {
		for (size_t j = i; j > 0 && sorted[j - 1] > sorted[j]; j--) {
			int swap = sorted[j];

			sorted[j] = sorted[j - 1];
			sorted[j - 1] = swap;
		}
	}
	for (size_t i = 0; i < count; i++) {
		int flags = fcntl(sorted[i], F_GETFD);
		char name[16];

		snprintf(name, sizeof(name), "%d", sorted[i]);
		if (flags < 0)
			return err_sys(err, errno, "--keep-fd", name);
		if (fcntl(sorted[i], F_SETFD, flags & ~FD_CLOEXEC) < 0)
			return err_sys(err, errno, "fcntl F_SETFD", name);
		if ((unsigned)sorted[i] > next && close_range(next, (unsigned)sorted[i] - 1, 0) < 0)
			return err_sys(err, errno, "close_range", NULL);
		next = (unsigned)sorted[i] + 1;
	}
	if (close_range(next, ~0U, 0) < 0)
		return err_sys(err, errno, "close_range", NULL);
	return 0;
}

/* Fail unless every capability set of the process is empty. */
static int check_no_capabilities(struct hutch_error *err)
{
	struct __user_cap_header_struct header = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct data[2] = { { 0 } };

	if (syscall(SYS_capget, &header, data) < 0)
		return err_sys(err, errno, "capget", NULL);
	for (int i = 0; i < 2; i++) {
		if (data[i].effective != 0 || data[i].permitted != 0 || data[i].inheritable != 0)
			return err_msg(err, "drop privilege: capabilities remain after setresuid");
	}
	/* The kernel keeps ambient a subset of permitted and inheritable, so it is empty too. */
	return 0;
}

/*
 * Become the real uid and gid for good and check that no way back remains:
 * ids, supplementary groups, fsuid, capabilities, and a setresuid to root
 * that must fail.
 */
int drop_privilege(const struct caller *caller, struct hutch_error *err)
{
	uid_t ruid, euid, suid;
	gid_t rgid, egid, sgid;

	if (caller->setuid_mode) {
		if (setgroups(0, NULL) < 0)
			return err_sys(err, errno, "setgroups", NULL);
		if (setresgid(caller->gid, caller->gid, caller->gid) < 0)
			return err_sys(err, errno, "setresgid", NULL);
		if (setresuid(caller->uid, caller->uid, caller->uid) < 0)
			return err_sys(err, errno, "setresuid", NULL);
	}
	if (getresuid(&ruid, &euid, &suid) < 0 || getresgid(&rgid, &egid, &sgid) < 0)
		return err_sys(err, errno, "getresuid", NULL);
	if (ruid != caller->uid || euid != ruid || suid != ruid || rgid != caller->gid ||
	    egid != rgid || sgid != rgid)
		return err_msg(err, "drop privilege: the real, effective or saved ids still differ");
	/* setfsuid returns the current fsuid; -1 is never a valid id, so nothing changes. */
	if ((uid_t)setfsuid((uid_t)-1) != ruid || (gid_t)setfsgid((gid_t)-1) != rgid)
		return err_msg(err, "drop privilege: the filesystem ids still differ");
	if (caller->uid == 0)
		return 0;
	if (caller->setuid_mode && getgroups(0, NULL) != 0)
		return err_msg(err, "drop privilege: supplementary groups remain");
	if (check_no_capabilities(err) < 0)
		return -1;
	if (setresuid((uid_t)-1, 0, (uid_t)-1) == 0)
		return err_msg(err, "drop privilege: setresuid to root still succeeds");
	return 0;
}
