/*
 * hutch-spawn: run one program in new namespaces on a prepared root filesystem.
 *
 * main() parses argv against a closed option table into a spawn_plan,
 * validates it, clones the container process and becomes its monitor.
 * The program is never setuid: a user namespace gives it what it needs.
 */
#define _GNU_SOURCE
#include "spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef HUTCH_FUZZ
const char *program_name = "hutch-spawn";
#endif

/* --- option table --- */

#define FLAG_OPTION(field)                                                            \
	static int set_##field(void *p, const char *v, struct hutch_error *e)          \
	{                                                                              \
		(void)v;                                                               \
		(void)e;                                                               \
		((struct spawn_plan *)p)->field = true;                                \
		return 0;                                                              \
	}

FLAG_OPTION(unshare_user)
FLAG_OPTION(unshare_pid)
FLAG_OPTION(unshare_net)
FLAG_OPTION(unshare_ipc)
FLAG_OPTION(unshare_uts)
FLAG_OPTION(unshare_cgroup)
FLAG_OPTION(readonly_rootfs)
FLAG_OPTION(init)
FLAG_OPTION(tty)
FLAG_OPTION(stdin_pipe)

/* Parse "IN:OUT:COUNT" with COUNT >= 1 and neither range passing 2^32 - 1. */
static int parse_id_map(const char *text, struct id_map *map)
{
	char buf[64];
	char *fields[3];
	char *rest = buf;
	uint64_t values[3];

	if (strlen(text) >= sizeof(buf))
		return -1;
	strcpy(buf, text);
	for (int i = 0; i < 3; i++) {
		fields[i] = strsep(&rest, ":");
		if (fields[i] == NULL || parse_u64(fields[i], UINT32_MAX, &values[i]) < 0)
			return -1;
	}
	if (rest != NULL || values[2] == 0)
		return -1;
	if (values[0] + values[2] - 1 > UINT32_MAX - 1 || values[1] + values[2] - 1 > UINT32_MAX - 1)
		return -1;
	map->inside = (uint32_t)values[0];
	map->outside = (uint32_t)values[1];
	map->count = (uint32_t)values[2];
	return 0;
}

static int add_id_map(struct id_map *maps, size_t *count, const char *opt, const char *value,
		      struct hutch_error *err)
{
	if (*count >= MAX_ID_MAPS)
		return err_msg(err, "too many %s options (maximum %d)", opt, MAX_ID_MAPS);
	if (parse_id_map(value, &maps[*count]) < 0)
		return err_msg(err, "invalid %s `%s`: expected IN:OUT:COUNT", opt, value);
	(*count)++;
	return 0;
}

static int set_uid_map(void *p, const char *v, struct hutch_error *e)
{
	struct spawn_plan *plan = p;

	return add_id_map(plan->uid_maps, &plan->uid_map_count, "--uid-map", v, e);
}

static int set_gid_map(void *p, const char *v, struct hutch_error *e)
{
	struct spawn_plan *plan = p;

	return add_id_map(plan->gid_maps, &plan->gid_map_count, "--gid-map", v, e);
}

/* Directories must be absolute; hutch-helper always passes absolute paths. */
static int check_abs_path(const char *opt, const char *value, struct hutch_error *err)
{
	if (value[0] != '/')
		return err_msg(err, "invalid %s `%s`: expected an absolute path", opt, value);
	return 0;
}

#define PATH_OPTION(field, opt)                                                        \
	static int set_##field(void *p, const char *v, struct hutch_error *e)           \
	{                                                                               \
		struct spawn_plan *plan = p;                                            \
		if (plan->field != NULL)                                                \
			return err_msg(e, "option `%s` given twice", opt);              \
		if (check_abs_path(opt, v, e) < 0)                                      \
			return -1;                                                      \
		plan->field = v;                                                        \
		return 0;                                                               \
	}

PATH_OPTION(rootfs, "--rootfs")
PATH_OPTION(upper, "--overlay-upper")
PATH_OPTION(work, "--overlay-work")
PATH_OPTION(cwd, "--cwd")

