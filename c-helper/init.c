/*
 * --init: a small reaper as the container's first process.
 *
 * A program that is not written to be pid 1 leaves zombies when orphans
 * are reparented to it, and ignores SIGTERM when it has no handler. So the
 * first process forks once more: the child execs the program, and the
 * parent stays as the reaper. It waits for every child, forwards the
 * signals below to the program, and exits with the program's exit code,
 * or 128+N when signal N ended it (pid 1 cannot end itself by a signal).
 */
#define _GNU_SOURCE
#include "spawn.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

static const int init_forwarded_signals[] = { SIGTERM, SIGINT,  SIGHUP,  SIGQUIT,
					      SIGUSR1, SIGUSR2, SIGWINCH };

/* The reaper's loop; PROGRAM is the pid of the forked program. Never returns. */
static void __attribute__((noreturn)) run_reaper(pid_t program, bool tty)
{
	sigset_t set;

	prctl(PR_SET_NAME, "hutch-init", 0, 0, 0);
	/* Non-dumpable: the container cannot ptrace it or open /proc/1/exe, the host binary. */
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	/* Without a new pid namespace, orphans would go to the host's reaper instead. */
	prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
	/* Keep only fds 0 to 2: the error pipe must reach EOF when the program execs. */
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
	pid_t program = fork();

	if (program < 0)
		return err_sys(err, errno, "fork", "--init");
	if (program > 0)
		run_reaper(program, plan->tty);
	/* The program dies with the reaper even when it is not in a pid namespace of its own. */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
		return err_sys(err, errno, "prctl PR_SET_PDEATHSIG", NULL);
	if (setpgid(0, 0) < 0)
		return err_sys(err, errno, "setpgid", NULL);
	return 0;
}
