"""hutch-spawn --log-max-bytes and --log-rotate-fd: a size cap on the log with one older file."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from c_support import NAMESPACES, parse_records, spawn_bin

MAX_BYTES = 65536
# 1,088,895 bytes of output: the numbers 1 to 150000, one per line.
LINE_COUNT = 150000
EXPECTED = b"".join(b"%d\n" % n for n in range(1, LINE_COUNT + 1))


def stdout_of(path: Path) -> bytes:
    return b"".join(data for stream, data in parse_records(path.read_bytes()) if stream == "o")


def run_rotated(
    runner, rootfs, log_path: Path, rotate_path: Path, program, max_bytes=MAX_BYTES, rotate_flags=0
):
    log_fd = os.open(log_path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
    rotate_fd = os.open(rotate_path, os.O_WRONLY | os.O_CREAT | rotate_flags, 0o600)
    options = [
        *NAMESPACES,
        "--log-fd", str(log_fd),
        "--log-max-bytes", str(max_bytes),
        "--log-rotate-fd", str(rotate_fd),
    ]  # fmt: skip
    try:
        return runner.spawn(rootfs, program, options, pass_fds=(log_fd, rotate_fd))
    finally:
        os.close(log_fd)
        os.close(rotate_fd)


# copy_file_range rejects an O_APPEND target with EBADF, so that case runs the pread fallback.
@pytest.mark.parametrize("rotate_flags", [0, os.O_APPEND], ids=["copy-file-range", "append"])
def test_log_capped_with_one_older_file(runner_and_rootfs, shared_tmp, rotate_flags):
    runner, rootfs = runner_and_rootfs
    log_path = shared_tmp / "log"
    rotate_path = shared_tmp / "log.1"
    program = ["seq", "1", str(LINE_COUNT)]
    result = run_rotated(
        runner, rootfs, log_path, rotate_path, program, rotate_flags=rotate_flags
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    # Reads are sized so that a whole record fits, so neither file passes the maximum.
    assert 0 < log_path.stat().st_size <= MAX_BYTES
    assert 0 < rotate_path.stat().st_size <= MAX_BYTES
    older = stdout_of(rotate_path)
    newest = stdout_of(log_path)
    assert newest.endswith(b"\n%d\n" % LINE_COUNT)
    # The older file is the generation just before the log: together a contiguous tail.
    assert EXPECTED.endswith(older + newest)
    assert len(older + newest) > MAX_BYTES


def test_existing_log_counts_toward_max(runner_and_rootfs, shared_tmp):
    runner, rootfs = runner_and_rootfs
    log_path = shared_tmp / "log"
    rotate_path = shared_tmp / "log.1"
    old_record = b"o 1700000000.000000000 4000\n" + b"x" * 4000
    log_path.write_bytes(old_record)
    rotate_path.write_bytes(b"stale")
    # One write of 3000 bytes, below PIPE_BUF, so the monitor reads it as one record.
    program = ["head", "-c", "3000", "/dev/zero"]
    result = run_rotated(runner, rootfs, log_path, rotate_path, program, max_bytes=4096)
    assert result.returncode == 0, result.stderr
    # The old record and the new one do not fit in 4096 bytes together, so it is rotated first.
    assert rotate_path.read_bytes() == old_record
    assert stdout_of(log_path) == b"\0" * 3000


@pytest.mark.parametrize(
    "extra, log_flags, message",
    [
        (["--log-max-bytes", "4095"], os.O_RDWR, "invalid --log-max-bytes `4095`"),
        (["--log-max-bytes", "4096"], os.O_RDWR, "--log-max-bytes needs --log-rotate-fd"),
        (["--log-rotate-fd", "ROTATE"], os.O_RDWR, "--log-rotate-fd needs --log-max-bytes"),
        (["--log-max-bytes", "4096", "--log-rotate-fd", "LOG"], os.O_RDWR,
         "--log-rotate-fd must differ from --log-fd"),
        (["--log-max-bytes", "4096", "--log-rotate-fd", "ROTATE"], os.O_WRONLY,
         "invalid --log-fd `LOG`: --log-max-bytes needs it open for reading and writing"),
        (["--log-max-bytes", "4096", "--log-rotate-fd", "SAME"], os.O_RDWR,
         "--log-fd and --log-rotate-fd must be different files"),
    ],
)  # fmt: skip
def test_bad_rotation_options_rejected(shared_tmp, extra, log_flags, message):
    log_fd = os.open(shared_tmp / "log", log_flags | os.O_CREAT, 0o600)
    rotate_fd = os.open(shared_tmp / "log.1", os.O_WRONLY | os.O_CREAT, 0o600)
    same_fd = os.open(shared_tmp / "log", os.O_WRONLY)
    names = {"LOG": str(log_fd), "ROTATE": str(rotate_fd), "SAME": str(same_fd)}
    argv = [str(spawn_bin()), "--rootfs", "/", "--log-fd", str(log_fd)]
    argv += [names.get(arg, arg) for arg in extra]
    try:
        result = subprocess.run(
            [*argv, "--", "true"],
            capture_output=True,
            text=True,
            pass_fds=(log_fd, rotate_fd, same_fd),
        )
    finally:
        for fd in (log_fd, rotate_fd, same_fd):
            os.close(fd)
    for name, value in names.items():
        message = message.replace(f"`{name}`", f"`{value}`")
    assert result.returncode == 125
    assert result.stderr.count("\n") == 1
    assert message in result.stderr


def test_pipe_log_rejected_with_max(shared_tmp):
    read_end, write_end = os.pipe()
    rotate_fd = os.open(shared_tmp / "log.1", os.O_WRONLY | os.O_CREAT, 0o600)
    argv = [
        str(spawn_bin()), "--rootfs", "/", "--log-fd", str(write_end),
        "--log-max-bytes", "4096", "--log-rotate-fd", str(rotate_fd), "--", "true",
    ]  # fmt: skip
    try:
        result = subprocess.run(
            argv, capture_output=True, text=True, pass_fds=(write_end, rotate_fd)
        )
    finally:
        for fd in (read_end, write_end, rotate_fd):
            os.close(fd)
    assert result.returncode == 125
    assert f"invalid --log-fd `{write_end}`: --log-max-bytes needs a regular file" in result.stderr
