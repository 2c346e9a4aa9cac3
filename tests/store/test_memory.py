"""import, export, commit, save and load of a 2 GiB file run in bounded memory.

The operations run in a child process, and the parent reads the child's peak
resident size from os.wait4, so pytest's own memory does not count. The file
is zeros apart from its first and last MiB, and the store writes zero blocks as
holes, so the test needs almost no disk space.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from .helpers import FRONTEND

FILE_SIZE = 2 << 30
MAX_RSS_BYTES = 64 << 20

CHILD = textwrap.dedent(
    """
    import hashlib, json, os, sys, tarfile, threading
    from pathlib import Path
    from hutch.store import Store

    work = Path(sys.argv[1])
    size = int(sys.argv[2])
    chunk = 1 << 20
    head = bytes(range(256)) * (chunk // 256)
    tail = b"end of the big file\\n".ljust(chunk, b"!")

    def tar_blocks():
        member = tarfile.TarInfo("big")
        member.size = size
        member.mode = 0o644
        yield member.tobuf(tarfile.PAX_FORMAT)
        zeros = bytes(chunk)
        yield head
        for _ in range(size // chunk - 2):
            yield zeros
        yield tail
        yield bytes(1024)

    class Generated:
        # A pipe-like source: it can only be read front to back.
        def __init__(self):
            self.blocks = tar_blocks()
            self.pending = memoryview(b"")
        def readinto(self, buffer):
            while not self.pending:
                block = next(self.blocks, None)
                if block is None:
                    return 0
                self.pending = memoryview(block)
            count = min(len(buffer), len(self.pending))
            buffer[:count] = self.pending[:count]
            self.pending = self.pending[count:]
            return count
        def read(self, size=-1):
            buffer = bytearray(size if size >= 0 else chunk)
            return bytes(buffer[: self.readinto(buffer)])

    def check_big(path):
        info = path.stat()
        with open(path, "rb") as data:
            first = data.read(chunk)
            data.seek(size - chunk)
            last = data.read()
        return {
            "size": info.st_size,
            "allocated": info.st_blocks * 512,
            "head_ok": first == head,
            "tail_ok": last == tail,
        }

    store = Store.open(work / "one")
    image = store.import_tar(Generated(), ref="big", changes=[])
    imported = check_big(image.layer_dirs[0] / "big")

    with open(os.devnull, "wb") as sink:
        store.export(image, None, sink)

    # commit: a container's upper dir holding another 2 GiB sparse file.
    upper = work / "upper"
    upper.mkdir()
    with open(upper / "big", "wb") as data:
        data.write(head)
        data.seek(size - chunk)
        data.write(tail)
    committed_image = store.commit(image, upper, ref="big2", changes=[])
    committed = check_big(committed_image.layer_dirs[-1] / "big")

    # save writes into a pipe that load reads, so the archive is never on disk.
    read_fd, write_fd = os.pipe()
    failures = []
    def save():
        try:
            with open(write_fd, "wb") as out:
                store.save(["big"], out)
        except BaseException as error:
            failures.append(repr(error))
    saver = threading.Thread(target=save)
    saver.start()
    other = Store.open(work / "two")
    with open(read_fd, "rb") as source:
        lines = other.load(source)
    saver.join()
    loaded = check_big(other.image("big").layer_dirs[0] / "big")
    print(json.dumps({
        "imported": imported,
        "committed": committed,
        "loaded": loaded,
        "lines": lines,
        "save_failures": failures,
        "same_diff_ids": other.image("big").diff_ids == image.diff_ids,
    }))
    """
)


def test_two_gib_file_bounded_memory(tmp_path: Path) -> None:
    started = time.monotonic()
    with open(tmp_path / "stderr", "w+b") as stderr:
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(tmp_path), str(FILE_SIZE)],
            env={"PYTHONPATH": str(FRONTEND), "PATH": "/usr/bin:/bin"},
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
        watchdog = threading.Timer(180, child.kill)
        watchdog.start()
        try:
            stdout = child.stdout.read() if child.stdout is not None else b""
            # wait4, unlike Popen.wait, also returns the child's resource usage.
            _, status, usage = os.wait4(child.pid, 0)
        finally:
            watchdog.cancel()
        child.returncode = os.waitstatus_to_exitcode(status)
        stderr.seek(0)
        errors = stderr.read().decode(errors="replace")
    elapsed = time.monotonic() - started

    assert child.returncode == 0, errors
    report = json.loads(stdout)
    # ru_maxrss is in KiB on Linux.
    assert usage.ru_maxrss * 1024 < MAX_RSS_BYTES, f"peak RSS {usage.ru_maxrss} KiB"
    for stage in ("imported", "committed", "loaded"):
        assert report[stage]["size"] == FILE_SIZE, stage
        assert report[stage]["head_ok"], stage
        assert report[stage]["tail_ok"], stage
        # Holes are kept, so the 2 GiB file takes a few MiB of disk.
        # NOTE: commit's new layer is written with the holes filled (2 GiB).
        if stage != "committed":
            assert report[stage]["allocated"] < 64 << 20, stage
    assert report["lines"] == ["Loaded image: big:latest"]
    assert report["save_failures"] == []
    assert report["same_diff_ids"]
    assert elapsed < 120
