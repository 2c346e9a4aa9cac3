"""hutch-spawn's seccomp filter, seen from inside the container by syscall_probe.c."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from c_support import HERE, NAMESPACES

FILTERED = [
    "keyctl", "add_key", "request_key", "kexec_load", "kexec_file_load", "init_module",
    "finit_module", "delete_module", "userfaultfd", "perf_event_open", "bpf", "io_uring_setup",
    "io_uring_enter", "io_uring_register", "open_by_handle_at", "unshare_newuser",
    "unshare_newuser_newns", "clone_newuser", "ioctl_tiocsti", "ioctl_tiocsti_high_bits",
    "ioctl_tioclinux", "socket_vsock", "socket_vsock_high_bits", "socket_alg", "x32_getpid",
]  # fmt: skip
ALLOWED = ["name_to_handle_at", "unshare_newns", "clone_plain", "ioctl_tcgets", "socket_unix"]
SIGSYS = 31


@pytest.fixture(scope="module")
def syscall_probe(tmp_path_factory) -> Path:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is needed to build the syscall probe")
    out = tmp_path_factory.mktemp("probe") / "syscall_probe"
    subprocess.run(["gcc", "-static", "-O1", "-o", str(out), str(HERE / "syscall_probe.c")],
                   check=True)  # fmt: skip
    out.chmod(0o755)
    return out


def parse(output: str) -> dict[str, str]:
    return dict(line.split(" ", 1) for line in output.splitlines())


def test_probe_tells_cases_apart_unfiltered(syscall_probe):
    # Outside hutch, only the probe's own marker filter applies: nothing is EPERM.
    result = subprocess.run([str(syscall_probe)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
    results = parse(result.stdout)
    assert results.pop("clone3") == "EINVAL"
    assert set(results) == set(FILTERED) | set(ALLOWED)
    assert set(results.values()) == {"ENOSYS"}


def test_filter_denies_listed_calls(runner_and_rootfs, syscall_probe):
    runner, rootfs = runner_and_rootfs
    shutil.copy2(syscall_probe, rootfs / "bin" / "syscall_probe")
    result = runner.spawn(rootfs, ["/bin/syscall_probe"], NAMESPACES)
    assert result.returncode == 0, (result.stdout, result.stderr)
    results = parse(result.stdout)
    for name in FILTERED:
        assert results[name] == "EPERM", name
    for name in ALLOWED:
        assert results[name] == "ENOSYS", name
    # clone3 reads its flags through a pointer, so it is refused as unknown and libc falls back.
    assert results["clone3"] == "ENOSYS"


def test_foreign_arch_call_kills(runner_and_rootfs, syscall_probe):
    outside = subprocess.run([str(syscall_probe), "int80"], capture_output=True, text=True)
    if outside.returncode != 0:
        pytest.skip("this kernel runs no i386 system calls (no IA32 emulation)")
    runner, rootfs = runner_and_rootfs
    shutil.copy2(syscall_probe, rootfs / "bin" / "syscall_probe")
    result = runner.spawn(rootfs, ["/bin/syscall_probe", "int80"], NAMESPACES)
    assert result.returncode == 128 + SIGSYS, (result.stdout, result.stderr)
    assert "int80 returned" not in result.stdout


def test_ordinary_programs_still_work(runner_and_rootfs):
    runner, rootfs = runner_and_rootfs
    script = "ls / > /tmp/listing && cat /etc/passwd && grep -c bin /tmp/listing && (sleep 0 &) && wait"
    result = runner.spawn(rootfs, ["/bin/sh", "-c", script], NAMESPACES)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["root:x:0:0:root:/root:/bin/sh", "1"]


@pytest.mark.parametrize("options", [[], ["--init"]])
def test_filter_in_force_for_every_process(root_runner, busybox_tree, options):
    result = root_runner.spawn(busybox_tree, ["/bin/grep", "^Seccomp:", "/proc/1/status",
                                              "/proc/self/status"], [*NAMESPACES, *options])  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    for line in lines:
        assert line.endswith("Seccomp:\t2"), line

