/*
 * hutch-cgroup: create hutch/<uid>/<ID> cgroups, write their limits, move
 * this process in, drop privilege and exec hutch-spawn. With --join it
 * moves into an existing hutch/<uid>/<ID> instead, for `hutch-spawn --join`;
 * --freeze and --thaw pause and resume one.
 *
 * Written so that an administrator may install it setuid root: any local
 * user can run it with any argv. So privilege.c hardens the process at
 * entry, every value is range-checked, the cgroup path uses the real uid
 * only, --root and --layout are only for real root, a setuid caller's
 * limits must fit the root-owned /etc/hutch/policy (policy.c), and the drop
 * back to the real ids is verified before the exec of the compiled-in
 * SPAWN_PATH.
 */
#define _GNU_SOURCE
#include "cgroup.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef SPAWN_PATH
#error "build with -DSPAWN_PATH=\"/path/to/hutch-spawn\" (the Makefile does)"
#endif

#ifndef HUTCH_FUZZ
const char *program_name = "hutch-cgroup";
#endif

#define MEMORY_MIN (4ULL << 20)
#define MEMORY_MAX (1ULL << 62)

static int set_mode(struct cgroup_request *req, enum mode mode, const char *id,
		    struct hutch_error *err)
{
	if (req->mode != MODE_NONE)
		return err_msg(err, "give only one of --id, --join, --query, --remove, --freeze, "
			       "--thaw and --probe");
	req->mode = mode;
	req->id = id;
	if (id == NULL)
		return 0;
	/* The ID becomes one path component: no '/', no "..", no other bytes. */
	if (strlen(id) == 0 || strlen(id) > CGROUP_ID_MAX ||
	    strspn(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") !=
		    strlen(id))
		return err_msg(err, "invalid ID `%s`: expected 1 to 64 of [A-Za-z0-9_-]", id);
	return 0;
}

static int opt_id(void *p, const char *v, struct hutch_error *e)
{
	return set_mode(p, MODE_RUN, v, e);
}

static int opt_join(void *p, const char *v, struct hutch_error *e)
{
	return set_mode(p, MODE_JOIN, v, e);
}

static int opt_query(void *p, const char *v, struct hutch_error *e)
{
	return set_mode(p, MODE_QUERY, v, e);
}

static int opt_remove(void *p, const char *v, struct hutch_error *e)
{
	return set_mode(p, MODE_REMOVE, v, e);
}

static int opt_freeze(void *p, const char *v, struct hutch_error *e)
{
	return set_mode(p, MODE_FREEZE, v, e);
}

static int opt_thaw(void *p, const char *v, struct hutch_error *e)
{
	return set_mode(p, MODE_THAW, v, e);
}

static int opt_probe(void *p, const char *v, struct hutch_error *e)
{
	(void)v;
	return set_mode(p, MODE_PROBE, NULL, e);
}

static int parse_range(const char *opt, const char *v, uint64_t min, uint64_t max, uint64_t *out,
		       struct hutch_error *e)
{
	uint64_t value;

