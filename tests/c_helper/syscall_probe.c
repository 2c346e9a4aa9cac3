/*
 * Test probe for hutch-spawn's seccomp filter: prints "CASE ERRNO" per case.
 *
 * Most cases run under a second filter that the probe installs itself,
 * which returns SECCOMP_RET_TRACE for the calls under test. With no tracer
 * attached, such a call fails with ENOSYS and never runs. The kernel takes
 * the most severe action of all filters, so a call that hutch's filter
 * denies fails with EPERM instead. So ENOSYS means "allowed by hutch", EPERM
 * means "filtered", and no call under test has any effect. clone3 is called
 * for real, with a size that the kernel rejects (EINVAL) when it is allowed.
 *
 * `syscall_probe int80` makes an i386 getpid through int 0x80, which a
 * filter that checks the architecture kills with SIGSYS.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#define X32_BIT 0x40000000UL

struct probe_case {
	const char *name;
	long nr;
	unsigned long args[4];
};

static const struct probe_case cases[] = {
	{ "keyctl", __NR_keyctl, { 0 } },
	{ "add_key", __NR_add_key, { 0 } },
	{ "request_key", __NR_request_key, { 0 } },
	{ "kexec_load", __NR_kexec_load, { 0 } },
	{ "kexec_file_load", __NR_kexec_file_load, { (unsigned long)-1, (unsigned long)-1 } },
	{ "init_module", __NR_init_module, { 0 } },
	{ "finit_module", __NR_finit_module, { (unsigned long)-1 } },
	{ "delete_module", __NR_delete_module, { 0 } },
	{ "userfaultfd", __NR_userfaultfd, { 0 } },
	{ "perf_event_open", __NR_perf_event_open, { 0 } },
	{ "bpf", __NR_bpf, { (unsigned long)-1 } },
	{ "io_uring_setup", __NR_io_uring_setup, { 0 } },
	{ "io_uring_enter", __NR_io_uring_enter, { (unsigned long)-1 } },
	{ "io_uring_register", __NR_io_uring_register, { (unsigned long)-1 } },
	{ "open_by_handle_at", __NR_open_by_handle_at, { (unsigned long)-1 } },
	{ "name_to_handle_at", __NR_name_to_handle_at, { (unsigned long)-1 } },
	{ "unshare_newuser", __NR_unshare, { CLONE_NEWUSER } },
	{ "unshare_newuser_newns", __NR_unshare, { CLONE_NEWUSER | CLONE_NEWNS } },
	{ "unshare_newns", __NR_unshare, { CLONE_NEWNS } },
	{ "clone_newuser", __NR_clone, { CLONE_NEWUSER | SIGCHLD } },
	{ "clone_plain", __NR_clone, { SIGCHLD } },
	{ "ioctl_tiocsti", __NR_ioctl, { (unsigned long)-1, TIOCSTI } },
	{ "ioctl_tiocsti_high_bits", __NR_ioctl, { (unsigned long)-1, TIOCSTI | (1UL << 32) } },
	{ "ioctl_tioclinux", __NR_ioctl, { (unsigned long)-1, TIOCLINUX } },
	{ "ioctl_tcgets", __NR_ioctl, { (unsigned long)-1, TCGETS } },
	{ "socket_vsock", __NR_socket, { 40, SOCK_STREAM } },
	{ "socket_vsock_high_bits", __NR_socket, { 40 | (1UL << 32), SOCK_STREAM } },
	{ "socket_alg", __NR_socket, { 38, SOCK_SEQPACKET } },
	{ "socket_unix", __NR_socket, { AF_UNIX, SOCK_STREAM } },
	{ "x32_getpid", (long)(X32_BIT | 39), { 0 } },
};

#define CASE_COUNT (sizeof(cases) / sizeof(cases[0]))

/* Mark every call under test (and the getppid self-check) with SECCOMP_RET_TRACE. */
static int install_marker(void)
{
	struct sock_filter filter[2 * CASE_COUNT + 8];
	size_t n = 0;

	filter[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
						   offsetof(struct seccomp_data, nr));
	filter[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, X32_BIT, 0, 1);
	filter[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRACE);
	filter[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_getppid, 0, 1);
	filter[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRACE);
	for (size_t i = 0; i < CASE_COUNT; i++) {
		filter[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K,
							   (unsigned)cases[i].nr, 0, 1);
		filter[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRACE);
	}
	filter[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);

	struct sock_fprog program = { .len = (unsigned short)n, .filter = filter };

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
	    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program, 0, 0) < 0) {
		printf("marker-filter %s\n", strerror(errno));
		return -1;
	}
	/* The self-check: a marked call must fail with ENOSYS, or no result below means anything. */
	if (syscall(__NR_getppid) != -1 || errno != ENOSYS) {
		printf("marker-filter not-in-force\n");
		return -1;
	}
	return 0;
}

static const char *errno_name(int e)
{
	static char other[16];

	switch (e) {
	case EPERM:
		return "EPERM";
	case ENOSYS:
		return "ENOSYS";
	case EINVAL:
		return "EINVAL";
	case EFAULT:
		return "EFAULT";
	case EBADF:
		return "EBADF";
	default:
		snprintf(other, sizeof(other), "errno%d", e);
		return other;
	}
}

static void print_result(const char *name, long result)
{
	printf("%s %s\n", name, result == -1 ? errno_name(errno) : "succeeded");
}

static int int80_getpid(void)
{
#if defined(__x86_64__)
	long result = 20; /* getpid in the i386 table */

	__asm__ volatile("int $0x80" : "+a"(result) : : "memory");
	printf("int80 returned %ld\n", result);
	return 0;
#else
	puts("int80 unsupported");
	return 2;
#endif
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "int80") == 0)
		return int80_getpid();

	/* Real call: size 0 is below CLONE_ARGS_SIZE_VER0, so an allowed clone3 gives EINVAL. */
	print_result("clone3", syscall(__NR_clone3, NULL, 0));
	if (install_marker() < 0)
		return 1;
	for (size_t i = 0; i < CASE_COUNT; i++) {
		const struct probe_case *c = &cases[i];

		print_result(c->name, syscall(c->nr, c->args[0], c->args[1], c->args[2], c->args[3]));
	}
	return 0;
}
