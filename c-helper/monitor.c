/*
 * The monitor: the parent of the container process after its exec. It
 * forwards signals to it, copies its stdout and stderr (or its pty's
 * output) into framed records on --log-fd, feeds its stdin from the
 * --attach-socket, reaps it and reports how it ended on --status-fd.
 *
 * Everything runs in one poll() loop. Input that the container has not
 * read yet waits in one buffer. While that buffer is not empty, the
 * monitor reads no more frames from the client, so a slow reader slows
 * the client down instead of growing memory.
 *
 * With --log-max-bytes the log is rotated: before a record that would take
 * it past the maximum, the monitor copies it into --log-rotate-fd, which
 * keeps that one older generation, and truncates it to 0 bytes. Output is
 * read in chunks small enough that one record always fits, so neither file
 * grows past the maximum.
 */
#define _GNU_SOURCE
#include "spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

static const int forwarded_signals[] = { SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 };

#define COPY_BUFFER_SIZE 65536
/* Room for "o SECONDS.NANOSECONDS LENGTH\n" and the NUL that snprintf adds. */
#define RECORD_HEADER_MAX 64
#define FRAME_HEADER_SIZE 5          /* type byte, 32-bit big-endian length */
#define FRAME_MAX_PAYLOAD 65536
/* After the process is reaped, pty output that does not come within this time is dropped. */
#define PTY_DRAIN_MS 200

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
	uint64_t log_size;   /* bytes in the log file, with --log-max-bytes */
	size_t read_max;     /* bytes of output read into one record */

	int out, err;        /* stdout and stderr pipes, -1 at EOF */
	int master;          /* pty master (--tty), -1 at EOF */
	int stdin_fd;        /* write end of the --stdin pipe, -1 once closed */
	bool input_closed;   /* the container's input is gone; further data is dropped */

	int listen_fd, client_fd;
	size_t frame_len;                    /* bytes in frame_buf */
	size_t pending_off, pending_len;     /* input not yet written to the container */
};

static unsigned char frame_buf[FRAME_HEADER_SIZE + FRAME_MAX_PAYLOAD];
static char pending_buf[FRAME_MAX_PAYLOAD];

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

static void print_error(const char *step, const char *object, int errnum)
{
	struct hutch_error err = { 0 };

	err_sys(&err, errnum, step, object);
	err_print(&err);
}

/* writev that retries on EINTR and writes the rest of a short write. */
static int writev_all(int fd, struct iovec *iov, int count)
{
	while (count > 0) {
		ssize_t n = writev(fd, iov, count);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		while (count > 0 && (size_t)n >= iov->iov_len) {
			n -= (ssize_t)iov->iov_len;
			iov++;
			count--;
		}
		if (count > 0) {
			iov->iov_base = (char *)iov->iov_base + n;
			iov->iov_len -= (size_t)n;
		}
	}
	return 0;
}

/* Copy bytes OFFSET to SIZE of FROM to the file position of TO with pread and write. */
static int copy_by_reading(int from, int to, off_t offset, uint64_t size, struct hutch_error *err)
{
	static char buf[COPY_BUFFER_SIZE];

	while ((uint64_t)offset < size) {
		size_t want = size - (uint64_t)offset < sizeof(buf) ? size - (uint64_t)offset
								     : sizeof(buf);
		ssize_t n = pread(from, buf, want, offset);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return err_sys(err, errno, "pread", "--log-fd");
		/* The file is shorter than the monitor counted: someone else truncated it. */
		if (n == 0)
			return 0;
		if (write_all(to, buf, (size_t)n) < 0)
			return err_sys(err, errno, "write", "--log-rotate-fd");
		offset += n;
	}
	return 0;
}

/*
 * Copy the first SIZE bytes of FROM to the file position of TO. When
 * copy_file_range cannot copy between these files (EXDEV across some file
 * systems, EBADF when TO is O_APPEND, EINVAL or EOPNOTSUPP on file systems
 * without support), the rest is copied with pread and write.
 */
static int copy_log(int from, int to, uint64_t size, struct hutch_error *err)
{
	off_t offset = 0;

	while ((uint64_t)offset < size) {
		ssize_t n = copy_file_range(from, &offset, to, NULL, size - (uint64_t)offset, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EXDEV || errno == EBADF || errno == EINVAL ||
			      errno == EOPNOTSUPP || errno == ENOSYS))
			return copy_by_reading(from, to, offset, size, err);
		if (n < 0)
			return err_sys(err, errno, "copy_file_range", "--log-fd");
		if (n == 0)
			return 0;
	}
	return 0;
}

/*
 * Replace the rotate file's content with the log's, then empty the log.
 * Both file positions go back to 0, so fds opened without O_APPEND keep
 * writing at the end and leave no hole.
 */
