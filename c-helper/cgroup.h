/* hutch-cgroup: cgroup layouts and the files it reads and writes. */
#ifndef HUTCH_CGROUP_H
#define HUTCH_CGROUP_H

#include "util.h"

#include <sys/types.h>

#define CGROUP_ID_MAX 64
#define KEEP_FD_MAX 8

enum cgroup_layout { LAYOUT_NONE, LAYOUT_V1, LAYOUT_V2, LAYOUT_HYBRID };

/* v1 controllers hutch uses, each at /sys/fs/cgroup/NAME. */
enum controller { CTRL_MEMORY, CTRL_PIDS, CTRL_CPU, CTRL_CPUACCT, CTRL_FREEZER, CTRL_COUNT };

struct cgroup_limits {
	uint64_t memory, memory_swap;   /* bytes; 0 = not set */
	uint64_t pids;
	uint64_t cpu_quota, cpu_period; /* microseconds */
	uint64_t cpu_shares;
};

enum mode { MODE_NONE, MODE_RUN, MODE_JOIN, MODE_QUERY, MODE_REMOVE, MODE_PROBE, MODE_FREEZE,
	    MODE_THAW };

/* Everything hutch-cgroup does, decided from argv alone. */
struct cgroup_request {
	enum mode mode;
	const char *id;
	struct cgroup_limits limits;
	const char *root;
	enum cgroup_layout layout;     /* LAYOUT_NONE: detect */
	int keep_fds[KEEP_FD_MAX];     /* --keep-fd: stay open for hutch-spawn */
	size_t keep_fd_count;
};

/* The caller, recorded once at entry, so privilege is never inferred from geteuid() later. */
struct caller {
	uid_t uid;                 /* real uid */
	gid_t gid;                 /* real gid */
	bool setuid_mode;          /* effective uid 0 and real uid not 0 at entry */
};

/* The ceilings of the /etc/hutch/policy line that matches the caller. */
#define POLICY_NO_CEILING UINT64_MAX
struct policy_rule {
	bool matched;
	unsigned line;             /* line number in the policy file */
	uint64_t memory;           /* bytes or POLICY_NO_CEILING */
	uint64_t memory_swap;      /* bytes, POLICY_NO_CEILING, or 0 when the line has no memory-swap= */
	uint64_t pids;
	uint64_t cpus_milli;       /* CPUs times 1000 */
	uint64_t containers;       /* cgroups under hutch/<uid>/ */
};

/* The cgroup of one container: its hierarchy directories, opened. */
struct cgroup {
	enum cgroup_layout layout;
	const char *root;          /* "/sys/fs/cgroup" or the --root test tree */
	bool fake_tree;            /* --root: interface files are plain files to create */
	uid_t uid;                 /* the real uid of the caller */
	const char *id;
	/* v2: dirfd[0] is the unified cgroup; v1: one per controller, -1 when absent. */
	int dirfd[CTRL_COUNT];
	bool created[CTRL_COUNT];
	uint64_t max_containers;   /* from the policy; 0 = not counted */
};

extern const char *const controller_names[CTRL_COUNT];

/* cgroup_fs.c */
int detect_layout(const char *root, enum cgroup_layout *layout, struct hutch_error *err);
int cgroup_create(struct cgroup *cg, const struct cgroup_limits *limits, struct hutch_error *err);
void cgroup_undo_create(struct cgroup *cg);
int cgroup_write_limits(struct cgroup *cg, const struct cgroup_limits *limits,
			struct hutch_error *err);
int cgroup_enter(struct cgroup *cg, struct hutch_error *err);
int cgroup_open_existing(struct cgroup *cg, struct hutch_error *err);
int cgroup_join(struct cgroup *cg, struct hutch_error *err);
int cgroup_query(struct cgroup *cg, struct hutch_error *err);
int cgroup_remove(struct cgroup *cg, struct hutch_error *err);
int cgroup_check_owner(const struct cgroup *cg, int slot, struct hutch_error *err);
int cgroup_probe(const char *root, enum cgroup_layout layout, uid_t uid,
		 const struct policy_rule *rule, struct hutch_error *err);

/* freeze.c */
int cgroup_set_frozen(struct cgroup *cg, bool frozen, struct hutch_error *err);

/* cgroup.c: argv to a checked request; also the entry point of the fuzz target. */
int cgroup_parse_argv(int argc, char **argv, struct cgroup_request *req, int *first_spawn_arg,
		      struct hutch_error *err);

/* privilege.c */
int harden_process(struct caller *caller, struct hutch_error *err);
int keep_declared_fds(const struct cgroup_request *req, struct hutch_error *err);
int drop_privilege(const struct caller *caller, struct hutch_error *err);

/* policy.c */
#define POLICY_DIR "/etc/hutch"
#define POLICY_PATH POLICY_DIR "/policy"
int policy_load(const struct caller *caller, struct policy_rule *rule, struct hutch_error *err);
int policy_parse(const char *text, const struct caller *caller, const gid_t *groups,
		 size_t group_count, struct policy_rule *rule, struct hutch_error *err);
int policy_apply(const struct policy_rule *rule, struct cgroup_limits *limits,
		 struct hutch_error *err);

#endif
