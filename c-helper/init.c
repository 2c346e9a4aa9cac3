/*
 * --init: a small reaper as the container's first process.
 *
 * A program that is not written to be pid 1 leaves zombies when orphans
 * are reparented to it, and ignores SIGTERM when it has no handler. So the
 * first process forks once more: the child execs the program, and the
 * parent stays as the reaper. It waits for every child, forwards the
 * signals below to the program, and exits with the program's exit code,
 * or 128+N when signal N ended it (pid 1 cannot end itself by a signal).
 *
 * /proc/1/cmdline is readable by every process in the container, and the
 * reaper's argv is hutch-spawn's: store paths, overlay dirs, --env values.
 * So the reaper overwrites those strings in place. Re-executing a clean
 * image (/proc/self/exe or a memfd copy) fails, because hutch-spawn is
 * dynamically linked and the container's root has no host loader. A fresh
 * image would also be dumpable until its first prctl, which shows the host
 * binary as /proc/1/exe meanwhile. Setting new bounds with
 * PR_SET_MM_ARG_START needs CAP_SYS_RESOURCE in the initial user
 * namespace, which a rootless caller lacks.
 */
#define _GNU_SOURCE
#include "spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

static const int init_forwarded_signals[] = { SIGTERM, SIGINT,  SIGHUP,  SIGQUIT,
					      SIGUSR1, SIGUSR2, SIGWINCH };

static const char init_name[] = "hutch-init";

/* Addresses of the argv and environment strings, as the kernel stores them in mm_struct. */
struct arg_area {
	unsigned long arg_start, arg_end, env_start, env_end;
};

/* Read fields 48 to 51 of /proc/self/stat (Linux 3.5 and later). */
static int read_arg_area(struct arg_area *area, struct hutch_error *err)
{
	char buf[2048];
	cleanup_fd int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
	ssize_t n;
	char *fields;

	if (fd < 0)
		return err_sys(err, errno, "open", "/proc/self/stat");
	n = read_retry(fd, buf, sizeof(buf) - 1);
	if (n < 0)
		return err_sys(err, errno, "read", "/proc/self/stat");
	buf[n] = '\0';
	/* Field 2, the command name, may contain spaces and ')'; field 3 follows the last ')'. */
	fields = strrchr(buf, ')');
	if (fields == NULL)
		return err_msg(err, "read `/proc/self/stat`: no ')' after the command name");
	fields++;
	for (int field = 3; field < 48; field++) {
		fields += strspn(fields, " ");
		fields += strcspn(fields, " ");
	}
	if (sscanf(fields, " %lu %lu %lu %lu", &area->arg_start, &area->arg_end, &area->env_start,
		   &area->env_end) != 4)
		return err_msg(err, "read `/proc/self/stat`: missing the argv and environment fields");
	/* hutch-spawn's argv with --init is always longer than "hutch-init" and one more byte. */
	if (area->arg_end < area->arg_start || area->env_end < area->env_start ||
	    area->arg_end - area->arg_start < sizeof(init_name) + 1)
		return err_msg(err, "read `/proc/self/stat`: invalid argv bounds %lu to %lu",
			       area->arg_start, area->arg_end);
	return 0;
}

/*
 * Make /proc/1/cmdline read exactly "hutch-init\0" and clear the
 * environment strings. The argv area keeps its kernel bounds, so zeros
 * follow the name. Its last byte becomes a space, because when that byte is
 * not NUL, the kernel reads the area as rewritten by setproctitle and
 * returns it only up to the first NUL (get_mm_proctitle in fs/proc/base.c).
 * /proc/1/environ is denied to the container anyway, because the reaper is
 * non-dumpable. The environment is cleared in case it becomes readable.
 */
static void hide_arg_area(const struct arg_area *area)
{
	char *args = (char *)area->arg_start;
	size_t args_len = area->arg_end - area->arg_start;

	memset((char *)area->env_start, 0, area->env_end - area->env_start);
	memset(args, 0, args_len);
	memcpy(args, init_name, sizeof(init_name));
	args[args_len - 1] = ' ';
}

/*
 * Run before the program may exec: until then, no process of the container
 * can read the reaper's name, command line or executable.
 */
static void become_init(const struct arg_area *area)
{
	hide_arg_area(area);
	prctl(PR_SET_NAME, init_name, 0, 0, 0);
	/* Non-dumpable: the container cannot ptrace it or open /proc/1/exe, the host binary. */
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
}

/* The reaper's loop; PROGRAM is the pid of the forked program. Never returns. */
static void __attribute__((noreturn)) run_reaper(pid_t program, bool tty)
{
	sigset_t set;

	/* Without a new pid namespace, orphans would go to the host's reaper instead. */
	prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
	/*
	 * Keep only fds 0 to 2: the error pipe must reach EOF when the program
	 * execs, and the EOF on the ready pipe lets the program go on.
	 */
	close_range(3, ~0U, 0);
	/* Both sides call setpgid, so the group exists whichever runs first. */
	setpgid(program, program);
	/* The program's group gets the terminal's signals (Ctrl-C), not the reaper's. */
	if (tty)
		tcsetpgrp(STDIN_FILENO, program);

	sigemptyset(&set);
	for (size_t i = 0; i < sizeof(init_forwarded_signals) / sizeof(init_forwarded_signals[0]); i++)
		sigaddset(&set, init_forwarded_signals[i]);
	sigaddset(&set, SIGCHLD);
	/*
	 * Blocked signals are queued even for pid 1 of a pid namespace, which
	 * would drop a signal whose disposition is SIG_DFL.
	 */
	sigprocmask(SIG_BLOCK, &set, NULL);

	for (;;) {
		siginfo_t info;
		int status;
		pid_t pid;

		if (sigwaitinfo(&set, &info) < 0)
			continue;
		if (info.si_signo != SIGCHLD) {
			kill(program, info.si_signo);
			continue;
		}
		while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
			if (pid != program)
				continue;
			if (WIFSIGNALED(status))
				_exit(128 + WTERMSIG(status));
			_exit(WEXITSTATUS(status));
		}
	}
}

int start_init(const struct spawn_plan *plan, struct hutch_error *err)
{
	struct arg_area area;
	int ready[2];
	char byte;
	pid_t program;

	if (read_arg_area(&area, err) < 0)
		return -1;
	if (pipe2(ready, O_CLOEXEC) < 0)
		return err_sys(err, errno, "pipe2", "--init");
	/* The reaper hides its argv after the fork, because the program's argv and env are in it. */
	program = fork();
	if (program < 0)
		return err_sys(err, errno, "fork", "--init");
	if (program > 0) {
		become_init(&area);
		run_reaper(program, plan->tty);
	}
	close(ready[1]);
	read_retry(ready[0], &byte, 1);
	close(ready[0]);
	/* The program dies with the reaper even when it is not in a pid namespace of its own. */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
		return err_sys(err, errno, "prctl PR_SET_PDEATHSIG", NULL);
	if (setpgid(0, 0) < 0)
		return err_sys(err, errno, "setpgid", NULL);
	return 0;
}