static int rotate_log(struct monitor *mon, struct hutch_error *err)
{
	int log_fd = mon->plan->log_fd;
	int rotate_fd = mon->plan->log_rotate_fd;

	if (ftruncate(rotate_fd, 0) < 0)
		return err_sys(err, errno, "ftruncate", "--log-rotate-fd");
	if (lseek(rotate_fd, 0, SEEK_SET) < 0)
		return err_sys(err, errno, "lseek", "--log-rotate-fd");
	if (copy_log(log_fd, rotate_fd, mon->log_size, err) < 0)
		return -1;
	if (ftruncate(log_fd, 0) < 0)
		return err_sys(err, errno, "ftruncate", "--log-fd");
	if (lseek(log_fd, 0, SEEK_SET) < 0)
		return err_sys(err, errno, "lseek", "--log-fd");
	mon->log_size = 0;
	return 0;
}

/* Without --log-max-bytes, LOG_SIZE is not counted and the log is never rotated. */
static bool needs_rotation(const struct monitor *mon, size_t record_len)
{
	uint64_t max = mon->plan->log_max_bytes;

	return max > 0 && mon->log_size > 0 && mon->log_size + record_len > max;
}

/* Write one record, "o SECONDS.NANOSECONDS LENGTH\n" and the bytes, with one writev. */
static void write_record(struct monitor *mon, char stream, const char *data, size_t len)
{
	struct timespec now;
	char header[RECORD_HEADER_MAX];
	struct iovec iov[2];
	int header_len;

	if (mon->log_failed)
		return;
	clock_gettime(CLOCK_REALTIME, &now);
	header_len = snprintf(header, sizeof(header), "%c %lld.%09ld %zu\n", stream,
			      (long long)now.tv_sec, now.tv_nsec, len);
	if (needs_rotation(mon, (size_t)header_len + len)) {
		struct hutch_error err = { 0 };

		if (rotate_log(mon, &err) < 0) {
			err_print(&err);
			mon->log_failed = true;
			return;
		}
	}
	iov[0] = (struct iovec){ .iov_base = header, .iov_len = (size_t)header_len };
	iov[1] = (struct iovec){ .iov_base = (void *)data, .iov_len = len };
	if (writev_all(mon->plan->log_fd, iov, 2) < 0) {
		print_error("writev", "log fd", errno);
		mon->log_failed = true;
		return;
	}
	mon->log_size += (size_t)header_len + len;
}

/*
 * Copy what is readable on *FD into one record; closes it at EOF or on an
 * error. A pty master reads EIO once every peer fd is closed, its EOF.
 */
static void copy_output(struct monitor *mon, int *fd, char stream)
{
	static char buf[COPY_BUFFER_SIZE];
	ssize_t n = read_retry(*fd, buf, mon->read_max);

	if (n < 0 && errno == EAGAIN)
		return;
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

/* --- input from the attach socket --- */

static int input_fd(const struct monitor *mon)
{
	if (mon->input_closed)
		return -1;
	return mon->plan->tty ? mon->master : mon->stdin_fd;
}

static void close_input(struct monitor *mon)
{
	mon->input_closed = true;
	mon->pending_len = 0;
	mon->pending_off = 0;
	close_fd(&mon->stdin_fd);
}

/* Write as much pending input as the container takes without blocking. */
static void flush_input(struct monitor *mon)
{
	while (mon->pending_len > 0) {
		int fd = input_fd(mon);
		ssize_t n;

		if (fd < 0) {
			close_input(mon);
			return;
		}
		n = write(fd, pending_buf + mon->pending_off, mon->pending_len);
		if (n < 0 && (errno == EINTR))
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n < 0) {
			/* EPIPE: the container closed its stdin; EIO: every pty peer is closed. */
			close_input(mon);
			return;
		}
		mon->pending_off += (size_t)n;
		mon->pending_len -= (size_t)n;
	}
	mon->pending_off = 0;
}

static void drop_client(struct monitor *mon, const char *reason)
{
	if (reason != NULL)
		dprintf(STDERR_FILENO, "%s: attach client: %s; disconnected\n", program_name, reason);
	close_fd(&mon->client_fd);
	mon->frame_len = 0;
}

static void queue_input(struct monitor *mon, const void *data, size_t len)
{
	if (mon->input_closed)
		return;
	memcpy(pending_buf, data, len);
	mon->pending_off = 0;
	mon->pending_len = len;
	flush_input(mon);
}

static void resize_tty(struct monitor *mon, const unsigned char *payload)
{
	struct winsize size = {
		.ws_row = (unsigned short)(payload[0] << 8 | payload[1]),
		.ws_col = (unsigned short)(payload[2] << 8 | payload[3]),
	};

	/* The kernel sends SIGWINCH to the terminal's foreground process group. */
	if (mon->master >= 0 && ioctl(mon->master, TIOCSWINSZ, &size) < 0)
		print_error("ioctl TIOCSWINSZ", "pty", errno);
}

