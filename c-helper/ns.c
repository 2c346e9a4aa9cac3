/*
 * Namespaces: clone() of the container process, its uid and gid maps, and
 * the steps it runs in its new namespaces before and after the mounts.
 *
 * Ordering: the child blocks on the sync pipe until the parent has written
 * its id maps, because until then it has no mapped uid and gid, and files it
 * creates (mountpoints under the rootfs) would get the overflow ids.
 */
#define _GNU_SOURCE
#include "spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHILD_STACK_SIZE (1024 * 1024)

static char child_stack[CHILD_STACK_SIZE] __attribute__((aligned(16)));

struct child_args {
	const struct spawn_plan *plan;
	const struct spawn_pipes *pipes;
};

static struct child_args child_args;

int bring_up_loopback(struct hutch_error *err)
{
	struct ifreq ifr = { 0 };
	cleanup_fd int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	if (sock < 0)
		return err_sys(err, errno, "socket", "lo");
	strcpy(ifr.ifr_name, "lo");
	if (ioctl(sock, SIOCGIFFLAGS, &ifr) < 0)
		return err_sys(err, errno, "ioctl SIOCGIFFLAGS", "lo");
	ifr.ifr_flags |= IFF_UP;
	if (ioctl(sock, SIOCSIFFLAGS, &ifr) < 0)
		return err_sys(err, errno, "ioctl SIOCSIFFLAGS", "lo");
	return 0;
}

/* Block until the parent writes one byte; EOF means it failed and already reported why. */
void wait_for_parent(int fd)
{
	char byte;

	if (read_retry(fd, &byte, 1) != 1)
		_exit(EXIT_SETUP);
}

static int redirect_output(const struct spawn_pipes *pipes, struct hutch_error *err)
{
	if (dup2(pipes->out[1], STDOUT_FILENO) < 0)
		return err_sys(err, errno, "dup2", "stdout pipe");
	if (dup2(pipes->err[1], STDERR_FILENO) < 0)
		return err_sys(err, errno, "dup2", "stderr pipe");
	return 0;
}

int connect_stdio(const struct spawn_plan *plan, const struct spawn_pipes *pipes,
		  struct hutch_error *err)
{
	/* With --tty, the pty becomes fds 0 to 2 later, in finish_child. */
	if (plan->tty)
		return 0;
	if (plan->stdin_pipe && dup2(pipes->in[0], STDIN_FILENO) < 0)
		return err_sys(err, errno, "dup2", "stdin pipe");
	if (plan->log_fd >= 0)
		return redirect_output(pipes, err);
	return 0;
}

static int change_directory(const char *cwd, struct hutch_error *err)
{
	char buf[4096];

	if (chdir(cwd) < 0)
		return err_sys(err, errno, "chdir", cwd);
	/* getcwd fails when the directory is outside the root (the CVE-2024-21626 escape). */
	if (getcwd(buf, sizeof(buf)) == NULL)
		return err_sys(err, errno, "getcwd", cwd);
	return 0;
}

/*
 * Give the process a session of its own: with --tty the pty is its
 * controlling terminal, otherwise it has none, so /dev/tty and TIOCSTI
 * cannot reach the caller's terminal.
 */
static int start_session(const struct spawn_plan *plan, const struct spawn_pipes *pipes,
			 struct hutch_error *err)
{
	int master = -1;
	int peer = -1;

	if (!plan->tty) {
		if (setsid() < 0)
			return err_sys(err, errno, "setsid", NULL);
		return 0;
	}
	if (open_pty(plan, &master, &peer, err) < 0)
		return -1;
	if (send_fd(pipes->tty[1], master, err) < 0) {
		close(master);
		close(peer);
		return -1;
	}
	close(master);
	return make_controlling_terminal(peer, err);
}

int finish_child(const struct spawn_plan *plan, const struct spawn_pipes *pipes,
		 struct hutch_error *err)
{
	if (start_session(plan, pipes, err) < 0)
		return -1;
	if (drop_privileges(plan, err) < 0)
		return -1;
	if (change_directory(plan->cwd, err) < 0)
		return -1;
	/* CLOEXEC rather than close: the error pipe must stay open to report a failed exec. */
	if (close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) < 0)
		return err_sys(err, errno, "close_range", NULL);
	/* Before the --init fork, so that the reaper runs under the filter too. */
	if (install_seccomp_filter(err) < 0)
		return -1;
	/* With --init, only the forked program returns here; the reaper stays in start_init. */
	if (plan->init && start_init(plan, err) < 0)
		return -1;
	if (reset_signals(err) < 0)
		return -1;
	exec_program(plan, err);
	return -1;
}

/* The child's steps in the order of docs/helper-spec.md; returns only on failure. */
static void run_child(const struct spawn_plan *plan, const struct spawn_pipes *pipes,
		      struct hutch_error *err)
{
	cleanup_fd int rootfd = -1;

	/* The monitor owns the container: if it dies, so does the container. */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) {
		err_sys(err, errno, "prctl PR_SET_PDEATHSIG", NULL);
		return;
	}
	wait_for_parent(pipes->sync[0]);
	/*
	 * Until now the process ran with the caller's ids, which a custom map
	 * may leave unmapped, and then every file it creates fails with
	 * EOVERFLOW. So it becomes root of the new user namespace, and every
	 * map must contain 0.
	 */
	if (plan->unshare_user && (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0)) {
		err_sys(err, errno, "setresuid", "0 in the user namespace (is 0 mapped?)");
		return;
	}
	if (connect_stdio(plan, pipes, err) < 0)
		return;
	if (setup_mounts(plan, &rootfd, err) < 0)
		return;
	if (plan->unshare_net && bring_up_loopback(err) < 0)
		return;
	if (plan->hostname != NULL && sethostname(plan->hostname, strlen(plan->hostname)) < 0) {
		err_sys(err, errno, "sethostname", plan->hostname);
		return;
	}
	if (enter_root(plan, rootfd, err) < 0)
		return;
	close_fd(&rootfd);
	finish_child(plan, pipes, err);
}

