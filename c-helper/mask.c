/*
 * Masked and read-only kernel paths in /proc and /sys, the union of
 * Docker's and Podman's default lists.
 *
 * A masked file gets a bind of the host's /dev/null, opened here and
 * checked to be the character device 1:3, so an image cannot swap in a
 * file of its own for the mask (CVE-2025-31133). A masked directory gets
 * an empty read-only tmpfs. A read-only path gets a bind of itself with
 * MOUNT_ATTR_RDONLY. Each path is opened below the fd of the /proc or /sys
 * mount without following a symlink, and a path that does not exist is
 * skipped. Any other failure is fatal: a container never starts with part
 * of its masks missing.
 */
#define _GNU_SOURCE
#include "spawn.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

static const char *const masked_proc[] = {
	"acpi",       "asound",        "interrupts",  "kcore",      "keys",
	"latency_stats", "sched_debug", "scsi",       "timer_list", "timer_stats",
};

static const char *const masked_sys[] = { "devices/virtual/powercap", "firmware", "fs/selinux" };

static const char *const readonly_proc[] = { "bus", "fs", "irq", "sys", "sysrq-trigger" };

/* Open NAME below DIRFD with O_PATH; no symlink, no "..". Returns -1 with errno set. */
static int open_beneath(int dirfd, const char *name)
{
	struct open_how how = {
		.flags = O_PATH | O_NOFOLLOW | O_CLOEXEC,
		.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
	};

	return (int)syscall(SYS_openat2, dirfd, name, &how, sizeof(how));
}

/* Clone the host's /dev/null and check that it is the null device, 1:3. */
static int clone_dev_null(struct hutch_error *err)
{
	struct stat st;
	int tree = clone_tree("/dev/null", false, 0, err);

	if (tree < 0)
		return -1;
	if (fstat(tree, &st) < 0) {
		err_sys(err, errno, "fstat", "/dev/null");
		close(tree);
		return -1;
	}
	if (!S_ISCHR(st.st_mode) || major(st.st_rdev) != 1 || minor(st.st_rdev) != 3) {
		close(tree);
		return err_msg(err, "mask: the host's `/dev/null` is not the character device 1:3");
	}
	return tree;
}

static int mask_directory(int target, const char *label, struct hutch_error *err)
{
	static const struct fs_option options[] = { { "mode", "0555" }, { "size", "4k" } };
	unsigned attrs = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC;
	cleanup_fd int mfd = make_fs("tmpfs", options, 2, attrs, err);

	if (mfd < 0)
		return -1;
	return attach(mfd, target, "", label, err);
}

/* Hide BASE/NAME; LABEL is its path inside the container, for messages. */
static int mask_path(int base, const char *name, const char *label, struct hutch_error *err)
{
	cleanup_fd int target = open_beneath(base, name);
	cleanup_fd int null_tree = -1;
	struct stat st;

	if (target < 0 && errno == ENOENT)
		return 0;
	if (target < 0)
		return err_sys(err, errno, "open", label);
	if (fstat(target, &st) < 0)
		return err_sys(err, errno, "fstat", label);
	if (S_ISDIR(st.st_mode))
		return mask_directory(target, label, err);
	null_tree = clone_dev_null(err);
	if (null_tree < 0)
		return -1;
	return attach(null_tree, target, "", label, err);
}

/* Bind BASE/NAME onto itself, read-only with its submounts. */
static int make_readonly(int base, const char *name, const char *label, struct hutch_error *err)
{
	struct mount_attr attr = {
		.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV |
			    MOUNT_ATTR_NOEXEC,
	};
	cleanup_fd int target = open_beneath(base, name);
	cleanup_fd int tree = -1;

	if (target < 0 && errno == ENOENT)
		return 0;
	if (target < 0)
		return err_sys(err, errno, "open", label);
	tree = open_tree(target, "",
			 OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH | AT_RECURSIVE);
	if (tree < 0)
		return err_sys(err, errno, "open_tree", label);
	if (mount_setattr(tree, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof(attr)) < 0)
		return err_sys(err, errno, "mount_setattr read-only", label);
	return attach(tree, target, "", label, err);
}

static bool is_cpu_name(const char *name)
{
	size_t digits = strspn(name + 3, "0123456789");

	return strncmp(name, "cpu", 3) == 0 && digits > 0 && name[3 + digits] == '\0';
}

/* Mask /sys/devices/system/cpu/cpuN/thermal_throttle for every cpuN. */
static int mask_thermal_throttle(int sysfd, struct hutch_error *err)
{
	int cpus = open_beneath(sysfd, "devices/system/cpu");
	int listing;
	DIR *dir;
	struct dirent *entry;
	int rc = 0;

	if (cpus < 0 && errno == ENOENT)
		return 0;
	if (cpus < 0)
		return err_sys(err, errno, "open", "/sys/devices/system/cpu");
	/* An O_PATH fd cannot be read: reopen it for readdir through the same inode. */
	listing = openat(cpus, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	dir = listing < 0 ? NULL : fdopendir(listing);
	if (dir == NULL) {
		err_sys(err, errno, "opendir", "/sys/devices/system/cpu");
		if (listing >= 0)
			close(listing);
		close(cpus);
		return -1;
	}
	while (rc == 0 && (entry = readdir(dir)) != NULL) {
		char name[300];
		char label[340];

		if (!is_cpu_name(entry->d_name))
			continue;
		snprintf(name, sizeof(name), "%s/thermal_throttle", entry->d_name);
		snprintf(label, sizeof(label), "/sys/devices/system/cpu/%s", name);
		rc = mask_path(cpus, name, label, err);
	}
	closedir(dir);
	close(cpus);
	return rc;
}

int mask_kernel_paths(int procfd, int sysfd, struct hutch_error *err)
{
	char label[64];

	for (size_t i = 0; i < sizeof(masked_proc) / sizeof(masked_proc[0]); i++) {
		snprintf(label, sizeof(label), "/proc/%s", masked_proc[i]);
		if (mask_path(procfd, masked_proc[i], label, err) < 0)
			return -1;
	}
	for (size_t i = 0; i < sizeof(masked_sys) / sizeof(masked_sys[0]); i++) {
		snprintf(label, sizeof(label), "/sys/%s", masked_sys[i]);
		if (mask_path(sysfd, masked_sys[i], label, err) < 0)
			return -1;
	}
	if (mask_thermal_throttle(sysfd, err) < 0)
		return -1;
	for (size_t i = 0; i < sizeof(readonly_proc) / sizeof(readonly_proc[0]); i++) {
		snprintf(label, sizeof(label), "/proc/%s", readonly_proc[i]);
		if (make_readonly(procfd, readonly_proc[i], label, err) < 0)
			return -1;
	}
	return 0;
}
