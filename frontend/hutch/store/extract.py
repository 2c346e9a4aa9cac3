"""Extract one layer tar into a directory through file descriptors, in overlayfs form.

The layer tar is a private blob file of the store. tarfile only parses its
headers, and file data is copied from the blob by the kernel
(copy_file_range), keeping holes. Every member path is walked component by
component from the layer directory's fd with O_NOFOLLOW|O_DIRECTORY, so a
symlink planted by an earlier member is never followed. The fds of the
directories walked are kept for later members, which is safe because no
member can remove or replace a directory. Every file is created with
O_EXCL|O_NOFOLLOW, and metadata is set on fds (or, for fifos and device
nodes, on an O_PATH fd through /proc/self/fd). Hard links may only name an
entry already extracted from the same tar. Whiteouts (".wh.NAME",
".wh..wh..opq") become overlayfs whiteouts: a 0:0 character device, and the
xattr user.overlay.opaque=y on the directory.
"""

from __future__ import annotations

import base64
import errno
import logging
import os
import stat
import tarfile
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

from hutch.errors import HutchError
from hutch.store.blobs import copy_range
from hutch.store.layout import CHUNK_SIZE, Limits, member_components, quoted

logger = logging.getLogger(__name__)

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
OPAQUE_XATTR = "user.overlay.opaque"
# overlayfs reads these itself (with the userxattr mount option, the user.* ones),
# so a layer must not be able to set them: redirect and metacopy change lookups.
RESERVED_XATTR_PREFIXES = ("user.overlay.", "trusted.overlay.")

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# Directory fds kept open during one extraction: well under the usual soft limit
# of 1024 open files. A directory pushed out of the cache costs one openat later.
MAX_CACHED_DIRECTORIES = 256
# Header reads of a seekable tar. tarfile seeks past file data, so a large buffer
# would only read data that is never used.
HEADER_BUFFER_SIZE = 64 << 10
_EXTENDED_HEADER_TYPES = (
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
)


def open_tar_stream(
    source: BinaryIO, limits: Limits, *, seekable: bool = False
) -> tarfile.TarFile:
    """Open SOURCE as a tar with capped extended headers.

    Without SEEKABLE the tar is read front to back, as from a pipe. With it,
    tarfile seeks over file data, and each member's offset_data gives where its
    data starts in SOURCE.
    """

    class CappedTarInfo(tarfile.TarInfo):
        # tarfile reads a PAX or GNU long-name header into memory whole, so a
        # header claiming gigabytes would exhaust memory before any other check.
        def _proc_member(self, tar: tarfile.TarFile) -> tarfile.TarInfo:
            if (
                self.type in _EXTENDED_HEADER_TYPES
                and self.size > limits.max_extended_header_bytes
            ):
                raise tarfile.HeaderError(
                    f"extended header of {self.size} bytes is larger than the limit "
                    f"of {limits.max_extended_header_bytes}"
                )
            member: tarfile.TarInfo = super()._proc_member(tar)  # type: ignore[misc]
            return member

    try:
        return tarfile.open(
            fileobj=source,
            mode="r:" if seekable else "r|",
            tarinfo=CappedTarInfo,
            bufsize=CHUNK_SIZE,
            encoding="utf-8",
            errors="surrogateescape",
        )
    except tarfile.TarError as error:
        raise HutchError(f"not a valid tar archive: {error}") from None


def iterate_members(tar: tarfile.TarFile, subject: str) -> Iterator[tarfile.TarInfo]:
    """Yield the members of a tar stream, turning tarfile's errors into HutchError."""
    while True:
        try:
            member = tar.next()
        except (tarfile.TarError, EOFError) as error:
            raise HutchError(f"invalid tar data in {subject}: {error}") from None
        if member is None:
            return
        # tarfile keeps every member it parsed, which grows with the entry count.
        tar.members.clear()  # type: ignore[attr-defined]
        yield member


def member_xattrs(member: tarfile.TarInfo) -> Iterator[tuple[str, bytes]]:
    """Yield the (name, value) xattrs that PAX headers record for MEMBER."""
    for key, value in member.pax_headers.items():
        if key.startswith("SCHILY.xattr."):
            yield key[len("SCHILY.xattr.") :], value.encode("utf-8", "surrogateescape")
        elif key.startswith("LIBARCHIVE.xattr."):
            name = urllib.parse.unquote(key[len("LIBARCHIVE.xattr.") :])
            try:
                yield name, base64.b64decode(value + "=" * (-len(value) % 4))
            except ValueError:
                continue