static int set_lower(void *p, const char *v, struct hutch_error *e)
{
	struct spawn_plan *plan = p;

	if (plan->lower_count >= MAX_LOWER_DIRS)
		return err_msg(e, "too many --overlay-lower options (maximum %d)", MAX_LOWER_DIRS);
	if (check_abs_path("--overlay-lower", v, e) < 0)
		return -1;
	plan->lower[plan->lower_count++] = v;
	return 0;
}

/* A hostname is 1..64 bytes of letters, digits, '-' and '.', as sethostname(2) accepts. */
static int set_hostname(void *p, const char *v, struct hutch_error *e)
{
	struct spawn_plan *plan = p;
	size_t len = strlen(v);

	if (len == 0 || len > 64 || strspn(v, "abcdefghijklmnopqrstuvwxyz"
				     "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.") != len)
		return err_msg(e, "invalid --hostname `%s`: expected 1 to 64 of [A-Za-z0-9.-]", v);
	plan->hostname = v;
	return 0;
}

static int set_env(void *p, const char *v, struct hutch_error *e)
{
	struct spawn_plan *plan = p;
	const char *eq = strchr(v, '=');

	if (eq == NULL || eq == v)
		return err_msg(e, "invalid --env `%s`: expected NAME=VALUE", v);
	if (plan->env_count >= MAX_ENV)
		return err_msg(e, "too many --env options (maximum %d)", MAX_ENV);
	plan->env[plan->env_count++] = (char *)v;
	return 0;
}

static int parse_id(const char *opt, const char *v, uint32_t *out, struct hutch_error *e)
{
	uint64_t value;

	/* 2^32 - 1 is (uid_t)-1, which the set*id calls read as "unchanged". */
	if (parse_u64(v, UINT32_MAX - 1, &value) < 0)
		return err_msg(e, "invalid %s `%s`: expected 0 to 4294967294", opt, v);
	*out = (uint32_t)value;
	return 0;
}

static int set_uid(void *p, const char *v, struct hutch_error *e)
{
	return parse_id("--uid", v, &((struct spawn_plan *)p)->uid, e);
}

static int set_gid(void *p, const char *v, struct hutch_error *e)
{
	return parse_id("--gid", v, &((struct spawn_plan *)p)->gid, e);
}

/* An inherited open fd above 2: the monitor writes to it, and exec closes it in the container. */
static int parse_fd(const char *opt, const char *v, int *out, struct hutch_error *e)
{
	uint64_t value;

	if (parse_u64(v, 1 << 20, &value) < 0 || value < 3)
		return err_msg(e, "invalid %s `%s`: expected an fd number above 2", opt, v);
	if (fcntl((int)value, F_GETFD) < 0)
		return err_sys(e, errno, "fcntl", v);
	*out = (int)value;
	return 0;
}

static int set_log_fd(void *p, const char *v, struct hutch_error *e)
{
	return parse_fd("--log-fd", v, &((struct spawn_plan *)p)->log_fd, e);
}

static int set_status_fd(void *p, const char *v, struct hutch_error *e)
{
	return parse_fd("--status-fd", v, &((struct spawn_plan *)p)->status_fd, e);
}

static int set_log_rotate_fd(void *p, const char *v, struct hutch_error *e)
{
	return parse_fd("--log-rotate-fd", v, &((struct spawn_plan *)p)->log_rotate_fd, e);
}

#define LOG_MIN_MAX_BYTES 4096ULL
#define LOG_MAX_MAX_BYTES (1ULL << 62)

static int set_log_max_bytes(void *p, const char *v, struct hutch_error *e)
{
	struct spawn_plan *plan = p;
	uint64_t value;

	if (plan->log_max_bytes != 0)
		return err_msg(e, "option `--log-max-bytes` given twice");
	if (parse_u64(v, LOG_MAX_MAX_BYTES, &value) < 0 || value < LOG_MIN_MAX_BYTES)
		return err_msg(e, "invalid --log-max-bytes `%s`: expected 4096 to 2^62 bytes", v);
	plan->log_max_bytes = value;
	return 0;
}

