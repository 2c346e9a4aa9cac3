"""Fast tar stream plumbing: a buffered tar writer and a forward-only reader.

tarfile's own stream classes ("w|" and "r|") append to and slice one bytes
buffer for every block, which costs a copy of up to a whole buffer per call.
TarOutput keeps tarfile for headers only, collects them in a bytearray, and
sends file data with sendfile(2) when the output is a file or a pipe.
ForwardReader lets tarfile's seeking mode ("r:") read a pipe, as long as it
only seeks forward, which reading members in order does.
"""

from __future__ import annotations

import io
import os
import stat
import struct
import tarfile
from typing import BinaryIO, Literal

from hutch.store.layout import CHUNK_SIZE

BLOCK_SIZE = tarfile.BLOCKSIZE
RECORD_SIZE = tarfile.RECORDSIZE
# Files smaller than this are read into the buffer: a sendfile call per small file
# would flush the buffer once per file.
SENDFILE_MIN_BYTES = 64 << 10


class OutputError(Exception):
    """An OSError raised while writing the output, kept apart from read errors."""


class TarOutput:
    """Write tar members to OUT: headers made by tarfile, data copied by the kernel."""

    def __init__(
        self, out: BinaryIO, *, tar_format: Literal[0, 1, 2], encoding: str = "utf-8"
    ) -> None:
        self._out = out
        self._format = tar_format
        self._encoding = encoding
        self._buffer = bytearray()
        self._out_fd = _sendfile_target(out)
        self._position = 0  # bytes written to OUT so far

    def add(self, member: tarfile.TarInfo) -> None:
        """Write the header of MEMBER, which must have no data or get it from add_data."""
        header = ustar_header(member) if self._format == tarfile.PAX_FORMAT else None
        if header is None:
            header = member.tobuf(self._format, self._encoding, "surrogateescape")
        self._buffer += header
        if len(self._buffer) >= CHUNK_SIZE:
            self._flush()

    def add_bytes(self, member: tarfile.TarInfo, data: bytes) -> None:
        member.size = len(data)
        self.add(member)
        self._buffer += data
        self._pad(len(data))

    def add_data(self, member: tarfile.TarInfo, fd: int) -> None:
        """Write MEMBER and member.size bytes read from the start of the file FD."""
        self.add(member)
        size = member.size
        if self._out_fd is not None and size >= SENDFILE_MIN_BYTES:
            self._flush()
            self._sendfile(fd, size)
        else:
            self._read_into_buffer(fd, size)
        self._pad(size)

    def close(self) -> None:
        """Write the end-of-archive blocks, pad to a whole record, and flush."""
        self._buffer += bytes(2 * BLOCK_SIZE)
        self._pad_to_record()
        self._flush()
        try:
            self._out.flush()
        except OSError as error:
            raise OutputError() from error

    # -- internals -------------------------------------------------------------

    def _read_into_buffer(self, fd: int, size: int) -> None:
        offset = 0
        while offset < size:
            data = os.pread(fd, min(size - offset, CHUNK_SIZE), offset)
            if not data:
                raise OSError(0, "the file became shorter while it was read")
            self._buffer += data
            offset += len(data)
            if len(self._buffer) >= CHUNK_SIZE:
                self._flush()

    def _sendfile(self, fd: int, size: int) -> None:
        assert self._out_fd is not None
        offset = 0
        while offset < size:
            try:
                sent = os.sendfile(self._out_fd, fd, offset, size - offset)
            except OSError as error:
                if _is_input_error(fd, offset):
                    raise
                raise OutputError() from error
            if sent == 0:
                raise OSError(0, "the file became shorter while it was read")
            offset += sent
        self._position += size

    def _pad(self, size: int) -> None:
        remainder = size % BLOCK_SIZE
        if remainder:
            self._buffer += bytes(BLOCK_SIZE - remainder)

    def _pad_to_record(self) -> None:
        total = self._position + len(self._buffer)
        remainder = total % RECORD_SIZE
        if remainder:
            self._buffer += bytes(RECORD_SIZE - remainder)

    def _flush(self) -> None:
        if not self._buffer:
            return
        try:
            self._out.write(self._buffer)
            if self._out_fd is not None:
                self._out.flush()
        except OSError as error:
            raise OutputError() from error
        self._position += len(self._buffer)
        self._buffer = bytearray()


# The ustar header (POSIX.1-1988, as extended by POSIX.1-2001 pax): name, mode, uid,
# gid, size, mtime, checksum, type, linkname, magic and version, uname, gname,
# devmajor, devminor, prefix, and padding to 512 bytes.
_USTAR = struct.Struct("100s8s8s8s12s12s8s1s100s8s32s32s8s8s155s12s")
_MAX_ID = 8**7  # 7 octal digits
_MAX_SIZE = 8**11  # 11 octal digits