/* Close the container's stdin: EOF on the pipe, or the pty's EOF character (VEOF, ^D). */
static void end_input(struct monitor *mon)
{
	struct termios term;

	if (!mon->plan->tty) {
		close_input(mon);
		return;
	}
	if (mon->master < 0 || tcgetattr(mon->master, &term) < 0)
		return;
	queue_input(mon, &term.c_cc[VEOF], 1);
}

/* Carry out one frame; returns the reason to drop the client, or NULL. */
static const char *apply_frame(struct monitor *mon, unsigned char type,
			       const unsigned char *payload, uint32_t len)
{
	switch (type) {
	case 'd':
		queue_input(mon, payload, len);
		return NULL;
	case 'w':
		if (!mon->plan->tty)
			return "window size frame without --tty";
		if (len != 4)
			return "window size frame with a payload other than 4 bytes";
		resize_tty(mon, payload);
		return NULL;
	case 'c':
		if (len != 0)
			return "close frame with a payload";
		end_input(mon);
		return NULL;
	default:
		return "invalid frame type";
	}
}

/* Carry out the complete frames in frame_buf, while no earlier input is pending. */
static void process_frames(struct monitor *mon)
{
	while (mon->client_fd >= 0 && mon->pending_len == 0 && mon->frame_len >= FRAME_HEADER_SIZE) {
		uint32_t len = (uint32_t)frame_buf[1] << 24 | (uint32_t)frame_buf[2] << 16 |
			       (uint32_t)frame_buf[3] << 8 | frame_buf[4];
		size_t total = FRAME_HEADER_SIZE + (size_t)len;
		const char *reason;

		if (len > FRAME_MAX_PAYLOAD) {
			drop_client(mon, "frame longer than 65536 bytes");
			return;
		}
		if (mon->frame_len < total)
			return;
		reason = apply_frame(mon, frame_buf[0], frame_buf + FRAME_HEADER_SIZE, len);
		if (reason != NULL) {
			drop_client(mon, reason);
			return;
		}
		memmove(frame_buf, frame_buf + total, mon->frame_len - total);
		mon->frame_len -= total;
	}
}

static void read_client(struct monitor *mon)
{
	ssize_t n = read_retry(mon->client_fd, frame_buf + mon->frame_len,
			       sizeof(frame_buf) - mon->frame_len);

	if (n < 0 && errno == EAGAIN)
		return;
	/* A client that goes away leaves the container's stdin open for the next one. */
	if (n <= 0) {
		drop_client(mon, NULL);
		return;
	}
	mon->frame_len += (size_t)n;
	process_frames(mon);
}