/* A container path for --bind and --tmpfs: absolute, not "/", no empty, "." or ".." part. */
static int check_container_path(const char *opt, const char *path, struct hutch_error *e)
{
	const char *part = path;

	if (path[0] != '/' || path[1] == '\0')
		return err_msg(e, "invalid %s destination `%s`: expected an absolute path other than /",
			       opt, path);
	while (*part == '/') {
		size_t len = strcspn(part + 1, "/");

		if (len == 0 || (len == 1 && part[1] == '.') ||
		    (len == 2 && part[1] == '.' && part[2] == '.'))
			return err_msg(e, "invalid %s destination `%s`: empty, `.` or `..` component",
				       opt, path);
		part += 1 + len;
	}
	return 0;
}

static struct volume *add_volume(struct spawn_plan *plan, struct hutch_error *e)
{
	if (plan->volume_count >= MAX_VOLUMES) {
		err_msg(e, "too many --bind and --tmpfs options (maximum %d)", MAX_VOLUMES);
		return NULL;
	}
	return &plan->volumes[plan->volume_count++];
}

/* SRC:DEST or SRC:DEST:ro or SRC:DEST:rw; neither path may contain ':'. */
static int set_bind(void *p, const char *v, struct hutch_error *e)
{
	struct spawn_plan *plan = p;
	char *copy = strdup(v);
	char *rest = copy;
	char *source, *dest, *mode;
	struct volume *vol;

	if (copy == NULL)
		return err_sys(e, errno, "strdup", NULL);
	source = strsep(&rest, ":");
	dest = strsep(&rest, ":");
	mode = strsep(&rest, ":");
	if (dest == NULL || rest != NULL || (mode != NULL && strcmp(mode, "ro") != 0 &&
					       strcmp(mode, "rw") != 0)) {
		free(copy);
		return err_msg(e, "invalid --bind `%s`: expected SRC:DEST, SRC:DEST:ro or SRC:DEST:rw",
			       v);
	}
	if (check_abs_path("--bind", source, e) < 0 || check_container_path("--bind", dest, e) < 0) {
		free(copy);
		return -1;
	}
	vol = add_volume(plan, e);
	if (vol == NULL) {
		free(copy);
		return -1;
	}
	*vol = (struct volume){ .kind = VOLUME_BIND, .source = source, .dest = dest,
				.readonly = mode != NULL && strcmp(mode, "ro") == 0 };
	return 0;
}

#define TMPFS_DEFAULT_SIZE (64ULL << 20)
#define TMPFS_MIN_SIZE 4096ULL
#define TMPFS_MAX_SIZE (1ULL << 62)

/* DEST or DEST:SIZE, SIZE in bytes; the 1 GiB cap for non-root is checked in validate_plan. */
static int set_tmpfs(void *p, const char *v, struct hutch_error *e)
{
	struct spawn_plan *plan = p;
	char *dest = strdup(v);
	char *colon;
	uint64_t size = TMPFS_DEFAULT_SIZE;
	struct volume *vol;

	if (dest == NULL)
		return err_sys(e, errno, "strdup", NULL);
	colon = strchr(dest, ':');
	if (colon != NULL) {
		*colon = '\0';
		if (parse_u64(colon + 1, TMPFS_MAX_SIZE, &size) < 0 || size < TMPFS_MIN_SIZE) {
			free(dest);
			return err_msg(e, "invalid --tmpfs size in `%s`: expected 4096 or more bytes", v);
		}
	}
	if (check_container_path("--tmpfs", dest, e) < 0) {
		free(dest);
		return -1;
	}
	vol = add_volume(plan, e);
	if (vol == NULL) {
		free(dest);
		return -1;
	}
	*vol = (struct volume){ .kind = VOLUME_TMPFS, .dest = dest, .size = size };
	return 0;
}

