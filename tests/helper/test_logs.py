"""The log record reader of hutch-helper, on files written by the test."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path

import pytest

from hutch_helper.logs import LogFormatError, read_records


def record(stream: str, data: bytes, stamp: str = "1700000000.000000001") -> bytes:
    return f"{stream} {stamp} {len(data)}\n".encode() + data


def test_records_keep_stream_time_and_bytes():
    log = io.BytesIO(record("o", b"out\n") + record("e", b"\x00\xff err") + record("o", b""))
    records = list(read_records(log))
    assert [r.stream for r in records] == ["stdout", "stderr", "stdout"]
    assert records[1].data == b"\x00\xff err"
    assert records[0].time_unix_nano == 1_700_000_000_000_000_001


def test_cut_record_is_left_out():
    data = record("o", b"whole") + record("o", b"partial")[:-3]
    assert [r.data for r in read_records(io.BytesIO(data))] == [b"whole"]


@pytest.mark.parametrize(
    "header", [b"x 1.0 3\nabc", b"o 1.0 -3\n", b"o nope 3\nabc", b"o 1.0 99999999999\n", b"o" * 80]
)
def test_invalid_header_raises(header: bytes):
    with pytest.raises(LogFormatError):
        list(read_records(io.BytesIO(header)))


def test_follow_sees_late_records_and_end(tmp_path: Path):
    path = tmp_path / "log"
    path.write_bytes(record("o", b"first"))
    ended = threading.Event()

    def writer() -> None:
        time.sleep(0.1)
        with open(path, "ab") as log:
            log.write(record("e", b"second"))
        ended.set()

    threading.Thread(target=writer).start()
    with open(path, "rb") as log:
        records = list(read_records(log, follow=True, wait_ended=ended.wait))
    assert [r.data for r in records] == [b"first", b"second"]
