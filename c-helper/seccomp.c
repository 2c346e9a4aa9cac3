/*
 * The container's seccomp filter: classic BPF built here, no libseccomp.
 *
 * It is a deny list on top of the capability and user-namespace limits,
 * for system calls that have been the way out of containers or into kernel
 * bugs, and that Docker's default profile also refuses (moby's
 * profiles/seccomp/default.json):
 *
 * - keyctl, add_key, request_key: the keyring is not namespaced;
 * - kexec_load, kexec_file_load, init_module, finit_module, delete_module;
 * - userfaultfd, perf_event_open, bpf: frequent kernel exploit primitives;
 * - io_uring_setup, io_uring_enter, io_uring_register: the same, and
 *   io_uring operations bypass this filter once a ring exists;
 * - open_by_handle_at: opens any inode of a mount by handle (the "shocker"
 *   escape); name_to_handle_at stays allowed, as it only returns a handle,
 *   and some tools use it to tell mount points apart;
 * - unshare and clone with CLONE_NEWUSER: a nested user namespace gives
 *   back every capability inside it (CVE-2022-0492 went through one);
 * - clone3 fails with ENOSYS, since its flags are behind a pointer that
 *   BPF cannot read; libc then falls back to clone, which is checked;
 * - ioctl TIOCSTI and TIOCLINUX: typing into a terminal the process shares;
 *   the kernel takes the request as a 32-bit int, so only its low 32 bits
 *   are compared, and high bits set by the caller do not get around it;
 * - socket AF_VSOCK (host-guest sockets) and AF_ALG (kernel crypto API).
 *
 * Denied calls fail with EPERM. A call under another architecture's ABI
 * (for example int 0x80 on x86_64) kills the process, and x32 calls on
 * x86_64 fail with EPERM, so no second numbering gets around the list.
 */
#define _GNU_SOURCE
#include "spawn.h"

#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <stddef.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>

#if defined(__x86_64__)
#define FILTER_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define FILTER_ARCH AUDIT_ARCH_AARCH64
#else
#error "the seccomp filter knows only x86_64 and aarch64; add this architecture to seccomp.c"
#endif

#ifndef __X32_SYSCALL_BIT
#define __X32_SYSCALL_BIT 0x40000000
#endif
#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif
#ifndef AF_ALG
#define AF_ALG 38
#endif

/* The low 32 bits of argument N: seccomp_data args are 64-bit, and both ABIs are little-endian. */
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "seccomp.c reads the low half of each argument at its lower address"
#endif
#define ARG_LOW(n) (offsetof(struct seccomp_data, args) + 8 * (n))

#define LOAD(offset) BPF_STMT(BPF_LD | BPF_W | BPF_ABS, (offset))
#define RETURN(action) BPF_STMT(BPF_RET | BPF_K, (action))
#define ERRNO(e) (SECCOMP_RET_ERRNO | ((e) & SECCOMP_RET_DATA))
/* If A == VALUE go to the next instruction, else skip one. */
#define IF_EQUAL(value) BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (value), 0, 1)

#define DENY(nr) IF_EQUAL(nr), RETURN(ERRNO(EPERM))

/*
 * For system call NR: deny it when the low half of argument ARG is V1 or
 * V2. A different call skips the 6 instructions, with A still holding nr.
 */
#define DENY_ARG_VALUES(nr, arg, v1, v2)                                            \
	BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (nr), 0, 6), LOAD(ARG_LOW(arg)), DENY(v1), \
		DENY(v2), RETURN(SECCOMP_RET_ALLOW)

/* For system call NR: deny it when argument 0 (the flags) has CLONE_NEWUSER; 4 instructions. */
#define DENY_NEWUSER(nr)                                                              \
	BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (nr), 0, 4), LOAD(ARG_LOW(0)),            \
		BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, CLONE_NEWUSER, 0, 1),             \
		RETURN(ERRNO(EPERM)), RETURN(SECCOMP_RET_ALLOW)

static const struct sock_filter container_filter[] = {
	LOAD(offsetof(struct seccomp_data, arch)),
	BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, FILTER_ARCH, 1, 0),
	RETURN(SECCOMP_RET_KILL_PROCESS),

	LOAD(offsetof(struct seccomp_data, nr)),
#if defined(__x86_64__)
	BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, __X32_SYSCALL_BIT, 0, 1),
	RETURN(ERRNO(EPERM)),
#endif
	DENY(__NR_keyctl),
	DENY(__NR_add_key),
	DENY(__NR_request_key),
	DENY(__NR_kexec_load),
#ifdef __NR_kexec_file_load
	DENY(__NR_kexec_file_load),
#endif
	DENY(__NR_init_module),
	DENY(__NR_finit_module),
	DENY(__NR_delete_module),
	DENY(__NR_userfaultfd),
	DENY(__NR_perf_event_open),
	DENY(__NR_bpf),
	DENY(__NR_io_uring_setup),
	DENY(__NR_io_uring_enter),
	DENY(__NR_io_uring_register),
	DENY(__NR_open_by_handle_at),
	IF_EQUAL(__NR_clone3),
	RETURN(ERRNO(ENOSYS)),

	DENY_NEWUSER(__NR_unshare),
	DENY_NEWUSER(__NR_clone),
	DENY_ARG_VALUES(__NR_ioctl, 1, TIOCSTI, TIOCLINUX),
	DENY_ARG_VALUES(__NR_socket, 0, AF_VSOCK, AF_ALG),
	RETURN(SECCOMP_RET_ALLOW),
};

int install_seccomp_filter(struct hutch_error *err)
{
	struct sock_fprog program = {
		.len = sizeof(container_filter) / sizeof(container_filter[0]),
		.filter = (struct sock_filter *)container_filter,
	};

	/* The kernel accepts a filter from an unprivileged process only under no_new_privs. */
	if (prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1)
		return err_msg(err, "seccomp: no_new_privs is not set");
	if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program, 0, 0) < 0)
		return err_sys(err, errno, "prctl PR_SET_SECCOMP", NULL);
	if (prctl(PR_GET_SECCOMP, 0, 0, 0, 0) != SECCOMP_MODE_FILTER)
		return err_msg(err, "seccomp: the filter is not in force after PR_SET_SECCOMP");
	return 0;
}
