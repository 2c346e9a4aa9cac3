"""hutch-spawn's overlay root: layer order, whiteouts, opaque dirs, writes in the upper dir."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest
from c_support import chown_tree, make_busybox_tree

SYSTEM_PYTHON = "/usr/bin/python3"

# Run as the layer's owner: the rootless user makes its own whiteouts (mknod c 0 0 needs no
# privilege) and sets user.overlay.opaque, which only the owner of the directory may set.
MAKE_LAYERS = r"""
import os, stat, sys
top, middle = sys.argv[1], sys.argv[2]
os.makedirs(f"{middle}/etc")
open(f"{middle}/etc/a", "w").write("from middle\n")
os.makedirs(f"{middle}/d")
open(f"{middle}/d/x", "w").write("hidden by the opaque dir\n")
open(f"{middle}/b", "w").write("b from middle\n")
os.makedirs(f"{top}/etc")
os.mknod(f"{top}/etc/a", stat.S_IFCHR | 0o600, os.makedev(0, 0))
os.makedirs(f"{top}/d")
os.setxattr(f"{top}/d", "user.overlay.opaque", b"y")
open(f"{top}/d/y", "w").write("y from top\n")
"""


def make_layers(runner, base):
    top, middle = base / "top", base / "middle"
    argv = [sys.executable, "-c", MAKE_LAYERS, str(top), str(middle)]
    if runner.user:
        # The test's own interpreter may sit in root's home, which the user cannot reach.
        if not os.access(SYSTEM_PYTHON, os.X_OK):
            pytest.skip(f"{SYSTEM_PYTHON} is needed to make layers as the test user")
        argv[0] = SYSTEM_PYTHON
        subprocess.run(runner.command(argv), check=True)
    else:
        subprocess.run(argv, check=True)
    return top, middle


def overlay_setup(runner_and_rootfs):
    runner, busybox = runner_and_rootfs
    base = busybox.parent
    top, middle = make_layers(runner, base)
    upper, work, mountpoint = base / "upper", base / "work", base / "merged"
    for path in (upper, work, mountpoint):
        path.mkdir()
        if runner.user:
            os.chown(path, runner.user.uid, runner.user.gid)
    options = [
        "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
        "--overlay-lower", str(top), "--overlay-lower", str(middle),
        "--overlay-lower", str(busybox),
        "--overlay-upper", str(upper), "--overlay-work", str(work),
    ]
    return runner, mountpoint, upper, options


def test_overlay_whiteout_and_opaque(runner_and_rootfs):
    runner, mountpoint, _, options = overlay_setup(runner_and_rootfs)
    script = "ls /etc/a; echo a=$?; ls /d; cat /b; grep ' / ' /proc/mounts"
    result = runner.spawn(mountpoint, ["/bin/sh", "-c", script], options)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "a=1", "the whiteout in the top layer did not hide /etc/a"
    assert lines[1] == "y", "the opaque /d still shows the middle layer's x"
    assert lines[2] == "b from middle"
    mount_options = lines[3].split()[3].split(",")
    assert lines[3].split()[2] == "overlay"
    assert "userxattr" in mount_options


def test_overlay_writes_land_in_upper(runner_and_rootfs):
    runner, mountpoint, upper, options = overlay_setup(runner_and_rootfs)
    script = "echo new > /newfile && rm /b && mkdir /made"
    result = runner.spawn(mountpoint, ["/bin/sh", "-c", script], options)
    assert result.returncode == 0, result.stderr
    assert (upper / "newfile").read_text() == "new\n"
    assert (upper / "made").is_dir()
    whiteout = os.lstat(upper / "b")
    assert stat.S_ISCHR(whiteout.st_mode)
    assert whiteout.st_rdev == os.makedev(0, 0)
    # The merged view existed only in the container's mount namespace.
    assert list(mountpoint.iterdir()) == []


def test_overlay_without_upper_is_read_only(runner_and_rootfs):
    runner, mountpoint, _, options = overlay_setup(runner_and_rootfs)
    lowers_only = options[: options.index("--overlay-upper")]
    result = runner.spawn(mountpoint, ["/bin/sh", "-c", "touch /x; echo rc=$?"], lowers_only)
    assert "rc=1" in result.stdout
    assert "Read-only file system" in result.stderr


def test_overlay_bad_lower_reports_path(runner_and_rootfs):
    runner, mountpoint, _, options = overlay_setup(runner_and_rootfs)
    options = [*options, "--overlay-lower", "/nonexistent-layer"]
    result = runner.spawn(mountpoint, ["/bin/true"], options)
    assert result.returncode == 125
    assert result.stderr.startswith("hutch-spawn: fsconfig `/nonexistent-layer`: ")
    assert result.stderr.count("\n") == 1


def test_overlay_upper_without_work_rejected(shared_tmp):
    rootfs = make_busybox_tree(shared_tmp / "rootfs")
    chown_tree(shared_tmp, 0, 0)
    from c_support import spawn_bin

    argv = [str(spawn_bin()), "--rootfs", str(rootfs), "--overlay-lower", str(rootfs),
            "--overlay-upper", str(shared_tmp), "--", "/bin/true"]
    result = subprocess.run(argv, capture_output=True, text=True)
    assert result.returncode == 125
    assert "--overlay-upper and --overlay-work must be given together" in result.stderr
