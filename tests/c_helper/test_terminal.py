"""hutch-spawn's --tty, --stdin and --attach-socket, driven through a real pty and socket."""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import stat
import struct
import subprocess
import termios
import time

import pytest
from c_support import NAMESPACES, Session, spawn_bin


@pytest.fixture
def rootfs_and_user(runner_and_rootfs):
    runner, rootfs = runner_and_rootfs
    return rootfs, runner.user


def start(rootfs, options, program, user=None, attach=True) -> Session:
    argv = [str(spawn_bin()), "--rootfs", str(rootfs), *NAMESPACES, *options, "--", *program]
    socket_path = rootfs.parent / "attach.sock" if attach else None
    return Session(argv, socket_path, user)


def window(rows: int, cols: int) -> bytes:
    return Session.frame(b"w", struct.pack(">HH", rows, cols))


def test_window_frame_sets_size(rootfs_and_user):
    rootfs, user = rootfs_and_user
    session = start(rootfs, ["--tty"], ["/bin/sh"], user)
    try:
        client = session.connect()
        client.sendall(window(30, 100))
        client.sendall(Session.frame(b"d", b"stty size\n"))
        out = session.log.wait_for(b"30 100")
        assert re.search(rb"^30 100\r$", out, re.M), out
        client.sendall(Session.frame(b"d", b"exit 5\n"))
        assert session.wait() == 5
    finally:
        session.close()


def test_ctrl_c_ends_sleep_not_shell(rootfs_and_user):
    rootfs, user = rootfs_and_user
    session = start(rootfs, ["--tty"], ["/bin/sh"], user)
    try:
        client = session.connect()
        client.sendall(Session.frame(b"d", b"sleep 100\n"))
        # The line discipline echoes the line; soon after, sleep is the foreground job.
        session.log.wait_for(b"sleep 100\r\n")
        time.sleep(0.5)
        started = time.monotonic()
        client.sendall(Session.frame(b"d", b"\x03"))
        client.sendall(Session.frame(b"d", b"echo alive-$((20+22)); ps -o comm\n"))
        out = session.log.wait_for(b"alive-42\r\n")
        # The shell ran the next command long before sleep 100 could have ended by itself.
        assert time.monotonic() - started < 20
        processes = session.log.wait_for(b"ps\r\n").split(b"alive-42\r\n")[1]
        assert b"sleep" not in processes
        assert b"sh\r\n" in processes
        assert session.proc.poll() is None
        client.sendall(Session.frame(b"d", b"exit\n"))
        assert session.wait() == 0
    finally:
        session.close()


def test_tty_size_set_before_exec(rootfs_and_user):
    rootfs, user = rootfs_and_user
    session = start(rootfs, ["--tty", "--tty-size", "40x132"], ["stty", "size"], user, attach=False)
    try:
        assert session.wait() == 0
        assert session.log.output() == b"40 132\r\n"
    finally:
        session.close()


def test_tty_is_controlling_terminal(rootfs_and_user):
    rootfs, user = rootfs_and_user
    script = "tty; ls -l /proc/self/fd/0; cat /proc/self/stat"
    session = start(rootfs, ["--tty"], ["/bin/sh", "-c", script], user, attach=False)
    try:
        assert session.wait() == 0
        lines = session.log.output().decode().splitlines()
        assert lines[0] == "/dev/pts/0"
        assert lines[1].endswith("-> /dev/pts/0")
        # Field 7 of /proc/PID/stat is the controlling terminal: 136 << 8 | 0 is pts/0.
        fields = lines[2].rsplit(")", 1)[1].split()
        assert int(fields[4]) == 136 << 8
    finally:
        session.close()


def test_tty_pid_one_holds_only_pty(rootfs_and_user):
    rootfs, user = rootfs_and_user
    # ls runs as a child, so pid 1 is the shell with only what hutch-spawn gave it.
    session = start(rootfs, ["--tty"], ["/bin/sh", "-c", "ls -l /proc/1/fd; true"], user,
                    attach=False)
    try:
        assert session.wait() == 0
        links = re.findall(r" (\d+) -> (\S+)", session.log.output().decode())
        assert links == [("0", "/dev/pts/0"), ("1", "/dev/pts/0"), ("2", "/dev/pts/0")]
    finally:
        session.close()


def test_stdin_pipe_feeds_cat(rootfs_and_user):
    rootfs, user = rootfs_and_user
    session = start(rootfs, ["--stdin"], ["cat"], user)
    try:
        client = session.connect()
        client.sendall(Session.frame(b"d", b"hello\n") + Session.frame(b"d", b"world\n"))
        client.sendall(Session.frame(b"c"))
        assert session.wait() == 0
        assert session.log.output() == b"hello\nworld\n"
    finally:
        session.close()


def test_stdin_large_input_not_lost(rootfs_and_user):
    rootfs, user = rootfs_and_user
    session = start(rootfs, ["--stdin"], ["/bin/sh", "-c", "wc -c"], user)
    data = bytes(range(256)) * 4096
    try:
        client = session.connect()
        for offset in range(0, len(data), 65536):
            client.sendall(Session.frame(b"d", data[offset : offset + 65536]))
        client.sendall(Session.frame(b"c"))
        assert session.wait() == 0
        assert session.log.output().strip() == str(len(data)).encode()
    finally:
        session.close()


