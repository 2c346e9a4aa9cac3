/*
 * --bind and --tmpfs: mounts at destinations that the image controls.
 *
 * Every destination is resolved with openat2(RESOLVE_IN_ROOT) relative to
 * the root filesystem's fd. So a symlink in the image, absolute or full of
 * "..", resolves inside the root as it does for the container itself, and
 * never reaches the host (runc's CVE-2021-30465). Missing components are
 * created one at a time with mkdirat() below the fd of their resolved
 * parent; a missing file destination is created with O_CREAT|O_EXCL|
 * O_NOFOLLOW. The mount is attached to the resolved fd with move_mount(),
 * so no path string is looked up twice. A destination in /proc, /sys or
 * /dev is rejected, because a mount there could cover a mask.
 */
#define _GNU_SOURCE
#include "spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Open PATH (absolute inside the container) relative to ROOTFD, as the container would. */
static int open_in_root(int rootfd, const char *path, int flags)
{
	struct open_how how = {
		.flags = (uint64_t)(flags | O_CLOEXEC),
		.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
	};

	while (*path == '/')
		path++;
	if (*path == '\0')
		path = ".";
	return (int)syscall(SYS_openat2, rootfd, path, &how, sizeof(how));
}

/* Reject a resolved destination that lies on /proc, /sys or /dev. */
static int check_not_kernel_mount(int fd, const char *dest, const struct kernel_mounts *km,
				  struct hutch_error *err)
{
	struct statfs fs;
	struct stat st;

	if (fstatfs(fd, &fs) < 0 || fstat(fd, &st) < 0)
		return err_sys(err, errno, "fstat", dest);
	switch (fs.f_type) {
	case PROC_SUPER_MAGIC:
	case SYSFS_MAGIC:
	case DEVPTS_SUPER_MAGIC:
	case CGROUP_SUPER_MAGIC:
	case CGROUP2_SUPER_MAGIC:
		return err_msg(err, "mount `%s`: destination resolves into /proc or /sys", dest);
	default:
		break;
	}
	if (st.st_dev == km->dev || st.st_dev == km->shm)
		return err_msg(err, "mount `%s`: destination resolves into /dev", dest);
	return 0;
}

/*
 * Open directory DEST[0..LEN) inside the root as an O_PATH fd. Each missing
 * component is created with mkdirat() below its resolved parent.
 */
static int make_directories(int rootfd, const char *dest, size_t len,
			    const struct kernel_mounts *km, struct hutch_error *err)
{
	char prefix[ARG_MAX_LEN + 1];
	int parent = open_in_root(rootfd, "/", O_PATH | O_DIRECTORY);
	size_t end = 0;

	if (parent < 0)
		return err_sys(err, errno, "open", "/");
	while (end < len) {
		size_t start = end + 1;
		int next;

		end = start;
		while (end < len && dest[end] != '/')
			end++;
		memcpy(prefix, dest, end);
		prefix[end] = '\0';
		next = open_in_root(rootfd, prefix, O_PATH | O_DIRECTORY);
		if (next < 0 && errno == ENOENT) {
			char name[ARG_MAX_LEN + 1];

			memcpy(name, dest + start, end - start);
			name[end - start] = '\0';
			if (check_not_kernel_mount(parent, prefix, km, err) < 0) {
				close(parent);
				return -1;
			}
			if (mkdirat(parent, name, 0755) < 0 && errno != EEXIST) {
				err_sys(err, errno, "mkdir", prefix);
				close(parent);
				return -1;
			}
			next = openat(parent, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		}
		close(parent);
		if (next < 0)
			return err_sys(err, errno, "open", prefix);
		parent = next;
	}
	return parent;
}

/* Open the mountpoint DEST inside the root: a directory when WANT_DIR, else a file. */
static int open_destination(int rootfd, const char *dest, bool want_dir,
			    const struct kernel_mounts *km, struct hutch_error *err)
{
	const char *slash = strrchr(dest, '/');
	cleanup_fd int parent = -1;
	int fd = open_in_root(rootfd, dest, O_PATH);
	struct stat st;

	if (fd < 0 && errno != ENOENT)
		return err_sys(err, errno, "open", dest);
	if (fd < 0) {
		parent = make_directories(rootfd, dest, (size_t)(slash - dest), km, err);
		if (parent < 0)
			return -1;
		if (check_not_kernel_mount(parent, dest, km, err) < 0)
			return -1;
		if (want_dir) {
			if (mkdirat(parent, slash + 1, 0755) < 0)
				return err_sys(err, errno, "mkdir", dest);
			fd = openat(parent, slash + 1, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		} else {
			fd = openat(parent, slash + 1,
				    O_RDONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
		}
		if (fd < 0)
			return err_sys(err, errno, "create", dest);
	}
	if (fstat(fd, &st) < 0) {
		err_sys(err, errno, "fstat", dest);
		close(fd);
		return -1;
	}
	if (S_ISDIR(st.st_mode) != want_dir) {
		close(fd);
		return err_msg(err, "mount `%s`: %s", dest,
			       want_dir ? "the source is a directory but the destination is not"
					: "the destination is a directory but the source is not");
	}
	if (check_not_kernel_mount(fd, dest, km, err) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static int mount_bind(const struct volume *vol, int rootfd, const struct kernel_mounts *km,
		      struct hutch_error *err)
{
	struct mount_attr attr = {
		.attr_set = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV |
			    (vol->readonly ? MOUNT_ATTR_RDONLY : 0),
	};
	cleanup_fd int source = open(vol->source, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	cleanup_fd int tree = -1;
	cleanup_fd int target = -1;
	struct stat st;

	if (source < 0)
		return err_sys(err, errno, "open", vol->source);
	if (fstat(source, &st) < 0)
		return err_sys(err, errno, "fstat", vol->source);
	if (S_ISLNK(st.st_mode))
		return err_msg(err, "bind `%s`: the source is a symlink", vol->source);
	tree = open_tree(source, "",
			 OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH | AT_RECURSIVE);
	if (tree < 0)
		return err_sys(err, errno, "open_tree", vol->source);
	if (mount_setattr(tree, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof(attr)) < 0)
		return err_sys(err, errno, "mount_setattr", vol->source);
	target = open_destination(rootfd, vol->dest, S_ISDIR(st.st_mode), km, err);
	if (target < 0)
		return -1;
	return attach(tree, target, "", vol->dest, err);
}

static int mount_tmpfs(const struct volume *vol, int rootfd, const struct kernel_mounts *km,
		       struct hutch_error *err)
{
	char size[32];
	struct fs_option options[] = { { "mode", "1777" }, { "size", size } };
	cleanup_fd int target = -1;
	cleanup_fd int mfd = -1;

	snprintf(size, sizeof(size), "%llu", (unsigned long long)vol->size);
	target = open_destination(rootfd, vol->dest, true, km, err);
	if (target < 0)
		return -1;
	mfd = make_fs("tmpfs", options, 2, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, err);
	if (mfd < 0)
		return -1;
	return attach(mfd, target, "", vol->dest, err);
}

int mount_volumes(const struct spawn_plan *plan, int rootfd, const struct kernel_mounts *km,
		  struct hutch_error *err)
{
	for (size_t i = 0; i < plan->volume_count; i++) {
		const struct volume *vol = &plan->volumes[i];
		int rc = vol->kind == VOLUME_BIND ? mount_bind(vol, rootfd, km, err)
						  : mount_tmpfs(vol, rootfd, km, err);

		if (rc < 0)
			return -1;
	}
	return 0;
}
