"""hutch-spawn --init: a reaper as pid 1 that runs the program as its child."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from c_support import NAMESPACES, Session, spawn_bin

# The inner shell leaves `sleep 0.2` behind as an orphan; then pid 1 or the program is `sleep 3`,
# which never waits for children.
ORPHAN_SCRIPT = "sh -c 'sleep 0.2 &'; exec sleep 3"


def sh(runner, rootfs, script, options=(), **kwargs):
    return runner.spawn(rootfs, ["/bin/sh", "-c", script], [*NAMESPACES, *options], **kwargs)


def stat_fields(pid: int) -> list[str]:
    """Fields 3 onward of /proc/PID/stat (state first), after the command name."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def zombies_below(pid: int) -> list[int]:
    """Pids of zombie processes whose parent is PID or one of PID's children."""
    parents = {pid}
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = stat_fields(int(entry.name))
            except (FileNotFoundError, ProcessLookupError):
                continue
            if int(fields[1]) == pid:
                parents.add(int(entry.name))
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = stat_fields(int(entry.name))
            except (FileNotFoundError, ProcessLookupError):
                continue
            if fields[0] == "Z" and int(fields[1]) in parents:
                found.append(int(entry.name))
    return found


def start(runner, rootfs, options, program) -> Session:
    argv = [str(spawn_bin()), "--rootfs", str(rootfs), *NAMESPACES, *options, "--", *program]
    return Session(argv, None, runner.user)


def test_pid_one_is_reaper(runner_and_rootfs):
    runner, rootfs = runner_and_rootfs
    result = sh(runner, rootfs, "cat /proc/1/comm; echo $$; cat /proc/1/status", ["--init"])
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "hutch-init"
    assert lines[1] == "2"
    # Non-dumpable: the container cannot read /proc/1/exe, which is the host's hutch-spawn.
    denied = sh(runner, rootfs, "readlink /proc/1/exe; echo rc=$?", ["--init"])
    assert denied.stdout.splitlines()[-1] == "rc=1"


@pytest.mark.parametrize("init", [False, True], ids=["without-init", "with-init"])
def test_orphans_reaped_only_with_init(runner_and_rootfs, init):
    runner, rootfs = runner_and_rootfs
    session = start(runner, rootfs, ["--init"] if init else [], ["/bin/sh", "-c", ORPHAN_SCRIPT])
    try:
        time.sleep(1.0)
        zombies = zombies_below(session.pid)
        if init:
            assert zombies == []
        else:
            # The control case: `sleep 3` as pid 1 never reaps the orphan.
            assert len(zombies) == 1
        assert session.wait(30) == 0
        assert session.status.read() == "exit 0\n"
    finally:
        session.close()


def test_exit_code_passes_through(runner_and_rootfs):
    runner, rootfs = runner_and_rootfs
    result = sh(runner, rootfs, "exit 3", ["--init"], status=True)
    assert result.returncode == 3
    assert result.status.splitlines()[-1] == "exit 3"


def test_program_killed_by_signal(runner_and_rootfs):
    runner, rootfs = runner_and_rootfs
    # The program is not pid 1, so its SIGKILL to itself lands; pid 1 exits with 128+9.
    result = sh(runner, rootfs, "kill -9 $$", ["--init"], status=True)
    assert result.returncode == 137
    assert result.status.splitlines()[-1] == "exit 137"


def test_sigterm_forwarded_to_program(runner_and_rootfs):
    runner, rootfs = runner_and_rootfs
    script = "trap 'exit 42' TERM; echo ready; while :; do sleep 0.1; done"
    session = start(runner, rootfs, ["--init"], ["/bin/sh", "-c", script])
    try:
        session.log.wait_for(b"ready\n")
        os.kill(session.proc.pid, signal.SIGTERM)
        assert session.wait(30) == 42
        assert session.status.read() == "exit 42\n"
    finally:
        session.close()


def test_program_is_tty_foreground(runner_and_rootfs):
    runner, rootfs = runner_and_rootfs
    session = start(runner, rootfs, ["--init", "--tty"], ["cat", "/proc/self/stat"])
    try:
        assert session.wait(30) == 0
        fields = session.log.output().decode().rsplit(")", 1)[1].split()
        # Fields 5 and 8 of stat: process group and the terminal's foreground group.
        assert fields[2] == fields[5]
        assert fields[2] != "1"
    finally:
        session.close()


def test_missing_program_with_init(runner_and_rootfs):
    runner, rootfs = runner_and_rootfs
    result = runner.spawn(rootfs, ["/no/such/program"], [*NAMESPACES, "--init"])
    assert result.returncode == 127
    assert result.stderr.startswith("hutch-spawn: exec `/no/such/program`: ")


def test_pid_one_cmdline_is_only_name(runner_and_rootfs):
    runner, rootfs = runner_and_rootfs
    options = ["--init", "--env", "MARKER=value"]
    result = sh(runner, rootfs, "cat /proc/1/cmdline", options)
    assert result.returncode == 0, result.stderr
    # Without the fix this is hutch-spawn's argv: --rootfs with the host path, every --env.
    assert result.stdout == "hutch-init\0"


def test_pid_one_environ_denied(runner_and_rootfs):
    runner, rootfs = runner_and_rootfs
    result = sh(runner, rootfs, "cat /proc/1/environ; echo rc=$?", ["--init"])
    assert result.stdout == "rc=1\n"
    assert "Permission denied" in result.stderr


def test_program_keeps_argv_and_env(runner_and_rootfs):
    runner, rootfs = runner_and_rootfs
    # The final `echo` keeps sh from exec'ing the last tr in its own place, which would replace
    # the process that /proc/$$ names.
    script = "tr '\\0' '\\n' < /proc/$$/cmdline; echo --; tr '\\0' '\\n' < /proc/$$/environ; echo"
    options = ["--init", "--env", "A=1", "--env", "B=two words"]
    result = sh(runner, rootfs, script, options)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"/bin/sh\n-c\n{script}\n--\nA=1\nB=two words\n\n"


def test_reaper_memory_cleared(runner_and_rootfs):
    """Read the reaper's argv and environment from the host, which may read a non-dumpable process."""
    runner, rootfs = runner_and_rootfs
    program = ["/bin/sh", "-c", "echo ready; exec sleep 30"]
    session = start(runner, rootfs, ["--init", "--env", "A=1"], program)
    try:
        session.log.wait_for(b"ready\n")
        cmdline = Path(f"/proc/{session.pid}/cmdline").read_bytes()
        environ = Path(f"/proc/{session.pid}/environ").read_bytes()
        assert Path(f"/proc/{session.pid}/comm").read_text() == "hutch-init\n"
        assert cmdline == b"hutch-init\0"
        assert environ.strip(b"\0") == b""
    finally:
        session.close()