/* ROWSxCOLS, each 1 to 65535. */
static int set_tty_size(void *p, const char *v, struct hutch_error *e)
{
	struct spawn_plan *plan = p;
	char buf[32];
	char *cols;
	uint64_t rows_value, cols_value;

	if (plan->tty_rows != 0)
		return err_msg(e, "option `--tty-size` given twice");
	if (strlen(v) >= sizeof(buf))
		return err_msg(e, "invalid --tty-size `%s`: expected ROWSxCOLS", v);
	strcpy(buf, v);
	cols = strchr(buf, 'x');
	if (cols != NULL)
		*cols++ = '\0';
	if (cols == NULL || parse_u64(buf, 65535, &rows_value) < 0 ||
	    parse_u64(cols, 65535, &cols_value) < 0 || rows_value == 0 || cols_value == 0)
		return err_msg(e, "invalid --tty-size `%s`: expected ROWSxCOLS, each 1 to 65535", v);
	plan->tty_rows = (uint16_t)rows_value;
	plan->tty_cols = (uint16_t)cols_value;
	return 0;
}

static int set_attach_socket(void *p, const char *v, struct hutch_error *e)
{
	struct spawn_plan *plan = p;

	if (plan->attach_socket != NULL)
		return err_msg(e, "option `--attach-socket` given twice");
	if (check_abs_path("--attach-socket", v, e) < 0)
		return -1;
	/* sun_path has room for 108 bytes, the terminating NUL included. */
	if (strlen(v) > 107)
		return err_msg(e, "invalid --attach-socket `%s`: longer than 107 bytes", v);
	plan->attach_socket = v;
	return 0;
}

static int set_join(void *p, const char *v, struct hutch_error *e)
{
	struct spawn_plan *plan = p;
	uint64_t value;

	if (plan->join_pid != 0)
		return err_msg(e, "option `--join` given twice");
	if (parse_u64(v, 4194304, &value) < 0 || value == 0)
		return err_msg(e, "invalid --join `%s`: expected a pid, 1 to 4194304", v);
	plan->join_pid = (pid_t)value;
	return 0;
}

static const struct option_def spawn_options[] = {
	{ "--unshare-user", false, set_unshare_user },
	{ "--unshare-pid", false, set_unshare_pid },
	{ "--unshare-net", false, set_unshare_net },
	{ "--unshare-ipc", false, set_unshare_ipc },
	{ "--unshare-uts", false, set_unshare_uts },
	{ "--unshare-cgroup", false, set_unshare_cgroup },
	{ "--uid-map", true, set_uid_map },
	{ "--gid-map", true, set_gid_map },
	{ "--rootfs", true, set_rootfs },
	{ "--overlay-lower", true, set_lower },
	{ "--overlay-upper", true, set_upper },
	{ "--overlay-work", true, set_work },
	{ "--readonly-rootfs", false, set_readonly_rootfs },
	{ "--hostname", true, set_hostname },
	{ "--cwd", true, set_cwd },
	{ "--env", true, set_env },
	{ "--uid", true, set_uid },
	{ "--gid", true, set_gid },
	{ "--cap-drop", true, set_cap_drop },
	{ "--cap-add", true, set_cap_add },
	{ "--log-fd", true, set_log_fd },
	{ "--status-fd", true, set_status_fd },
	{ "--log-max-bytes", true, set_log_max_bytes },
	{ "--log-rotate-fd", true, set_log_rotate_fd },
	{ "--bind", true, set_bind },
	{ "--tmpfs", true, set_tmpfs },
	{ "--init", false, set_init },
	{ "--tty", false, set_tty },
	{ "--tty-size", true, set_tty_size },
	{ "--stdin", false, set_stdin_pipe },
	{ "--attach-socket", true, set_attach_socket },
	{ "--join", true, set_join },
};

#define SPAWN_OPTION_COUNT (sizeof(spawn_options) / sizeof(spawn_options[0]))

#define TMPFS_USER_MAX_SIZE (1ULL << 30)

