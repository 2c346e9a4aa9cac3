/* hutch-spawn: the validated plan and the steps that carry it out. */
#ifndef HUTCH_SPAWN_H
#define HUTCH_SPAWN_H

#include "util.h"

#include <signal.h>
#include <sys/types.h>

#define MAX_ID_MAPS 8
#define MAX_LOWER_DIRS 128
#define MAX_ENV 256
#define MAX_VOLUMES 64

/* Extra mounts inside the root filesystem, made in argv order. */
enum volume_kind { VOLUME_BIND, VOLUME_TMPFS };

struct volume {
	enum volume_kind kind;
	char *source;                /* --bind: absolute host path */
	char *dest;                  /* absolute path inside the container, no "." or ".." */
	bool readonly;               /* --bind ...:ro */
	uint64_t size;               /* --tmpfs: bytes */
};

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
	uint64_t caps_dropped;       /* --cap-drop: bit N is capability N */
	uint64_t caps_added;         /* --cap-add */
	bool drop_all_caps;          /* --cap-drop ALL */
	int log_fd, status_fd;       /* -1 when not given */
	uint64_t log_max_bytes;      /* --log-max-bytes, 0 when not given */
	int log_rotate_fd;           /* --log-rotate-fd, -1 when not given */

	struct volume volumes[MAX_VOLUMES];
	size_t volume_count;
	bool init;                   /* --init: pid 1 is a reaper that runs PROGRAM as its child */

	bool tty, stdin_pipe;        /* --tty, --stdin */
	uint16_t tty_rows, tty_cols;
	const char *attach_socket;

	pid_t join_pid;              /* --join: 0 when a new container is made */

	char **argv;                 /* PROGRAM ARG..., NULL-terminated */

	/* Derived from the caller, not from argv. */
	uid_t real_uid;
	gid_t real_gid;
	bool setgroups_denied;       /* "deny" is (or will be) in /proc/PID/setgroups */
};

/* Pipes shared by the monitor and the container process (fd -1 when unused). */
struct spawn_pipes {
	int sync[2];                 /* parent writes one byte once the id maps are in place */
	int error[2];                /* child writes a struct hutch_error; CLOEXEC, so EOF = exec done */
	int out[2], err[2];          /* container stdout/stderr when --log-fd is given without --tty */
	int in[2];                   /* container stdin with --stdin and without --tty */
	int tty[2];                  /* socketpair that carries the pty master from the child */
	int joined_pid[2];           /* --join: the joining process writes the exec'd process's pid */
	int attach;                  /* listening --attach-socket, or -1 */
	int master;                  /* pty master in the monitor, or -1 */
};

/* spawn.c: argv to a validated plan; also the entry point of the fuzz target. */
int spawn_parse_argv(int argc, char **argv, struct spawn_plan *plan, struct hutch_error *err);

/* ns.c */
pid_t spawn_clone(const struct spawn_plan *plan, const struct spawn_pipes *pipes,
		  struct hutch_error *err);
int write_id_maps(const struct spawn_plan *plan, pid_t child, struct hutch_error *err);

/* mount.c: setup_mounts runs before the hostname and loopback steps, enter_root after. */
int setup_mounts(const struct spawn_plan *plan, int *rootfd, struct hutch_error *err);
int enter_root(const struct spawn_plan *plan, int rootfd, struct hutch_error *err);

/* mount.c: helpers shared with mask.c and volumes.c */
struct fs_option {
	const char *key;
	const char *value;           /* NULL for a flag such as "userxattr" */
};
int make_fs(const char *fstype, const struct fs_option *options, size_t count, unsigned attrs,
	    struct hutch_error *err);
int attach(int mfd, int dirfd, const char *name, const char *label, struct hutch_error *err);
int clone_tree(const char *path, bool recursive, unsigned attrs, struct hutch_error *err);

/* mask.c: runs after /proc and /sys are mounted, before any container path is resolved. */
int mask_kernel_paths(int procfd, int sysfd, struct hutch_error *err);

/* volumes.c: --bind and --tmpfs, after the masks and before pivot_root. */
struct kernel_mounts {
	dev_t dev, shm;              /* st_dev of the /dev and /dev/shm tmpfs */
};
int mount_volumes(const struct spawn_plan *plan, int rootfd, const struct kernel_mounts *km,
		  struct hutch_error *err);

/* tty.c */
int open_pty(const struct spawn_plan *plan, int *master, int *peer, struct hutch_error *err);
int make_controlling_terminal(int peer, struct hutch_error *err);
int send_fd(int sock, int fd, struct hutch_error *err);
int receive_fd(int sock, struct hutch_error *err);
int create_attach_socket(const char *path, struct hutch_error *err);

/* ns.c: the steps after the mounts, shared by a new container and --join */
int finish_child(const struct spawn_plan *plan, const struct spawn_pipes *pipes,
		 struct hutch_error *err);
int connect_stdio(const struct spawn_plan *plan, const struct spawn_pipes *pipes,
		  struct hutch_error *err);
void wait_for_parent(int fd);
void close_monitor_ends(const struct spawn_pipes *pipes);

/* join.c */
struct join_target {
	int nsfd[7];                 /* in setns order; -1 for a namespace we already share */
	int nstype[7];
	size_t count;
};
int open_join_target(struct spawn_plan *plan, struct join_target *target,
		     struct hutch_error *err);
pid_t spawn_join(const struct spawn_plan *plan, struct join_target *target,
		 const struct spawn_pipes *pipes, struct hutch_error *err);

/* init.c: forks PROGRAM; in the caller (the reaper) it never returns. */
int start_init(const struct spawn_plan *plan, struct hutch_error *err);

/* seccomp.c: needs no_new_privs; the filter stays in force across fork and exec. */
int install_seccomp_filter(struct hutch_error *err);

/* caps.c: the --cap-drop and --cap-add entries of the option table, and the drop itself */
int set_cap_drop(void *plan, const char *value, struct hutch_error *err);
int set_cap_add(void *plan, const char *value, struct hutch_error *err);
int check_cap_options(const struct spawn_plan *plan, struct hutch_error *err);
int drop_privileges(const struct spawn_plan *plan, struct hutch_error *err);

/* ns.c */
int bring_up_loopback(struct hutch_error *err);

/* exec.c */
void exec_program(const struct spawn_plan *plan, struct hutch_error *err);

/* monitor.c: monitor_signals fills SET with the forwarded signals and SIGCHLD. */
void monitor_signals(sigset_t *set);
int run_monitor(const struct spawn_plan *plan, struct spawn_pipes *pipes, pid_t child);

#endif
