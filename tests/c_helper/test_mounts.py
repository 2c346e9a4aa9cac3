"""hutch-spawn's masked and read-only kernel paths, --bind and --tmpfs."""

from __future__ import annotations

import glob
import os
import subprocess
import uuid
from pathlib import Path

import pytest
from c_support import NAMESPACES, spawn_bin

MASKED = [
    "/proc/acpi", "/proc/asound", "/proc/interrupts", "/proc/kcore", "/proc/keys",
    "/proc/latency_stats", "/proc/sched_debug", "/proc/scsi", "/proc/timer_list",
    "/proc/timer_stats", "/sys/devices/virtual/powercap", "/sys/firmware", "/sys/fs/selinux",
    *glob.glob("/sys/devices/system/cpu/cpu*/thermal_throttle"),
]
READ_ONLY = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]


def sh(runner, rootfs, script, options=NAMESPACES, **kwargs):
    return runner.spawn(rootfs, ["/bin/sh", "-c", script], list(options), **kwargs)


def mount_options(mounts_text: str, path: str) -> list[str]:
    """The options of the topmost mount at PATH in a /proc/mounts listing."""
    lines = [line.split() for line in mounts_text.splitlines() if line.split()[1:2] == [path]]
    assert lines, f"{path} is not a mount point"
    return lines[-1][3].split(",")


@pytest.mark.parametrize("namespaces", [NAMESPACES, ["--unshare-pid"]], ids=["own", "host"])
def test_masked_paths_are_empty(runner_and_rootfs, namespaces):
    """With its own /proc and /sys, and with binds of the host's ("host")."""
    runner, rootfs = runner_and_rootfs
    present = [path for path in MASKED if os.path.exists(path)]
    assert present, "no masked path exists on this machine"
    script = "; ".join(f"echo {path} $(ls -A {path} | wc -l) $(cat {path} | wc -c)"
                       for path in present)
    result = sh(runner, rootfs, script, options=namespaces)
    # `ls -A` lists a file as itself and a directory by its entries; `cat` reads no bytes.
    expected = [f"{path} {0 if os.path.isdir(path) else 1} 0" for path in present]
    assert result.stdout.splitlines() == expected


def test_masked_file_is_null_device(runner_and_rootfs):
    runner, rootfs = runner_and_rootfs
    result = sh(runner, rootfs, "stat -c '%t:%T' /proc/keys; echo x > /proc/keys; cat /proc/keys")
    assert result.stdout == "1:3\n"


def test_masked_dir_is_read_only_tmpfs(runner_and_rootfs):
    runner, rootfs = runner_and_rootfs
    result = sh(runner, rootfs, "touch /sys/firmware/x; echo rc=$?; cat /proc/mounts")
    assert "rc=1" in result.stdout
    options = mount_options(result.stdout, "/sys/firmware")
    assert "ro" in options
    assert "tmpfs" in [line.split()[2] for line in result.stdout.splitlines()
                       if line.split()[1:2] == ["/sys/firmware"]]


def test_masks_cannot_be_unmounted(runner_and_rootfs):
    runner, rootfs = runner_and_rootfs
    result = sh(runner, rootfs, "umount /proc/keys; echo rc=$?; umount /sys/firmware; echo rc=$?;"
                " wc -c < /proc/keys; ls -A /sys/firmware | wc -l")
    assert result.stdout.split() == ["rc=1", "rc=1", "0", "0"]


def test_read_only_kernel_paths(runner_and_rootfs):
    runner, rootfs = runner_and_rootfs
    result = sh(runner, rootfs, "echo x > /proc/sys/kernel/hostname; echo rc=$?;"
                " echo 1 > /proc/sys/vm/drop_caches; echo rc=$?; cat /proc/mounts")
    assert result.stdout.splitlines()[:2] == ["rc=1", "rc=1"]
    assert result.stderr.count("Read-only file system") == 2
    for path in READ_ONLY:
        if os.path.exists(path):
            assert "ro" in mount_options(result.stdout, path), path


def test_masks_hold_without_user_namespace(root_runner, busybox_tree):
    """Real root without a user namespace: the container's root is host root."""
    result = sh(root_runner, busybox_tree, "cat /proc/keys | wc -c; echo x > /proc/sys/kernel/"
                "hostname; echo rc=$?; umount /proc/keys; echo rc=$?")
    assert result.stdout.split() == ["0", "rc=1", "rc=1"]
    assert os.uname().nodename != "x"


# --- --bind ---


