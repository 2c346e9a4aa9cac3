"""hutch-spawn --cap-drop and --cap-add, checked in /proc/PID/status and with chown."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from c_support import NAMESPACES, Runner, Session, chown_tree, make_busybox_tree, spawn_bin

DEFAULT_CAPS = 0x800405FB  # the 11 capabilities of docs/helper-spec.md
CAP_CHOWN = 1 << 0
CAP_NET_RAW = 1 << 13
CAP_SETS = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")
CHOWN_SCRIPT = "cat /proc/1/status; touch /tmp/f; chown 7:8 /tmp/f; echo chown-status=$?"


def cap_sets(status: str) -> dict[str, int]:
    """Parse the Cap* lines of a /proc/PID/status text into integers."""
    return {key: int(value, 16) for key, value in re.findall(r"^(Cap\w+):\s+(\w+)$", status, re.M)}


def subordinate_range(path: str, name: str) -> str | None:
    """Return the first id of NAME's range in /etc/subuid or /etc/subgid, or None."""
    for line in Path(path).read_text().splitlines():
        fields = line.split(":")
        if fields[0] == name:
            return fields[1]
    return None


def chown_maps(runner: Runner) -> list[str]:
    """Return id maps under which uid 7 and gid 8 exist in the container, for the chown.

    Real root needs none. A user's container maps only uid 0 unless the
    subordinate ids of /etc/subuid and /etc/subgid are mapped as well.
    """
    if runner.user is None:
        return []
    user = runner.user
    first_uid = subordinate_range("/etc/subuid", user.name)
    first_gid = subordinate_range("/etc/subgid", user.name)
    if first_uid is None or first_gid is None:
        pytest.skip("useradd gave the test user no /etc/subuid or /etc/subgid range")
    return ["--uid-map", f"0:{user.uid}:1", "--uid-map", f"1:{first_uid}:100",
            "--gid-map", f"0:{user.gid}:1", "--gid-map", f"1:{first_gid}:100"]  # fmt: skip


def run_sh(runner: Runner, rootfs: Path, script: str, options: list[str]):
    return runner.spawn(rootfs, ["/bin/sh", "-c", script], [*NAMESPACES, *options])


@pytest.mark.parametrize(
    "options, expected_caps, chown_allowed",
    [
        ([], DEFAULT_CAPS, True),
        (["--cap-drop", "CHOWN"], DEFAULT_CAPS & ~CAP_CHOWN, False),
        (["--cap-drop", "chown"], DEFAULT_CAPS & ~CAP_CHOWN, False),
        (["--cap-drop", "Chown", "--cap-drop", "CHOWN"], DEFAULT_CAPS & ~CAP_CHOWN, False),
    ],
    ids=["default", "drop", "drop-lower-case", "drop-twice"],
)
def test_cap_drop_chown(runner_and_rootfs, options, expected_caps, chown_allowed):
    runner, rootfs = runner_and_rootfs
    result = run_sh(runner, rootfs, CHOWN_SCRIPT, [*chown_maps(runner), *options])
    assert result.returncode == 0, result.stderr
    caps = cap_sets(result.stdout)
    assert caps["CapBnd"] == expected_caps
    assert caps["CapEff"] == expected_caps
    assert caps["CapPrm"] == expected_caps
    if chown_allowed:
        assert "chown-status=0\n" in result.stdout
        assert result.stderr == ""
    else:
        assert "chown-status=1\n" in result.stdout
        assert result.stderr == "chown: /tmp/f: Operation not permitted\n"


def test_cap_drop_all_gives_empty_sets(runner_and_rootfs):
    runner, rootfs = runner_and_rootfs
    result = run_sh(runner, rootfs, "cat /proc/1/status", ["--cap-drop", "ALL"])
    assert result.returncode == 0, result.stderr
    caps = cap_sets(result.stdout)
    for name in CAP_SETS:
        assert caps[name] == 0, name


@pytest.mark.parametrize(
    "options, expected_caps",
    [
        (["--cap-add", "NET_RAW"], DEFAULT_CAPS | CAP_NET_RAW),
        (["--cap-add", "net_raw", "--cap-add", "CHOWN"], DEFAULT_CAPS | CAP_NET_RAW),
        (["--cap-drop", "ALL", "--cap-add", "NET_RAW"], CAP_NET_RAW),
        (["--cap-add", "NET_RAW", "--cap-drop", "all"], CAP_NET_RAW),
    ],
    ids=["add", "add-default-one", "drop-all-first", "drop-all-after"],
)
def test_cap_add_as_root(root_runner, busybox_tree, options, expected_caps):
    result = run_sh(root_runner, busybox_tree, "cat /proc/1/status", options)
    assert result.returncode == 0, result.stderr
    caps = cap_sets(result.stdout)
    assert caps["CapBnd"] == expected_caps
    assert caps["CapEff"] == expected_caps
    assert caps["CapPrm"] == expected_caps
    assert caps["CapInh"] == 0
    assert caps["CapAmb"] == 0


def test_cap_add_for_other_uid_only_bounding(root_runner, busybox_tree):
    result = run_sh(root_runner, busybox_tree, "cat /proc/1/status",
                    ["--cap-add", "NET_RAW", "--uid", "1000", "--gid", "1000"])
    assert result.returncode == 0, result.stderr
    caps = cap_sets(result.stdout)
    assert caps["CapBnd"] == DEFAULT_CAPS | CAP_NET_RAW
    assert caps["CapEff"] == 0
    assert caps["CapPrm"] == 0


