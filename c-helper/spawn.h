/* hutch-spawn: the validated plan and the steps that carry it out. */
#ifndef HUTCH_SPAWN_H
#define HUTCH_SPAWN_H

#include "util.h"

#include <signal.h>
#include <sys/types.h>

#define MAX_ID_MAPS 8
#define MAX_LOWER_DIRS 128
#define MAX_ENV 256

struct id_map {
	uint32_t inside;
	uint32_t outside;
	uint32_t count;
};

/* Everything hutch-spawn does, decided before clone() from argv alone. */
struct spawn_plan {
	bool unshare_user, unshare_pid, unshare_net, unshare_ipc, unshare_uts, unshare_cgroup;
	struct id_map uid_maps[MAX_ID_MAPS];
	struct id_map gid_maps[MAX_ID_MAPS];
	size_t uid_map_count, gid_map_count;

	const char *rootfs;
	const char *lower[MAX_LOWER_DIRS];
	size_t lower_count;
	const char *upper, *work;
	bool readonly_rootfs;

	const char *hostname;
	const char *cwd;
	char *env[MAX_ENV + 1];      /* NULL-terminated */
	size_t env_count;
	uid_t uid;
	gid_t gid;
	int log_fd, status_fd;       /* -1 when not given */

	char **argv;                 /* PROGRAM ARG..., NULL-terminated */

	/* Derived from the caller, not from argv. */
	uid_t real_uid;
	gid_t real_gid;
	bool setgroups_denied;       /* the parent writes "deny" to /proc/PID/setgroups */
};

/* Pipes shared by the monitor and the container process (fd -1 when unused). */
struct spawn_pipes {
	int sync[2];                 /* parent writes one byte once the id maps are in place */
	int error[2];                /* child writes a struct hutch_error; CLOEXEC, so EOF = exec done */
	int out[2], err[2];          /* container stdout/stderr when --log-fd is given */
};

/* ns.c */
pid_t spawn_clone(const struct spawn_plan *plan, const struct spawn_pipes *pipes,
		  struct hutch_error *err);
int write_id_maps(const struct spawn_plan *plan, pid_t child, struct hutch_error *err);

/* mount.c: setup_mounts runs before the hostname and loopback steps, enter_root after. */
int setup_mounts(const struct spawn_plan *plan, int *rootfd, struct hutch_error *err);
int enter_root(const struct spawn_plan *plan, int rootfd, struct hutch_error *err);

/* caps.c */
int drop_privileges(const struct spawn_plan *plan, struct hutch_error *err);

/* ns.c */
int bring_up_loopback(struct hutch_error *err);

/* exec.c */
void exec_program(const struct spawn_plan *plan, struct hutch_error *err);

/* monitor.c: monitor_signals fills SET with the forwarded signals and SIGCHLD. */
void monitor_signals(sigset_t *set);
int run_monitor(const struct spawn_plan *plan, struct spawn_pipes *pipes, pid_t child);

#endif
