"""Fixtures for running hutch-spawn and hutch-cgroup as root and as a plain user."""

from __future__ import annotations
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
import pytest
from support import libexec_dir, make_busybox_tree  # noqa: E402
from c_support import (  # noqa: F401
    CGROUP_ROOT,
    spawn_bin,
    cgroup_bin,
    Result,
    Runner,
    _communicate_all,
    chown_tree,
    _remove_cgroup_dir,
    run_cgroup,
    HERE,
    NAMESPACES,
    LogReader,
    Session,
)


@pytest.fixture(scope="session", autouse=True)
def built_binaries() -> None:
    """Fail early, with the fix, when the C programs have not been built."""
    for path in (spawn_bin(), cgroup_bin()):
        if not path.exists():
            pytest.fail(f"{path} is missing: run `make -C c-helper` first")


@pytest.fixture
def root_runner() -> Runner:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    return Runner()


@pytest.fixture
def shared_tmp():
    """A temporary directory that a test user can traverse (pytest's tmp_path is 0700)."""
    path = Path(tempfile.mkdtemp(prefix="hutch-c-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(params=["root", "user"])
def runner_and_rootfs(request, shared_tmp):
    """(Runner, busybox rootfs) once as root and once as an unprivileged user."""
    if os.geteuid() != 0:
        pytest.skip("needs root to make the test user")
    rootfs = make_busybox_tree(shared_tmp / "rootfs")
    if request.param == "root":
        return Runner(), rootfs
    user = request.getfixturevalue("unprivileged_user")
    chown_tree(shared_tmp, user.uid, user.gid)
    return Runner(user), rootfs


@pytest.fixture
def cgroup_ids():
    """Make unique cgroup IDs; afterwards remove /sys/fs/cgroup/*/hutch/<uid>/<id> for each.

    For a uid other than 0 (a test user's), hutch/<uid> is removed too.
    """
    made: list[tuple[int, str]] = []

    def new_id(uid: int = 0) -> str:
        cgroup_id = "t" + uuid.uuid4().hex[:12]
        made.append((uid, cgroup_id))
        return cgroup_id

    yield new_id
    for uid, cgroup_id in made:
        for directory in CGROUP_ROOT.glob(f"*/hutch/{uid}/{cgroup_id}"):
            _remove_cgroup_dir(directory)
        if uid != 0:
            for directory in CGROUP_ROOT.glob(f"*/hutch/{uid}"):
                _remove_cgroup_dir(directory)


@pytest.fixture(scope="session")
def tiocsti_probe(tmp_path_factory) -> Path:
    """A static binary that tries TIOCSTI on fd 0, built from tiocsti.c."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is needed to build the test probe")
    out = tmp_path_factory.mktemp("probe") / "tiocsti"
    subprocess.run(["gcc", "-static", "-O1", "-o", str(out), str(HERE / "tiocsti.c")], check=True)
    out.chmod(0o755)
    return out

