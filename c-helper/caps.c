/*
 * Capabilities and ids of the container process.
 *
 * The container's set is the default set, less --cap-drop, plus --cap-add.
 * The bounding set is cut to it first, while the process still holds
 * CAP_SETPCAP; then no_new_privs, the gid, groups and uid; then capset sets
 * effective = permitted = that set for uid 0 and nothing for any other uid.
 * Inheritable and ambient stay empty, so that executing a file with
 * inheritable file capabilities gains nothing (CVE-2022-24769).
 */
#define _GNU_SOURCE
#include "spawn.h"

#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <stdio.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

/* The 11 default capabilities of docs/helper-spec.md, Podman's default set. */
static const uint64_t default_caps =
	(1ULL << CAP_CHOWN) | (1ULL << CAP_DAC_OVERRIDE) | (1ULL << CAP_FOWNER) |
	(1ULL << CAP_FSETID) | (1ULL << CAP_KILL) | (1ULL << CAP_NET_BIND_SERVICE) |
	(1ULL << CAP_SETFCAP) | (1ULL << CAP_SETGID) | (1ULL << CAP_SETPCAP) |
	(1ULL << CAP_SETUID) | (1ULL << CAP_SYS_CHROOT);

#define CAP_NAME(name) [CAP_##name] = #name

/* Names of capabilities(7) without CAP_, by number, up to CHECKPOINT_RESTORE of Linux 5.9. */
static const char *const cap_names[] = {
	CAP_NAME(CHOWN),           CAP_NAME(DAC_OVERRIDE),     CAP_NAME(DAC_READ_SEARCH),
	CAP_NAME(FOWNER),          CAP_NAME(FSETID),           CAP_NAME(KILL),
	CAP_NAME(SETGID),          CAP_NAME(SETUID),           CAP_NAME(SETPCAP),
	CAP_NAME(LINUX_IMMUTABLE), CAP_NAME(NET_BIND_SERVICE), CAP_NAME(NET_BROADCAST),
	CAP_NAME(NET_ADMIN),       CAP_NAME(NET_RAW),          CAP_NAME(IPC_LOCK),
	CAP_NAME(IPC_OWNER),       CAP_NAME(SYS_MODULE),       CAP_NAME(SYS_RAWIO),
	CAP_NAME(SYS_CHROOT),      CAP_NAME(SYS_PTRACE),       CAP_NAME(SYS_PACCT),
	CAP_NAME(SYS_ADMIN),       CAP_NAME(SYS_BOOT),         CAP_NAME(SYS_NICE),
	CAP_NAME(SYS_RESOURCE),    CAP_NAME(SYS_TIME),         CAP_NAME(SYS_TTY_CONFIG),
	CAP_NAME(MKNOD),           CAP_NAME(LEASE),            CAP_NAME(AUDIT_WRITE),
	CAP_NAME(AUDIT_CONTROL),   CAP_NAME(SETFCAP),          CAP_NAME(MAC_OVERRIDE),
	CAP_NAME(MAC_ADMIN),       CAP_NAME(SYSLOG),           CAP_NAME(WAKE_ALARM),
	CAP_NAME(BLOCK_SUSPEND),   CAP_NAME(AUDIT_READ),       CAP_NAME(PERFMON),
	CAP_NAME(BPF),             CAP_NAME(CHECKPOINT_RESTORE),
};

#define CAP_NAME_COUNT (sizeof(cap_names) / sizeof(cap_names[0]))

/* Returns the number of the capability NAME (any case, no CAP_ prefix), or -1. */
static int find_capability(const char *name)
{
	for (size_t cap = 0; cap < CAP_NAME_COUNT; cap++) {
		if (cap_names[cap] != NULL && strcasecmp(name, cap_names[cap]) == 0)
			return (int)cap;
	}
	return -1;
}

int set_cap_drop(void *p, const char *v, struct hutch_error *e)
{
	struct spawn_plan *plan = p;
	int cap;

	if (strcasecmp(v, "ALL") == 0) {
		plan->drop_all_caps = true;
		return 0;
	}
	cap = find_capability(v);
	if (cap < 0)
		return err_msg(e, "invalid --cap-drop `%s`: expected ALL or a capability name "
			       "without CAP_, such as NET_RAW", v);
	plan->caps_dropped |= 1ULL << cap;
	return 0;
}