/* --join takes only the options that describe the new process, not a container. */
static int validate_join(const struct spawn_plan *plan, struct hutch_error *err)
{
	if (plan->rootfs != NULL || plan->lower_count > 0 || plan->upper != NULL ||
	    plan->readonly_rootfs || plan->hostname != NULL || plan->volume_count > 0 ||
	    plan->init || plan->uid_map_count > 0 || plan->gid_map_count > 0 ||
	    plan->unshare_user || plan->unshare_pid || plan->unshare_net || plan->unshare_ipc ||
	    plan->unshare_uts || plan->unshare_cgroup)
		return err_msg(err, "--join takes only --cwd, --env, --uid, --gid, --cap-drop, "
			       "--cap-add, --tty, --tty-size, --stdin, --attach-socket, --log-fd, "
			       "--log-max-bytes, --log-rotate-fd and --status-fd");
	/* open_join_target rejects --cap-add for a container with a user namespace of its own. */
	if (plan->caps_added != 0 && plan->real_uid != 0)
		return err_msg(err, "--cap-add needs real root");
	return 0;
}

static int validate_terminal(struct spawn_plan *plan, struct hutch_error *err)
{
	if (plan->tty && plan->log_fd < 0)
		return err_msg(err, "--tty needs --log-fd: the pty's output goes there");
	if (plan->tty_rows != 0 && !plan->tty)
		return err_msg(err, "--tty-size needs --tty");
	if (plan->stdin_pipe && plan->attach_socket == NULL)
		return err_msg(err, "--stdin needs --attach-socket: its frames feed the pipe");
	if (plan->attach_socket != NULL && !plan->stdin_pipe && !plan->tty)
		return err_msg(err, "--attach-socket needs --stdin or --tty");
	if (plan->tty && plan->tty_rows == 0) {
		plan->tty_rows = 24;
		plan->tty_cols = 80;
	}
	return 0;
}

/*
 * A rotated log is shrunk with ftruncate and read back to copy it, so both
 * fds must be regular files, the log open O_RDWR and the rotate fd writable.
 */
static int check_rotate_file(const char *opt, int fd, int access_mode, struct stat *st,
			     struct hutch_error *err)
{
	int flags = fcntl(fd, F_GETFL);

	if (fstat(fd, st) < 0)
		return err_sys(err, errno, "fstat", opt);
	if (!S_ISREG(st->st_mode))
		return err_msg(err, "invalid %s `%d`: --log-max-bytes needs a regular file", opt, fd);
	if (flags < 0)
		return err_sys(err, errno, "fcntl", opt);
	if ((flags & O_ACCMODE) != O_RDWR && (flags & O_ACCMODE) != access_mode)
		return err_msg(err, "invalid %s `%d`: --log-max-bytes needs it open %s", opt, fd,
			       access_mode == O_RDWR ? "for reading and writing (O_RDWR)"
						     : "for writing");
	return 0;
}

static int validate_log(const struct spawn_plan *plan, struct hutch_error *err)
{
	struct stat log_st, rotate_st;

	if (plan->log_max_bytes == 0 && plan->log_rotate_fd < 0)
		return 0;
	if (plan->log_max_bytes == 0)
		return err_msg(err, "--log-rotate-fd needs --log-max-bytes");
	if (plan->log_rotate_fd < 0)
		return err_msg(err, "--log-max-bytes needs --log-rotate-fd: the older records go there");
	if (plan->log_fd < 0)
		return err_msg(err, "--log-max-bytes needs --log-fd");
	if (plan->log_rotate_fd == plan->log_fd || plan->log_rotate_fd == plan->status_fd)
		return err_msg(err, "--log-rotate-fd must differ from --log-fd and --status-fd");
	if (check_rotate_file("--log-fd", plan->log_fd, O_RDWR, &log_st, err) < 0 ||
	    check_rotate_file("--log-rotate-fd", plan->log_rotate_fd, O_WRONLY, &rotate_st, err) < 0)
		return -1;
	if (log_st.st_dev == rotate_st.st_dev && log_st.st_ino == rotate_st.st_ino)
		return err_msg(err, "--log-fd and --log-rotate-fd must be different files");
	return 0;
}