@pytest.fixture
def host_dir(runner_and_rootfs):
    runner, rootfs = runner_and_rootfs
    path = rootfs.parent / "host-data"
    path.mkdir()
    (path / "file").write_text("from the host\n")
    if runner.user:
        os.chown(path, runner.user.uid, runner.user.gid)
        os.chown(path / "file", runner.user.uid, runner.user.gid)
    return path


def test_bind_read_write(runner_and_rootfs, host_dir):
    runner, rootfs = runner_and_rootfs
    result = sh(runner, rootfs, "cat /data/file; echo new > /data/made; grep ' /data ' /proc/mounts",
                options=[*NAMESPACES, "--bind", f"{host_dir}:/data"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("from the host\n")
    assert (host_dir / "made").read_text() == "new\n"
    options = mount_options(result.stdout, "/data")
    assert "rw" in options
    assert {"nosuid", "nodev"} <= set(options)
    # The mount point was made in the image, as a directory like its source.
    assert (rootfs / "data").is_dir()


def test_bind_read_only(runner_and_rootfs, host_dir):
    runner, rootfs = runner_and_rootfs
    result = sh(runner, rootfs, "cat /srv/in/file; echo x > /srv/in/made; echo rc=$?;"
                " cat /proc/mounts", options=[*NAMESPACES, "--bind", f"{host_dir}:/srv/in:ro"])
    assert result.stdout.startswith("from the host\nrc=1\n")
    assert "Read-only file system" in result.stderr
    assert not (host_dir / "made").exists()
    options = mount_options(result.stdout, "/srv/in")
    assert {"ro", "nosuid", "nodev"} <= set(options)


def test_bind_file(runner_and_rootfs, host_dir):
    runner, rootfs = runner_and_rootfs
    result = sh(runner, rootfs, "cat /etc/from-host",
                options=[*NAMESPACES, "--bind", f"{host_dir}/file:/etc/from-host:ro"])
    assert result.returncode == 0, result.stderr
    assert result.stdout == "from the host\n"
    assert (rootfs / "etc" / "from-host").is_file()


@pytest.fixture
def host_target():
    """An empty host directory that an image symlink names; removed afterwards."""
    target = Path(f"/tmp/hutch-host-target-{uuid.uuid4().hex[:8]}")
    target.mkdir()
    try:
        yield target
    finally:
        subprocess.run(["rm", "-rf", str(target)], check=True)


@pytest.mark.parametrize("link", ["ABS", "../../../../../../../../ABS"], ids=["absolute", "dotdot"])
def test_bind_through_symlink_stays_in_root(runner_and_rootfs, host_dir, host_target, link):
    """An image symlink to a host path resolves inside the root, as it does for the container."""
    runner, rootfs = runner_and_rootfs
    inside = rootfs / str(host_target).lstrip("/")
    inside.mkdir()
    if runner.user:
        os.chown(inside, runner.user.uid, runner.user.gid)
    (rootfs / "escape").symlink_to(link.replace("ABS", str(host_target)))
    result = sh(runner, rootfs, f"cat {host_target}/sub/file",
                options=[*NAMESPACES, "--bind", f"{host_dir}:/escape/sub"])
    assert result.returncode == 0, result.stderr
    assert result.stdout == "from the host\n"
    assert list(host_target.iterdir()) == []
    assert (inside / "sub").is_dir()


def test_bind_onto_symlink_to_etc(runner_and_rootfs, host_dir):
    runner, rootfs = runner_and_rootfs
    (rootfs / "link").symlink_to("/etc")
    result = sh(runner, rootfs, "cat /etc/file; ls /link",
                options=[*NAMESPACES, "--bind", f"{host_dir}:/link"])
    assert result.returncode == 0, result.stderr
    assert result.stdout == "from the host\nfile\n"
    assert not Path("/etc/file").exists()


def test_bind_through_dangling_symlink_rejected(runner_and_rootfs, host_dir, host_target):
    runner, rootfs = runner_and_rootfs
    (rootfs / "escape").symlink_to(str(host_target))
    result = sh(runner, rootfs, "true", options=[*NAMESPACES, "--bind", f"{host_dir}:/escape/sub"])
    assert result.returncode == 125
    assert result.stderr == "hutch-spawn: open `/escape`: Not a directory\n"
    assert list(host_target.iterdir()) == []


@pytest.mark.parametrize("dest", ["/proc/x", "/sys/kernel/x", "/dev/x", "/lnk/x"])
def test_bind_into_kernel_mounts_rejected(runner_and_rootfs, host_dir, dest):
    runner, rootfs = runner_and_rootfs
    (rootfs / "lnk").symlink_to("/proc/self")
    result = sh(runner, rootfs, "true", options=[*NAMESPACES, "--bind", f"{host_dir}:{dest}"])
    assert result.returncode == 125
    assert result.stderr.count("\n") == 1
    assert "destination resolves into /" in result.stderr


def test_bind_type_mismatch_rejected(runner_and_rootfs, host_dir):
    runner, rootfs = runner_and_rootfs
    result = sh(runner, rootfs, "true", options=[*NAMESPACES, "--bind", f"{host_dir}/file:/etc"])
    assert result.returncode == 125
    assert result.stderr == ("hutch-spawn: mount `/etc`: the destination is a directory but "
                             "the source is not\n")


def test_bind_missing_source_rejected(runner_and_rootfs):
    runner, rootfs = runner_and_rootfs
    result = sh(runner, rootfs, "true", options=[*NAMESPACES, "--bind", "/no/such/dir:/data"])
    assert result.returncode == 125
    assert result.stderr == "hutch-spawn: open `/no/such/dir`: No such file or directory\n"


def test_user_cannot_bind_unreadable_dir(unprivileged_user, shared_tmp):
    from c_support import Runner, chown_tree, make_busybox_tree

    rootfs = make_busybox_tree(shared_tmp / "rootfs")
    chown_tree(shared_tmp, unprivileged_user.uid, unprivileged_user.gid)
    secret = shared_tmp / "secret"
    secret.mkdir(mode=0o700)
    (secret / "inner").mkdir()
    result = sh(Runner(unprivileged_user), rootfs, "true",
                options=[*NAMESPACES, "--bind", f"{secret}/inner:/data"])
    assert result.returncode == 125
    assert "Permission denied" in result.stderr


# --- --tmpfs ---


def test_tmpfs_mount(runner_and_rootfs):
    runner, rootfs = runner_and_rootfs
    result = sh(runner, rootfs, "echo hi > /scratch/f && cat /scratch/f; stat -c %a /scratch;"
                " grep ' /scratch ' /proc/mounts", options=[*NAMESPACES, "--tmpfs", "/scratch:1048576"])
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:2] == ["hi", "1777"]
    fields = lines[2].split()
    assert fields[2] == "tmpfs"
    options = fields[3].split(",")
    assert {"rw", "nosuid", "nodev", "size=1024k"} <= set(options)
    assert not (rootfs / "scratch" / "f").exists()


def test_tmpfs_default_size(runner_and_rootfs):
    runner, rootfs = runner_and_rootfs
    result = sh(runner, rootfs, "grep ' /run/x ' /proc/mounts",
                options=[*NAMESPACES, "--tmpfs", "/run/x"])
    assert result.returncode == 0, result.stderr
    assert "size=65536k" in result.stdout.split()[3].split(",")


def test_tmpfs_over_one_gib_needs_root(runner_and_rootfs):
    runner, rootfs = runner_and_rootfs
    result = sh(runner, rootfs, "true", options=[*NAMESPACES, "--tmpfs", f"/big:{2 << 30}"])
    if runner.user is None:
        assert result.returncode == 0, result.stderr
    else:
        assert result.returncode == 125
        assert result.stderr == "hutch-spawn: invalid --tmpfs `/big`: more than 1 GiB needs real root\n"


@pytest.mark.parametrize(
    "options, message",
    [
        (["--bind", "relative:/x"], "invalid --bind `relative`: expected an absolute path"),
        (["--bind", "/a"], "invalid --bind `/a`"),
        (["--bind", "/a:/b:xx"], "invalid --bind `/a:/b:xx`"),
        (["--bind", "/a:/b/../c"], "empty, `.` or `..` component"),
        (["--bind", "/a:/"], "expected an absolute path other than /"),
        (["--bind", "/a:b"], "expected an absolute path other than /"),
        (["--tmpfs", "/x:abc"], "invalid --tmpfs size in `/x:abc`"),
        (["--tmpfs", "/x:100"], "expected 4096 or more bytes"),
        (["--tmpfs", "/x//y"], "empty, `.` or `..` component"),
    ],
)
def test_bad_mount_options_rejected(options, message):
    result = subprocess.run([str(spawn_bin()), "--rootfs", "/", *options, "--", "true"],
                            capture_output=True, text=True)
    assert result.returncode == 125
    assert result.stderr.count("\n") == 1
    assert message in result.stderr
