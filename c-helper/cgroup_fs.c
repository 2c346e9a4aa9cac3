/*
 * cgroup v1 and v2: layout detection, the hutch/<uid>/<ID> directories and
 * the interface files written in them.
 *
 * Every directory below the cgroup root is opened with O_NOFOLLOW relative
 * to its parent, and hutch/ and hutch/<uid>/ must belong to root or to the
 * caller, so another user cannot plant a directory for this one to write in.
 */
#define _GNU_SOURCE
#include "cgroup.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/magic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

const char *const controller_names[CTRL_COUNT] = { "memory", "pids", "cpu", "cpuacct", "freezer" };

int detect_layout(const char *root, enum cgroup_layout *layout, struct hutch_error *err)
{
	struct statfs fs;
	char unified[4096];

	if (statfs(root, &fs) < 0)
		return err_sys(err, errno, "statfs", root);
	if (fs.f_type == CGROUP2_SUPER_MAGIC) {
		*layout = LAYOUT_V2;
		return 0;
	}
	if (fs.f_type != TMPFS_MAGIC)
		return err_msg(err, "statfs `%s`: not a cgroup v1 or v2 mount", root);
	snprintf(unified, sizeof(unified), "%s/unified", root);
	*layout = statfs(unified, &fs) == 0 && fs.f_type == CGROUP2_SUPER_MAGIC ? LAYOUT_HYBRID
										 : LAYOUT_V1;
	return 0;
}

/* Number of hierarchy slots in use: one for v2, one per controller for v1. */
static int slot_count(const struct cgroup *cg)
{
	return cg->layout == LAYOUT_V2 ? 1 : CTRL_COUNT;
}

/* Open the hierarchy root of slot I (a v1 controller or the v2 tree); -1 if absent. */
static int open_hierarchy(const struct cgroup *cg, int i)
{
	char path[4096];

	if (cg->layout == LAYOUT_V2)
		snprintf(path, sizeof(path), "%s", cg->root);
	else
		snprintf(path, sizeof(path), "%s/%s", cg->root, controller_names[i]);
	return open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
}

/* Whether a v1 limit needs the controller of slot I. */
static bool slot_needed(const struct cgroup_limits *limits, int i)
{
	switch ((enum controller)i) {
	case CTRL_MEMORY:
		return limits->memory != 0;
	case CTRL_PIDS:
		return limits->pids != 0;
	case CTRL_CPU:
		return limits->cpu_quota != 0 || limits->cpu_period != 0 || limits->cpu_shares != 0;
	case CTRL_CPUACCT:
	case CTRL_FREEZER:
	case CTRL_COUNT:
	default:
		return false;
	}
}

/* Open (and with CREATE make) directory NAME under DIRFD, owned by root or UID. */
static int open_owned_dir(int dirfd, const char *name, bool create, uid_t uid,
			  struct hutch_error *err)
{
	struct stat st;
	int fd;

	if (create && mkdirat(dirfd, name, 0755) < 0 && errno != EEXIST)
		return err_sys(err, errno, "mkdir", name);
	fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return err_sys(err, errno, "open", name);
	if (fstat(fd, &st) < 0) {
		err_sys(err, errno, "fstat", name);
		close(fd);
		return -1;
	}
	if (st.st_uid != 0 && st.st_uid != uid) {
		err_msg(err, "open `%s`: owned by uid %u, expected root or %u", name,
			(unsigned)st.st_uid, (unsigned)uid);
		close(fd);
		return -1;
	}
	return fd;
}

/* Open hutch/<uid> of slot I, creating hutch/ and hutch/<uid>/ when CREATE. */
static int open_user_dir(const struct cgroup *cg, int i, bool create, struct hutch_error *err)
{
	cleanup_fd int base = open_hierarchy(cg, i);
	cleanup_fd int hutch = -1;
	char uid[16];

	if (base < 0)
		return err_sys(err, errno, "open", cg->layout == LAYOUT_V2 ? cg->root
								  : controller_names[i]);
	hutch = open_owned_dir(base, "hutch", create, cg->uid, err);
	if (hutch < 0)
		return -1;
	snprintf(uid, sizeof(uid), "%u", (unsigned)cg->uid);
	return open_owned_dir(hutch, uid, create, cg->uid, err);
}