/* Cross-option checks that the table entries cannot make one at a time. */
static int validate_plan(struct spawn_plan *plan, struct hutch_error *err)
{
	if (plan->argv == NULL || plan->argv[0] == NULL)
		return err_msg(err, "missing PROGRAM after `--`");
	if (plan->log_fd >= 0 && plan->log_fd == plan->status_fd)
		return err_msg(err, "--log-fd and --status-fd must differ");
	if (validate_terminal(plan, err) < 0 || validate_log(plan, err) < 0 ||
	    check_cap_options(plan, err) < 0)
		return -1;
	if (plan->cwd == NULL)
		plan->cwd = "/";
	if (plan->join_pid != 0)
		return validate_join(plan, err);

	if (plan->rootfs == NULL)
		return err_msg(err, "missing --rootfs");
	if ((plan->upper == NULL) != (plan->work == NULL))
		return err_msg(err, "--overlay-upper and --overlay-work must be given together");
	if (plan->upper != NULL && plan->lower_count == 0)
		return err_msg(err, "--overlay-upper needs at least one --overlay-lower");
	if (plan->hostname != NULL && !plan->unshare_uts)
		return err_msg(err, "--hostname needs --unshare-uts");
	for (size_t i = 0; i < plan->volume_count; i++) {
		const struct volume *vol = &plan->volumes[i];

		if (vol->kind == VOLUME_TMPFS && vol->size > TMPFS_USER_MAX_SIZE && plan->real_uid != 0)
			return err_msg(err, "invalid --tmpfs `%s`: more than 1 GiB needs real root",
				       vol->dest);
	}

	/* Without privilege in the caller's namespace, only a user namespace gives the mounts. */
	if (plan->real_uid != 0)
		plan->unshare_user = true;
	if (!plan->unshare_user && (plan->uid_map_count > 0 || plan->gid_map_count > 0))
		return err_msg(err, "--uid-map and --gid-map need --unshare-user");
	/* Only real root may widen the default set, and only with the host's capabilities. */
	if (plan->caps_added != 0 && plan->real_uid != 0)
		return err_msg(err, "--cap-add needs real root");
	if (plan->caps_added != 0 && plan->unshare_user)
		return err_msg(err, "--cap-add needs real root without --unshare-user");
	/* The kernel lets an unprivileged caller write gid_map only after setgroups "deny". */
	plan->setgroups_denied = plan->unshare_user && plan->real_uid != 0 &&
				 plan->gid_map_count == 0;
	return 0;
}

int spawn_parse_argv(int argc, char **argv, struct spawn_plan *plan, struct hutch_error *err)
{
	int program_index = parse_options(argc, argv, spawn_options, SPAWN_OPTION_COUNT, plan, err);

	if (program_index < 0)
		return -1;
	plan->argv = argv + program_index;
	plan->real_uid = getuid();
	plan->real_gid = getgid();
	return validate_plan(plan, err);
}

#ifndef HUTCH_FUZZ

/* hutch-spawn is never installed setuid, setgid or with file capabilities. */
static void reject_privileged_exec(void)
{
	uid_t ruid, euid, suid;
	gid_t rgid, egid, sgid;

	if (getauxval(AT_SECURE) != 0)
		die_usage("refusing to run setuid, setgid or with file capabilities");
	if (getresuid(&ruid, &euid, &suid) < 0 || getresgid(&rgid, &egid, &sgid) < 0)
		die_usage("getresuid: %s", strerror(errno));
	if (ruid != euid || ruid != suid || rgid != egid || rgid != sgid)
		die_usage("refusing to run with effective ids that differ from the real ids");
}

static int make_pipe(int fds[2], int flags, struct hutch_error *err)
{
	if (pipe2(fds, flags) < 0)
		return err_sys(err, errno, "pipe2", NULL);
	return 0;
}