def ustar_header(member: tarfile.TarInfo) -> bytes | None:
    """Return MEMBER's ustar header block, or None when it needs pax extended records.

    tarfile's tobuf gives the same fields, but builds a pax header dictionary and
    a copy of the member first, which costs more than the rest of an export.
    """
    if member.pax_headers:
        return None
    name = member.name
    if member.type == tarfile.DIRTYPE and not name.endswith("/"):
        name += "/"
    texts = (name, member.linkname, member.uname, member.gname)
    if not all(text.isascii() for text in texts):
        return None
    name_bytes, link_bytes, uname, gname = (text.encode("ascii") for text in texts)
    if len(name_bytes) > 100 or len(link_bytes) > 100:
        return None
    if len(uname) > 32 or len(gname) > 32:
        return None
    ids = (member.uid, member.gid, member.devmajor, member.devminor)
    octal_fields = (member.size, member.mtime)
    if not all(isinstance(value, int) and 0 <= value < _MAX_ID for value in ids):
        return None
    if not all(
        isinstance(value, int) and 0 <= value < _MAX_SIZE for value in octal_fields
    ):
        return None
    device = member.type in (tarfile.CHRTYPE, tarfile.BLKTYPE)
    header = bytearray(
        _USTAR.pack(
            name_bytes,
            b"%07o\0" % (member.mode & 0o7777),
            b"%07o\0" % member.uid,
            b"%07o\0" % member.gid,
            b"%011o\0" % member.size,
            b"%011o\0" % int(member.mtime),
            b" " * 8,  # the checksum counts its own field as spaces
            member.type,
            link_bytes,
            tarfile.POSIX_MAGIC,
            uname,
            gname,
            b"%07o\0" % member.devmajor if device else b"",
            b"%07o\0" % member.devminor if device else b"",
            b"",
            b"",
        )
    )
    header[148:156] = b"%06o\0 " % sum(header)
    return bytes(header)


def _sendfile_target(out: BinaryIO) -> int | None:
    """Return OUT's fd when sendfile can write to it (a file or pipe), else None."""
    try:
        fd = out.fileno()
        mode = os.fstat(fd).st_mode
    except (OSError, AttributeError, ValueError, io.UnsupportedOperation):
        return None
    if stat.S_ISREG(mode) or stat.S_ISFIFO(mode) or stat.S_ISCHR(mode):
        return fd
    return None


def _is_input_error(fd: int, offset: int) -> bool:
    """Return whether reading FD at OFFSET fails, to tell which side a sendfile error was."""
    try:
        os.pread(fd, 1, offset)
    except OSError:
        return True
    return False


class ForwardReader:
    """A reader that lets tarfile seek, but only forward, on a stream such as a pipe.

    Seeking forward reads and drops the bytes in between, unless BASE is given:
    then SOURCE is a regular file whose tar starts at offset BASE, and seeking
    moves SOURCE. Seeking backwards raises io.UnsupportedOperation, which tarfile
    does not do when members are read in order.
    """

    def __init__(self, source: BinaryIO, base: int | None = None) -> None:
        self._source = source
        self._base = base
        self._position = 0

    def tell(self) -> int:
        return self._position

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_CUR:
            offset += self._position
        elif whence != os.SEEK_SET:
            raise io.UnsupportedOperation("a tar stream can only seek from its start")
        if offset < self._position:
            raise io.UnsupportedOperation("a tar stream cannot seek backwards")
        if self._base is not None:
            self._source.seek(self._base + offset)
            self._position = offset
            return offset
        buffer = bytearray(min(CHUNK_SIZE, offset - self._position))
        view = memoryview(buffer)
        while self._position < offset:
            count = self.readinto(view[: offset - self._position])
            if not count:
                break  # tarfile notices the end when it reads next
        return self._position

    def read(self, size: int = -1) -> bytes:
        """Return SIZE bytes, fewer only at the end: tarfile takes a short read as the end."""
        if size < 0:
            size = CHUNK_SIZE
        data = self._source.read(size)
        while data and len(data) < size:
            more = self._source.read(size - len(data))
            if not more:
                break
            data += more
        self._position += len(data)
        return data

    def readinto(self, buffer: memoryview | bytearray) -> int:
        readinto = getattr(self._source, "readinto", None)
        if readinto is not None:
            count: int = readinto(buffer)
        else:
            data = self._source.read(len(buffer))
            count = len(data)
            buffer[:count] = data
        self._position += count
        return count


class RangeReader:
    """A reader of the next SIZE bytes of a ForwardReader."""

    def __init__(self, source: ForwardReader, size: int) -> None:
        self._source = source
        self._left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int:
        if self._left <= 0:
            return 0
        view = memoryview(buffer)[: self._left]
        count = self._source.readinto(view)
        self._left -= count
        return count

    def read(self, size: int = -1) -> bytes:
        buffer = bytearray(min(self._left, CHUNK_SIZE) if size < 0 else size)
        return bytes(buffer[: self.readinto(buffer)])
