/*
 * --join PID: run a program in the namespaces of a running container.
 *
 * The monitor checks the owner of the target and opens its namespace
 * files, under a pidfd. Then it forks a joining process, which becomes
 * non-dumpable and enters the namespaces with setns(). The user namespace
 * comes first, so that the others are entered with its capabilities, and
 * the pid namespace last. The joining process forks the program's process
 * with CLONE_PARENT, so the program is in the pid namespace and is the
 * monitor's own child, and exits. The monitor itself never enters the
 * container, because a process there could then ptrace it and take its
 * host fds (runc's CVE-2016-9962).
 */
#define _GNU_SOURCE
#include "spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/nsfs.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/* In setns order: user first, pid last. */
static const struct {
	const char *name;
	int type;
} namespaces[] = {
	{ "user", CLONE_NEWUSER }, { "mnt", CLONE_NEWNS },  { "cgroup", CLONE_NEWCGROUP },
	{ "ipc", CLONE_NEWIPC },   { "uts", CLONE_NEWUTS }, { "net", CLONE_NEWNET },
	{ "pid", CLONE_NEWPID },
};

#define NAMESPACE_COUNT (sizeof(namespaces) / sizeof(namespaces[0]))

static const char *namespace_name(int type)
{
	for (size_t i = 0; i < NAMESPACE_COUNT; i++) {
		if (namespaces[i].type == type)
			return namespaces[i].name;
	}
	return "?";
}

static bool same_file(int fd, const char *path)
{
	struct stat a, b;

	return fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_dev == b.st_dev &&
	       a.st_ino == b.st_ino;
}

/* The first field of the "Uid:" line of /proc/PID/status: the real uid. */
static int read_real_uid(int procfd, uid_t *uid, struct hutch_error *err)
{
	char text[4096];
	const char *line;
	unsigned long value;

	if (read_file_at(procfd, "status", text, sizeof(text), err) < 0)
		return -1;
	line = strstr(text, "\nUid:");
	if (line == NULL || sscanf(line + 5, "%lu", &value) != 1)
		return err_msg(err, "read `status`: no Uid line");
	*uid = (uid_t)value;
	return 0;
}

/*
 * The caller may join a process that runs as its own real uid, or one in
 * a user namespace that the caller owns (a rootless container whose
 * process runs as a subordinate uid). Real root may join any process.
 * Checked before the namespace files are opened, so that the message
 * names the owner; the kernel refuses those files to other users anyway.
 */
static int check_owner(const struct spawn_plan *plan, int procfd, struct hutch_error *err)
{
	uid_t target_uid = 0, owner = 0;
	cleanup_fd int userns = -1;
	char pid[16];

	snprintf(pid, sizeof(pid), "%d", (int)plan->join_pid);
	if (plan->real_uid == 0)
		return 0;
	if (read_real_uid(procfd, &target_uid, err) < 0)
		return -1;
	if (target_uid == plan->real_uid)
		return 0;
	userns = openat(procfd, "ns/user", O_RDONLY | O_CLOEXEC);
	if (userns >= 0 && ioctl(userns, NS_GET_OWNER_UID, &owner) == 0 && owner == plan->real_uid)
		return 0;
	return err_msg(err, "join `%s`: the process belongs to uid %u, not to the caller (uid %u)",
		       pid, (unsigned)target_uid, (unsigned)plan->real_uid);
}

static void close_target(struct join_target *target)
{
	for (size_t i = 0; i < target->count; i++)
		close_fd(&target->nsfd[i]);
	target->count = 0;
}

int open_join_target(struct spawn_plan *plan, struct join_target *target,
		     struct hutch_error *err)
{
	char path[64];
	cleanup_fd int pidfd = (int)syscall(SYS_pidfd_open, plan->join_pid, 0);
	cleanup_fd int procfd = -1;
	char setgroups[16] = "";
	struct hutch_error ignored = { 0 };

