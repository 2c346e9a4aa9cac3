"""Limits for a non-root user through the setuid hutch-cgroup and /etc/hutch/policy."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from hutchtest import Hutch
from support import REPO, User

pytestmark = [
    pytest.mark.rootless,
    pytest.mark.skipif(os.geteuid() != 0, reason="installing a setuid program needs root"),
]

POLICY_DIR = Path("/etc/hutch")
POLICY = POLICY_DIR / "policy"


@pytest.fixture(scope="module")
def setuid_libexec():
    """A setuid-root install in a root-owned temporary prefix; /etc/hutch restored after."""
    had_dir = POLICY_DIR.exists()
    old_policy = POLICY.read_bytes() if POLICY.is_file() else None
    prefix = Path(tempfile.mkdtemp(prefix="hutch-suid-"))
    prefix.chmod(0o755)
    try:
        subprocess.run(
            ["make", "-s", "-C", str(REPO / "c-helper"), "install-setuid", f"PREFIX={prefix}",
             f"INSTALL_BUILD={prefix}/build"],
            check=True, capture_output=True,
        )  # fmt: skip
        yield prefix / "libexec" / "hutch"
    finally:
        if old_policy is not None:
            POLICY.write_bytes(old_policy)
        elif POLICY.exists():
            POLICY.unlink()
        if not had_dir and POLICY_DIR.exists():
            shutil.rmtree(POLICY_DIR)
        shutil.rmtree(prefix, ignore_errors=True)


def write_policy(text: str) -> None:
    POLICY_DIR.mkdir(mode=0o755, exist_ok=True)
    POLICY.write_text(text)
    os.chown(POLICY, 0, 0)
    POLICY.chmod(0o644)


@pytest.fixture
def limited(unprivileged_user: User, setuid_libexec: Path, busybox_tar: Path):
    write_policy(f"user {unprivileged_user.name} memory=256m pids=256 cpus=1 containers=4\n")
    instance = Hutch(
        unprivileged_user.home / "store", unprivileged_user.runtime_dir / "hutch",
        unprivileged_user, libexec=setuid_libexec,
    )  # fmt: skip
    instance.out("import", "-", "box", input=busybox_tar.read_bytes())
    try:
        yield instance
    finally:
        instance.cleanup()
        POLICY.unlink(missing_ok=True)


def test_user_memory_limit_holds(limited: Hutch):
    result = limited.run("run", "--name", "hog", "-m", "32m", "box", "dd", "if=/dev/zero", "of=/dev/null", "bs=100M", "count=1")
    assert result.returncode == 137
    state = json.loads(limited.out("inspect", "hog"))[0]["State"]
    assert state["OOMKilled"] is True


def test_user_limit_files_are_root_owned(limited: Hutch, unprivileged_user: User):
    container_id = limited.out("run", "-d", "-m", "48m", "box", "sleep", "60").strip()
    directory = Path(f"/sys/fs/cgroup/memory/hutch/{unprivileged_user.uid}/{container_id}")
    assert int((directory / "memory.limit_in_bytes").read_text()) == 48 * 1024 * 1024
    info = (directory / "memory.limit_in_bytes").stat()
    assert info.st_uid == 0
    assert not info.st_mode & stat.S_IWOTH
    raised = unprivileged_user.run(["sh", "-c", f"echo 999999999 > {directory}/memory.limit_in_bytes"])
    assert raised.returncode != 0
    inside = limited.run("run", "--rm", "box", "sh", "-c", "mkdir /sys/fs/cgroup/x || echo refused")
    assert b"refused" in inside.stdout


def test_user_limit_above_ceiling_is_125(limited: Hutch):
    before = limited.out("ps", "-aq")
    result = limited.run("run", "-m", "1g", "box", "true")
    assert result.returncode == 125
    message = result.stderr.decode()
    assert message.count("\n") == 1
    assert "-m/--memory 1g is above your ceiling of 256m" in message
    assert limited.out("ps", "-aq") == before


def test_user_default_limits_from_policy(limited: Hutch, unprivileged_user: User):
    container_id = limited.out("run", "-d", "box", "sleep", "60").strip()
    pids = Path(f"/sys/fs/cgroup/pids/hutch/{unprivileged_user.uid}/{container_id}/pids.max")
    assert pids.read_text().strip() == "256"


def test_broken_policy_is_named(unprivileged_user: User, setuid_libexec: Path, busybox_tar: Path):
    write_policy(
        "user no-such-user-hutch memory=1g pids=10 cpus=1 containers=1\n"
        f"user {unprivileged_user.name} memory=256m pids=256 cpus=1 containers=4\n"
    )
    instance = Hutch(
        unprivileged_user.home / "store", unprivileged_user.runtime_dir / "hutch",
        unprivileged_user, libexec=setuid_libexec,
    )  # fmt: skip
    try:
        instance.out("import", "-", "box", input=busybox_tar.read_bytes())
        result = instance.run("run", "--rm", "-m", "32m", "box", "true")
        assert result.returncode == 125
        message = result.stderr.decode()
        assert message.count("\n") == 1
        assert "no-such-user-hutch" in message
        write_policy(f"user {unprivileged_user.name} memory=256m pids=256 cpus=1 containers=4\n")
        # The helper probes again, so a mended policy works without a restart.
        assert instance.run("run", "--rm", "-m", "32m", "box", "true").returncode == 0
    finally:
        instance.cleanup()
        POLICY.unlink(missing_ok=True)