	if (*out != 0)
		return err_msg(e, "option `%s` given twice", opt);
	if (parse_u64(v, UINT64_MAX, &value) < 0 || value < min || value > max)
		return err_msg(e, "invalid %s `%s`: expected %llu to %llu", opt, v,
			       (unsigned long long)min, (unsigned long long)max);
	*out = value;
	return 0;
}

/* BYTES is a decimal number with an optional k, m or g suffix (powers of 1024). */
static int parse_bytes(const char *opt, const char *v, uint64_t *out, struct hutch_error *e)
{
	uint64_t value;

	if (*out != 0)
		return err_msg(e, "option `%s` given twice", opt);
	if (parse_size(v, &value) < 0 || value < MEMORY_MIN || value > MEMORY_MAX)
		return err_msg(e, "invalid %s `%s`: expected 4m to 2^62 bytes (k, m, g suffixes)",
			       opt, v);
	*out = value;
	return 0;
}

#define LIMITS(p) (&((struct cgroup_request *)(p))->limits)

static int opt_memory(void *p, const char *v, struct hutch_error *e)
{
	return parse_bytes("--memory", v, &LIMITS(p)->memory, e);
}

static int opt_memory_swap(void *p, const char *v, struct hutch_error *e)
{
	return parse_bytes("--memory-swap", v, &LIMITS(p)->memory_swap, e);
}

static int opt_pids(void *p, const char *v, struct hutch_error *e)
{
	return parse_range("--pids", v, 1, 4194304, &LIMITS(p)->pids, e);
}

static int opt_cpu_quota(void *p, const char *v, struct hutch_error *e)
{
	return parse_range("--cpu-quota", v, 1000, 1000000000, &LIMITS(p)->cpu_quota, e);
}

static int opt_cpu_period(void *p, const char *v, struct hutch_error *e)
{
	return parse_range("--cpu-period", v, 1000, 1000000, &LIMITS(p)->cpu_period, e);
}

static int opt_cpu_shares(void *p, const char *v, struct hutch_error *e)
{
	return parse_range("--cpu-shares", v, 2, 262144, &LIMITS(p)->cpu_shares, e);
}

static int opt_root(void *p, const char *v, struct hutch_error *e)
{
	struct cgroup_request *req = p;

	/* Real uid, not effective: a setuid install must never let a user pick the tree. */
	if (getuid() != 0)
		return err_msg(e, "option `--root` is only for tests run by root");
	if (v[0] != '/')
		return err_msg(e, "invalid --root `%s`: expected an absolute path", v);
	req->root = v;
	return 0;
}

static int opt_layout(void *p, const char *v, struct hutch_error *e)
{
	struct cgroup_request *req = p;

	if (getuid() != 0)
		return err_msg(e, "option `--layout` is only for tests run by root");
	if (strcmp(v, "v1") == 0)
		req->layout = LAYOUT_V1;
	else if (strcmp(v, "v2") == 0)
		req->layout = LAYOUT_V2;
	else
		return err_msg(e, "invalid --layout `%s`: expected v1 or v2", v);
	return 0;
}

/* An fd of the caller that hutch-spawn needs, such as its --log-fd; every other one is closed. */
static int opt_keep_fd(void *p, const char *v, struct hutch_error *e)
{
	struct cgroup_request *req = p;
	uint64_t value;

	if (req->keep_fd_count == KEEP_FD_MAX)
		return err_msg(e, "too many --keep-fd options (maximum %d)", KEEP_FD_MAX);
	if (parse_u64(v, 1048576, &value) < 0 || value < 3)
		return err_msg(e, "invalid --keep-fd `%s`: expected an fd number, 3 to 1048576", v);
	for (size_t i = 0; i < req->keep_fd_count; i++) {
		if (req->keep_fds[i] == (int)value)
			return err_msg(e, "--keep-fd `%s` given twice", v);
	}
	req->keep_fds[req->keep_fd_count++] = (int)value;
	return 0;
}

static const struct option_def cgroup_options[] = {
	{ "--id", true, opt_id },
	{ "--join", true, opt_join },
	{ "--query", true, opt_query },
	{ "--remove", true, opt_remove },
	{ "--freeze", true, opt_freeze },
	{ "--thaw", true, opt_thaw },
	{ "--probe", false, opt_probe },
	{ "--memory", true, opt_memory },
	{ "--memory-swap", true, opt_memory_swap },
	{ "--pids", true, opt_pids },
	{ "--cpu-quota", true, opt_cpu_quota },
	{ "--cpu-period", true, opt_cpu_period },
	{ "--cpu-shares", true, opt_cpu_shares },
	{ "--root", true, opt_root },
	{ "--layout", true, opt_layout },
	{ "--keep-fd", true, opt_keep_fd },
};

#define CGROUP_OPTION_COUNT (sizeof(cgroup_options) / sizeof(cgroup_options[0]))

static int validate_request(const struct cgroup_request *req, int spawn_argc,
			    struct hutch_error *err)
{
	const struct cgroup_limits *l = &req->limits;
	bool has_limits = l->memory || l->memory_swap || l->pids || l->cpu_quota ||
			  l->cpu_period || l->cpu_shares;

