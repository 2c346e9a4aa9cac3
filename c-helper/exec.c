/* The final exec, with the PATH lookup of execvpe(3) done inside the container. */
#define _GNU_SOURCE
#include "spawn.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const char default_path[] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

static const char *find_path(char *const *env)
{
	for (size_t i = 0; env[i] != NULL; i++) {
		if (strncmp(env[i], "PATH=", 5) == 0)
			return env[i] + 5;
	}
	return default_path;
}

static void fail_exec(const char *program, int errnum, struct hutch_error *err)
{
	err->exit_code = errnum == ENOENT || errnum == ENOTDIR ? EXIT_NOT_FOUND : EXIT_CANNOT_EXEC;
	err_sys(err, errnum, "exec", program);
}

/*
 * Try each PATH entry in turn. As execvp does, an EACCES on one entry is
 * remembered but the search goes on; it decides the result (126) if no
 * later entry runs. Returns only on failure, with ERR set.
 */
void exec_program(const struct spawn_plan *plan, struct hutch_error *err)
{
	const char *program = plan->argv[0];
	const char *dirs = find_path(plan->env);
	char candidate[PATH_MAX];
	bool saw_eacces = false;
	int last_errno = ENOENT;

	if (strchr(program, '/') != NULL) {
		execve(program, plan->argv, plan->env);
		fail_exec(program, errno, err);
		return;
	}
	for (;;) {
		size_t len = strcspn(dirs, ":");
		const char *dir = len == 0 ? "." : dirs;
		size_t dir_len = len == 0 ? 1 : len;

		if (dir_len + 1 + strlen(program) < sizeof(candidate)) {
			snprintf(candidate, sizeof(candidate), "%.*s/%s", (int)dir_len, dir, program);
			execve(candidate, plan->argv, plan->env);
			if (errno == EACCES)
				saw_eacces = true;
			else if (errno != ENOENT && errno != ENOTDIR) {
				fail_exec(program, errno, err);
				return;
			}
			last_errno = errno;
		}
		if (dirs[len] == '\0')
			break;
		dirs += len + 1;
	}
	fail_exec(program, saw_eacces ? EACCES : last_errno, err);
}
