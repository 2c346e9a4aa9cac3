/*
 * The container's mount table, built in its new mount namespace.
 *
 * Every target under the root filesystem is opened with O_NOFOLLOW relative
 * to the root's fd, and every mount is attached to that fd with move_mount().
 * So a symlink planted in an image cannot redirect a mount onto the host,
 * the bug class of runc's CVE-2019-19921 and CVE-2021-30465. /dev is always
 * a fresh tmpfs, and the image's /dev is never read or written.
 *
 * Allowed mounts, and why each is safe: the overlay or a recursive bind of
 * the caller's own directories as /; a new proc instance (only possible for
 * a pid namespace the caller owns, else a bind of the caller's /proc); a
 * size-capped tmpfs on /dev and /dev/shm; a devpts new instance; binds of six
 * host character devices that any user may open; and sysfs or a bind of the
 * host /sys, both read-only. mask.c only hides or makes read-only what is
 * already mounted. volumes.c binds host paths that the caller can open
 * itself and mounts size-capped tmpfs, at destinations inside the root.
 */
#define _GNU_SOURCE
#include "spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Append the kernel's own explanation, which fsopen() contexts queue for reading. */
static void append_fs_context_message(int fsfd, struct hutch_error *err)
{
	char buf[256];
	ssize_t n = read(fsfd, buf, sizeof(buf) - 1);
	size_t used = strlen(err->msg);

	if (n <= 2)
		return;
	buf[n] = '\0';
	if (buf[n - 1] == '\n')
		buf[n - 1] = '\0';
	/* Messages start with "e ", "w " or "i " for their level. */
	snprintf(err->msg + used, sizeof(err->msg) - used, " (%s)", buf + 2);
}

/*
 * Create a new FSTYPE instance with OPTIONS and ATTRS (MOUNT_ATTR_*) and
 * return a detached mount fd, or -1 with ERR naming the step.
 */
int make_fs(const char *fstype, const struct fs_option *options, size_t count, unsigned attrs,
	    struct hutch_error *err)
{
	cleanup_fd int fsfd = fsopen(fstype, FSOPEN_CLOEXEC);
	int mfd;

