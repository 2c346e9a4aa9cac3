"""Helpers for the c-helper tests: run hutch-spawn and hutch-cgroup, read their output."""

from __future__ import annotations
import os
import re
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


CGROUP_ROOT = Path("/sys/fs/cgroup")


def spawn_bin() -> Path:
    return libexec_dir() / "hutch-spawn"


def cgroup_bin() -> Path:
    return libexec_dir() / "hutch-cgroup"


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
        pass_fds: tuple[int, ...] = (),
    ) -> Result:
        """Run PROGRAM in ROOTFS; with LOG or STATUS, capture --log-fd / --status-fd.

        PASS_FDS are extra fds that hutch-spawn inherits, named in OPTIONS.
        """
        argv = [str(spawn_bin()), "--rootfs", str(rootfs), *options]
        pass_fds = list(pass_fds)
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


def parse_records(log: bytes) -> list[tuple[str, bytes]]:
    """Split --log-fd output into (stream, data) records, checking each header."""
    records = []
    pos = 0
    while pos < len(log):
        end = log.index(b"\n", pos)
        header = log[pos:end].decode()
        match = re.fullmatch(r"([oe]) (\d+)\.(\d{9}) (\d+)", header)
        assert match, f"bad record header {header!r}"
        length = int(match.group(4))
        assert abs(int(match.group(2)) - time.time()) < 300
        data = log[end + 1 : end + 1 + length]
        assert len(data) == length
        records.append((match.group(1), data))
        pos = end + 1 + length
    return records


def chown_tree(path: Path, uid: int, gid: int) -> None:
    os.chown(path, uid, gid, follow_symlinks=False)
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            os.chown(os.path.join(dirpath, name), uid, gid, follow_symlinks=False)


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


HERE = Path(__file__).resolve().parent


NAMESPACES = ["--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts"]


class LogReader:
    """Collects --log-fd records from a pipe in a thread; waits for expected output."""

    def __init__(self, read_end: int) -> None:
        self._file = os.fdopen(read_end, "rb", buffering=0)
        self._raw = bytearray()
        self.records: list[tuple[str, bytes]] = []
        self._changed = threading.Condition()
        self._done = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            chunk = self._file.read(65536)
            with self._changed:
                if not chunk:
                    self._done = True
                    self._changed.notify_all()
                    return
                self._raw += chunk
                self._parse()
                self._changed.notify_all()

    def _parse(self) -> None:
        while True:
            end = self._raw.find(b"\n")
            if end < 0:
                return
            stream, _, length = self._raw[:end].decode().split(" ")
            total = end + 1 + int(length)
            if len(self._raw) < total:
                return
            self.records.append((stream, bytes(self._raw[end + 1 : total])))
            del self._raw[:total]

    def output(self, stream: str = "o") -> bytes:
        with self._changed:
            return b"".join(data for kind, data in self.records if kind == stream)

    def wait_for(self, expected: bytes, timeout: float = 20) -> bytes:
        """Wait until EXPECTED is in the stdout records; return all of stdout so far."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                out = b"".join(data for kind, data in self.records if kind == "o")
                if expected in out:
                    return out
                left = deadline - time.monotonic()
                if left <= 0 or self._done:
                    raise AssertionError(f"{expected!r} not in the output {out!r}")
                self._changed.wait(left)

    def close(self, timeout: float = 20) -> None:
        self._thread.join(timeout)
        self._file.close()


class Session:
    """hutch-spawn started with --log-fd and --status-fd, optionally an --attach-socket."""

    def __init__(self, argv: list[str], socket_path: Path | None = None, user=None) -> None:
        log_read, log_write = os.pipe()
        status_read, status_write = os.pipe()
        self.socket_path = socket_path
        options = ["--log-fd", str(log_write), "--status-fd", str(status_write)]
        if socket_path is not None:
            options += ["--attach-socket", str(socket_path)]
        # Before the last "--", so that a hutch-cgroup in front keeps its own "--".
        separator = len(argv) - 1 - argv[::-1].index("--")
        argv = [*argv[:separator], *options, *argv[separator:]]
        if Path(argv[0]).name == "hutch-cgroup":
            # hutch-cgroup closes every fd above 2 that --keep-fd does not name.
            first = argv.index("--")
            keep = ["--keep-fd", str(log_write), "--keep-fd", str(status_write)]
            argv = [*argv[:first], *keep, *argv[first:]]
        if user is not None:
            argv = user.command(argv)
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=[log_write, status_write],
            start_new_session=True,
        )
        os.close(log_write)
        os.close(status_write)
        self.log = LogReader(log_read)
        self.status = os.fdopen(status_read, "r")
        first = self.status.readline()
        if not first.startswith("pid "):
            self.proc.wait(30)
            raise AssertionError(f"no pid reported: {first!r}, {self.proc.stderr.read()!r}")
        self.pid = int(first.split()[1])

    def connect(self) -> socket.socket:
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.connect(str(self.socket_path))
        return client

    @staticmethod
    def frame(kind: bytes, payload: bytes = b"") -> bytes:
        return kind + struct.pack(">I", len(payload)) + payload

    def wait(self, timeout: float = 30) -> int:
        code = self.proc.wait(timeout)
        self.log.close()
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()
        self.proc.stderr.close()
        self.status.close()
        self.log.close()