static int make_pipes(const struct spawn_plan *plan, struct spawn_pipes *pipes,
		      struct hutch_error *err)
{
	if (make_pipe(pipes->sync, O_CLOEXEC, err) < 0 || make_pipe(pipes->error, O_CLOEXEC, err) < 0)
		return -1;
	if (plan->join_pid != 0 && make_pipe(pipes->joined_pid, O_CLOEXEC, err) < 0)
		return -1;
	if (plan->tty) {
		if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pipes->tty) < 0)
			return err_sys(err, errno, "socketpair", NULL);
		return 0;
	}
	/* Only the child's ends lose CLOEXEC, when it dup2()s them onto 0, 1 and 2. */
	if (plan->stdin_pipe && make_pipe(pipes->in, O_CLOEXEC, err) < 0)
		return -1;
	if (plan->log_fd < 0)
		return 0;
	if (make_pipe(pipes->out, O_CLOEXEC, err) < 0 || make_pipe(pipes->err, O_CLOEXEC, err) < 0)
		return -1;
	return 0;
}

/* Close the ends that belong to the container process, once it has its copies. */
static void close_child_ends(struct spawn_pipes *pipes)
{
	close_fd(&pipes->sync[0]);
	close_fd(&pipes->error[1]);
	close_fd(&pipes->out[1]);
	close_fd(&pipes->err[1]);
	close_fd(&pipes->in[0]);
	close_fd(&pipes->tty[1]);
	close_fd(&pipes->joined_pid[1]);
}

/* Kill and reap the child after a setup failure in the parent. */
static void abort_child(pid_t child)
{
	kill(child, SIGKILL);
	while (waitpid(child, NULL, 0) < 0 && errno == EINTR)
		;
}

/*
 * Wait for the child to exec. The error pipe is CLOEXEC, so EOF means the
 * exec succeeded, and a whole struct means a step failed and names it.
 * Returns 0 after a successful exec or the exit code to use.
 */
static int wait_for_exec(struct spawn_pipes *pipes, pid_t child)
{
	struct hutch_error child_err = { 0 };
	ssize_t n = read_retry(pipes->error[0], &child_err, sizeof(child_err));

	close_fd(&pipes->error[0]);
	if (n == 0)
		return 0;
	/* CHILD is -1 when the process that failed was already reaped. */
	while (child > 0 && waitpid(child, NULL, 0) < 0 && errno == EINTR)
		;
	if (n != (ssize_t)sizeof(child_err)) {
		struct hutch_error err = { 0 };

		err_msg(&err, "container process ended during setup without a message");
		err_print(&err);
		return EXIT_SETUP;
	}
	child_err.msg[sizeof(child_err.msg) - 1] = '\0';
	err_print(&child_err);
	if (child_err.exit_code < EXIT_SETUP || child_err.exit_code > EXIT_NOT_FOUND)
		return EXIT_SETUP;
	return child_err.exit_code;
}

/* Clone the container's first process, write its id maps and release it. */
static pid_t start_container(const struct spawn_plan *plan, struct spawn_pipes *pipes,
			     struct hutch_error *err)
{
	pid_t child = spawn_clone(plan, pipes, err);

	if (child < 0)
		return -1;
	close_child_ends(pipes);
	if (plan->unshare_user && write_id_maps(plan, child, err) < 0) {
		abort_child(child);
		return -1;
	}
	if (write_all(pipes->sync[1], "1", 1) < 0) {
		err_sys(err, errno, "write", "sync pipe");
		abort_child(child);
		return -1;
	}
	close_fd(&pipes->sync[1]);
	return child;
}

/*
 * Start the process that joins the container PLAN->join_pid. Returns its
 * pid, 0 when the joining process failed and reported why on the error
 * pipe, or -1 with ERR set.
 */
static pid_t start_joined(struct spawn_plan *plan, struct spawn_pipes *pipes,
			  struct join_target *target, struct hutch_error *err)
{
	char text[16] = "";
	uint64_t value;
	pid_t joining = spawn_join(plan, target, pipes, err);
	ssize_t n;

