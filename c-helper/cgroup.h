/* hutch-cgroup: cgroup layouts and the files it reads and writes. */
#ifndef HUTCH_CGROUP_H
#define HUTCH_CGROUP_H

#include "util.h"

#include <sys/types.h>

#define CGROUP_ID_MAX 64

enum cgroup_layout { LAYOUT_NONE, LAYOUT_V1, LAYOUT_V2, LAYOUT_HYBRID };

/* v1 controllers hutch uses, each at /sys/fs/cgroup/NAME. */
enum controller { CTRL_MEMORY, CTRL_PIDS, CTRL_CPU, CTRL_CPUACCT, CTRL_FREEZER, CTRL_COUNT };

struct cgroup_limits {
	uint64_t memory, memory_swap;   /* bytes; 0 = not set */
	uint64_t pids;
	uint64_t cpu_quota, cpu_period; /* microseconds */
	uint64_t cpu_shares;
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
int cgroup_probe(const char *root, enum cgroup_layout layout, uid_t uid, struct hutch_error *err);

#endif
