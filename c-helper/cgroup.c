/*
 * hutch-cgroup: create hutch/<uid>/<ID> cgroups, write their limits, move
 * this process in, drop privilege and exec hutch-spawn. With --join it
 * moves into an existing hutch/<uid>/<ID> instead, for `hutch-spawn --join`.
 *
 * Written so that an administrator may install it setuid root: any local
 * user can run it with any argv. So the environment is cleared, every value
 * is range-checked, the cgroup path uses the real uid only, --root and
 * --layout are only for real root, and the drop back to the real ids is
 * verified before the exec of the compiled-in SPAWN_PATH.
 *
 * NOTE: limits are only range-checked. No root-owned /etc/hutch/policy
 * clamps them yet, so a setuid install lets any user set any value in range.
 */
#define _GNU_SOURCE
#include "cgroup.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef SPAWN_PATH
#error "build with -DSPAWN_PATH=\"/path/to/hutch-spawn\" (the Makefile does)"
#endif

const char *program_name = "hutch-cgroup";

enum mode { MODE_NONE, MODE_RUN, MODE_JOIN, MODE_QUERY, MODE_REMOVE, MODE_PROBE };

struct cgroup_request {
	enum mode mode;
	const char *id;
	struct cgroup_limits limits;
	const char *root;
	enum cgroup_layout layout;     /* LAYOUT_NONE: detect */
};

#define MEMORY_MIN (4ULL << 20)
#define MEMORY_MAX (1ULL << 62)

static int set_mode(struct cgroup_request *req, enum mode mode, const char *id,
		    struct hutch_error *err)
{
	if (req->mode != MODE_NONE)
		return err_msg(err, "give only one of --id, --join, --query, --remove and --probe");
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
	char digits[32];
	size_t len = strlen(v);
	unsigned shift = 0;

	if (len == 0 || len >= sizeof(digits))
		return err_msg(e, "invalid %s `%s`: expected BYTES, optionally with k, m or g", opt, v);
	memcpy(digits, v, len + 1);
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
	if (parse_range(opt, digits, MEMORY_MIN >> shift, MEMORY_MAX >> shift, out, e) < 0)
		return err_msg(e, "invalid %s `%s`: expected 4m to 2^62 bytes (k, m, g suffixes)",
			       opt, v);
	*out <<= shift;
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

static const struct option_def cgroup_options[] = {
	{ "--id", true, opt_id },
	{ "--join", true, opt_join },
	{ "--query", true, opt_query },
	{ "--remove", true, opt_remove },
	{ "--probe", false, opt_probe },
	{ "--memory", true, opt_memory },
	{ "--memory-swap", true, opt_memory_swap },
	{ "--pids", true, opt_pids },
	{ "--cpu-quota", true, opt_cpu_quota },
	{ "--cpu-period", true, opt_cpu_period },
	{ "--cpu-shares", true, opt_cpu_shares },
	{ "--root", true, opt_root },
	{ "--layout", true, opt_layout },
};

#define CGROUP_OPTION_COUNT (sizeof(cgroup_options) / sizeof(cgroup_options[0]))

static int validate_request(const struct cgroup_request *req, int spawn_argc,
			    struct hutch_error *err)
{
	const struct cgroup_limits *l = &req->limits;
	bool has_limits = l->memory || l->memory_swap || l->pids || l->cpu_quota ||
			  l->cpu_period || l->cpu_shares;