def test_cap_add_rejected_for_user(unprivileged_user, shared_tmp):
    rootfs = make_busybox_tree(shared_tmp / "rootfs")
    chown_tree(shared_tmp, unprivileged_user.uid, unprivileged_user.gid)
    result = Runner(unprivileged_user).spawn(rootfs, ["true"], ["--cap-add", "NET_RAW"])
    assert result.returncode == 125
    assert result.stdout == ""
    assert result.stderr == "hutch-spawn: --cap-add needs real root\n"


def test_cap_add_rejected_with_user_namespace(root_runner, busybox_tree):
    result = run_sh(root_runner, busybox_tree, "true", ["--unshare-user", "--cap-add", "NET_RAW"])
    assert result.returncode == 125
    assert result.stderr == "hutch-spawn: --cap-add needs real root without --unshare-user\n"


@pytest.mark.parametrize(
    "options, message",
    [
        (["--cap-drop", "NOPE"], "invalid --cap-drop `NOPE`"),
        (["--cap-drop", "CAP_CHOWN"], "invalid --cap-drop `CAP_CHOWN`"),
        (["--cap-drop", ""], "invalid --cap-drop ``"),
        (["--cap-drop", "CHOWN,KILL"], "invalid --cap-drop `CHOWN,KILL`"),
        (["--cap-add", "ALL"], "invalid --cap-add `ALL`"),
        (["--cap-add", "13"], "invalid --cap-add `13`"),
        (["--cap-add", "NET_RAW ", "--cap-drop", "KILL"], "invalid --cap-add `NET_RAW `"),
        (["--cap-add", "kill", "--cap-drop", "KILL"],
         "capability `KILL` is given to both --cap-add and --cap-drop"),
        (["--cap-drop"], "option `--cap-drop` needs a value"),
    ],
)
def test_bad_cap_option_rejected(options, message):
    result = subprocess.run([str(spawn_bin()), "--rootfs", "/", *options, "--", "true"],
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 125
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert message in result.stderr


class CapContainer:
    """A container whose first process waits, started with OPTIONS; killed afterwards."""

    def __init__(self, rootfs: Path, options: list[str], user=None) -> None:
        argv = [str(spawn_bin()), "--rootfs", str(rootfs), *NAMESPACES, *options,
                "--", "/bin/sh", "-c", "echo ready; exec sleep 300"]  # fmt: skip
        self.session = Session(argv, None, user)
        self.session.log.wait_for(b"ready\n")
        self.pid = self.session.pid

    def caps(self) -> dict[str, int]:
        return cap_sets(Path(f"/proc/{self.pid}/status").read_text())

    def close(self) -> None:
        self.session.close()


def join(pid: int, program: list[str], options: list[str], user=None):
    argv = [str(spawn_bin()), "--join", str(pid), *options, "--", *program]
    if user is not None:
        argv = user.command(argv)
    return subprocess.run(argv, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)  # fmt: skip


@pytest.mark.parametrize(
    "options, expected_caps",
    [
        (["--cap-drop", "CHOWN"], DEFAULT_CAPS & ~CAP_CHOWN),
        (["--cap-drop", "ALL"], 0),
    ],
    ids=["drop-chown", "drop-all"],
)
def test_join_gets_container_caps(runner_and_rootfs, options, expected_caps):
    runner, rootfs = runner_and_rootfs
    box = CapContainer(rootfs, options, runner.user)
    try:
        container_caps = box.caps()
        assert container_caps["CapBnd"] == expected_caps
        assert container_caps["CapEff"] == expected_caps
        result = join(box.pid, ["cat", "/proc/self/status"], options, runner.user)
        assert result.returncode == 0, result.stderr
        joined_caps = cap_sets(result.stdout)
        for name in CAP_SETS:
            assert joined_caps[name] == container_caps[name], name
    finally:
        box.close()


def test_join_cap_add_as_root(root_runner, busybox_tree):
    options = ["--cap-drop", "CHOWN", "--cap-add", "NET_RAW"]
    expected_caps = (DEFAULT_CAPS & ~CAP_CHOWN) | CAP_NET_RAW
    box = CapContainer(busybox_tree, options)
    try:
        assert box.caps()["CapBnd"] == expected_caps
        result = join(box.pid, ["cat", "/proc/self/status"], options)
        assert result.returncode == 0, result.stderr
        joined_caps = cap_sets(result.stdout)
        assert joined_caps["CapBnd"] == expected_caps
        assert joined_caps["CapEff"] == expected_caps
        assert joined_caps["CapPrm"] == expected_caps
    finally:
        box.close()


def test_join_cap_add_rejected_for_user(unprivileged_user, shared_tmp):
    rootfs = make_busybox_tree(shared_tmp / "rootfs")
    chown_tree(shared_tmp, unprivileged_user.uid, unprivileged_user.gid)
    box = CapContainer(rootfs, [], unprivileged_user)
    try:
        result = join(box.pid, ["true"], ["--cap-add", "NET_RAW"], unprivileged_user)
        assert result.returncode == 125
        assert result.stderr == "hutch-spawn: --cap-add needs real root\n"
    finally:
        box.close()


def test_join_cap_add_rejected_for_user_namespace(root_runner, busybox_tree):
    box = CapContainer(busybox_tree, ["--unshare-user"])
    try:
        result = join(box.pid, ["true"], ["--cap-add", "NET_RAW"])
        assert result.returncode == 125
        assert result.stderr == (
            "hutch-spawn: --cap-add needs real root and a container without a user "
            f"namespace: process {box.pid} has one\n")
    finally:
        box.close()