/* Enable the v2 controllers the limits use in DIRFD's children, skipping those already on. */
static int enable_v2_controllers(const struct cgroup *cg, int dirfd, struct hutch_error *err)
{
	static const char *const names[] = { "memory", "pids", "cpu" };
	char current[1024] = "";
	struct hutch_error ignored = { 0 };

	/* A fake tree starts without the file; the kernel always has it. */
	if (read_file_at(dirfd, "cgroup.subtree_control", current, sizeof(current), &ignored) < 0 &&
	    !cg->fake_tree)
		return err_sys(err, ignored.errnum, "read", "cgroup.subtree_control");
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		char word[16];

		if (strstr(current, names[i]) != NULL)
			continue;
		snprintf(word, sizeof(word), "+%s", names[i]);
		if (cg->fake_tree) {
			size_t used = strlen(current);

			snprintf(current + used, sizeof(current) - used, "%s%s", used ? " " : "", names[i]);
			continue;
		}
		if (write_file_at(dirfd, "cgroup.subtree_control", word, false, err) < 0)
			return -1;
	}
	if (cg->fake_tree)
		return write_file_at(dirfd, "cgroup.subtree_control", current, true, err);
	return 0;
}

static int enable_v2_path(const struct cgroup *cg, int user_dir, struct hutch_error *err)
{
	cleanup_fd int base = open_hierarchy(cg, 0);
	cleanup_fd int hutch = -1;

	if (base < 0)
		return err_sys(err, errno, "open", cg->root);
	hutch = openat(base, "hutch", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (hutch < 0)
		return err_sys(err, errno, "open", "hutch");
	if (enable_v2_controllers(cg, base, err) < 0 || enable_v2_controllers(cg, hutch, err) < 0)
		return -1;
	return enable_v2_controllers(cg, user_dir, err);
}

/* Find a slot that is the same hierarchy as slot I (cpu,cpuacct mounted together); or -1. */
static int same_hierarchy(const struct cgroup *cg, int i, const struct stat *roots)
{
	for (int j = 0; j < i; j++) {
		if (cg->dirfd[j] >= 0 && roots[j].st_dev == roots[i].st_dev &&
		    roots[j].st_ino == roots[i].st_ino)
			return j;
	}
	return -1;
}

/* Number of cgroups (subdirectories) in the hutch/<uid>/ directory USER_DIR. */
static int count_cgroups(int user_dir, uint64_t *count, struct hutch_error *err)
{
	int listing_fd = openat(user_dir, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *listing = listing_fd >= 0 ? fdopendir(listing_fd) : NULL;
	struct dirent *entry;

	if (listing == NULL) {
		err_sys(err, errno, "open", "hutch/<uid>");
		close_fd(&listing_fd);
		return -1;
	}
	*count = 0;
	while ((entry = readdir(listing)) != NULL) {
		if (entry->d_type == DT_DIR && strcmp(entry->d_name, ".") != 0 &&
		    strcmp(entry->d_name, "..") != 0)
			(*count)++;
	}
	closedir(listing);
	return 0;
}

/*
 * Refuse to create one more cgroup when hutch/<uid>/ already holds the
 * policy's number. The count and the mkdir run under an exclusive flock
 * of the first hierarchy's hutch/<uid>/, which *LOCK keeps until the
 * caller closes it, so two concurrent runs cannot both pass the check.
 */
static int check_container_count(const struct cgroup *cg, int user_dir, int *lock,
				 struct hutch_error *err)
{
	uint64_t count;

	if (cg->max_containers == 0)
		return 0;
	if (*lock < 0) {
		*lock = fcntl(user_dir, F_DUPFD_CLOEXEC, 3);
		if (*lock < 0 || flock(*lock, LOCK_EX) < 0)
			return err_sys(err, errno, "flock", "hutch/<uid>");
	}
	if (count_cgroups(user_dir, &count, err) < 0)
		return -1;
	if (count >= cg->max_containers)
		return err_msg(err, "too many containers: uid %u has %" PRIu64 " cgroups and the "
			       "policy allows %" PRIu64 " (remove one with --remove)",
			       (unsigned)cg->uid, count, cg->max_containers);
	return 0;
}

int cgroup_create(struct cgroup *cg, const struct cgroup_limits *limits, struct hutch_error *err)
{
	struct stat roots[CTRL_COUNT];
	cleanup_fd int lock = -1;

	for (int i = 0; i < slot_count(cg); i++) {
		cleanup_fd int base = open_hierarchy(cg, i);
		cleanup_fd int user_dir = -1;
		int twin;

		if (base < 0 && cg->layout != LAYOUT_V2 && !slot_needed(limits, i))
			continue;
		if (base < 0 || fstat(base, &roots[i]) < 0)
			return err_sys(err, errno, "open", controller_names[i]);
		twin = same_hierarchy(cg, i, roots);
		if (twin >= 0) {
			cg->dirfd[i] = fcntl(cg->dirfd[twin], F_DUPFD_CLOEXEC, 3);
			continue;
		}
		user_dir = open_user_dir(cg, i, true, err);
		if (user_dir < 0)
			return -1;
		if (cg->layout == LAYOUT_V2 && enable_v2_path(cg, user_dir, err) < 0)
			return -1;
		if (check_container_count(cg, user_dir, &lock, err) < 0)
			return -1;
		if (mkdirat(user_dir, cg->id, 0755) < 0) {
			if (errno == EEXIST)
				return err_msg(err, "mkdir `%s`: cgroup already exists (remove it with "
					       "--remove)", cg->id);
			return err_sys(err, errno, "mkdir", cg->id);
		}
		cg->created[i] = true;
		cg->dirfd[i] = openat(user_dir, cg->id, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (cg->dirfd[i] < 0)
			return err_sys(err, errno, "open", cg->id);
	}
	return 0;
}

/* Delete the plain files a fake tree holds, which rmdir would find in the way. */
static void empty_fake_dir(int user_dir, const char *id)
{
	cleanup_fd int dir = openat(user_dir, id, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	int listing_fd = dir >= 0 ? fcntl(dir, F_DUPFD_CLOEXEC, 3) : -1;
	DIR *listing = listing_fd >= 0 ? fdopendir(listing_fd) : NULL;
	struct dirent *entry;

	if (listing == NULL) {
		close_fd(&listing_fd);
		return;
	}
	while ((entry = readdir(listing)) != NULL) {
		if (entry->d_type == DT_REG)
			unlinkat(dir, entry->d_name, 0);
	}
	closedir(listing);
}

/* rmdir hutch/<uid>/<ID> of slot I; returns 0 or -1 with ERR set. */
static int remove_slot(struct cgroup *cg, int i, struct hutch_error *err)
{
	cleanup_fd int user_dir = open_user_dir(cg, i, false, err);

	if (user_dir < 0)
		return -1;
	if (cg->fake_tree)
		empty_fake_dir(user_dir, cg->id);
	if (unlinkat(user_dir, cg->id, AT_REMOVEDIR) < 0 && errno != ENOENT)
		return err_sys(err, errno, "rmdir", cg->id);
	cg->created[i] = false;
	return 0;
}

void cgroup_undo_create(struct cgroup *cg)
{
	for (int i = 0; i < slot_count(cg); i++) {
		struct hutch_error ignored = { 0 };

		if (cg->created[i])
			remove_slot(cg, i, &ignored);
	}
}

static int write_u64(const struct cgroup *cg, int slot, const char *name, uint64_t value,
		     struct hutch_error *err)
{
	char text[32];

	snprintf(text, sizeof(text), "%" PRIu64, value);
	return write_file_at(cg->dirfd[slot], name, text, cg->fake_tree, err);
}

static int write_v1_limits(const struct cgroup *cg, const struct cgroup_limits *l,
			   struct hutch_error *err)
{
	/* The kernel rejects a memsw limit below the memory limit, so memory goes first. */
	if (l->memory && write_u64(cg, CTRL_MEMORY, "memory.limit_in_bytes", l->memory, err) < 0)
		return -1;
	if (l->memory_swap &&
	    write_u64(cg, CTRL_MEMORY, "memory.memsw.limit_in_bytes", l->memory_swap, err) < 0)
		return -1;
	if (l->pids && write_u64(cg, CTRL_PIDS, "pids.max", l->pids, err) < 0)
		return -1;
	if (l->cpu_period && write_u64(cg, CTRL_CPU, "cpu.cfs_period_us", l->cpu_period, err) < 0)
		return -1;
	if (l->cpu_quota && write_u64(cg, CTRL_CPU, "cpu.cfs_quota_us", l->cpu_quota, err) < 0)
		return -1;
	if (l->cpu_shares && write_u64(cg, CTRL_CPU, "cpu.shares", l->cpu_shares, err) < 0)
		return -1;
	return 0;
}

static int write_v2_limits(const struct cgroup *cg, const struct cgroup_limits *l,
			   struct hutch_error *err)
{
	char text[64];

	if (l->memory && write_u64(cg, 0, "memory.max", l->memory, err) < 0)
		return -1;
	if (l->memory_swap &&
	    write_u64(cg, 0, "memory.swap.max", l->memory_swap - l->memory, err) < 0)
		return -1;
	if (l->pids && write_u64(cg, 0, "pids.max", l->pids, err) < 0)
		return -1;
	if (l->cpu_quota || l->cpu_period) {
		uint64_t period = l->cpu_period ? l->cpu_period : 100000;

		if (l->cpu_quota)
			snprintf(text, sizeof(text), "%" PRIu64 " %" PRIu64, l->cpu_quota, period);
		else
			snprintf(text, sizeof(text), "max %" PRIu64, period);
		if (write_file_at(cg->dirfd[0], "cpu.max", text, cg->fake_tree, err) < 0)
			return -1;
	}
	/* Maps shares 2..262144 linearly onto weight 1..10000. */
	if (l->cpu_shares &&
	    write_u64(cg, 0, "cpu.weight", 1 + (l->cpu_shares - 2) * 9999 / 262142, err) < 0)
		return -1;
	return 0;
}

int cgroup_write_limits(struct cgroup *cg, const struct cgroup_limits *limits,
			struct hutch_error *err)
{
	if (cg->layout == LAYOUT_V2)
		return write_v2_limits(cg, limits, err);
	return write_v1_limits(cg, limits, err);
}

int cgroup_enter(struct cgroup *cg, struct hutch_error *err)
{
	for (int i = 0; i < slot_count(cg); i++) {
		/* A slot without created[] is absent or shares its hierarchy with an earlier one. */
		if (cg->created[i] && write_u64(cg, i, "cgroup.procs", (uint64_t)getpid(), err) < 0)
			return -1;
	}
	return 0;
}

int cgroup_open_existing(struct cgroup *cg, struct hutch_error *err)
{
	bool found = false;

	for (int i = 0; i < slot_count(cg); i++) {
		struct hutch_error ignored = { 0 };
		cleanup_fd int user_dir = open_user_dir(cg, i, false, &ignored);

		if (user_dir < 0)
			continue;
		cg->dirfd[i] = openat(user_dir, cg->id, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (cg->dirfd[i] >= 0)
			found = true;
		else if (errno != ENOENT)
			return err_sys(err, errno, "open", cg->id);
	}
	if (!found)
		return err_msg(err, "open `hutch/%u/%s`: no such cgroup", (unsigned)cg->uid, cg->id);
	return 0;
}

int cgroup_check_owner(const struct cgroup *cg, int slot, struct hutch_error *err)
{
	struct stat st;

	if (fstat(cg->dirfd[slot], &st) < 0)
		return err_sys(err, errno, "fstat", cg->id);
	if (st.st_uid != 0 && st.st_uid != cg->uid)
		return err_msg(err, "open `%s`: owned by uid %u, expected root or %u", cg->id,
			       (unsigned)st.st_uid, (unsigned)cg->uid);
	return 0;
}

/*
 * Move this process into the existing hutch/<uid>/<ID> of every hierarchy
 * that has one. hutch/ and hutch/<uid>/ were checked by open_user_dir;
 * <ID> itself must belong to root or to the caller too.
 */
int cgroup_join(struct cgroup *cg, struct hutch_error *err)
{
	if (cgroup_open_existing(cg, err) < 0)
		return -1;
	for (int i = 0; i < slot_count(cg); i++) {
		if (cg->dirfd[i] < 0)
			continue;
		if (cgroup_check_owner(cg, i, err) < 0)
			return -1;
		/* A hierarchy reached under two names (cpu, cpuacct) takes the same write twice. */
		if (write_u64(cg, i, "cgroup.procs", (uint64_t)getpid(), err) < 0)
			return -1;
	}
	return 0;
}

/* --- --query --- */

/* Print "KEY VALUE" from the first line of NAME; a missing file prints nothing. */
static void print_file(int dirfd, const char *name, const char *key)
{
	char buf[256];
	struct hutch_error ignored = { 0 };

	if (dirfd < 0 || read_file_at(dirfd, name, buf, sizeof(buf), &ignored) < 0)
		return;
	buf[strcspn(buf, "\n")] = '\0';
	printf("%s %s\n", key, buf);
}

/* Print "KEY N" for the line "FIELD N" of the flat-keyed file NAME, times SCALE. */
static void print_field(int dirfd, const char *name, const char *field, const char *key,
			uint64_t scale)
{
	char buf[4096];
	struct hutch_error ignored = { 0 };
	size_t field_len = strlen(field);

	if (dirfd < 0 || read_file_at(dirfd, name, buf, sizeof(buf), &ignored) < 0)
		return;
	for (char *line = buf; line != NULL && *line != '\0';) {
		char *next = strchr(line, '\n');

		if (next != NULL)
			*next++ = '\0';
		if (strncmp(line, field, field_len) == 0 && line[field_len] == ' ') {
			printf("%s %llu\n", key, strtoull(line + field_len + 1, NULL, 10) * scale);
			return;
		}
		line = next;
	}
}

int cgroup_query(struct cgroup *cg, struct hutch_error *err)
{
	if (cgroup_open_existing(cg, err) < 0)
		return -1;
	if (cg->layout == LAYOUT_V2) {
		int dir = cg->dirfd[0];

		print_field(dir, "memory.events", "oom_kill", "oom_kill", 1);
		print_file(dir, "memory.current", "memory_current");
		print_file(dir, "memory.peak", "memory_peak");
		print_file(dir, "memory.max", "memory_limit");
		print_file(dir, "pids.current", "pids_current");
		print_file(dir, "pids.max", "pids_limit");
		print_field(dir, "cpu.stat", "usage_usec", "cpu_usage_ns", 1000);
		return 0;
	}
	print_field(cg->dirfd[CTRL_MEMORY], "memory.oom_control", "oom_kill", "oom_kill", 1);
	print_file(cg->dirfd[CTRL_MEMORY], "memory.usage_in_bytes", "memory_current");
	print_file(cg->dirfd[CTRL_MEMORY], "memory.max_usage_in_bytes", "memory_peak");
	print_file(cg->dirfd[CTRL_MEMORY], "memory.limit_in_bytes", "memory_limit");
	print_file(cg->dirfd[CTRL_PIDS], "pids.current", "pids_current");
	print_file(cg->dirfd[CTRL_PIDS], "pids.max", "pids_limit");
	print_file(cg->dirfd[CTRL_CPUACCT], "cpuacct.usage", "cpu_usage_ns");
	return 0;
}

/* --- --remove --- */

int cgroup_remove(struct cgroup *cg, struct hutch_error *err)
{
	struct stat roots[CTRL_COUNT];

	if (cgroup_open_existing(cg, err) < 0)
		return -1;
	for (int i = 0; i < slot_count(cg); i++) {
		if (cg->dirfd[i] < 0 || fstat(cg->dirfd[i], &roots[i]) < 0)
			continue;
		/* cpu and cpuacct may be one hierarchy: remove its directory once. */
		if (same_hierarchy(cg, i, roots) >= 0)
			continue;
		if (remove_slot(cg, i, err) < 0)
			return -1;
	}
	return 0;
}

/* --- --probe --- */

static const char *layout_name(enum cgroup_layout layout)
{
	switch (layout) {
	case LAYOUT_V1:
		return "v1";
	case LAYOUT_V2:
		return "v2";
	case LAYOUT_HYBRID:
		return "hybrid";
	case LAYOUT_NONE:
	default:
		return "none";
	}
}

/* Whether this process could create a cgroup below hutch/<uid>, hutch or the root. */
static bool can_create_in(int base, uid_t uid)
{
	char user_path[32];

	snprintf(user_path, sizeof(user_path), "hutch/%u", (unsigned)uid);
	if (faccessat(base, user_path, F_OK, AT_SYMLINK_NOFOLLOW) == 0)
		return faccessat(base, user_path, W_OK, AT_EACCESS) == 0;
	if (faccessat(base, "hutch", F_OK, AT_SYMLINK_NOFOLLOW) == 0)
		return faccessat(base, "hutch", W_OK, AT_EACCESS) == 0;
	return faccessat(base, ".", W_OK, AT_EACCESS) == 0;
}

/*
 * In setuid mode RULE is the caller's policy line (matched or not), and a
 * present controller is writable exactly when a line matched; otherwise
 * RULE is NULL and the caller's own write access decides.
 */
static const char *probe_state(bool present, int base, uid_t uid, const struct policy_rule *rule)
{
	if (!present)
		return "missing";
	if (rule != NULL)
		return rule->matched ? "writable" : "readonly";
	return can_create_in(base, uid) ? "writable" : "readonly";
}

int cgroup_probe(const char *root, enum cgroup_layout layout, uid_t uid,
		 const struct policy_rule *rule, struct hutch_error *err)
{
	static const enum controller shown[] = { CTRL_MEMORY, CTRL_PIDS, CTRL_CPU, CTRL_FREEZER };
	struct cgroup cg = { .layout = layout, .root = root, .uid = uid };
	char available[1024] = "";

	printf("layout %s\n", layout_name(layout));
	if (layout == LAYOUT_V2) {
		cleanup_fd int base = open_hierarchy(&cg, 0);

		if (base < 0)
			return err_sys(err, errno, "open", root);
		read_file_at(base, "cgroup.controllers", available, sizeof(available), err);
		/* cgroup v2 has no freezer controller: cgroup.freeze is in every cgroup. */
		for (size_t i = 0; i < sizeof(shown) / sizeof(shown[0]); i++) {
			const char *name = controller_names[shown[i]];
			bool present = shown[i] == CTRL_FREEZER || strstr(available, name) != NULL;

			printf("controller %s %s\n", name, probe_state(present, base, uid, rule));
		}
		return 0;
	}
	for (size_t i = 0; i < sizeof(shown) / sizeof(shown[0]); i++) {
		cleanup_fd int base = open_hierarchy(&cg, shown[i]);
		printf("controller %s %s\n", controller_names[shown[i]],
		       probe_state(base >= 0, base, uid, rule));
	}
	return 0;
}