int set_cap_add(void *p, const char *v, struct hutch_error *e)
{
	struct spawn_plan *plan = p;
	int cap = find_capability(v);

	if (cap < 0)
		return err_msg(e, "invalid --cap-add `%s`: expected a capability name without CAP_, "
			       "such as NET_RAW", v);
	plan->caps_added |= 1ULL << cap;
	return 0;
}

int check_cap_options(const struct spawn_plan *plan, struct hutch_error *err)
{
	uint64_t both = plan->caps_added & plan->caps_dropped;

	for (size_t cap = 0; cap < CAP_NAME_COUNT; cap++) {
		if (both & (1ULL << cap))
			return err_msg(err, "capability `%s` is given to both --cap-add and --cap-drop",
				       cap_names[cap]);
	}
	return 0;
}

/* The bounding set of the container; for uid 0 also its effective and permitted sets. */
static uint64_t container_caps(const struct spawn_plan *plan)
{
	uint64_t caps = plan->drop_all_caps ? 0 : default_caps;

	return (caps & ~plan->caps_dropped) | plan->caps_added;
}

/*
 * The name table follows the build's headers, which may be newer than the
 * running kernel. PR_CAPBSET_READ fails with EINVAL for a number the kernel lacks.
 */
static int check_kernel_supports(uint64_t caps, struct hutch_error *err)
{
	for (size_t cap = 0; cap < CAP_NAME_COUNT; cap++) {
		if ((caps & (1ULL << cap)) && prctl(PR_CAPBSET_READ, cap, 0, 0, 0) < 0 &&
		    errno == EINVAL)
			return err_msg(err, "invalid --cap-add `%s`: the running kernel does not "
				       "support this capability", cap_names[cap]);
	}
	return 0;
}

static int drop_bounding_set(uint64_t keep, struct hutch_error *err)
{
	/* The loop ends at the first number the running kernel does not know. */
	for (int cap = 0; cap < 64; cap++) {
		if (keep & (1ULL << cap))
			continue;
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0) {
			if (errno == EINVAL)
				return 0;
			char name[32];

			snprintf(name, sizeof(name), "capability %d", cap);
			return err_sys(err, errno, "prctl PR_CAPBSET_DROP", name);
		}
	}
	return 0;
}

static int set_capabilities(uint64_t caps, struct hutch_error *err)
{
	struct __user_cap_header_struct header = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct data[2] = { { 0 } };

	data[0].effective = data[0].permitted = (uint32_t)caps;
	data[1].effective = data[1].permitted = (uint32_t)(caps >> 32);
	if (syscall(SYS_capset, &header, data) < 0)
		return err_sys(err, errno, "capset", NULL);
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0)
		return err_sys(err, errno, "prctl PR_CAP_AMBIENT_CLEAR_ALL", NULL);
	return 0;
}

static int set_ids(const struct spawn_plan *plan, struct hutch_error *err)
{
	char id[16];

	snprintf(id, sizeof(id), "%u", (unsigned)plan->gid);
	if (setresgid(plan->gid, plan->gid, plan->gid) < 0)
		return err_sys(err, errno, "setresgid", id);
	/* After setgroups "deny" the kernel rejects setgroups(), and the list is already empty. */
	if (!plan->setgroups_denied && setgroups(0, NULL) < 0)
		return err_sys(err, errno, "setgroups", id);
	snprintf(id, sizeof(id), "%u", (unsigned)plan->uid);
	if (setresuid(plan->uid, plan->uid, plan->uid) < 0)
		return err_sys(err, errno, "setresuid", id);
	return 0;
}

int drop_privileges(const struct spawn_plan *plan, struct hutch_error *err)
{
	uint64_t caps = container_caps(plan);

	if (check_kernel_supports(plan->caps_added, err) < 0 || drop_bounding_set(caps, err) < 0)
		return -1;
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return err_sys(err, errno, "prctl PR_SET_NO_NEW_PRIVS", NULL);
	if (set_ids(plan, err) < 0)
		return -1;
	/* setresuid() to a non-zero uid already cleared the sets; capset makes it explicit. */
	return set_capabilities(plan->uid == 0 ? caps : 0, err);
}
