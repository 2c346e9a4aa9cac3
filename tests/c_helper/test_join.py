"""hutch-spawn --join and hutch-cgroup --join: a second process in a running container."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from c_support import (CGROUP_ROOT, NAMESPACES, Session, cgroup_bin, chown_tree,
                      make_busybox_tree, spawn_bin)
from support import User

DEFAULT_CAPS = 0x800405FB
CONTAINER_SCRIPT = "echo written-inside > /tmp/marker; echo ready; exec sleep 300"


class Container:
    """A running container whose first process waits; killed with its monitor afterwards."""

    def __init__(self, rootfs: Path, user=None, cgroup_args: list[str] = ()) -> None:
        # hutch-cgroup takes hutch-spawn's arguments after its own "--".
        spawn = [str(cgroup_bin()), *cgroup_args, "--"] if cgroup_args else [str(spawn_bin())]
        argv = [*spawn, "--rootfs", str(rootfs), *NAMESPACES,
                "--unshare-cgroup", "--hostname", "joined-box",
                "--", "/bin/sh", "-c", CONTAINER_SCRIPT]
        self.session = Session(argv, None, user)
        self.session.log.wait_for(b"ready\n")
        self.pid = self.session.pid

    def close(self) -> None:
        self.session.close()


def join(pid: int, program: list[str], user=None, options=()):
    argv = [str(spawn_bin()), "--join", str(pid), *options, "--", *program]
    if user is not None:
        argv = user.command(argv)
    return subprocess.run(argv, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)


@pytest.fixture
def container(runner_and_rootfs):
    runner, rootfs = runner_and_rootfs
    box = Container(rootfs, runner.user)
    yield box, runner.user
    box.close()


def test_join_sees_hostname_and_files(container):
    box, user = container
    result = join(box.pid, ["/bin/sh", "-c", "hostname; cat /tmp/marker"], user)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "joined-box\nwritten-inside\n"


def test_join_shares_pid_namespace(container):
    box, user = container
    result = join(box.pid, ["/bin/sh", "-c", "tr '\\0' ' ' < /proc/1/cmdline; echo; echo $$"],
                  user)
    assert result.returncode == 0, result.stderr
    first, second = result.stdout.splitlines()
    assert first == "sleep 300 "
    assert 1 < int(second) < 100


def test_join_has_container_caps(container):
    box, user = container
    result = join(box.pid, ["cat", "/proc/self/status"], user)
    assert result.returncode == 0, result.stderr
    caps = {k: int(v, 16) for k, v in re.findall(r"^(Cap\w+):\s+(\w+)$", result.stdout, re.M)}
    assert caps["CapBnd"] == DEFAULT_CAPS
    assert caps["CapEff"] == DEFAULT_CAPS
    assert caps["CapInh"] == 0
    assert caps["CapAmb"] == 0
    assert re.search(r"^NoNewPrivs:\s+1$", result.stdout, re.M)


def test_join_has_only_stdio_fds(container):
    box, user = container
    result = join(box.pid, ["ls", "/proc/self/fd"], user)
    assert result.returncode == 0, result.stderr
    # ls opens one fd of its own for the directory it lists.
    assert result.stdout.split() == ["0", "1", "2", "3"]


def test_join_uid_and_cwd(container):
    box, user = container
    if user is not None:
        pytest.skip("a rootless container maps only uid 0")
    result = join(box.pid, ["/bin/sh", "-c", "id -u; pwd"], user,
                  options=["--uid", "1000", "--gid", "1000", "--cwd", "/tmp"])
    assert result.returncode == 0, result.stderr
    assert result.stdout == "1000\n/tmp\n"


def test_join_exit_code_and_missing_program(container):
    box, user = container
    assert join(box.pid, ["/bin/sh", "-c", "exit 9"], user).returncode == 9
    missing = join(box.pid, ["no-such-program"], user)
    assert missing.returncode == 127
    assert missing.stderr.startswith("hutch-spawn: exec `no-such-program`: ")


def test_join_with_tty(container):
    box, user = container
    argv = [str(spawn_bin()), "--join", str(box.pid), "--tty", "--tty-size", "33x77",
            "--", "/bin/sh", "-c", "stty size; tty"]
    session = Session(argv, None, user)
    try:
        assert session.wait() == 0
        assert session.log.output() == b"33 77\r\n/dev/pts/0\r\n"
    finally:
        session.close()


def test_join_with_stdin_attach(container):
    box, user = container
    socket_path = Path(f"/tmp/hutch-join-{box.pid}.sock")
    argv = [str(spawn_bin()), "--join", str(box.pid), "--stdin", "--", "/bin/sh", "-c",
            "cat > /tmp/from-attach; cat /tmp/from-attach"]
    session = Session(argv, socket_path, user)
    try:
        client = session.connect()
        client.sendall(Session.frame(b"d", b"through the socket\n") + Session.frame(b"c"))
        assert session.wait() == 0
        assert session.log.output() == b"through the socket\n"
        assert not socket_path.exists()
    finally:
        session.close()
        socket_path.unlink(missing_ok=True)
    marker = join(box.pid, ["cat", "/tmp/from-attach"], user)
    assert marker.stdout == "through the socket\n"


def test_join_other_users_container_rejected(unprivileged_user, second_user, shared_tmp):
    rootfs = make_busybox_tree(shared_tmp / "rootfs")
    chown_tree(shared_tmp, unprivileged_user.uid, unprivileged_user.gid)
    other = User(second_user)
    box = Container(rootfs, unprivileged_user)
    try:
        result = join(box.pid, ["true"], other)
        assert result.returncode == 125
        assert result.stderr == (
            f"hutch-spawn: join `{box.pid}`: the process belongs to uid "
            f"{unprivileged_user.uid}, not to the caller (uid {other.uid})\n")
    finally:
        box.close()


@pytest.fixture
def second_user():
    """The name of one more throwaway user, removed with its processes afterwards."""
    import uuid

    name = "hutchu" + uuid.uuid4().hex[:8]
    subprocess.run(["useradd", "--no-create-home", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["pkill", "-KILL", "-u", name], check=False)
        subprocess.run(["userdel", name], check=False, capture_output=True)


def test_join_gone_process_rejected():
    # 4194304 is the largest pid the option accepts, and above this machine's pid_max.
    result = subprocess.run([str(spawn_bin()), "--join", "4194304", "--", "true"],
                            capture_output=True, text=True)
    assert result.returncode == 125
    assert result.stderr == "hutch-spawn: pidfd_open `/proc/4194304`: No such process\n"


@pytest.mark.parametrize(
    "options, message",
    [
        (["--join", "0"], "invalid --join `0`"),
        (["--join", "12", "--rootfs", "/"], "--join takes only"),
        (["--join", "12", "--unshare-pid"], "--join takes only"),
        (["--join", "12", "--init"], "--join takes only"),
        (["--join", "12", "--bind", "/a:/b"], "--join takes only"),
        (["--join", "12", "--join", "13"], "option `--join` given twice"),
    ],
)
def test_bad_join_options_rejected(options, message):
    result = subprocess.run([str(spawn_bin()), *options, "--", "true"],
                            capture_output=True, text=True)
    assert result.returncode == 125
    assert result.stderr.count("\n") == 1
    assert message in result.stderr


def own_cgroup(pid: int | str, hierarchy: str) -> str:
    text = Path(f"/proc/{pid}/cgroup").read_text()
    for line in text.splitlines():
        _, controllers, path = line.split(":", 2)
        if hierarchy in controllers.split(","):
            return path
    raise AssertionError(f"no {hierarchy} line in {text!r}")


def ns_pids(pid: str) -> list[str]:
    status = Path(f"/proc/{pid}/status").read_text()
    return re.search(r"^NSpid:\s+(.*)$", status, re.M).group(1).split()


def test_cgroup_join_enters_container_cgroup(root_runner, busybox_tree, cgroup_ids):
    if not (CGROUP_ROOT / "pids").is_dir():
        pytest.skip("needs the v1 pids hierarchy")
    cgroup_id = cgroup_ids()
    procs_file = CGROUP_ROOT / "pids" / "hutch" / "0" / cgroup_id / "cgroup.procs"
    box = Container(busybox_tree, cgroup_args=["--id", cgroup_id, "--pids", "64"])
    try:
        assert own_cgroup(box.pid, "pids") == f"/hutch/0/{cgroup_id}"
        # hutch-cgroup moved itself in before it became the monitor, so both are there.
        before = set(procs_file.read_text().split())
        assert str(box.pid) in before
        argv = [str(cgroup_bin()), "--join", cgroup_id, "--", "--join", str(box.pid),
                "--", "/bin/sh", "-c", "grep :pids: /proc/self/cgroup; echo go; read x"]
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            # In the container's cgroup namespace, its own cgroup is the root.
            assert proc.stdout.readline().endswith(":pids:/\n")
            assert proc.stdout.readline() == "go\n"
            joined = set(procs_file.read_text().split()) - before
            # The new monitor and the shell; only the shell is in the container's pid namespace.
            assert len(joined) == 2, joined
            assert sorted(len(ns_pids(pid)) for pid in joined) == [1, 2]
            proc.stdin.write("\n")
            proc.stdin.close()
            assert proc.wait(30) == 0
        finally:
            proc.kill()
            proc.wait()
    finally:
        box.close()


def test_cgroup_join_missing_cgroup_rejected(root_runner, cgroup_ids):
    cgroup_id = cgroup_ids()
    result = subprocess.run([str(cgroup_bin()), "--join", cgroup_id, "--", "--join", "1",
                             "--", "true"], capture_output=True, text=True)
    assert result.returncode == 125
    assert result.stderr == f"hutch-cgroup: open `hutch/0/{cgroup_id}`: no such cgroup\n"


def test_cgroup_join_needs_spawn_args():
    result = subprocess.run([str(cgroup_bin()), "--join", "abc"], capture_output=True, text=True)
    assert result.returncode == 125
    assert "missing `-- SPAWN-ARG...` after --join ID" in result.stderr
