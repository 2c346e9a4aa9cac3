"""Streams that hash what passes through them, compression detection, blob files.

Every blob is written to a temporary file while it is hashed, and is renamed
into blobs/sha256/<hex> only after its digest is known and checked. Blob
files are written sparse: a 1 MiB block of zeros becomes a hole.
"""

from __future__ import annotations

import bz2
import errno
import gzip
import hashlib
import lzma
import os
import shutil
import stat
import subprocess
import threading
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

    def readinto(self, buffer: memoryview | bytearray) -> int:
        readinto = getattr(self._source, "readinto", None)
        if self._buffer or readinto is None:
            data = self.read(len(buffer))
            buffer[: len(data)] = data
            return len(data)
        count: int = readinto(buffer)
        return count

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
    return compression_of(source.peek(6))


def compression_of(head: bytes) -> str:
    """Return the compression whose magic HEAD, the first 6 bytes of a stream, starts with."""
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

    gzip, xz and bzip2 come from the standard library, and zstd from the zstd
    command, because Python 3.11's standard library has no zstd decoder.
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
        return cast(BinaryIO, ZstdReader(stream, subject))
    return stream


class ZstdReader:
    """A reader of the output of `zstd -d`, fed with SOURCE by a thread.

    The subprocess streams, so memory does not grow with the data. read()
    raises HutchError when zstd reports corrupt or truncated data.
    """

    def __init__(self, source: BinaryIO, subject: str) -> None:
        command = shutil.which("zstd")
        if command is None:
            raise HutchError(
                f"{subject} is zstd-compressed, and the zstd command is not installed: "
                "install it (Debian package zstd)"
            )
        self.subject = subject
        self._process = subprocess.Popen(
            [command, "--decompress", "--stdout", "--quiet", "--no-progress"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self._feed_error: BaseException | None = None
        self._feeder = threading.Thread(
            target=self._feed, args=(source,), name="zstd-feed", daemon=True
        )
        self._feeder.start()

    def _feed(self, source: BinaryIO) -> None:
        stdin = cast(BinaryIO, self._process.stdin)
        try:
            while data := source.read(CHUNK_SIZE):
                stdin.write(data)
        except BrokenPipeError:
            pass  # zstd stopped early, and read() reports why
        except BaseException as error:  # noqa: BLE001 - handed to the reading thread
            self._feed_error = error
        finally:
            try:
                stdin.close()
            except BrokenPipeError:
                pass

    def read(self, size: int = -1) -> bytes:
        stdout = cast(BinaryIO, self._process.stdout)
        data = stdout.read(size if size >= 0 else CHUNK_SIZE)
        if not data:
            self._finish()
        return data

    def readable(self) -> bool:
        return True

    def _finish(self) -> None:
        self._feeder.join()
        stderr = cast(BinaryIO, self._process.stderr).read().decode(errors="replace")
        status = self._process.wait()
        if self._feed_error is not None:
            raise self._feed_error
        if status != 0:
            detail = stderr.strip().splitlines()[-1:] or [f"exit status {status}"]
            raise HutchError(
                f"cannot decompress {self.subject}: zstd failed: {detail[0]}: "
                "the data is corrupt or truncated"
            )

    def close(self) -> None:
        """Stop zstd if it still runs, and reap it."""
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait()
        for pipe in (self._process.stdout, self._process.stderr):
            if pipe is not None:
                pipe.close()
        self._feeder.join()


def close_stream(stream: BinaryIO) -> None:
    """Release what a reader from open_decompressed holds, such as a zstd process."""
    if isinstance(stream, ZstdReader):
        stream.close()


def write_blob(
    source: BinaryIO, path: Path, *, limit: int, subject: str
) -> tuple[str, int]:
    """Copy SOURCE to the new file PATH while hashing it, and return (sha256 hex, size).

    A 1 MiB block of zeros at a 1 MiB offset is skipped with lseek, so the blob
    keeps the holes of a sparse file. HutchError is raised once more than LIMIT
    bytes have been read, which also caps decompression bombs.
    """
    digest = hashlib.sha256()
    size = 0
    buffer = bytearray(CHUNK_SIZE)
    view = memoryview(buffer)
    fd = os.open(
        path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
    )
    try:
        while True:
            filled = _fill(source, view, subject)
            if not filled:
                break
            size += filled
            if size > limit:
                raise HutchError(f"{subject} is larger than the limit of {limit} bytes")
            block = view[:filled]
            digest.update(block)
            if filled == CHUNK_SIZE and buffer == ZERO_CHUNK:
                os.lseek(fd, filled, os.SEEK_CUR)
            else:
                _write_all(fd, block)
        os.ftruncate(fd, size)
    finally:
        os.close(fd)
    return digest.hexdigest(), size


ZERO_CHUNK = bytes(CHUNK_SIZE)


def _fill(source: BinaryIO, view: memoryview, subject: str) -> int:
    """Read from SOURCE until VIEW is full or the data ends, and return the count."""
    filled = 0
    readinto = getattr(source, "readinto", None)
    try:
        while filled < len(view):
            if readinto is not None:
                count = readinto(view[filled:])
            else:
                data = source.read(len(view) - filled)
                count = len(data)
                view[filled : filled + count] = data
            if not count:
                break
            filled += count
    except (OSError, EOFError, zlib.error, lzma.LZMAError) as error:
        raise HutchError(
            f"cannot read {subject}: {error}: the data is corrupt or truncated"
        ) from None
    return filled


def _write_all(fd: int, data: memoryview) -> None:
    while data:
        data = data[os.write(fd, data) :]


def regular_file_position(source: BinaryIO) -> tuple[int, int] | None:
    """Return (fd, offset of the next byte) when SOURCE reads a regular file, else None."""
    try:
        fd = source.fileno()
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return fd, source.tell()
    except (OSError, AttributeError, ValueError):
        return None


def hash_file_range(fd: int, offset: int, size: int) -> str:
    """Return the sha256 hex of SIZE bytes at OFFSET of FD, or "" when the file is shorter.

    Nothing is written, so a caller can find out whether it already has the bytes
    before copying them.
    """
    digest = hashlib.sha256()
    buffer = bytearray(min(size, CHUNK_SIZE))
    view = memoryview(buffer)
    end = offset + size
    while offset < end:
        count = os.preadv(fd, [view[: min(len(view), end - offset)]], offset)
        if not count:
            return ""
        digest.update(view[:count])
        offset += count
    return digest.hexdigest()


def copy_range(
    source_fd: int, offset: int, target_fd: int, target_offset: int, count: int
) -> None:
    """Copy COUNT bytes at OFFSET of SOURCE_FD to TARGET_OFFSET of TARGET_FD.

    The kernel copies the data (copy_file_range), and holes of the source stay
    holes for ranges of 1 MiB or more. Without copy_file_range support, the
    data goes through pread and pwrite. Finding holes moves SOURCE_FD's file
    offset, so nothing else may read SOURCE_FD by its offset.
    """
    end = offset + count
    position = offset
    while position < end:
        data_end = end
        if count >= CHUNK_SIZE:
            try:
                position = os.lseek(source_fd, position, os.SEEK_DATA)
            except OSError as error:
                if error.errno != errno.ENXIO:
                    raise
                return  # only a hole remains, which the caller's ftruncate makes
            if position >= end:
                return
            data_end = min(end, os.lseek(source_fd, position, os.SEEK_HOLE))
        _copy_data(
            source_fd,
            position,
            target_fd,
            target_offset + position - offset,
            data_end - position,
        )
        position = data_end


def _copy_data(
    source_fd: int, offset: int, target_fd: int, target_offset: int, count: int
) -> None:
    while count > 0:
        try:
            copied = os.copy_file_range(
                source_fd, target_fd, count, offset, target_offset
            )
        except OSError as error:
            if error.errno not in (
                errno.EXDEV,
                errno.ENOSYS,
                errno.EOPNOTSUPP,
                errno.EINVAL,
            ):
                raise
            copied = _copy_data_by_reading(
                source_fd, offset, target_fd, target_offset, count
            )
        if copied == 0:
            raise HutchError(
                "the blob ended before the data of a member: it is truncated"
            )
        offset += copied
        target_offset += copied
        count -= copied


def _copy_data_by_reading(
    source_fd: int, offset: int, target_fd: int, target_offset: int, count: int
) -> int:
    data = os.pread(source_fd, min(count, CHUNK_SIZE), offset)
    view = memoryview(data)
    while view:
        written = os.pwrite(target_fd, view, target_offset)
        view = view[written:]
        target_offset += written
    return len(data)


def new_temp_file(directory: Path, name: str) -> BinaryIO:
    """Create DIRECTORY/NAME, which must not exist yet, and open it for writing."""
    fd = os.open(
        directory / name,
        os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
        0o600,
    )
    return os.fdopen(fd, "wb", buffering=CHUNK_SIZE)