	if (req->mode == MODE_NONE)
		return err_msg(err, "missing --id, --join, --query, --remove, --freeze, --thaw or "
			       "--probe");
	if (req->mode != MODE_RUN && has_limits)
		return err_msg(err, "limits go only with --id");
	if (req->mode != MODE_RUN && req->mode != MODE_JOIN && spawn_argc > 0)
		return err_msg(err, "`-- SPAWN-ARG...` goes only with --id or --join");
	if (req->mode == MODE_RUN && spawn_argc == 0)
		return err_msg(err, "missing `-- SPAWN-ARG...` after the limits");
	if (req->mode == MODE_JOIN && spawn_argc == 0)
		return err_msg(err, "missing `-- SPAWN-ARG...` after --join ID");
	if (l->memory_swap && !l->memory)
		return err_msg(err, "--memory-swap needs --memory");
	if (l->memory_swap && l->memory_swap < l->memory)
		return err_msg(err, "--memory-swap must be at least --memory (it is memory plus swap)");
	if (req->mode != MODE_RUN && req->mode != MODE_JOIN && req->keep_fd_count > 0)
		return err_msg(err, "--keep-fd goes only with --id or --join");
	if (req->layout != LAYOUT_NONE && req->root == NULL)
		return err_msg(err, "--layout needs --root");
	return 0;
}

int cgroup_parse_argv(int argc, char **argv, struct cgroup_request *req, int *first_spawn_arg,
		      struct hutch_error *err)
{
	int first = parse_options(argc, argv, cgroup_options, CGROUP_OPTION_COUNT, req, err);

	if (first < 0)
		return -1;
	*first_spawn_arg = first;
	return validate_request(req, argc - first, err);
}

#ifndef HUTCH_FUZZ

/* Exec SPAWN_PATH with SPAWN_ARGS and an empty environment; returns only on failure. */
static int exec_spawn(struct cgroup *cg, char **spawn_args, struct hutch_error *err)
{
	int spawn_argc = 0;
	char **argv;
	char *envp[] = { NULL };

	while (spawn_args[spawn_argc] != NULL)
		spawn_argc++;
	argv = calloc((size_t)spawn_argc + 2, sizeof(*argv));
	if (argv == NULL)
		return err_sys(err, errno, "calloc", NULL);
	argv[0] = (char *)"hutch-spawn";
	memcpy(argv + 1, spawn_args, (size_t)spawn_argc * sizeof(*argv));
	for (int fd = 0; fd < CTRL_COUNT; fd++)
		close_fd(&cg->dirfd[fd]);
	execve(SPAWN_PATH, argv, envp);
	err_sys(err, errno, "execve", SPAWN_PATH);
	free(argv);
	return -1;
}

static int run(struct cgroup_request *req, const struct caller *caller, struct cgroup *cg,
	       char **spawn_args, struct hutch_error *err)
{
	if (cgroup_create(cg, &req->limits, err) < 0 || cgroup_write_limits(cg, &req->limits, err) < 0 ||
	    cgroup_enter(cg, err) < 0 || drop_privilege(caller, err) < 0) {
		cgroup_undo_create(cg);
		return -1;
	}
	/* The cgroup contains this process, so a failed exec cannot remove it; --remove does. */
	return exec_spawn(cg, spawn_args, err);
}

/* Enter the existing cgroup of a running container, for `hutch-spawn --join`. */
static int join(const struct caller *caller, struct cgroup *cg, char **spawn_args,
		struct hutch_error *err)
{
	if (cgroup_join(cg, err) < 0 || drop_privilege(caller, err) < 0)
		return -1;
	return exec_spawn(cg, spawn_args, err);
}

/*
 * In setuid mode, load the policy (any problem with it refuses every
 * request), require a matching line for the forms that run a process, and
 * fit the limits of --id under its ceilings.
 */
static int check_policy(struct cgroup_request *req, const struct caller *caller,
			struct policy_rule *rule, struct cgroup *cg, struct hutch_error *err)
{
	if (policy_load(caller, rule, err) < 0)
		return -1;
	if (req->mode != MODE_RUN && req->mode != MODE_JOIN)
		return 0;
	if (!rule->matched)
		return err_msg(err, "policy `%s`: no user or group line matches uid %u, so it may not "
			       "use the setuid hutch-cgroup (ask an administrator)", POLICY_PATH,
			       (unsigned)caller->uid);
	if (req->mode == MODE_RUN) {
		if (policy_apply(rule, &req->limits, err) < 0)
			return -1;
		if (rule->containers != POLICY_NO_CEILING)
			cg->max_containers = rule->containers;
	}
	return 0;
}

static int dispatch(struct cgroup_request *req, const struct caller *caller, char **spawn_args,
		    struct hutch_error *err)
{
	struct policy_rule rule = { .matched = false };
	struct cgroup cg = {
		.root = req->root != NULL ? req->root : "/sys/fs/cgroup",
		.fake_tree = req->root != NULL,
		.uid = caller->uid,
		.id = req->id,
	};

