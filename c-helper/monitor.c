/*
 * The monitor: the parent of the container process after its exec. It
 * forwards signals to it, copies its stdout and stderr into framed records
 * on --log-fd, reaps it and reports how it ended on --status-fd.
 */
#define _GNU_SOURCE
#include "spawn.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const int forwarded_signals[] = { SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 };

#define COPY_BUFFER_SIZE 65536

void monitor_signals(sigset_t *set)
{
	sigemptyset(set);
	for (size_t i = 0; i < sizeof(forwarded_signals) / sizeof(forwarded_signals[0]); i++)
		sigaddset(set, forwarded_signals[i]);
	sigaddset(set, SIGCHLD);
}

struct monitor {
	const struct spawn_plan *plan;
	pid_t child;
	bool reaped;
	int wait_status;
	bool log_failed;     /* after one failed write, output is drained but dropped */
};

/* Write "KEY VALUE\n" on --status-fd. */
static void report_status(const struct monitor *mon, const char *key, long value)
{
	char line[64];
	int len;

	if (mon->plan->status_fd < 0)
		return;
	len = snprintf(line, sizeof(line), "%s %ld\n", key, value);
	/* The reader may be gone; the container's result still decides the exit code. */
	(void)write_all(mon->plan->status_fd, line, (size_t)len);
}

/* Write one record: "o SECONDS.NANOSECONDS LENGTH\n" and the bytes. */
static void write_record(struct monitor *mon, char stream, const char *data, size_t len)
{
	struct timespec now;
	char header[64];
	int header_len;

	if (mon->log_failed)
		return;
	clock_gettime(CLOCK_REALTIME, &now);
	header_len = snprintf(header, sizeof(header), "%c %lld.%09ld %zu\n", stream,
			      (long long)now.tv_sec, now.tv_nsec, len);
	if (write_all(mon->plan->log_fd, header, (size_t)header_len) < 0 ||
	    write_all(mon->plan->log_fd, data, len) < 0) {
		struct hutch_error err = { 0 };

		err_sys(&err, errno, "write", "log fd");
		err_print(&err);
		mon->log_failed = true;
	}
}

/* Copy what is readable on *FD into one record; closes it at EOF or on error. */
static void copy_output(struct monitor *mon, int *fd, char stream)
{
	static char buf[COPY_BUFFER_SIZE];
	ssize_t n = read_retry(*fd, buf, sizeof(buf));

	if (n <= 0) {
		close_fd(fd);
		return;
	}
	write_record(mon, stream, buf, (size_t)n);
}

static void reap(struct monitor *mon)
{
	int status;
	pid_t pid;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		if (pid == mon->child) {
			mon->reaped = true;
			mon->wait_status = status;
		}
	}
}

static void handle_signal(struct monitor *mon, int sigfd)
{
	struct signalfd_siginfo info;
	ssize_t n = read_retry(sigfd, &info, sizeof(info));

	if (n != (ssize_t)sizeof(info))
		return;
	if (info.ssi_signo == SIGCHLD)
		reap(mon);
	else if (!mon->reaped)
		kill(mon->child, (int)info.ssi_signo);
}

int run_monitor(const struct spawn_plan *plan, struct spawn_pipes *pipes, pid_t child)
{
	struct monitor mon = { .plan = plan, .child = child };
	sigset_t set;
	cleanup_fd int sigfd = -1;

	/* A closed log or status reader must show up as EPIPE, not kill the monitor. */
	signal(SIGPIPE, SIG_IGN);
	monitor_signals(&set);
	sigfd = signalfd(-1, &set, SFD_CLOEXEC);
	if (sigfd < 0) {
		struct hutch_error err = { 0 };

		err_sys(&err, errno, "signalfd", NULL);
		err_print(&err);
		kill(child, SIGKILL);
	}
	report_status(&mon, "pid", (long)child);

	/* SIGCHLD may have arrived before the signalfd existed. */
	reap(&mon);
	while (!mon.reaped || pipes->out[0] >= 0 || pipes->err[0] >= 0) {
		struct pollfd fds[3] = {
			{ .fd = sigfd, .events = POLLIN },
			{ .fd = pipes->out[0], .events = POLLIN },
			{ .fd = pipes->err[0], .events = POLLIN },
		};

		if (poll(fds, 3, sigfd < 0 ? 100 : -1) < 0 && errno != EINTR)
			break;
		if (fds[0].revents & POLLIN)
			handle_signal(&mon, sigfd);
		if (sigfd < 0)
			reap(&mon);
		if (fds[1].revents & (POLLIN | POLLHUP | POLLERR))
			copy_output(&mon, &pipes->out[0], 'o');
		if (fds[2].revents & (POLLIN | POLLHUP | POLLERR))
			copy_output(&mon, &pipes->err[0], 'e');
	}
	while (!mon.reaped && waitpid(child, &mon.wait_status, 0) < 0 && errno == EINTR)
		;

	if (WIFSIGNALED(mon.wait_status)) {
		report_status(&mon, "signal", WTERMSIG(mon.wait_status));
		return 128 + WTERMSIG(mon.wait_status);
	}
	report_status(&mon, "exit", WEXITSTATUS(mon.wait_status));
	return WEXITSTATUS(mon.wait_status);
}