	if (fsfd < 0)
		return err_sys(err, errno, "fsopen", fstype);
	for (size_t i = 0; i < count; i++) {
		const char *key = options[i].key;
		const char *value = options[i].value;
		int rc = value == NULL ? fsconfig(fsfd, FSCONFIG_SET_FLAG, key, NULL, 0)
				       : fsconfig(fsfd, FSCONFIG_SET_STRING, key, value, 0);

		if (rc < 0) {
			err_sys(err, errno, "fsconfig", value != NULL ? value : key);
			append_fs_context_message(fsfd, err);
			return -1;
		}
	}
	if (fsconfig(fsfd, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0) {
		err_sys(err, errno, "fsconfig create", fstype);
		append_fs_context_message(fsfd, err);
		return -1;
	}
	mfd = fsmount(fsfd, FSMOUNT_CLOEXEC, attrs);
	if (mfd < 0)
		return err_sys(err, errno, "fsmount", fstype);
	return mfd;
}

/* Attach the detached mount MFD on NAME under DIRFD ("" for DIRFD itself). */
int attach(int mfd, int dirfd, const char *name, const char *label, struct hutch_error *err)
{
	unsigned flags = MOVE_MOUNT_F_EMPTY_PATH | (name[0] == '\0' ? MOVE_MOUNT_T_EMPTY_PATH : 0);

	if (move_mount(mfd, "", dirfd, name, flags) < 0)
		return err_sys(err, errno, "move_mount", label);
	return 0;
}

/* Open directory NAME under DIRFD without following a symlink, creating it if missing. */
static int open_mountpoint(int dirfd, const char *name, mode_t mode, struct hutch_error *err)
{
	int fd;

	if (mkdirat(dirfd, name, mode) < 0 && errno != EEXIST)
		return err_sys(err, errno, "mkdir", name);
	fd = openat(dirfd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return err_sys(err, errno, "open", name);
	return fd;
}

/* Clone the host tree at PATH (recursively if RECURSIVE) with ATTRS set, detached. */
int clone_tree(const char *path, bool recursive, unsigned attrs, struct hutch_error *err)
{
	unsigned flags = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | (recursive ? AT_RECURSIVE : 0);
	struct mount_attr attr = { .attr_set = attrs };
	int tree = open_tree(AT_FDCWD, path, flags);
	unsigned at_flags = AT_EMPTY_PATH | (recursive ? AT_RECURSIVE : 0);

	if (tree < 0)
		return err_sys(err, errno, "open_tree", path);
	if (attrs != 0 && mount_setattr(tree, "", at_flags, &attr, sizeof(attr)) < 0) {
		err_sys(err, errno, "mount_setattr", path);
		close(tree);
		return -1;
	}
	return tree;
}

/* --- the root filesystem --- */

/* Paths are joined with ':' and options with ',', so the string form cannot carry them. */
static bool fits_overlay_string(const char *path)
{
	return strpbrk(path, ":,\\") == NULL;
}

/*
 * Mount with mount(2) and a lowerdir= string, for kernels before 6.8 that
 * lack "lowerdir+". NOTE: no test reaches this path, because the test
 * kernel accepts "lowerdir+".
 */
static int mount_overlay_legacy(const struct spawn_plan *plan, int target,
				struct hutch_error *err)
{
	char data[65536];
	char target_path[64];
	size_t used;

	used = (size_t)snprintf(data, sizeof(data), "userxattr,lowerdir=");
	for (size_t i = 0; i < plan->lower_count; i++) {
		if (!fits_overlay_string(plan->lower[i]))
			return err_msg(err, "mount overlay `%s`: path contains ':', ',' or '\\'",
				       plan->lower[i]);
		used += (size_t)snprintf(data + used, sizeof(data) - used, "%s%s", i ? ":" : "",
					 plan->lower[i]);
	}
	if (plan->upper != NULL) {
		if (!fits_overlay_string(plan->upper) || !fits_overlay_string(plan->work))
			return err_msg(err, "mount overlay `%s`: path contains ':', ',' or '\\'",
				       plan->upper);
		used += (size_t)snprintf(data + used, sizeof(data) - used, ",upperdir=%s,workdir=%s",
					 plan->upper, plan->work);
	}
	if (used >= sizeof(data))
		return err_msg(err, "mount overlay `%s`: option string too long", plan->rootfs);
	snprintf(target_path, sizeof(target_path), "/proc/self/fd/%d", target);
	if (mount("overlay", target_path, "overlay", 0, data) < 0)
		return err_sys(err, errno, "mount overlay", plan->rootfs);
	return 0;
}

/* Mount the overlay on TARGET; returns a fd of its root, or -1. */
static int mount_overlay(const struct spawn_plan *plan, int target, struct hutch_error *err)
{
	struct fs_option options[MAX_LOWER_DIRS + 3];
	size_t count = 0;
	int mfd;

	for (size_t i = 0; i < plan->lower_count; i++)
		options[count++] = (struct fs_option){ "lowerdir+", plan->lower[i] };
	if (plan->upper != NULL) {
		options[count++] = (struct fs_option){ "upperdir", plan->upper };
		options[count++] = (struct fs_option){ "workdir", plan->work };
	}
	options[count++] = (struct fs_option){ "userxattr", NULL };

	mfd = make_fs("overlay", options, count, 0, err);
	if (mfd < 0 && err->errnum == EINVAL && strstr(err->msg, "lowerdir+") != NULL) {
		struct hutch_error legacy_err = { 0 };

		if (mount_overlay_legacy(plan, target, &legacy_err) < 0) {
			*err = legacy_err;
			return -1;
		}
		return openat(target, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
	}
	if (mfd < 0)
		return -1;
	if (attach(mfd, target, "", plan->rootfs, err) < 0) {
		close(mfd);
		return -1;
	}
	return mfd;
}

/* Make the root filesystem a mount of its own (pivot_root needs one); returns its fd. */
static int mount_rootfs(const struct spawn_plan *plan, struct hutch_error *err)
{
	cleanup_fd int target = open(plan->rootfs, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	int tree;

	if (target < 0)
		return err_sys(err, errno, "open", plan->rootfs);
	if (plan->lower_count > 0)
		return mount_overlay(plan, target, err);

	tree = clone_tree(plan->rootfs, true, 0, err);
	if (tree < 0)
		return -1;
	if (attach(tree, target, "", plan->rootfs, err) < 0) {
		close(tree);
		return -1;
	}
	return tree;
}

/* --- /proc, /dev, /sys --- */

/* Mount /proc; returns a fd of its root for the masks, or -1. */
static int mount_proc(const struct spawn_plan *plan, int rootfd, struct hutch_error *err)
{
	cleanup_fd int target = open_mountpoint(rootfd, "proc", 0555, err);
	int mfd = -1;
	unsigned attrs = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC | MOUNT_ATTR_NODEV;

	if (target < 0)
		return -1;
	mfd = make_fs("proc", NULL, 0, attrs, err);
	/*
	 * A new proc instance needs privilege over the pid namespace; without
	 * --unshare-pid a user namespace does not have it, so the container
	 * gets the caller's own /proc, as with `docker run --pid host`.
	 */
	if (mfd < 0 && err->errnum == EPERM && !plan->unshare_pid)
		mfd = clone_tree("/proc", true, attrs, err);
	if (mfd < 0)
		return -1;
	if (attach(mfd, target, "", "/proc", err) < 0) {
		close(mfd);
		return -1;
	}
	return mfd;
}

static const char *const host_devices[] = { "null", "zero", "full", "random", "urandom", "tty" };

/* Bind the host's /dev/NAME onto an empty file in the new /dev. */
static int bind_device(int devfd, const char *name, struct hutch_error *err)
{
	char host_path[32];
	struct stat st;
	cleanup_fd int placeholder = -1;
	cleanup_fd int tree = -1;

	snprintf(host_path, sizeof(host_path), "/dev/%s", name);
	placeholder = openat(devfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
	if (placeholder < 0)
		return err_sys(err, errno, "create", host_path);
	tree = clone_tree(host_path, false, 0, err);
	if (tree < 0)
		return -1;
	if (fstat(tree, &st) < 0)
		return err_sys(err, errno, "fstat", host_path);
	if (!S_ISCHR(st.st_mode))
		return err_msg(err, "bind `%s`: the host file is not a character device", host_path);
	return attach(tree, devfd, name, host_path, err);
}

static int mount_dev_tmpfs(int devfd, const char *name, const struct fs_option *options,
			   size_t count, unsigned attrs, struct hutch_error *err)
{
	cleanup_fd int target = open_mountpoint(devfd, name, 0755, err);
	cleanup_fd int mfd = -1;

	if (target < 0)
		return -1;
	mfd = make_fs(strcmp(name, "pts") == 0 ? "devpts" : "tmpfs", options, count, attrs, err);
	if (mfd < 0)
		return -1;
	return attach(mfd, target, "", name, err);
}

static int make_symlink(const char *target, int dirfd, const char *name, struct hutch_error *err)
{
	if (symlinkat(target, dirfd, name) < 0)
		return err_sys(err, errno, "symlink", name);
	return 0;
}

static int populate_dev(int devfd, struct hutch_error *err)
{
	static const struct fs_option pts_options[] = { { "ptmxmode", "0666" }, { "mode", "0620" } };
	static const struct fs_option shm_options[] = { { "mode", "1777" }, { "size", "65536k" } };
	static const char *const links[][2] = {
		{ "pts/ptmx", "ptmx" },          { "/proc/self/fd", "fd" },
		{ "/proc/self/fd/0", "stdin" },  { "/proc/self/fd/1", "stdout" },
		{ "/proc/self/fd/2", "stderr" },
	};

	for (size_t i = 0; i < sizeof(host_devices) / sizeof(host_devices[0]); i++) {
		if (bind_device(devfd, host_devices[i], err) < 0)
			return -1;
	}
	if (mount_dev_tmpfs(devfd, "pts", pts_options, 2, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC,
			    err) < 0)
		return -1;
	if (mount_dev_tmpfs(devfd, "shm", shm_options, 2,
			    MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC, err) < 0)
		return -1;
	for (size_t i = 0; i < sizeof(links) / sizeof(links[0]); i++) {
		if (make_symlink(links[i][0], devfd, links[i][1], err) < 0)
			return -1;
	}
	return 0;
}

static int mount_dev(int rootfd, struct kernel_mounts *km, struct hutch_error *err)
{
	struct stat st;
	static const struct fs_option options[] = { { "mode", "755" }, { "size", "65536k" } };
	cleanup_fd int target = open_mountpoint(rootfd, "dev", 0755, err);
	cleanup_fd int devfd = -1;

	if (target < 0)
		return -1;
	devfd = make_fs("tmpfs", options, 2, MOUNT_ATTR_NOSUID, err);
	if (devfd < 0)
		return -1;
	if (attach(devfd, target, "", "/dev", err) < 0)
		return -1;
	/* DEVFD is the root of the attached tmpfs, so everything below is created in it. */
	if (populate_dev(devfd, err) < 0)
		return -1;
	/* Recorded so that --bind and --tmpfs can reject a destination in /dev. */
	if (fstat(devfd, &st) < 0)
		return err_sys(err, errno, "fstat", "/dev");
	km->dev = st.st_dev;
	if (fstatat(devfd, "shm", &st, AT_SYMLINK_NOFOLLOW) < 0)
		return err_sys(err, errno, "fstat", "/dev/shm");
	km->shm = st.st_dev;
	return 0;
}

/* Mount /sys; returns a fd of its root for the masks, or -1. */
static int mount_sys(int rootfd, struct hutch_error *err)
{
	unsigned attrs = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC;
	cleanup_fd int target = open_mountpoint(rootfd, "sys", 0555, err);
	int mfd = -1;

	if (target < 0)
		return -1;
	/* sysfs needs privilege over the network namespace, which only a new one gives. */
	mfd = make_fs("sysfs", NULL, 0, attrs, err);
	if (mfd < 0)
		mfd = clone_tree("/sys", true, attrs, err);
	if (mfd < 0)
		return -1;
	if (attach(mfd, target, "", "/sys", err) < 0) {
		close(mfd);
		return -1;
	}
	return mfd;
}

int setup_mounts(const struct spawn_plan *plan, int *rootfd, struct hutch_error *err)
{
	struct kernel_mounts km = { 0 };
	cleanup_fd int procfd = -1;
	cleanup_fd int sysfd = -1;

	/* Nothing done below may propagate back to the host's mount namespace. */
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		return err_sys(err, errno, "mount --make-rprivate", "/");
	*rootfd = mount_rootfs(plan, err);
	if (*rootfd < 0)
		return -1;
	procfd = mount_proc(plan, *rootfd, err);
	if (procfd < 0)
		return -1;
	if (mount_dev(*rootfd, &km, err) < 0)
		return -1;
	sysfd = mount_sys(*rootfd, err);
	if (sysfd < 0)
		return -1;
	/*
	 * The masks come before the first lookup of a path that the image
	 * controls (the --bind and --tmpfs destinations), so no such lookup
	 * can pin or reach a kernel file before it is hidden (CVE-2025-52565).
	 */
	if (mask_kernel_paths(procfd, sysfd, err) < 0)
		return -1;
	return mount_volumes(plan, *rootfd, &km, err);
}

int enter_root(const struct spawn_plan *plan, int rootfd, struct hutch_error *err)
{
	struct mount_attr attr = { .attr_set = MOUNT_ATTR_RDONLY };

	if (fchdir(rootfd) < 0)
		return err_sys(err, errno, "fchdir", plan->rootfs);
	/* pivot_root(".", ".") stacks the old root on the new one; the detach removes it. */
	if (syscall(SYS_pivot_root, ".", ".") < 0)
		return err_sys(err, errno, "pivot_root", plan->rootfs);
	if (umount2(".", MNT_DETACH) < 0)
		return err_sys(err, errno, "umount old root", plan->rootfs);
	if (chdir("/") < 0)
		return err_sys(err, errno, "chdir", "/");
	/* Only the top mount: /proc, /dev and /sys keep their own flags. */
	if (plan->readonly_rootfs && mount_setattr(AT_FDCWD, "/", 0, &attr, sizeof(attr)) < 0)
		return err_sys(err, errno, "mount_setattr read-only", "/");
	return 0;
}
