/*
 * Capabilities and ids of the container process.
 *
 * The bounding set is cut to the default set first, while the process still
 * holds CAP_SETPCAP; then no_new_privs, the gid, groups and uid; then capset
 * sets effective = permitted = the default set for uid 0 and nothing for any
 * other uid. Inheritable and ambient stay empty, so that executing a file
 * with inheritable file capabilities gains nothing (CVE-2022-24769).
 */
#define _GNU_SOURCE
#include "spawn.h"

#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

/* The 11 default capabilities of docs/helper-spec.md, Podman's default set. */
static const uint64_t default_caps =
	(1ULL << CAP_CHOWN) | (1ULL << CAP_DAC_OVERRIDE) | (1ULL << CAP_FOWNER) |
	(1ULL << CAP_FSETID) | (1ULL << CAP_KILL) | (1ULL << CAP_NET_BIND_SERVICE) |
	(1ULL << CAP_SETFCAP) | (1ULL << CAP_SETGID) | (1ULL << CAP_SETPCAP) |
	(1ULL << CAP_SETUID) | (1ULL << CAP_SYS_CHROOT);

static int drop_bounding_set(struct hutch_error *err)
{
	/* The loop ends at the first number the running kernel does not know. */
	for (int cap = 0; cap < 64; cap++) {
		if (default_caps & (1ULL << cap))
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
	if (drop_bounding_set(err) < 0)
		return -1;
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return err_sys(err, errno, "prctl PR_SET_NO_NEW_PRIVS", NULL);
	if (set_ids(plan, err) < 0)
		return -1;
	/* setresuid() to a non-zero uid already cleared the sets; capset makes it explicit. */
	return set_capabilities(plan->uid == 0 ? default_caps : 0, err);
}
