"""Fixtures for running hutch-spawn and hutch-cgroup as root and as a plain user."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest


def _load_shared_conftest():
    # Both conftest.py files would be module "conftest", so the shared one is loaded by path.
    path = Path(__file__).resolve().parent.parent / "conftest.py"
    spec = importlib.util.spec_from_file_location("hutch_shared_conftest", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_shared = _load_shared_conftest()
libexec_dir = _shared.libexec_dir
make_busybox_tree = _shared.make_busybox_tree

CGROUP_ROOT = Path("/sys/fs/cgroup")


def spawn_bin() -> Path:
    return libexec_dir() / "hutch-spawn"


def cgroup_bin() -> Path:
    return libexec_dir() / "hutch-cgroup"


@pytest.fixture(scope="session", autouse=True)
def built_binaries() -> None:
    """Fail early, with the fix, when the C programs have not been built."""
    for path in (spawn_bin(), cgroup_bin()):
        if not path.exists():
            pytest.fail(f"{path} is missing: run `make -C c-helper` first")


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str
    log: bytes = b""
    status: str = ""


class Runner:
    """Runs hutch-spawn as root, or as a user when one is given."""

    def __init__(self, user=None) -> None:
        self.user = user

    @property
    def uid(self) -> int:
        return self.user.uid if self.user else 0

    def command(self, argv: list[str]) -> list[str]:
        return self.user.command(argv) if self.user else argv

    def spawn(
        self,
        rootfs: Path,
        program: list[str],
        options: list[str] = (),
        log: bool = False,
        status: bool = False,
        timeout: float = 60,
    ) -> Result:
        """Run PROGRAM in ROOTFS; with LOG or STATUS, capture --log-fd / --status-fd."""
        argv = [str(spawn_bin()), "--rootfs", str(rootfs), *options]
        pass_fds = []
        pipes = {}
        for name, wanted in (("log", log), ("status", status)):
            if wanted:
                read_end, write_end = os.pipe()
                pipes[name] = (read_end, write_end)
                pass_fds.append(write_end)
                argv += [f"--{name}-fd", str(write_end)]
        argv += ["--", *program]
        proc = subprocess.Popen(
            self.command(argv),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            pass_fds=pass_fds,
        )
        for _, write_end in pipes.values():
            os.close(write_end)
        readers = {name: os.fdopen(read_end, "rb") for name, (read_end, _) in pipes.items()}
        try:
            # The pipes are small: the log is read while the program runs, by communicate's threads.
            out, err = _communicate_all(proc, readers, timeout)
        finally:
            for reader in readers.values():
                reader.close()
        return Result(
            proc.returncode,
            out[0].decode(errors="replace"),
            out[1].decode(errors="replace"),
            err.get("log", b""),
            err.get("status", b"").decode(),
        )


def _communicate_all(proc, readers, timeout):
    """Collect stdout, stderr and every extra reader without letting a pipe fill up."""
    extra = {}

    def drain(name, reader):
        extra[name] = reader.read()

    threads = [threading.Thread(target=drain, args=item) for item in readers.items()]
    for thread in threads:
        thread.start()
    try:
        out = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    for thread in threads:
        thread.join(timeout)
    return out, extra


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


def chown_tree(path: Path, uid: int, gid: int) -> None:
    os.chown(path, uid, gid, follow_symlinks=False)
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            os.chown(os.path.join(dirpath, name), uid, gid, follow_symlinks=False)


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


def _remove_cgroup_dir(directory: Path) -> None:
    for _ in range(50):
        try:
            for pid in (directory / "cgroup.procs").read_text().split():
                try:
                    os.kill(int(pid), 9)
                except ProcessLookupError:
                    pass
            directory.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.1)


def run_cgroup(argv: list[str], user=None, **kwargs) -> subprocess.CompletedProcess:
    command = [str(cgroup_bin()), *argv]
    if user is not None:
        command = user.command(command)
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    kwargs.setdefault("timeout", 60)
    return subprocess.run(command, **kwargs)
