"""Streams that hash what passes through them, compression detection, blob files.

Every blob is written to a temporary file while it is hashed, and is renamed
into blobs/sha256/<hex> only after its digest is known and checked.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import lzma
import os
import zlib
from pathlib import Path
from typing import BinaryIO, cast

from hutch.errors import HutchError
from hutch.store.layout import CHUNK_SIZE

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
XZ_MAGIC = b"\xfd7zXZ\x00"
BZIP2_MAGIC = b"BZh"


class PeekableReader:
    """A reader that can look at its first bytes without consuming them."""

    def __init__(self, source: BinaryIO) -> None:
        self._source = source
        self._buffer = b""

    def peek(self, size: int) -> bytes:
        while len(self._buffer) < size:
            data = self._source.read(size - len(self._buffer))
            if not data:
                break
            self._buffer += data
        return self._buffer[:size]

    def read(self, size: int = -1) -> bytes:
        if self._buffer:
            if size < 0 or size >= len(self._buffer):
                data, self._buffer = self._buffer, b""
                return data
            data, self._buffer = self._buffer[:size], self._buffer[size:]
            return data
        return self._source.read(size if size >= 0 else CHUNK_SIZE)

    def readable(self) -> bool:
        return True


class HashingReader:
    """A reader that hashes and counts what it returns, and may copy it to a file.

    It raises HutchError once more than LIMIT bytes have passed, which caps
    decompression bombs as well as plain oversized input.
    """

    def __init__(
        self,
        source: BinaryIO,
        *,
        subject: str,
        limit: int,
        copy_to: BinaryIO | None = None,
    ) -> None:
        self._source = source
        self._copy_to = copy_to
        self.subject = subject
        self.limit = limit
        self.hash = hashlib.sha256()
        self.size = 0

    def read(self, size: int = -1) -> bytes:
        try:
            data = self._source.read(size if size >= 0 else CHUNK_SIZE)
        except (OSError, EOFError, zlib.error, lzma.LZMAError) as error:
            raise HutchError(
                f"cannot read {self.subject}: {error}: the data is corrupt or truncated"
            ) from None
        self.size += len(data)
        if self.size > self.limit:
            raise HutchError(
                f"{self.subject} is larger than the limit of {self.limit} bytes"
            )
        self.hash.update(data)
        if self._copy_to is not None:
            self._copy_to.write(data)
        return data

    def readable(self) -> bool:
        return True

    def drain(self) -> None:
        """Read the rest of the source, so that the digest covers all of it."""
        while self.read(CHUNK_SIZE):
            pass

    def hexdigest(self) -> str:
        return self.hash.hexdigest()


class HashingWriter:
    """A write-only file object that hashes and counts while it writes to a file."""

    def __init__(self, target: BinaryIO) -> None:
        self._target = target
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.size += len(data)
        self._target.write(data)
        return len(data)

    def flush(self) -> None:
        self._target.flush()


def detect_compression(source: PeekableReader) -> str:
    """Return "gzip", "xz", "bzip2", "zstd", or "" for bytes that match no known magic."""
    head = source.peek(6)
    for name, magic in (
        ("gzip", GZIP_MAGIC),
        ("xz", XZ_MAGIC),
        ("bzip2", BZIP2_MAGIC),
        ("zstd", ZSTD_MAGIC),
    ):
        if head.startswith(magic):
            return name
    return ""


def open_decompressed(source: BinaryIO, subject: str) -> BinaryIO:
    """Return a reader of SOURCE's bytes, decompressed when they start with a known magic.

    gzip, xz and bzip2 come from the standard library. zstd is rejected because
    Python 3.11's standard library has no zstd decoder.
    """
    peekable = PeekableReader(source)
    compression = detect_compression(peekable)
    stream = cast(BinaryIO, peekable)
    if compression == "gzip":
        return cast(BinaryIO, gzip.GzipFile(fileobj=stream, mode="rb"))
    if compression == "xz":
        return cast(BinaryIO, lzma.LZMAFile(stream, mode="rb"))
    if compression == "bzip2":
        return cast(BinaryIO, bz2.BZ2File(stream, mode="rb"))
    if compression == "zstd":
        raise HutchError(
            f"{subject} is zstd-compressed, which hutch cannot read yet: convert it first, "
            "for example with skopeo copy --dest-compress-format gzip"
        )
    return stream


def read_capped(path: Path, limit: int, subject: str) -> bytes:
    """Return the contents of PATH, or raise when it is larger than LIMIT bytes."""
    size = os.stat(path).st_size
    if size > limit:
        raise HutchError(f"{subject} is {size} bytes, more than the limit of {limit}")
    return path.read_bytes()


def new_temp_file(directory: Path, name: str) -> BinaryIO:
    """Create DIRECTORY/NAME, which must not exist yet, and open it for writing."""
    fd = os.open(
        directory / name,
        os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
        0o600,
    )
    return os.fdopen(fd, "wb", buffering=CHUNK_SIZE)