	for (int i = 0; i < CTRL_COUNT; i++)
		cg.dirfd[i] = -1;
	if (caller->setuid_mode && check_policy(req, caller, &rule, &cg, err) < 0)
		return -1;
	cg.layout = req->layout;
	if (cg.layout == LAYOUT_NONE && detect_layout(cg.root, &cg.layout, err) < 0)
		return -1;
	if (req->mode == MODE_PROBE)
		return cgroup_probe(cg.root, cg.layout, cg.uid, caller->setuid_mode ? &rule : NULL,
				    err);
	if (cg.layout == LAYOUT_HYBRID)
		cg.layout = LAYOUT_V1;
	switch (req->mode) {
	case MODE_RUN:
		return run(req, caller, &cg, spawn_args, err);
	case MODE_JOIN:
		return join(caller, &cg, spawn_args, err);
	case MODE_QUERY:
		if (drop_privilege(caller, err) < 0)
			return -1;
		return cgroup_query(&cg, err);
	case MODE_REMOVE:
		return cgroup_remove(&cg, err);
	case MODE_FREEZE:
		return cgroup_set_frozen(&cg, true, err);
	case MODE_THAW:
		return cgroup_set_frozen(&cg, false, err);
	case MODE_PROBE:
	case MODE_NONE:
	default:
		return err_msg(err, "missing --id, --join, --query, --remove, --freeze, --thaw or "
			       "--probe");
	}
}

int main(int argc, char **argv)
{
	struct cgroup_request req = { .mode = MODE_NONE };
	struct caller caller = { 0 };
	struct hutch_error err = { 0 };
	int first_spawn_arg;

	if (harden_process(&caller, &err) < 0)
		goto fail;
	if (argc == 2 && strcmp(argv[1], "--list-options") == 0) {
		print_option_names(cgroup_options, CGROUP_OPTION_COUNT);
		return 0;
	}
	if (cgroup_parse_argv(argc, argv, &req, &first_spawn_arg, &err) < 0)
		goto fail;
	if (keep_declared_fds(&req, &err) < 0)
		goto fail;
	if (dispatch(&req, &caller, argv + first_spawn_arg, &err) < 0)
		goto fail;
	return 0;

fail:
	err_print(&err);
	return EXIT_SETUP;
}
#endif
