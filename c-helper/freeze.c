/*
 * --freeze and --thaw: stop every process of hutch/<uid>/<ID> and let them
 * go on again, for `hutch pause`, `hutch unpause` and `commit --pause`.
 *
 * v1 writes FROZEN or THAWED to freezer.state and waits until the file
 * reads the same (it shows FREEZING while tasks are still running). v2
 * writes 1 or 0 to cgroup.freeze and waits for `frozen 1` or `frozen 0` in
 * cgroup.events. The path uses the real uid, as every other form does.
 */
#define _GNU_SOURCE
#include "cgroup.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define FREEZE_TIMEOUT_MS 10000

/* Whether the flat-keyed text TEXT has the line "KEY VALUE". */
static bool has_line(const char *text, const char *line)
{
	size_t len = strlen(line);

	for (const char *p = text; p != NULL && *p != '\0';) {
		if (strncmp(p, line, len) == 0 && (p[len] == '\n' || p[len] == '\0'))
			return true;
		p = strchr(p, '\n');
		if (p != NULL)
			p++;
	}
	return false;
}

static long elapsed_ms(const struct timespec *start)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (now.tv_sec - start->tv_sec) * 1000 + (now.tv_nsec - start->tv_nsec) / 1000000;
}

/* Read NAME under DIRFD until it contains the line EXPECTED, or time out. */
static int wait_for_line(int dirfd, const char *name, const char *expected,
			 struct hutch_error *err)
{
	struct timespec start;
	struct timespec pause = { 0, 1000000 };
	char buf[512];

	clock_gettime(CLOCK_MONOTONIC, &start);
	for (;;) {
		if (read_file_at(dirfd, name, buf, sizeof(buf), err) < 0)
			return -1;
		if (has_line(buf, expected))
			return 0;
		if (elapsed_ms(&start) > FREEZE_TIMEOUT_MS)
			return err_msg(err, "timed out after %d s waiting for `%s` to show `%s`",
				       FREEZE_TIMEOUT_MS / 1000, name, expected);
		nanosleep(&pause, NULL);
		/* Back off from 1 ms to 64 ms between reads. */
		if (pause.tv_nsec < 64000000)
			pause.tv_nsec *= 2;
	}
}

int cgroup_set_frozen(struct cgroup *cg, bool frozen, struct hutch_error *err)
{
	int slot = cg->layout == LAYOUT_V2 ? 0 : CTRL_FREEZER;

	if (cgroup_open_existing(cg, err) < 0)
		return -1;
	if (cg->dirfd[slot] < 0)
		return err_msg(err, "freeze `hutch/%u/%s`: the cgroup has no freezer directory",
			       (unsigned)cg->uid, cg->id);
	if (cgroup_check_owner(cg, slot, err) < 0)
		return -1;
	if (cg->layout == LAYOUT_V2) {
		if (write_file_at(cg->dirfd[slot], "cgroup.freeze", frozen ? "1" : "0", cg->fake_tree,
				  err) < 0)
			return -1;
		return wait_for_line(cg->dirfd[slot], "cgroup.events", frozen ? "frozen 1" : "frozen 0",
				     err);
	}
	if (write_file_at(cg->dirfd[slot], "freezer.state", frozen ? "FROZEN" : "THAWED",
			  cg->fake_tree, err) < 0)
		return -1;
	return wait_for_line(cg->dirfd[slot], "freezer.state", frozen ? "FROZEN" : "THAWED", err);
}