	if (req->mode == MODE_NONE)
		return err_msg(err, "missing --id, --join, --query, --remove or --probe");
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
	if (req->layout != LAYOUT_NONE && req->root == NULL)
		return err_msg(err, "--layout needs --root");
	return 0;
}

/* Steps before anything else, for a process that may be setuid root. */
static int harden_process(struct hutch_error *err)
{
	if (getauxval(AT_SECURE) != 0 && geteuid() != 0)
		return err_msg(err, "refusing to run setgid or with file capabilities "
			       "(install it setuid root or without privilege)");
	if (clearenv() != 0)
		return err_msg(err, "clearenv failed");
	if (ensure_stdio(err) < 0)
		return -1;
	/* Non-dumpable: the caller cannot ptrace or read /proc/PID/mem while it has privilege. */
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
		return err_sys(err, errno, "prctl PR_SET_DUMPABLE", NULL);
	for (int sig = 1; sig < NSIG; sig++) {
		if (sig != SIGKILL && sig != SIGSTOP)
			signal(sig, SIG_DFL);
	}
	umask(022);
	return 0;
}

/* Become the real uid and gid for good and check that no way back remains. */
static int drop_privilege(struct hutch_error *err)
{
	uid_t ruid = getuid(), euid, suid;
	gid_t rgid = getgid(), egid, sgid;

	if (geteuid() != ruid || getegid() != rgid) {
		if (geteuid() == 0 && setgroups(0, NULL) < 0)
			return err_sys(err, errno, "setgroups", NULL);
		if (setresgid(rgid, rgid, rgid) < 0)
			return err_sys(err, errno, "setresgid", NULL);
		if (setresuid(ruid, ruid, ruid) < 0)
			return err_sys(err, errno, "setresuid", NULL);
	}
	if (getresuid(&ruid, &euid, &suid) < 0 || getresgid(&rgid, &egid, &sgid) < 0)
		return err_sys(err, errno, "getresuid", NULL);
	if (euid != ruid || suid != ruid || egid != rgid || sgid != rgid)
		return err_msg(err, "drop privilege: the effective or saved ids still differ");
	if (ruid != 0 && setresuid((uid_t)-1, 0, (uid_t)-1) == 0)
		return err_msg(err, "drop privilege: setresuid to root still succeeds");
	return 0;
}

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

static int run(const struct cgroup_request *req, struct cgroup *cg, char **spawn_args,
	       struct hutch_error *err)
{
	if (cgroup_create(cg, &req->limits, err) < 0 || cgroup_write_limits(cg, &req->limits, err) < 0 ||
	    cgroup_enter(cg, err) < 0 || drop_privilege(err) < 0) {
		cgroup_undo_create(cg);
		return -1;
	}
	/* The cgroup contains this process, so a failed exec cannot remove it; --remove does. */
	return exec_spawn(cg, spawn_args, err);
}

/* Enter the existing cgroup of a running container, for `hutch-spawn --join`. */
static int join(struct cgroup *cg, char **spawn_args, struct hutch_error *err)
{
	if (cgroup_join(cg, err) < 0 || drop_privilege(err) < 0)
		return -1;
	return exec_spawn(cg, spawn_args, err);
}

static int dispatch(struct cgroup_request *req, char **spawn_args, struct hutch_error *err)
{
	struct cgroup cg = {
		.root = req->root != NULL ? req->root : "/sys/fs/cgroup",
		.fake_tree = req->root != NULL,
		.uid = getuid(),
		.id = req->id,
	};

	for (int i = 0; i < CTRL_COUNT; i++)
		cg.dirfd[i] = -1;
	cg.layout = req->layout;
	if (cg.layout == LAYOUT_NONE && detect_layout(cg.root, &cg.layout, err) < 0)
		return -1;
	if (req->mode == MODE_PROBE)
		return cgroup_probe(cg.root, cg.layout, cg.uid, err);
	if (cg.layout == LAYOUT_HYBRID)
		cg.layout = LAYOUT_V1;
	switch (req->mode) {
	case MODE_RUN:
		return run(req, &cg, spawn_args, err);
	case MODE_JOIN:
		return join(&cg, spawn_args, err);
	case MODE_QUERY:
		if (drop_privilege(err) < 0)
			return -1;
		return cgroup_query(&cg, err);
	case MODE_REMOVE:
		return cgroup_remove(&cg, err);
	case MODE_PROBE:
	case MODE_NONE:
	default:
		return err_msg(err, "missing --id, --join, --query, --remove or --probe");
	}
}

int main(int argc, char **argv)
{
	struct cgroup_request req = { 0 };
	struct hutch_error err = { 0 };
	int first_spawn_arg;

	if (harden_process(&err) < 0)
		goto fail;
	if (argc == 2 && strcmp(argv[1], "--list-options") == 0) {
		print_option_names(cgroup_options, CGROUP_OPTION_COUNT);
		return 0;
	}
	first_spawn_arg = parse_options(argc, argv, cgroup_options, CGROUP_OPTION_COUNT, &req, &err);
	if (first_spawn_arg < 0)
		goto fail;
	if (validate_request(&req, argc - first_spawn_arg, &err) < 0)
		goto fail;
	if (dispatch(&req, argv + first_spawn_arg, &err) < 0)
		goto fail;
	return 0;

fail:
	err_print(&err);
	return EXIT_SETUP;
}
