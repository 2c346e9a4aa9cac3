/*
 * libFuzzer target for the two argv parsers and the policy parser
 * (`make fuzz`, needs clang). The first input byte picks the parser; for
 * the argv parsers the rest is split at NUL bytes into argv[1...].
 * Nothing is executed: the parsers only fill a plan or a request.
 */
#define _GNU_SOURCE
#include "cgroup.h"
#include "spawn.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *program_name = "hutch-fuzz";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_ARGS_MAX 1100

/* Split DATA at NUL bytes into a NULL-terminated argv whose argv[0] is "prog". */
static char **make_argv(const uint8_t *data, size_t size, int *argc)
{
	char **argv = calloc(FUZZ_ARGS_MAX + 2, sizeof(*argv));
	size_t start = 0;
	int count = 1;

	if (argv == NULL)
		abort();
	argv[0] = strdup("prog");
	for (size_t i = 0; i <= size && count <= FUZZ_ARGS_MAX; i++) {
		if (i < size && data[i] != '\0')
			continue;
		argv[count] = strndup((const char *)data + start, i - start);
		if (argv[count] == NULL)
			abort();
		count++;
		start = i + 1;
	}
	*argc = count;
	return argv;
}

static void free_argv(char **argv, int argc)
{
	for (int i = 0; i < argc; i++)
		free(argv[i]);
	free(argv);
}

static void fuzz_policy(const uint8_t *data, size_t size)
{
	char *text = strndup((const char *)data, size);
	struct caller caller = { .uid = 1000, .gid = 1000, .setuid_mode = true };
	gid_t groups[2] = { 1000, 100 };
	struct policy_rule rule;
	struct cgroup_limits limits = { .cpu_period = 1000 };
	struct hutch_error err = { 0 };

	if (text == NULL)
		abort();
	if (policy_parse(text, &caller, groups, 2, &rule, &err) == 0 && rule.matched)
		policy_apply(&rule, &limits, &err);
	free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct hutch_error err = { 0 };
	int argc;
	char **argv;

	if (size == 0)
		return 0;
	if (data[0] % 3 == 2) {
		fuzz_policy(data + 1, size - 1);
		return 0;
	}
	argv = make_argv(data + 1, size - 1, &argc);
	if (data[0] % 3 == 0) {
		struct cgroup_request req = { .mode = MODE_NONE };
		int first;

		cgroup_parse_argv(argc, argv, &req, &first, &err);
	} else {
		struct spawn_plan plan = { .log_fd = -1, .status_fd = -1, .log_rotate_fd = -1 };

		spawn_parse_argv(argc, argv, &plan, &err);
		for (size_t i = 0; i < plan.volume_count; i++)
			free(plan.volumes[i].kind == VOLUME_BIND ? plan.volumes[i].source
								 : plan.volumes[i].dest);
	}
	free_argv(argv, argc);
	return 0;
}
