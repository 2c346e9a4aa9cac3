/* Error formatting, EINTR-safe I/O, strict number parsing and the option-table parser. */
#define _GNU_SOURCE
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int err_sys(struct hutch_error *err, int errnum, const char *step, const char *path)
{
	err->errnum = errnum;
	if (err->exit_code == 0)
		err->exit_code = EXIT_SETUP;
	if (path != NULL)
		snprintf(err->msg, sizeof(err->msg), "%s `%s`: %s", step, path, strerror(errnum));
	else
		snprintf(err->msg, sizeof(err->msg), "%s: %s", step, strerror(errnum));
	return -1;
}

int err_msg(struct hutch_error *err, const char *fmt, ...)
{
	va_list ap;

	err->errnum = 0;
	if (err->exit_code == 0)
		err->exit_code = EXIT_SETUP;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	return -1;
}

void err_print(const struct hutch_error *err)
{
	dprintf(STDERR_FILENO, "%s: %s\n", program_name, err->msg);
}

void die_usage(const char *fmt, ...)
{
	struct hutch_error err = { 0 };
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err.msg, sizeof(err.msg), fmt, ap);
	va_end(ap);
	err_print(&err);
	exit(EXIT_SETUP);
}

ssize_t read_retry(int fd, void *buf, size_t len)
{
	ssize_t n;

	do
		n = read(fd, buf, len);
	while (n < 0 && errno == EINTR);
	return n;
}

int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int write_file_at(int dirfd, const char *name, const char *text, bool create,
		  struct hutch_error *err)
{
	int flags = O_WRONLY | O_CLOEXEC | O_NOFOLLOW | (create ? O_CREAT | O_TRUNC : 0);
	cleanup_fd int fd = openat(dirfd, name, flags, 0644);

	if (fd < 0)
		return err_sys(err, errno, "open", name);
	if (write_all(fd, text, strlen(text)) < 0)
		return err_sys(err, errno, "write", name);
	return 0;
}

int read_file_at(int dirfd, const char *name, char *buf, size_t len, struct hutch_error *err)
{
	cleanup_fd int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	size_t used = 0;

	if (fd < 0)
		return err_sys(err, errno, "open", name);
	while (used + 1 < len) {
		ssize_t n = read_retry(fd, buf + used, len - 1 - used);

		if (n < 0)
			return err_sys(err, errno, "read", name);
		if (n == 0)
			break;
		used += (size_t)n;
	}
	buf[used] = '\0';
	return 0;
}

int parse_u64(const char *text, uint64_t max, uint64_t *out)
{
	uint64_t value = 0;
	const char *p;

	if (text[0] == '\0' || (text[0] == '0' && text[1] != '\0'))
		return -1;
	for (p = text; *p != '\0'; p++) {
		unsigned digit;

		if (*p < '0' || *p > '9')
			return -1;
		digit = (unsigned)(*p - '0');
		if (value > (max - digit) / 10)
			return -1;
		value = value * 10 + digit;
	}
	*out = value;
	return 0;
}

int parse_size(const char *text, uint64_t *out)
{
	char digits[32];
	size_t len = strlen(text);
	unsigned shift = 0;
	uint64_t value;

	if (len == 0 || len >= sizeof(digits))
		return -1;
	memcpy(digits, text, len + 1);
	switch (digits[len - 1]) {
	case 'k':
	case 'K':
		shift = 10;
		break;
	case 'm':
	case 'M':
		shift = 20;
		break;
	case 'g':
	case 'G':
		shift = 30;
		break;
	default:
		break;
	}
	if (shift != 0)
		digits[len - 1] = '\0';
	if (parse_u64(digits, UINT64_MAX >> shift, &value) < 0)
		return -1;
	*out = value << shift;
	return 0;
}

int ensure_stdio(struct hutch_error *err)
{
	for (int fd = 0; fd <= 2; fd++) {
		if (fcntl(fd, F_GETFD) >= 0 || errno != EBADF)
			continue;
		int opened = open("/dev/null", O_RDWR);

		if (opened < 0)
			return err_sys(err, errno, "open", "/dev/null");
		if (opened != fd)
			return err_msg(err, "open `/dev/null`: got fd %d for missing fd %d", opened, fd);
	}
	return 0;
}

void close_fd(int *fd)
{
	if (*fd >= 0) {
		int saved = errno;

		close(*fd);
		errno = saved;
	}
	*fd = -1;
}

void cleanup_fd_fn(int *fd)
{
	close_fd(fd);
}

void cleanup_free_fn(void *ptr)
{
	free(*(void **)ptr);
}

static const struct option_def *find_option(const struct option_def *table, size_t count,
					    const char *name)
{
	for (size_t i = 0; i < count; i++) {
		if (strcmp(table[i].name, name) == 0)
			return &table[i];
	}
	return NULL;
}

int parse_options(int argc, char **argv, const struct option_def *table, size_t count,
		  void *plan, struct hutch_error *err)
{
	int i;

	if (argc > 2 * ARG_MAX_COUNT)
		return err_msg(err, "too many arguments: %d (maximum %d)", argc, 2 * ARG_MAX_COUNT);
	for (i = 1; i < argc; i++) {
		if (strnlen(argv[i], ARG_MAX_LEN + 1) > ARG_MAX_LEN)
			return err_msg(err, "argument %d is longer than %d bytes", i, ARG_MAX_LEN);
	}

	for (i = 1; i < argc; i++) {
		const char *arg = argv[i];
		const char *value = NULL;
		const struct option_def *opt;

		if (strcmp(arg, "--") == 0)
			return i + 1;
		opt = find_option(table, count, arg);
		if (opt == NULL)
			return err_msg(err, "unknown option `%s` (see --list-options)", arg);
		if (opt->takes_value) {
			if (i + 1 >= argc || strcmp(argv[i + 1], "--") == 0)
				return err_msg(err, "option `%s` needs a value", arg);
			value = argv[++i];
		}
		if (opt->apply(plan, value, err) < 0)
			return -1;
	}
	return argc;
}

void print_option_names(const struct option_def *table, size_t count)
{
	for (size_t i = 0; i < count; i++)
		printf("%s\n", table[i].name);
}

/* Restore default dispositions for every signal and unblock them all, so that
 * nothing a caller or the monitor set up carries over into the next program. */
int reset_signals(struct hutch_error *err)
{
	sigset_t none;

	for (int sig = 1; sig < NSIG; sig++) {
		if (sig != SIGKILL && sig != SIGSTOP)
			signal(sig, SIG_DFL);
	}
	sigemptyset(&none);
	if (sigprocmask(SIG_SETMASK, &none, NULL) < 0)
		return err_sys(err, errno, "sigprocmask", NULL);
	return 0;
}