static void accept_client(struct monitor *mon)
{
	int fd = accept4(mon->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

	if (fd < 0) {
		if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
			print_error("accept", mon->plan->attach_socket, errno);
		return;
	}
	mon->client_fd = fd;
	mon->frame_len = 0;
}

/* --- the loop --- */

enum { SLOT_SIGNAL, SLOT_OUT, SLOT_ERR, SLOT_MASTER, SLOT_STDIN, SLOT_LISTEN, SLOT_CLIENT,
       SLOT_COUNT };

static void fill_poll_set(const struct monitor *mon, int sigfd, struct pollfd *fds)
{
	bool pending = mon->pending_len > 0;

	for (int i = 0; i < SLOT_COUNT; i++)
		fds[i] = (struct pollfd){ .fd = -1 };
	fds[SLOT_SIGNAL] = (struct pollfd){ .fd = sigfd, .events = POLLIN };
	fds[SLOT_OUT] = (struct pollfd){ .fd = mon->out, .events = POLLIN };
	fds[SLOT_ERR] = (struct pollfd){ .fd = mon->err, .events = POLLIN };
	fds[SLOT_MASTER] = (struct pollfd){
		.fd = mon->master,
		.events = (short)(POLLIN | (pending && mon->plan->tty ? POLLOUT : 0)),
	};
	/* Polled with no events too: POLLERR then reports that the container closed its stdin. */
	fds[SLOT_STDIN] = (struct pollfd){ .fd = mon->stdin_fd,
					   .events = (short)(pending ? POLLOUT : 0) };
	if (mon->client_fd < 0)
		fds[SLOT_LISTEN] = (struct pollfd){ .fd = mon->listen_fd, .events = POLLIN };
	if (!pending && mon->frame_len < sizeof(frame_buf))
		fds[SLOT_CLIENT] = (struct pollfd){ .fd = mon->client_fd, .events = POLLIN };
}

static void handle_events(struct monitor *mon, int sigfd, const struct pollfd *fds)
{
	const short readable = POLLIN | POLLHUP | POLLERR;

	if (fds[SLOT_SIGNAL].revents & POLLIN)
		handle_signal(mon, sigfd);
	if (sigfd < 0)
		reap(mon);
	if (fds[SLOT_OUT].revents & readable)
		copy_output(mon, &mon->out, 'o');
	if (fds[SLOT_ERR].revents & readable)
		copy_output(mon, &mon->err, 'e');
	if (fds[SLOT_MASTER].revents & readable)
		copy_output(mon, &mon->master, 'o');
	if (fds[SLOT_MASTER].revents & POLLOUT)
		flush_input(mon);
	if (fds[SLOT_STDIN].revents & (POLLERR | POLLHUP))
		close_input(mon);
	else if (fds[SLOT_STDIN].revents & POLLOUT)
		flush_input(mon);
	if (mon->pending_len == 0)
		process_frames(mon);
	if (fds[SLOT_LISTEN].revents & POLLIN)
		accept_client(mon);
	if (fds[SLOT_CLIENT].revents & readable)
		read_client(mon);
}

/* Once the process is reaped, input has nowhere to go: close the socket and the stdin pipe. */
static void stop_input(struct monitor *mon)
{
	close_fd(&mon->client_fd);
	close_fd(&mon->listen_fd);
	close_input(mon);
}

static int finish(struct monitor *mon)
{
	while (!mon->reaped && waitpid(mon->child, &mon->wait_status, 0) < 0 && errno == EINTR)
		;
	close_fd(&mon->master);
	stop_input(mon);
	if (WIFSIGNALED(mon->wait_status)) {
		report_status(mon, "signal", WTERMSIG(mon->wait_status));
		return 128 + WTERMSIG(mon->wait_status);
	}
	report_status(mon, "exit", WEXITSTATUS(mon->wait_status));
	return WEXITSTATUS(mon->wait_status);
}

/*
 * Count the bytes already in a log that has a maximum, and size the reads
 * so that a header and its data stay within it (the maximum is 4096 or more).
 */
static void start_log(struct monitor *mon)
{
	off_t end;

	mon->read_max = COPY_BUFFER_SIZE;
	if (mon->plan->log_max_bytes == 0)
		return;
	if (mon->plan->log_max_bytes - RECORD_HEADER_MAX < COPY_BUFFER_SIZE)
		mon->read_max = (size_t)(mon->plan->log_max_bytes - RECORD_HEADER_MAX);
	end = lseek(mon->plan->log_fd, 0, SEEK_END);
	if (end < 0) {
		print_error("lseek", "--log-fd", errno);
		mon->log_failed = true;
		return;
	}
	mon->log_size = (uint64_t)end;
}

int run_monitor(const struct spawn_plan *plan, struct spawn_pipes *pipes, pid_t child)
{
	struct monitor mon = {
		.plan = plan,
		.child = child,
		.out = pipes->out[0],
		.err = pipes->err[0],
		.master = pipes->master,
		.stdin_fd = pipes->in[1],
		.listen_fd = pipes->attach,
		.client_fd = -1,
	};
	sigset_t set;
	cleanup_fd int sigfd = -1;

	pipes->out[0] = pipes->err[0] = pipes->master = pipes->in[1] = pipes->attach = -1;
	/* A closed log or status reader must show up as EPIPE, not kill the monitor. */
	signal(SIGPIPE, SIG_IGN);
	monitor_signals(&set);
	sigfd = signalfd(-1, &set, SFD_CLOEXEC);
	if (sigfd < 0) {
		print_error("signalfd", NULL, errno);
		kill(child, SIGKILL);
	}
	/* Input is written without blocking, so that a container that reads nothing cannot stall us. */
	if (mon.master >= 0)
		fcntl(mon.master, F_SETFL, fcntl(mon.master, F_GETFL) | O_NONBLOCK);
	if (mon.stdin_fd >= 0)
		fcntl(mon.stdin_fd, F_SETFL, fcntl(mon.stdin_fd, F_GETFL) | O_NONBLOCK);
	start_log(&mon);
	report_status(&mon, "pid", (long)child);

	/* SIGCHLD may have arrived before the signalfd existed. */
	reap(&mon);
	while (!mon.reaped || mon.out >= 0 || mon.err >= 0 || mon.master >= 0) {
		struct pollfd fds[SLOT_COUNT];
		int timeout = sigfd < 0 ? 100 : -1;
		int ready;

		if (mon.reaped) {
			stop_input(&mon);
			if (mon.master >= 0)
				timeout = PTY_DRAIN_MS;
		}
		fill_poll_set(&mon, sigfd, fds);
		ready = poll(fds, SLOT_COUNT, timeout);
		if (ready < 0 && errno != EINTR)
			break;
		/* A process left in the container may hold the pty open; stop waiting for it. */
		if (ready == 0 && mon.reaped)
			close_fd(&mon.master);
		if (ready > 0)
			handle_events(&mon, sigfd, fds);
	}
	return finish(&mon);
}