@dataclass
class _DirectoryMetadata:
    mode: int
    uid: int
    gid: int
    mtime_ns: int


@dataclass
class ExtractResult:
    """The entry count and file bytes of one extraction."""

    entries: int
    file_bytes: int


class LayerExtractor:
    """Extract one layer tar into an empty directory that the caller created."""

    def __init__(
        self,
        destination: Path,
        limits: Limits,
        subject: str,
        warned: set[str] | None = None,
    ) -> None:
        self.destination = destination
        self.limits = limits
        self.subject = subject
        self.privileged = os.geteuid() == 0
        self._entries = 0
        self._file_bytes = 0
        self._inodes: dict[str, tuple[int, int]] = {}  # extracted non-directories
        # Relative directory path -> fd, oldest first; "" is the layer root.
        self._directory_fds: dict[str, int] = {}
        self._data_fd = -1
        self._own_ids = (os.geteuid(), os.getegid())
        # The layer root gets 0755 unless the tar has a "." entry, because overlayfs
        # shows the top layer's root mode as the container's "/".
        self._directories: dict[str, _DirectoryMetadata] = {
            "": _DirectoryMetadata(0o755, 0, 0, 0)
        }
        # Keys of warnings already logged. Callers share one set across the layers of
        # an operation, so each warning appears once per import or load.
        self._warned = warned if warned is not None else set()

    # -- public entry point --------------------------------------------------

    def extract(self, tar: tarfile.TarFile, data_fd: int) -> ExtractResult:
        """Extract every member of TAR, or raise HutchError naming the first bad member.

        TAR must be opened seekable on the file DATA_FD, which file data is copied from.
        """
        self._data_fd = data_fd
        self._data_size = os.fstat(data_fd).st_size
        self._root_fd = os.open(self.destination, _DIR_FLAGS)
        self._directory_fds[""] = self._root_fd
        try:
            for member in iterate_members(tar, self.subject):
                self._entries += 1
                if self._entries > self.limits.max_entries:
                    raise HutchError(
                        f"{self.subject} has more than {self.limits.max_entries} entries"
                    )
                try:
                    self._extract_member(tar, member)
                except tarfile.TarError as error:
                    raise self._error(
                        member.name, f"the tar data is truncated or corrupt ({error})"
                    ) from None
                except OSError as error:
                    raise self._error(
                        member.name, f"cannot be written: {error.strerror}"
                    ) from None
            try:
                self._apply_directory_metadata()
            except OSError as error:
                raise HutchError(
                    f"{self.subject}: cannot set the mode or owner of a directory: "
                    f"{error.strerror}, so nothing was stored"
                ) from None
        finally:
            for fd in self._directory_fds.values():
                os.close(fd)
            self._directory_fds.clear()
        return ExtractResult(self._entries, self._file_bytes)

    # -- members -------------------------------------------------------------

    def _extract_member(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        try:
            parts = member_components(member.name, self.limits)
        except ValueError as error:
            raise self._error(member.name, f"has an unsafe name: {error}") from None
        if not parts:
            if not member.isdir():
                raise self._error(
                    member.name, "would replace the layer's root directory"
                )
            self._directories[""] = _DirectoryMetadata(
                member.mode & 0o7777, member.uid, member.gid, _mtime_ns(member)
            )
            return
        if parts[-1].startswith(WHITEOUT_PREFIX):
            self._extract_whiteout(member, parts)
            return
        if member.islnk():
            self._extract_hard_link(member, parts)
            return
        parent_fd = self._open_parent(parts, member.name)
        if member.isreg():
            self._extract_file(parent_fd, parts, member)
            return
        if member.isdir():
            self._extract_directory(parent_fd, parts, member)
            return
        self._remove_existing(parent_fd, parts, member.name)
        if member.issym():
            self._extract_symlink(parent_fd, parts, member)
        elif member.isfifo():
            os.mkfifo(parts[-1], 0o600, dir_fd=parent_fd)
            self._set_path_metadata(parent_fd, parts, member, stat.S_IFIFO)
        elif member.ischr() or member.isblk():
            self._extract_device(parent_fd, parts, member)
        else:
            raise self._error(
                member.name, f"has an unsupported tar type {member.type!r}"
            )

    def _extract_directory(
        self, parent_fd: int, parts: list[str], member: tarfile.TarInfo
    ) -> None:
        name = parts[-1]
        try:
            info = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
        except FileNotFoundError:
            info = None
        if info is not None and not stat.S_ISDIR(info.st_mode):
            os.unlink(name, dir_fd=parent_fd)
            self._inodes.pop("/".join(parts), None)
            info = None
        if info is None:
            # Owner-writable until the end, when the member's own mode is applied.
            os.mkdir(name, 0o700, dir_fd=parent_fd)
        if any(member_xattrs(member)):
            self._set_xattrs(self._open_parent([*parts, ""], member.name), member)
        if not self.privileged:
            self._note_owner(member)
        self._directories["/".join(parts)] = _DirectoryMetadata(
            member.mode & 0o7777, member.uid, member.gid, _mtime_ns(member)
        )

    def _extract_file(
        self, parent_fd: int, parts: list[str], member: tarfile.TarInfo
    ) -> None:
        name = parts[-1]
        try:
            fd = os.open(name, _NEW_FILE_FLAGS, 0o600, dir_fd=parent_fd)
        except FileExistsError:
            self._remove_existing(parent_fd, parts, member.name)
            fd = os.open(name, _NEW_FILE_FLAGS, 0o600, dir_fd=parent_fd)
        try:
            self._copy_file_data(fd, member)
            if self.privileged and (member.uid, member.gid) != self._own_ids:
                os.fchown(fd, member.uid, member.gid)
            elif not self.privileged:
                self._note_owner(member)
            os.fchmod(fd, member.mode & 0o7777)
            if member.pax_headers:
                self._set_xattrs(fd, member)
            mtime = _mtime_ns(member)
            os.utime(fd, ns=(mtime, mtime))
            self._remember_inode(parts, os.fstat(fd))
        finally:
            os.close(fd)

    def _copy_file_data(self, fd: int, member: tarfile.TarInfo) -> None:
        """Copy MEMBER's data from the tar to FD, leaving the holes of a sparse member."""
        # A sparse member stores only its data blocks, one after the other, and its
        # map gives where each goes in the file of member.size bytes.
        # typeshed calls sparse bytes, but tarfile sets a list of (offset, length).
        sparse = cast("list[tuple[int, int]] | None", member.sparse)
        blocks = sparse if sparse is not None else [(0, member.size)]
        stored = sum(length for _, length in blocks)
        self._file_bytes += stored
        if self._file_bytes > self.limits.max_layer_bytes:
            raise HutchError(
                f"{self.subject} is larger than the limit of "
                f"{self.limits.max_layer_bytes} bytes"
            )
        source = member.offset_data
        if source + stored > self._data_size:
            raise self._error(member.name, "is truncated")
        for offset, length in blocks:
            if offset < 0 or length < 0 or offset + length > member.size:
                raise self._error(member.name, "has an invalid sparse map")
            try:
                copy_range(self._data_fd, source, fd, offset, length)
            except HutchError:
                raise self._error(member.name, "is truncated") from None
            source += length
        if sparse is not None or member.size >= CHUNK_SIZE:
            os.ftruncate(fd, member.size)

    def _extract_symlink(
        self, parent_fd: int, parts: list[str], member: tarfile.TarInfo
    ) -> None:
        if not member.linkname:
            raise self._error(member.name, "is a symlink with an empty target")
        if len(os.fsencode(member.linkname)) > self.limits.max_name_length:
            raise self._error(member.name, "has a symlink target that is too long")
        name = parts[-1]
        os.symlink(member.linkname, name, dir_fd=parent_fd)
        if self.privileged:
            os.chown(
                name, member.uid, member.gid, dir_fd=parent_fd, follow_symlinks=False
            )
        else:
            self._note_owner(member)
        mtime = _mtime_ns(member)
        os.utime(name, ns=(mtime, mtime), dir_fd=parent_fd, follow_symlinks=False)
        self._remember_inode(
            parts, os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
        )

    def _extract_hard_link(self, member: tarfile.TarInfo, parts: list[str]) -> None:
        try:
            target_parts = member_components(member.linkname, self.limits)
        except ValueError as error:
            raise self._error(
                member.name, f"is a hard link with an unsafe target: {error}"
            ) from None
        target_key = "/".join(target_parts)
        if target_key not in self._inodes:
            raise self._error(
                member.name,
                f"is a hard link to {quoted(member.linkname)}, which is not a file extracted earlier "
                "from this layer",
            )
        if target_parts == parts:
            return
        # A duplicate, because opening the link's parent may push the target's parent
        # out of the directory cache, which closes its fd.
        target_parent = os.dup(
            self._open_parent(target_parts, member.name, create=False)
        )
        try:
            info = os.stat(
                target_parts[-1], dir_fd=target_parent, follow_symlinks=False
            )
            if (info.st_dev, info.st_ino) != self._inodes[target_key]:
                raise self._error(
                    member.name,
                    f"is a hard link to {quoted(member.linkname)}, which was replaced",
                )
            parent_fd = self._open_parent(parts, member.name)
            self._remove_existing(parent_fd, parts, member.name)
            os.link(
                target_parts[-1],
                parts[-1],
                src_dir_fd=target_parent,
                dst_dir_fd=parent_fd,
                follow_symlinks=False,
            )
        finally:
            os.close(target_parent)
        self._inodes["/".join(parts)] = self._inodes[target_key]

    def _extract_device(
        self, parent_fd: int, parts: list[str], member: tarfile.TarInfo
    ) -> None:
        if not self.privileged:
            self._warn_once(
                "devices",
                "%s: skipped device nodes, which only root can create",
                self.subject,
            )
            return
        kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
        try:
            os.mknod(
                parts[-1],
                kind | 0o600,
                os.makedev(member.devmajor, member.devminor),
                dir_fd=parent_fd,
            )
        except PermissionError:
            self._warn_once(
                "devices",
                "%s: skipped device nodes: mknod is not permitted here",
                self.subject,
            )
            return
        self._set_path_metadata(parent_fd, parts, member, kind)

    def _extract_whiteout(self, member: tarfile.TarInfo, parts: list[str]) -> None:
        name = parts[-1]
        if name == OPAQUE_MARKER:
            os.setxattr(self._open_parent(parts, member.name), OPAQUE_XATTR, b"y")
            return
        if name.startswith(WHITEOUT_PREFIX + WHITEOUT_PREFIX):
            return  # AUFS bookkeeping such as .wh..wh.plnk, meaningless to overlayfs
        hidden = name[len(WHITEOUT_PREFIX) :]
        if hidden in ("", ".", ".."):
            raise self._error(member.name, "is a whiteout of an invalid name")
        hidden_parts = [*parts[:-1], hidden]
        parent_fd = self._open_parent(parts, member.name)
        self._remove_existing(parent_fd, hidden_parts, member.name)
        os.mknod(hidden, stat.S_IFCHR | 0o000, os.makedev(0, 0), dir_fd=parent_fd)

    # -- path walking --------------------------------------------------------

    def _open_parent(
        self, parts: list[str], member_name: str, *, create: bool = True
    ) -> int:
        """Return an fd of the directory that contains PARTS[-1], creating missing ones.

        The fd is borrowed from the directory cache, so the caller must not close it.
        """
        key = "/".join(parts[:-1])
        fd = self._directory_fds.get(key)
        if fd is not None:
            return fd
        parent_fd = self._open_parent(parts[:-1], member_name, create=create)
        part = parts[-2]
        try:
            fd = os.open(part, _DIR_FLAGS, dir_fd=parent_fd)
        except FileNotFoundError:
            if not create:
                raise self._error(
                    member_name,
                    f"refers to {'/'.join(parts)}, which does not exist",
                ) from None
            os.mkdir(part, 0o700, dir_fd=parent_fd)
            # Parents a tar leaves out get Docker's 0755, owned by root.
            self._directories.setdefault(key, _DirectoryMetadata(0o755, 0, 0, 0))
            fd = os.open(part, _DIR_FLAGS, dir_fd=parent_fd)
        except OSError as error:
            if error.errno in (errno.ELOOP, errno.ENOTDIR):
                raise self._error(
                    member_name,
                    f"lies under {key}, which is a symlink or not a directory",
                ) from None
            raise
        if len(self._directory_fds) >= MAX_CACHED_DIRECTORIES:
            self._forget_oldest_directory()
        self._directory_fds[key] = fd
        return fd

    def _forget_oldest_directory(self) -> None:
        # Python 3.7+ dicts keep insertion order, so the first key is the oldest.
        # The root stays, because every walk starts from it.
        for key in self._directory_fds:
            if key:
                os.close(self._directory_fds.pop(key))
                return

    def _remove_existing(
        self, parent_fd: int, parts: list[str], member_name: str
    ) -> None:
        """Unlink a non-directory at PARTS so a later member replaces it, as tar does."""
        try:
            info = os.stat(parts[-1], dir_fd=parent_fd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(info.st_mode):
            raise self._error(
                member_name,
                f"would replace the directory {'/'.join(parts)} with a non-directory",
            )
        os.unlink(parts[-1], dir_fd=parent_fd)
        self._inodes.pop("/".join(parts), None)

    # -- metadata ------------------------------------------------------------

    def _set_path_metadata(
        self, parent_fd: int, parts: list[str], member: tarfile.TarInfo, kind: int
    ) -> None:
        # fchmod and fchown do not work on O_PATH fds, but the /proc/self/fd link of one
        # names exactly the inode it was opened on, so nothing is re-resolved.
        fd = os.open(
            parts[-1], os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent_fd
        )
        try:
            info = os.fstat(fd)
            if stat.S_IFMT(info.st_mode) != kind:
                raise self._error(member.name, "changed type while it was extracted")
            proc_path = f"/proc/self/fd/{fd}"
            if self.privileged:
                os.chown(proc_path, member.uid, member.gid)
            else:
                self._note_owner(member)
            os.chmod(proc_path, member.mode & 0o7777)
            mtime = _mtime_ns(member)
            os.utime(proc_path, ns=(mtime, mtime))
            self._remember_inode(parts, info)
        finally:
            os.close(fd)

    def _set_owner(self, member: tarfile.TarInfo, *, fd: int) -> None:
        if self.privileged:
            os.fchown(fd, member.uid, member.gid)
        else:
            self._note_owner(member)

    def _note_owner(self, member: tarfile.TarInfo) -> None:
        if member.uid != 0 or member.gid != 0:
            self._warn_once(
                "owners",
                "%s: files owned by other users belong to you now: "
                "without root, owners are flattened",
                self.subject,
            )

    def _set_xattrs(self, fd: int, member: tarfile.TarInfo) -> None:
        for name, value in member_xattrs(member):
            if name.startswith(RESERVED_XATTR_PREFIXES):
                self._warn_once(
                    "overlay-xattr",
                    "%s: ignored overlayfs xattrs such as %s",
                    self.subject,
                    name,
                )
                continue
            try:
                os.setxattr(fd, name, value)
            except OSError as error:
                if error.errno not in (
                    errno.EPERM,
                    errno.EACCES,
                    errno.ENOTSUP,
                    errno.EINVAL,
                ):
                    raise
                namespace = name.partition(".")[0]
                self._warn_once(
                    f"xattr-{namespace}",
                    "%s: dropped %s.* xattrs such as %s: %s",
                    self.subject,
                    namespace,
                    name,
                    error.strerror,
                )

    def _apply_directory_metadata(self) -> None:
        # Deepest first: creating or changing a child updates its parent's mtime,
        # and a parent made read-only must not block its children any more.
        for path in sorted(
            self._directories, key=lambda item: item.count("/"), reverse=True
        ):
            metadata = self._directories[path]
            fd = self._open_parent(
                [*path.split("/"), ""] if path else [""], path, create=False
            )
            if self.privileged and (metadata.uid, metadata.gid) != self._own_ids:
                os.fchown(fd, metadata.uid, metadata.gid)
            os.fchmod(fd, metadata.mode)
            os.utime(fd, ns=(metadata.mtime_ns, metadata.mtime_ns))

    def _remember_inode(self, parts: list[str], info: os.stat_result) -> None:
        self._inodes["/".join(parts)] = (info.st_dev, info.st_ino)

    def _warn_once(self, key: str, message: str, *args: object) -> None:
        if key not in self._warned:
            self._warned.add(key)
            logger.warning(message, *args)

    def _error(self, member_name: str, problem: str) -> HutchError:
        return HutchError(
            f"{self.subject}: member {quoted(member_name)} {problem}, so nothing was stored"
        )


def extract_layer(
    blob: Path,
    destination: Path,
    limits: Limits,
    subject: str,
    warned: set[str] | None = None,
) -> ExtractResult:
    """Extract the layer tar BLOB, a file of the store, into the empty DESTINATION."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    # Copying data moves the data fd's offset (lseek with SEEK_DATA), so the header
    # reader needs an open file description of its own.
    with open(os.open(blob, flags), "rb", buffering=HEADER_BUFFER_SIZE) as headers:
        data_fd = os.open(blob, flags)
        try:
            tar = open_tar_stream(headers, limits, seekable=True)
            extractor = LayerExtractor(destination, limits, subject, warned)
            return extractor.extract(tar, data_fd)
        finally:
            os.close(data_fd)


def _mtime_ns(member: tarfile.TarInfo) -> int:
    return int(member.mtime * 1_000_000_000)