	snprintf(path, sizeof(path), "/proc/%d", (int)plan->join_pid);
	if (pidfd < 0)
		return err_sys(err, errno, "pidfd_open", path);
	procfd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (procfd < 0)
		return err_sys(err, errno, "open", path);
	if (check_owner(plan, procfd, err) < 0)
		return -1;
	target->count = 0;
	for (size_t i = 0; i < NAMESPACE_COUNT; i++) {
		char name[32];
		char own[32];
		int fd;

		snprintf(name, sizeof(name), "ns/%s", namespaces[i].name);
		snprintf(own, sizeof(own), "/proc/self/ns/%s", namespaces[i].name);
		fd = openat(procfd, name, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			err_sys(err, errno, "open", name);
			close_target(target);
			return -1;
		}
		/* setns into one's own user namespace fails with EINVAL; the others are skipped too. */
		if (same_file(fd, own)) {
			close(fd);
			continue;
		}
		target->nsfd[target->count] = fd;
		target->nstype[target->count] = namespaces[i].type;
		target->count++;
	}
	/* The same rule as for a new container: --cap-add only without a user namespace. */
	if (plan->caps_added != 0 && target->count > 0 && target->nstype[0] == CLONE_NEWUSER) {
		close_target(target);
		return err_msg(err, "--cap-add needs real root and a container without a user "
			       "namespace: process %d has one", (int)plan->join_pid);
	}
	/* The kernel rejects setgroups() after "deny"; the ids are then set without it. */
	if (read_file_at(procfd, "setgroups", setgroups, sizeof(setgroups), &ignored) == 0)
		plan->setgroups_denied = strncmp(setgroups, "deny", 4) == 0;
	/* The pid may have been reused while the files were opened; then signal 0 fails. */
	if (syscall(SYS_pidfd_send_signal, pidfd, 0, NULL, 0) < 0) {
		err_sys(err, errno, "join", path);
		close_target(target);
		return -1;
	}
	return 0;
}

/* The program's process, in every namespace of the target; returns only on failure. */
static void run_joined(const struct spawn_plan *plan, const struct spawn_pipes *pipes,
		       struct hutch_error *err)
{
	if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) {
		err_sys(err, errno, "prctl PR_SET_PDEATHSIG", NULL);
		return;
	}
	/* The monitor may have died before PDEATHSIG was set: then the sync pipe reads EOF. */
	wait_for_parent(pipes->sync[0]);
	if (connect_stdio(plan, pipes, err) < 0)
		return;
	/* setns() of the mount namespace set the root and cwd to the container's root. */
	if (chdir("/") < 0) {
		err_sys(err, errno, "chdir", "/");
		return;
	}
	finish_child(plan, pipes, err);
}

static void fail_joining(const struct spawn_pipes *pipes, struct hutch_error *err)
{
	if (err->exit_code == 0)
		err->exit_code = EXIT_SETUP;
	write_all(pipes->error[1], err, sizeof(*err));
	_exit(err->exit_code);
}

/* The joining process: enter the namespaces, fork the program, report its pid, exit. */
static void __attribute__((noreturn)) run_joining(const struct spawn_plan *plan,
						  struct join_target *target,
						  const struct spawn_pipes *pipes)
{
	struct hutch_error err = { 0 };
	char pid_text[16];
	pid_t program;

	close_monitor_ends(pipes);
	close(pipes->joined_pid[0]);
	/* Until the exec, nothing in the container may ptrace it or open its /proc files. */
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) {
		err_sys(&err, errno, "prctl PR_SET_DUMPABLE", NULL);
		fail_joining(pipes, &err);
	}
	for (size_t i = 0; i < target->count; i++) {
		if (setns(target->nsfd[i], target->nstype[i]) < 0) {
			err_sys(&err, errno, "setns", namespace_name(target->nstype[i]));
			fail_joining(pipes, &err);
		}
	}
	close_target(target);
	/* A user namespace gives the uid 0 of the container; without one the caller is root. */
	if (target->count > 0 && target->nstype[0] == CLONE_NEWUSER &&
	    (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0)) {
		err_sys(&err, errno, "setresuid", "0 in the container's user namespace");
		fail_joining(pipes, &err);
	}
	program = (pid_t)syscall(SYS_clone, CLONE_PARENT | SIGCHLD, NULL, NULL, NULL, 0);
	if (program < 0) {
		err_sys(&err, errno, "clone", "CLONE_PARENT");
		fail_joining(pipes, &err);
	}
	if (program == 0) {
		close(pipes->joined_pid[1]);
		run_joined(plan, pipes, &err);
		fail_joining(pipes, &err);
	}
	snprintf(pid_text, sizeof(pid_text), "%d", (int)program);
	write_all(pipes->joined_pid[1], pid_text, strlen(pid_text));
	_exit(0);
}

pid_t spawn_join(const struct spawn_plan *plan, struct join_target *target,
		 const struct spawn_pipes *pipes, struct hutch_error *err)
{
	pid_t joining = fork();

	if (joining < 0)
		return err_sys(err, errno, "fork", NULL);
	if (joining == 0)
		run_joining(plan, target, pipes);
	close_target(target);
	return joining;
}
