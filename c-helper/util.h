/* Shared toolkit of hutch-spawn and hutch-cgroup: errors, fd helpers, option tables. */
#ifndef HUTCH_UTIL_H
#define HUTCH_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Exit codes shared with the frontend, as in `docker run`. */
enum {
	EXIT_SETUP = 125,   /* a setup step or the argv failed */
	EXIT_CANNOT_EXEC = 126,
	EXIT_NOT_FOUND = 127,
};

#define ERR_MSG_MAX 1024

/* An error carried up to main: the exit code to use, errno, and one finished line. */
struct hutch_error {
	int exit_code;
	int errnum;
	char msg[ERR_MSG_MAX];
};

/* Program name used as the prefix of every message ("hutch-spawn"). */
extern const char *program_name;

/*
 * Fill ERR with "STEP `PATH`: strerror(ERRNUM)" (PATH may be NULL).
 * Always returns -1 so callers can write `return err_sys(...)`.
 */
int err_sys(struct hutch_error *err, int errnum, const char *step, const char *path);

/* Fill ERR with a formatted message and no errno; returns -1. */
int err_msg(struct hutch_error *err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Print "PROGRAM: MSG" on stderr. */
void err_print(const struct hutch_error *err);

/* Print "PROGRAM: MSG" on stderr and exit with EXIT_SETUP. */
void die_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* read/write that retry on EINTR; write_all loops over short writes. */
ssize_t read_retry(int fd, void *buf, size_t len);
int write_all(int fd, const void *buf, size_t len);

/* Reset every signal disposition to the default and unblock all signals. */
int reset_signals(struct hutch_error *err);

/* Write the string TEXT to NAME under DIRFD (O_WRONLY, no symlink following). */
int write_file_at(int dirfd, const char *name, const char *text, bool create,
		  struct hutch_error *err);

/* Read up to LEN-1 bytes of NAME under DIRFD into BUF, NUL-terminated. */
int read_file_at(int dirfd, const char *name, char *buf, size_t len, struct hutch_error *err);

/*
 * Parse a decimal unsigned integer with no sign, no spaces and no leading
 * zeros (except "0") into *OUT; rejects values above MAX. Returns 0 or -1.
 */
int parse_u64(const char *text, uint64_t max, uint64_t *out);

/*
 * Parse a size: a number as parse_u64 takes it, optionally followed by k, m
 * or g (KiB, MiB, GiB, either case). Returns 0 or -1, also on overflow.
 */
int parse_size(const char *text, uint64_t *out);

/* Make fds 0, 1 and 2 exist (open /dev/null on the missing ones). */
int ensure_stdio(struct hutch_error *err);

/* Cleanup attribute helpers: the variable is released when it leaves scope. */
void cleanup_fd_fn(int *fd);
void cleanup_free_fn(void *ptr);
#define cleanup_fd __attribute__((cleanup(cleanup_fd_fn)))
#define cleanup_free __attribute__((cleanup(cleanup_free_fn)))

/* Close *FD if open and set it to -1. */
void close_fd(int *fd);

/* --- closed option tables --- */

#define ARG_MAX_COUNT 512       /* argv entries accepted before `--` and after it */
#define ARG_MAX_LEN 4096        /* bytes in one argv entry */

struct option_def {
	const char *name;       /* "--unshare-pid" */
	bool takes_value;
	/* Store VALUE (NULL for a flag) into the plan; returns 0 or fills ERR. */
	int (*apply)(void *plan, const char *value, struct hutch_error *err);
};

/*
 * Parse ARGV[1..] against TABLE until "--" or the end. Returns the index of
 * the first argument after "--" (ARGC when there is none), or -1 with ERR set.
 */
int parse_options(int argc, char **argv, const struct option_def *table, size_t count,
		  void *plan, struct hutch_error *err);

/* Print the option names of TABLE, one per line. */
void print_option_names(const struct option_def *table, size_t count);

#endif
