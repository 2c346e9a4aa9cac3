"""Read the log records that hutch-spawn writes on its --log-fd.

Each record is a text header `S SECONDS.NANOSECONDS LENGTH\n`, where S is
`o` for stdout and `e` for stderr, followed by LENGTH bytes of output.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

MAX_HEADER = 64
MAX_RECORD = 1 << 20  # hutch-spawn writes at most one pipe read per record
READ_SIZE = 1 << 16
FOLLOW_POLL_SECONDS = 0.01


class LogFormatError(ValueError):
    """The log file does not hold hutch-spawn records."""


@dataclass
class Record:
    stream: str  # "stdout" or "stderr"
    time_unix_nano: int
    data: bytes
    end_offset: int = 0  # file offset just after this record


def _parse_header(header: bytes) -> tuple[str, int, int]:
    try:
        kind, stamp, length = header.decode("ascii").split(" ")
        seconds, nanoseconds = stamp.split(".")
        time_unix_nano = int(seconds) * 1_000_000_000 + int(nanoseconds)
        size = int(length)
    except ValueError:
        raise LogFormatError(f"invalid log record header {header[:MAX_HEADER]!r}") from None
    if kind not in ("o", "e") or not 0 <= size <= MAX_RECORD:
        raise LogFormatError(f"invalid log record header {header!r}")
    return ("stdout" if kind == "o" else "stderr"), time_unix_nano, size


def read_records(
    log: BinaryIO,
    *,
    follow: bool = False,
    wait_ended: Callable[[float], bool] = lambda timeout: True,
) -> Iterator[Record]:
    """Yield the records of LOG in order.

    With FOLLOW, wait for more records until the writer has ended and the
    file contains no more complete records. WAIT_ENDED(TIMEOUT) blocks for up
    to TIMEOUT seconds and returns whether the writer has ended, so an end
    is seen at once. A record cut short at the end of the file is left out
    (the writer may still be writing it).
    """
    buffer = b""
    consumed = log.tell()
    while True:
        chunk = log.read(READ_SIZE)
        if chunk:
            buffer += chunk
            while True:
                newline = buffer.find(b"\n", 0, MAX_HEADER)
                if newline < 0:
                    if len(buffer) >= MAX_HEADER:
                        raise LogFormatError("log record header is too long")
                    break
                stream, stamp, size = _parse_header(buffer[:newline])
                end = newline + 1 + size
                if len(buffer) < end:
                    break
                consumed += end
                yield Record(stream, stamp, buffer[newline + 1 : end], consumed)
                buffer = buffer[end:]
            continue
        if not follow:
            return
        if os.fstat(log.fileno()).st_size < log.tell():
            # The writer rotated the log (moved it to log.1 and truncated it);
            # records written between our last read and the rotation are in log.1.
            log.seek(0)
            buffer, consumed = b"", 0
            continue
        # Once the writer has ended, one more pass drains what it wrote last.
        if wait_ended(FOLLOW_POLL_SECONDS):
            follow = False