/* Close the ends of the shared pipes that belong to the monitor. */
void close_monitor_ends(const struct spawn_pipes *pipes)
{
	const int fds[] = { pipes->sync[1], pipes->error[0], pipes->out[0], pipes->err[0],
			    pipes->in[1],   pipes->tty[0],   pipes->attach };

	for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++) {
		if (fds[i] >= 0)
			close(fds[i]);
	}
}

static int child_main(void *arg)
{
	const struct child_args *args = arg;
	struct hutch_error err = { 0 };

	close_monitor_ends(args->pipes);
	run_child(args->plan, args->pipes, &err);
	if (err.exit_code == 0)
		err.exit_code = EXIT_SETUP;
	write_all(args->pipes->error[1], &err, sizeof(err));
	_exit(err.exit_code);
}

pid_t spawn_clone(const struct spawn_plan *plan, const struct spawn_pipes *pipes,
		  struct hutch_error *err)
{
	int flags = CLONE_NEWNS | SIGCHLD;
	pid_t pid;

	flags |= plan->unshare_user ? CLONE_NEWUSER : 0;
	flags |= plan->unshare_pid ? CLONE_NEWPID : 0;
	flags |= plan->unshare_net ? CLONE_NEWNET : 0;
	flags |= plan->unshare_ipc ? CLONE_NEWIPC : 0;
	flags |= plan->unshare_uts ? CLONE_NEWUTS : 0;
	flags |= plan->unshare_cgroup ? CLONE_NEWCGROUP : 0;

	child_args.plan = plan;
	child_args.pipes = pipes;
	pid = clone(child_main, child_stack + CHILD_STACK_SIZE, flags, &child_args);
	if (pid < 0)
		return err_sys(err, errno, "clone", NULL);
	return pid;
}

/* --- id maps --- */

static int write_proc_file(pid_t pid, const char *name, const char *text, struct hutch_error *err)
{
	char path[64];
	cleanup_fd int fd = -1;

	snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, name);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return err_sys(err, errno, "open", path);
	if (write_all(fd, text, strlen(text)) < 0)
		return err_sys(err, errno, "write", path);
	return 0;
}

static void format_maps(const struct id_map *maps, size_t count, char *buf, size_t len)
{
	size_t used = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < count; i++) {
		used += (size_t)snprintf(buf + used, len - used, "%u %u %u\n", maps[i].inside,
					 maps[i].outside, maps[i].count);
	}
}

/* Run /usr/bin/newuidmap or newgidmap PID IN OUT COUNT... with an empty environment. */
static int run_map_tool(const char *tool, pid_t pid, const struct id_map *maps, size_t count,
			struct hutch_error *err)
{
	char numbers[1 + 3 * MAX_ID_MAPS][16];
	char *argv[3 + 3 * MAX_ID_MAPS];
	char *envp[] = { NULL };
	size_t argc = 0;
	int status;
	pid_t tool_pid;

	argv[argc++] = (char *)tool;
	snprintf(numbers[0], sizeof(numbers[0]), "%d", (int)pid);
	argv[argc++] = numbers[0];
	for (size_t i = 0; i < count; i++) {
		uint32_t values[3] = { maps[i].inside, maps[i].outside, maps[i].count };

		for (size_t j = 0; j < 3; j++) {
			snprintf(numbers[1 + 3 * i + j], sizeof(numbers[0]), "%u", values[j]);
			argv[argc++] = numbers[1 + 3 * i + j];
		}
	}
	argv[argc] = NULL;

	tool_pid = fork();
	if (tool_pid < 0)
		return err_sys(err, errno, "fork", tool);
	if (tool_pid == 0) {
		execve(tool, argv, envp);
		dprintf(STDERR_FILENO, "%s: execve `%s`: %s\n", program_name, tool, strerror(errno));
		_exit(EXIT_NOT_FOUND);
	}
	while (waitpid(tool_pid, &status, 0) < 0) {
		if (errno != EINTR)
			return err_sys(err, errno, "waitpid", tool);
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return err_msg(err, "%s `%d`: failed (check the ranges in /etc/subuid and /etc/subgid)",
			       tool, (int)pid);
	return 0;
}

/*
 * Without --uid-map, the caller's uid becomes 0 inside. Real root writes any
 * map itself; other callers need newuidmap, which checks /etc/subuid.
 */
static int write_one_map(const struct spawn_plan *plan, pid_t child, bool is_uid,
			 struct hutch_error *err)
{
	const struct id_map *maps = is_uid ? plan->uid_maps : plan->gid_maps;
	size_t count = is_uid ? plan->uid_map_count : plan->gid_map_count;
	struct id_map single = { 0, is_uid ? plan->real_uid : plan->real_gid, 1 };
	char text[32 * MAX_ID_MAPS];

	if (count == 0) {
		maps = &single;
		count = 1;
	} else if (plan->real_uid != 0) {
		return run_map_tool(is_uid ? "/usr/bin/newuidmap" : "/usr/bin/newgidmap", child, maps,
				    count, err);
	}
	format_maps(maps, count, text, sizeof(text));
	return write_proc_file(child, is_uid ? "uid_map" : "gid_map", text, err);
}

int write_id_maps(const struct spawn_plan *plan, pid_t child, struct hutch_error *err)
{
	if (write_one_map(plan, child, true, err) < 0)
		return -1;
	if (plan->setgroups_denied && write_proc_file(child, "setgroups", "deny", err) < 0)
		return -1;
	return write_one_map(plan, child, false, err);
}
