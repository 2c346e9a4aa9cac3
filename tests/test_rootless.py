"""The whole chain as a freshly made non-root user with no help from root."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from support import User
from hutchtest import Hutch

pytestmark = pytest.mark.rootless


@pytest.fixture
def user_hutch(unprivileged_user: User):
    instance = Hutch(
        unprivileged_user.home / "store", unprivileged_user.runtime_dir / "hutch", unprivileged_user
    )
    try:
        yield instance
    finally:
        instance.cleanup()


@pytest.fixture
def user_image(user_hutch: Hutch, busybox_tar: Path) -> str:
    user_hutch.out("import", "-", "box", input=busybox_tar.read_bytes())
    return "box"


def test_rootless_run_is_root_inside(user_hutch: Hutch, user_image: str, unprivileged_user: User):
    result = user_hutch.run("run", "--rm", user_image, "sh", "-c", "id -u; cat /proc/self/uid_map; echo $$")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.decode().split("\n")
    assert lines[0] == "0"
    assert lines[1].split() == ["0", str(unprivileged_user.uid), "1"]
    assert lines[2] == "1"


def test_rootless_hostname_and_network(user_hutch: Hutch, user_image: str):
    result = user_hutch.run("run", "--rm", "--hostname", "userbox", user_image, "sh", "-c", "hostname; ls /sys/class/net")
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().split() == ["userbox", "lo"]


def test_rootless_memory_limit_is_refused(user_hutch: Hutch, user_image: str):
    before = user_hutch.out("ps", "-aq")
    result = user_hutch.run("run", "-m", "32m", user_image, "true")
    assert result.returncode == 125
    message = result.stderr.decode()
    assert message.count("\n") == 1
    assert "memory" in message
    assert "cgroup" in message
    assert user_hutch.out("ps", "-aq") == before


def test_rootless_chain(user_hutch: Hutch, user_image: str):
    user_hutch.out("run", "--name", "w", user_image, "sh", "-c", "echo mine > /root/note; rm /bin/vi")
    user_hutch.out("commit", "w", "box:changed")
    archive = user_hutch.run("save", "box:changed", check=True).stdout
    user_hutch.out("rm", "w")
    user_hutch.out("rmi", "box:changed")
    user_hutch.out("load", input=archive)
    result = user_hutch.run("run", "--name", "r", "box:changed", "sh", "-c", "cat /root/note; test -e /bin/vi")
    assert result.stdout == b"mine\n"
    assert result.returncode == 1
    exported = user_hutch.run("export", "r", check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(exported)) as tar:
        names = {name.lstrip("./") for name in tar.getnames()}
    assert "root/note" in names
    assert "bin/vi" not in names


def test_rootless_stop_and_inspect(user_hutch: Hutch, user_image: str):
    container_id = user_hutch.out("run", "-d", user_image, "sleep", "100").strip()
    user_hutch.out("stop", "-t", "0", container_id)
    state = json.loads(user_hutch.out("inspect", container_id))[0]["State"]
    assert state["Status"] == "exited"
    assert state["ExitCode"] == 137
    assert state["OOMKilled"] is False


def test_rootless_exec_and_stdin(user_hutch: Hutch, user_image: str):
    container_id = user_hutch.out("run", "-d", "--hostname", "uex", user_image, "sleep", "100").strip()
    assert user_hutch.out("exec", container_id, "hostname") == "uex\n"
    result = user_hutch.run("exec", "-i", container_id, "tr", "a-z", "A-Z", input=b"quiet\n")
    assert result.stdout == b"QUIET\n"
    result = user_hutch.run("run", "--rm", "-i", user_image, "wc", "-c", input=b"12345")
    assert result.stdout.strip() == b"5"


def test_rootless_bind_mount(user_hutch: Hutch, user_image: str, unprivileged_user: User):
    shared = unprivileged_user.home / "shared"
    user_hutch.user.run(["mkdir", "-p", str(shared)], check=True)
    output = user_hutch.out("run", "--rm", "-v", f"{shared}:/data", user_image, "sh", "-c", "echo hi > /data/f; cat /data/f")
    assert output == "hi\n"
    assert (shared / "f").read_text() == "hi\n"
    assert (shared / "f").stat().st_uid == unprivileged_user.uid


def test_rootless_caps_and_fds(user_hutch: Hutch, user_image: str):
    status = user_hutch.out("run", "--rm", user_image, "cat", "/proc/self/status")
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    assert fields["CapBnd"] == "00000000800405fb"
    assert fields["CapAmb"] == "0000000000000000"
    assert fields["NoNewPrivs"] == "1"
    listing = user_hutch.out("run", "--rm", user_image, "sh", "-c", "ls /proc/1/fd; true")
    assert listing.split() == ["0", "1", "2"]


def test_rootless_cannot_write_host_proc(user_hutch: Hutch, user_image: str):
    script = "echo 1 > /proc/sys/kernel/ns_last_pid 2>/dev/null && echo written; mount -t tmpfs x /mnt 2>/dev/null && echo mounted; echo done"
    assert user_hutch.out("run", "--rm", user_image, "sh", "-c", script) == "done\n"


def test_rootless_unmapped_user_is_one_line(user_hutch: Hutch, user_image: str):
    result = user_hutch.run("run", "--rm", "-u", "1000", user_image, "id")
    assert result.returncode == 125
    message = result.stderr.decode()
    assert message.count("\n") == 1
    assert "mapped" in message


def test_rootless_cap_add_is_refused(user_hutch: Hutch, user_image: str):
    result = user_hutch.run("run", "--rm", "--cap-add", "NET_RAW", user_image, "true")
    assert result.returncode == 125
    assert b"root" in result.stderr
    dropped = user_hutch.out("run", "--rm", "--cap-drop", "ALL", user_image, "grep", "CapEff", "/proc/self/status")
    assert dropped.split()[-1] == "0000000000000000"