	if (joining < 0)
		return -1;
	close_child_ends(pipes);
	n = read_retry(pipes->joined_pid[0], text, sizeof(text) - 1);
	close_fd(&pipes->joined_pid[0]);
	while (waitpid(joining, NULL, 0) < 0 && errno == EINTR)
		;
	if (n <= 0 || parse_u64(text, INT32_MAX, &value) < 0)
		return 0;
	if (write_all(pipes->sync[1], "1", 1) < 0) {
		err_sys(err, errno, "write", "sync pipe");
		abort_child((pid_t)value);
		return -1;
	}
	close_fd(&pipes->sync[1]);
	return (pid_t)value;
}

/* Start the process, wait for its exec and become its monitor; returns the exit code. */
static int start_and_monitor(struct spawn_plan *plan, struct spawn_pipes *pipes,
			     struct join_target *target, struct hutch_error *err)
{
	int code;
	pid_t child;

	if (make_pipes(plan, pipes, err) < 0)
		return EXIT_SETUP;
	child = plan->join_pid != 0 ? start_joined(plan, pipes, target, err)
				    : start_container(plan, pipes, err);
	if (child < 0)
		return EXIT_SETUP;
	code = wait_for_exec(pipes, child > 0 ? child : -1);
	if (code != 0)
		return code;
	if (child == 0) {
		err_msg(err, "join: the joining process ended without a message");
		return EXIT_SETUP;
	}
	if (plan->tty) {
		pipes->master = receive_fd(pipes->tty[0], err);
		close_fd(&pipes->tty[0]);
		if (pipes->master < 0) {
			abort_child(child);
			return EXIT_SETUP;
		}
	}
	prctl(PR_SET_NAME, "hutch-monitor", 0, 0, 0);
	return run_monitor(plan, pipes, child);
}

static int run(struct spawn_plan *plan, struct spawn_pipes *pipes, struct hutch_error *err)
{
	struct join_target target = { .count = 0 };
	int code;

	if (plan->join_pid != 0 && open_join_target(plan, &target, err) < 0)
		return EXIT_SETUP;
	if (plan->attach_socket == NULL)
		return start_and_monitor(plan, pipes, &target, err);
	/* Made before the process starts, so it exists by the time `pid` is reported. */
	pipes->attach = create_attach_socket(plan->attach_socket, err);
	if (pipes->attach < 0)
		return EXIT_SETUP;
	code = start_and_monitor(plan, pipes, &target, err);
	unlink(plan->attach_socket);
	return code;
}

int main(int argc, char **argv)
{
	struct spawn_plan plan = { .log_fd = -1, .status_fd = -1, .log_rotate_fd = -1 };
	struct spawn_pipes pipes = {
		{ -1, -1 }, { -1, -1 }, { -1, -1 }, { -1, -1 }, { -1, -1 }, { -1, -1 }, { -1, -1 },
		-1,         -1,
	};
	struct hutch_error err = { 0 };
	sigset_t blocked;
	int code;

	if (argc == 2 && strcmp(argv[1], "--list-options") == 0) {
		print_option_names(spawn_options, SPAWN_OPTION_COUNT);
		return 0;
	}
	reject_privileged_exec();
	if (ensure_stdio(&err) < 0)
		goto fail;

	if (spawn_parse_argv(argc, argv, &plan, &err) < 0)
		goto fail;

	/* Blocked before clone() so that no signal is lost; the child unblocks before exec. */
	monitor_signals(&blocked);
	if (sigprocmask(SIG_BLOCK, &blocked, NULL) < 0) {
		err_sys(&err, errno, "sigprocmask", NULL);
		goto fail;
	}
	code = run(&plan, &pipes, &err);
	if (err.msg[0] != '\0')
		err_print(&err);
	return code;

fail:
	err_print(&err);
	return EXIT_SETUP;
}
#endif
