"""Fixtures shared by every test directory: a busybox image, a non-root user."""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import uuid
from pathlib import Path

import pytest

from hutchtest import Hutch
from support import User, make_busybox_tree


@pytest.fixture
def busybox_tree(tmp_path: Path) -> Path:
    """A directory that contains a busybox root filesystem."""
    return make_busybox_tree(tmp_path / "rootfs")


@pytest.fixture
def busybox_tar(tmp_path: Path, busybox_tree: Path) -> Path:
    """A root filesystem tar built from busybox-static."""
    out = tmp_path / "busybox.tar"
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for entry in sorted(busybox_tree.iterdir()):
            tar.add(entry, arcname=entry.name)
    return out


@pytest.fixture
def unprivileged_user():
    """A real non-root user with a home directory and a private runtime dir."""
    if os.geteuid() != 0:
        pytest.skip("making a test user needs root")
    name = "hutcht" + uuid.uuid4().hex[:8]
    subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", name], check=True)
    user = User(name)
    user.runtime_dir.mkdir(mode=0o700)
    os.chown(user.runtime_dir, user.uid, user.gid)
    try:
        yield user
    finally:
        subprocess.run(["pkill", "-KILL", "-u", str(user.uid)], check=False)
        for _ in range(50):
            if subprocess.run(["pgrep", "-u", str(user.uid)], capture_output=True).returncode:
                break
            subprocess.run(["sleep", "0.1"], check=False)
        subprocess.run(["userdel", "--remove", name], check=False, capture_output=True)
        shutil.rmtree(user.runtime_dir, ignore_errors=True)
        remove_empty_cgroups(f"hutch/{user.uid}")


CGROUP_ROOT = Path("/sys/fs/cgroup")


def remove_empty_cgroups(relative: str) -> None:
    """rmdir RELATIVE in every hierarchy where it exists and has no child cgroup."""
    for directory in [*CGROUP_ROOT.glob(f"*/{relative}"), CGROUP_ROOT / relative]:
        try:
            directory.rmdir()  # fails, as it should, while a container cgroup is inside
        except OSError:
            pass


@pytest.fixture(scope="session", autouse=True)
def restore_cgroup_parents():
    """Remove the hutch/ and hutch/0/ parents at the end if the session made them."""
    existed = {path for path in CGROUP_ROOT.glob("*/hutch")} | {
        path for path in CGROUP_ROOT.glob("*/hutch/0")
    }
    yield
    if os.geteuid() != 0:
        return
    for path in [*CGROUP_ROOT.glob("*/hutch/0"), *CGROUP_ROOT.glob("*/hutch")]:
        if path not in existed:
            try:
                path.rmdir()
            except OSError:
                pass


@pytest.fixture
def hutch(tmp_path: Path):
    """The hutch CLI as root, with a store and helper of its own."""
    instance = Hutch(tmp_path / "store", tmp_path / "run")
    try:
        yield instance
    finally:
        instance.cleanup()


@pytest.fixture
def image(hutch: Hutch, busybox_tar: Path) -> str:
    """A busybox image imported into HUTCH as busybox:test."""
    hutch.out("import", str(busybox_tar), "busybox:test", "--change", 'CMD ["sh"]')
    return "busybox:test"
