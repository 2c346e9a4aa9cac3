"""`run -it` and `exec -it` on a real pty that the test opens, as root."""

from __future__ import annotations

import fcntl
import os
import select
import struct
import subprocess
import termios
import time
from pathlib import Path

import pytest

from hutchtest import Hutch

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="these tests run as root")


class Terminal:
    """hutch running on the slave side of a pty, driven from the master side."""

    def __init__(self, hutch: Hutch, args: list[str], rows: int = 30, cols: int = 100) -> None:
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.saved = termios.tcgetattr(slave)
        self.slave = slave
        # setsid -c makes the pty hutch's controlling terminal, so that
        # a size change reaches it as SIGWINCH.
        command, env = hutch.command(args)
        self.process = subprocess.Popen(
            ["setsid", "-c", *command],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
        )
        self.output = b""

    def read_until(self, needle: bytes, timeout: float = 15) -> bytes:
        deadline = time.monotonic() + timeout
        while needle not in self.output:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{needle!r} not seen; output so far: {self.output!r}")
            ready, _, _ = select.select([self.master], [], [], remaining)
            if ready:
                try:
                    chunk = os.read(self.master, 4096)
                except OSError:
                    chunk = b""
                if not chunk:
                    raise AssertionError(f"{needle!r} not seen before EOF: {self.output!r}")
                self.output += chunk
        return self.output

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def resize(self, rows: int, cols: int) -> None:
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def wait(self, timeout: float = 30) -> int:
        code = self.process.wait(timeout=timeout)
        return code

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        os.close(self.master)
        os.close(self.slave)


def test_tty_size_is_right_from_the_start(hutch: Hutch, image: str):
    terminal = Terminal(hutch, ["run", "--rm", "-it", image, "stty", "size"], rows=33, cols=111)
    try:
        terminal.read_until(b"33 111")
        assert terminal.wait() == 0
    finally:
        terminal.close()


def test_tty_resize_ctrl_c_and_restore(hutch: Hutch, image: str):
    terminal = Terminal(hutch, ["run", "--rm", "-it", image, "sh"])
    try:
        terminal.read_until(b"# ")
        terminal.send(b"echo marker-$((40+2))\r")
        terminal.read_until(b"marker-42")
        terminal.resize(50, 150)
        time.sleep(0.5)
        terminal.send(b"stty size\r")
        terminal.read_until(b"50 150")
        terminal.send(b"sleep 100\r")
        time.sleep(0.5)
        terminal.send(b"\x03")
        terminal.send(b"echo after-$((1+1))\r")
        terminal.read_until(b"after-2")
        terminal.send(b"exit 3\r")
        assert terminal.wait() == 3
        assert termios.tcgetattr(terminal.slave) == terminal.saved
    finally:
        terminal.close()


def test_exec_it_joins_container(hutch: Hutch, image: str):
    container_id = hutch.out("run", "-d", "--hostname", "inner", image, "sleep", "100").strip()
    terminal = Terminal(hutch, ["exec", "-it", container_id, "sh"])
    try:
        # busybox ash queries the cursor position first and drops input typed
        # before its prompt, as it would for a person typing ahead.
        terminal.read_until(b"# ")
        terminal.send(b"hostname; cat /proc/1/cmdline; echo; exit\r")
        terminal.read_until(b"inner")
        terminal.read_until(b"sleep\x00100")
        assert terminal.wait() == 0
    finally:
        terminal.close()


def test_interactive_stdin_without_tty(hutch: Hutch, image: str):
    result = hutch.run("run", "--rm", "-i", image, "sh", "-c", "tr a-z A-Z", input=b"hello\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"HELLO\n"


def test_exec_runs_in_container(hutch: Hutch, image: str):
    container_id = hutch.out("run", "-d", image, "sh", "-c", "echo inside > /tmp/mark; sleep 100").strip()
    time.sleep(0.5)
    assert hutch.out("exec", container_id, "cat", "/tmp/mark") == "inside\n"
    assert hutch.run("exec", container_id, "sh", "-c", "exit 4").returncode == 4
    status = hutch.out("exec", container_id, "cat", "/proc/self/status")
    assert "NoNewPrivs:\t1" in status
    result = hutch.run("exec", container_id, "no-such-program")
    assert result.returncode == 127


def test_exec_into_stopped_container_is_125(hutch: Hutch, image: str):
    hutch.out("run", "--name", "done", image, "true")
    result = hutch.run("exec", "done", "true")
    assert result.returncode == 125
    assert b"not running" in result.stderr


def test_it_without_terminal_is_125(hutch: Hutch, image: str):
    result = hutch.run("run", "--rm", "-it", image, "true")
    assert result.returncode == 125
    assert b"TTY" in result.stderr


def test_attach_feeds_stdin_and_follows(hutch: Hutch, image: str):
    container_id = hutch.out("run", "-d", "-i", image, "sh", "-c", "echo started; tr a-z A-Z").strip()
    time.sleep(0.5)
    result = hutch.run("attach", container_id, input=b"late input\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"LATE INPUT\n"
    assert hutch.out("logs", container_id) == "started\nLATE INPUT\n"


def test_detach_keys_leave_container_running(hutch: Hutch, image: str):
    terminal = Terminal(hutch, ["run", "-it", "--name", "stay", image, "sh"])
    try:
        terminal.read_until(b"# ")
        terminal.send(b"\x10\x11")
        assert terminal.wait() == 0
        assert b"detached" in terminal.read_until(b"detached")
        assert "stay" in hutch.out("ps")
    finally:
        terminal.close()


def test_logs_of_released_container_from_file(hutch: Hutch, image: str):
    hutch.out("run", "--name", "gone", image, "echo", "kept")
    hutch.out("helper", "stop")
    assert hutch.out("logs", "gone") == "kept\n"


def test_rootless_tty_size_and_exit(unprivileged_user, busybox_tar: Path):
    user_hutch = Hutch(
        unprivileged_user.home / "store", unprivileged_user.runtime_dir / "hutch", unprivileged_user
    )
    try:
        user_hutch.out("import", "-", "box", input=busybox_tar.read_bytes())
        terminal = Terminal(user_hutch, ["run", "--rm", "-it", "box", "sh"], rows=27, cols=91)
        try:
            terminal.read_until(b"# ")
            terminal.send(b"stty size; id -u\r")
            terminal.read_until(b"27 91")
            terminal.send(b"exit 5\r")
            assert terminal.wait() == 5
        finally:
            terminal.close()
    finally:
        user_hutch.cleanup()
