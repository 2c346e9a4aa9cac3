"""The default hardening of every container, checked from inside, as root."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from hutchtest import Hutch

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="these tests run as root")

# Podman's 11 default capabilities: CHOWN DAC_OVERRIDE FOWNER FSETID KILL
# SETGID SETUID SETPCAP NET_BIND_SERVICE SYS_CHROOT SETFCAP.
DEFAULT_CAPS = "00000000800405fb"
EUID_PROBE = '#include <stdio.h>\n#include <unistd.h>\nint main(void){printf("%d\\n", (int)geteuid());return 0;}\n'


def image_with(hutch: Hutch, busybox_tree: Path, tmp_path: Path, name: str, extra: dict[str, str]) -> str:
    """Import busybox plus EXTRA: path -> symlink target (replacing what was there)."""
    archive = tmp_path / f"{name}.tar"
    with tarfile.open(archive, "w") as tar:
        for entry in sorted(busybox_tree.iterdir()):
            if entry.name not in extra:
                tar.add(entry, arcname=entry.name)
        for path, target in extra.items():
            member = tarfile.TarInfo(path)
            member.type = tarfile.SYMTYPE
            member.linkname = target
            tar.addfile(member)
    hutch.out("import", str(archive), name)
    return name


def test_capabilities_and_no_new_privs(hutch: Hutch, image: str):
    status = hutch.out("run", "--rm", image, "cat", "/proc/self/status")
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    assert fields["CapBnd"] == DEFAULT_CAPS
    assert fields["CapEff"] == DEFAULT_CAPS
    assert fields["CapPrm"] == DEFAULT_CAPS
    assert fields["CapInh"] == "0000000000000000"
    assert fields["CapAmb"] == "0000000000000000"
    assert fields["NoNewPrivs"] == "1"


def test_only_stdio_fds_reach_pid_1(hutch: Hutch, image: str):
    # "; true" keeps sh as pid 1 instead of letting it exec ls.
    listing = hutch.out("run", "--rm", image, "sh", "-c", "ls /proc/1/fd; true")
    assert listing.split() == ["0", "1", "2"]


def test_setuid_binary_cannot_raise_privilege(hutch: Hutch, busybox_tree: Path, tmp_path: Path):
    source = tmp_path / "euid.c"
    source.write_text(EUID_PROBE)
    probe = busybox_tree / "bin" / "euid"
    subprocess.run(["gcc", "-static", "-O2", "-o", str(probe), str(source)], check=True)
    os.chmod(probe, 0o4755)
    archive = tmp_path / "suid.tar"
    with tarfile.open(archive, "w") as tar:
        for entry in sorted(busybox_tree.iterdir()):
            tar.add(entry, arcname=entry.name)
    hutch.out("import", str(archive), "suid")
    assert hutch.out("run", "--rm", "-u", "1000", "suid", "/bin/euid").strip() == "1000"
    # Without the container, the same file does raise the euid: the check can fail.
    direct = subprocess.run(
        ["setpriv", "--reuid=1000", "--regid=1000", "--clear-groups", str(probe)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert direct.stdout.strip() == "0"


def test_proc_sys_and_cgroup_are_read_only(hutch: Hutch, image: str):
    script = (
        "echo 1 > /proc/sys/kernel/ns_last_pid 2>/dev/null && echo proc-sys-written; "
        "echo x > /proc/sysrq-trigger 2>/dev/null && echo sysrq-written; "
        "mkdir /sys/fs/cgroup/escape 2>/dev/null && echo cgroup-written; "
        "echo done"
    )
    assert hutch.out("run", "--rm", image, "sh", "-c", script) == "done\n"


def test_masked_proc_files_are_empty(hutch: Hutch, image: str):
    candidates = ("/proc/timer_list", "/proc/sched_debug", "/proc/keys", "/proc/interrupts")
    # Only files that have content on the host show that the mask works.
    paths = [path for path in candidates if Path(path).exists() and Path(path).read_bytes()]
    assert paths
    for path in paths:
        inside = hutch.run("run", "--rm", image, "cat", path)
        assert inside.stdout == b"", path


def test_dev_has_only_standard_devices(hutch: Hutch, image: str):
    listing = set(hutch.out("run", "--rm", image, "ls", "/dev").split())
    assert {"null", "zero", "full", "random", "urandom", "tty", "pts", "shm"} <= listing
    assert not {"sda", "vda", "mem", "kmsg", "kvm"} & listing


def test_image_dev_symlink_to_host_is_not_followed(hutch: Hutch, busybox_tree: Path, tmp_path: Path):
    host_dir = tmp_path / "host-dev"
    host_dir.mkdir()
    image = image_with(hutch, busybox_tree, tmp_path, "evil-dev", {"dev": str(host_dir)})
    hutch.run("run", "--rm", image, "sh", "-c", "ls /dev > /dev/null; echo x > /dev/planted")
    assert list(host_dir.iterdir()) == []


def test_image_proc_symlink_to_host_is_not_followed(hutch: Hutch, busybox_tree: Path, tmp_path: Path):
    host_dir = tmp_path / "host-proc"
    host_dir.mkdir()
    image = image_with(hutch, busybox_tree, tmp_path, "evil-proc", {"proc": str(host_dir)})
    hutch.run("run", "--rm", image, "true")
    assert list(host_dir.iterdir()) == []
    assert str(host_dir) not in Path("/proc/mounts").read_text()


def test_bind_destination_symlink_stays_inside(hutch: Hutch, busybox_tree: Path, tmp_path: Path):
    host_dir = tmp_path / "host-target"
    host_dir.mkdir()
    source = tmp_path / "source"
    source.mkdir()
    (source / "payload").write_text("payload\n")
    image = image_with(hutch, busybox_tree, tmp_path, "evil-mnt", {"mnt": str(host_dir)})
    hutch.run("run", "--rm", "-v", f"{source}:/mnt", image, "sh", "-c", "ls /mnt; touch /mnt/written")
    assert list(host_dir.iterdir()) == []
    assert str(host_dir) not in Path("/proc/mounts").read_text()


def test_passwd_symlink_to_host_shadow_is_refused(hutch: Hutch, busybox_tree: Path, tmp_path: Path):
    (busybox_tree / "etc" / "passwd").unlink()
    image = image_with(hutch, busybox_tree, tmp_path, "evil-passwd", {"etc/passwd": "/etc/shadow"})
    result = hutch.run("run", "--rm", "-u", "root", image, "true")
    assert result.returncode == 125
    assert b"symlink" in result.stderr
    assert b"root:" not in result.stderr


def test_cap_drop_and_add(hutch: Hutch, image: str):
    status = hutch.run("run", "--rm", "--cap-drop", "CHOWN", image, "sh", "-c", "grep CapEff /proc/self/status; chown 5 /tmp 2>&1").stdout.decode()
    assert "00000000800405fa" in status
    assert "Operation not permitted" in status
    status = hutch.out("run", "--rm", "--cap-drop", "ALL", image, "grep", "CapBnd", "/proc/self/status")
    assert status.split()[-1] == "0000000000000000"
    status = hutch.out("run", "--rm", "--cap-add", "NET_RAW", image, "grep", "CapEff", "/proc/self/status")
    assert int(status.split()[-1], 16) & (1 << 13)
    result = hutch.run("run", "--rm", "--cap-drop", "NOPE", image, "true")
    assert result.returncode == 125


def test_exec_keeps_container_caps(hutch: Hutch, image: str):
    container_id = hutch.out("run", "-d", "--cap-drop", "ALL", image, "sleep", "100").strip()
    status = hutch.out("exec", container_id, "grep", "CapEff", "/proc/self/status")
    assert status.split()[-1] == "0000000000000000"