def test_client_disconnect_keeps_stdin(rootfs_and_user):
    rootfs, user = rootfs_and_user
    session = start(rootfs, ["--stdin"], ["cat"], user)
    try:
        first = session.connect()
        first.sendall(Session.frame(b"d", b"one\n"))
        session.log.wait_for(b"one\n")
        first.close()
        time.sleep(0.3)
        assert session.proc.poll() is None
        second = session.connect()
        second.sendall(Session.frame(b"d", b"two\n") + Session.frame(b"c"))
        assert session.wait() == 0
        assert session.log.output() == b"one\ntwo\n"
    finally:
        session.close()


def test_tty_close_frame_sends_eof(rootfs_and_user):
    rootfs, user = rootfs_and_user
    session = start(rootfs, ["--tty", "--stdin"], ["cat"], user)
    try:
        client = session.connect()
        client.sendall(Session.frame(b"d", b"typed\n") + Session.frame(b"c"))
        assert session.wait() == 0
        # The line discipline echoes the input, then cat prints it once more.
        assert session.log.output().count(b"typed\r\n") == 2
    finally:
        session.close()


def test_invalid_frame_drops_client_only(rootfs_and_user):
    rootfs, user = rootfs_and_user
    session = start(rootfs, ["--stdin"], ["cat"], user)
    try:
        bad = session.connect()
        bad.sendall(Session.frame(b"w", b"\0\1\0\1"))
        assert bad.recv(1) == b""
        good = session.connect()
        good.sendall(Session.frame(b"d", b"still here\n") + Session.frame(b"c"))
        assert session.wait() == 0
        assert session.log.output() == b"still here\n"
        assert b"window size frame without --tty" in session.proc.stderr.read()
    finally:
        session.close()


def test_socket_mode_and_removal(rootfs_and_user):
    rootfs, user = rootfs_and_user
    session = start(rootfs, ["--stdin"], ["cat"], user)
    try:
        info = os.stat(session.socket_path)
        assert stat.S_ISSOCK(info.st_mode)
        assert stat.S_IMODE(info.st_mode) == 0o600
        session.connect().sendall(Session.frame(b"c"))
        assert session.wait() == 0
        assert not session.socket_path.exists()
    finally:
        session.close()


def test_existing_socket_path_rejected(root_runner, busybox_tree):
    path = busybox_tree.parent / "taken.sock"
    path.write_text("")
    argv = [str(spawn_bin()), "--rootfs", str(busybox_tree), "--stdin",
            "--attach-socket", str(path), "--", "cat"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert result.returncode == 125
    assert result.stderr == f"hutch-spawn: bind `{path}`: Address already in use\n"
    assert path.read_text() == ""


def test_host_terminal_not_injectable(root_runner, busybox_tree, tiocsti_probe):
    """A container that inherits the caller's terminal as fd 0 cannot push input into it."""
    shutil.copy2(tiocsti_probe, busybox_tree / "bin" / "tiocsti")
    master, slave = os.openpty()
    argv = [str(spawn_bin()), "--rootfs", str(busybox_tree), *NAMESPACES, "--", "/bin/tiocsti"]

    def take_terminal():
        # The pty becomes hutch-spawn's controlling terminal, as a shell's terminal would.
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    try:
        result = subprocess.run(argv, stdin=slave, capture_output=True, text=True, timeout=30,
                                start_new_session=True, preexec_fn=take_terminal)
        assert result.stdout == "Operation not permitted\n"
        assert result.returncode == 1
        os.set_blocking(master, False)
        with pytest.raises(BlockingIOError):
            os.read(master, 100)
    finally:
        os.close(master)
        os.close(slave)


@pytest.mark.parametrize(
    "options, message",
    [
        (["--tty-size", "10x10"], "--tty-size needs --tty"),
        (["--tty", "--tty-size", "0x10"], "invalid --tty-size `0x10`"),
        (["--tty", "--tty-size", "10"], "invalid --tty-size `10`"),
        (["--stdin"], "--stdin needs --attach-socket"),
        (["--attach-socket", "/tmp/x.sock"], "--attach-socket needs --stdin or --tty"),
        (["--stdin", "--attach-socket", "relative.sock"], "invalid --attach-socket"),
        (["--stdin", "--attach-socket", "/" + "s" * 120], "longer than 107 bytes"),
    ],
)
def test_bad_terminal_options_rejected(options, message):
    read_end, write_end = os.pipe()
    argv = [str(spawn_bin()), "--rootfs", "/", "--log-fd", str(write_end), *options, "--", "true"]
    try:
        result = subprocess.run(argv, capture_output=True, text=True, pass_fds=[write_end])
    finally:
        os.close(read_end)
        os.close(write_end)
    assert result.returncode == 125
    assert result.stderr.count("\n") == 1
    assert message in result.stderr


def test_tty_needs_log_fd():
    result = subprocess.run([str(spawn_bin()), "--rootfs", "/", "--tty", "--", "true"],
                            capture_output=True, text=True)
    assert result.returncode == 125
    assert "--tty needs --log-fd" in result.stderr
