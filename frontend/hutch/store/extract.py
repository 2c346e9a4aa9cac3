"""Extract one layer tar into a directory through file descriptors, in overlayfs form.

tarfile only parses headers here. Every member path is walked component by
component from the layer directory's fd with O_NOFOLLOW|O_DIRECTORY, so a
symlink planted by an earlier member is never followed; every file is created
with O_EXCL|O_NOFOLLOW, and metadata is set on fds (or, for fifos and device
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
from typing import BinaryIO

from hutch.errors import HutchError
from hutch.store.layout import CHUNK_SIZE, Limits, member_components

logger = logging.getLogger(__name__)

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
OPAQUE_XATTR = "user.overlay.opaque"
# overlayfs reads these itself (with the userxattr mount option, the user.* ones),
# so a layer must not be able to set them: redirect and metacopy change lookups.
RESERVED_XATTR_PREFIXES = ("user.overlay.", "trusted.overlay.")

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_EXTENDED_HEADER_TYPES = (
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
)


def open_tar_stream(source: BinaryIO, limits: Limits) -> tarfile.TarFile:
    """Open SOURCE as a tar stream read front to back, with capped extended headers."""

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
            mode="r|",
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
        # The layer root gets 0755 unless the tar has a "." entry, because overlayfs
        # shows the top layer's root mode as the container's "/".
        self._directories: dict[str, _DirectoryMetadata] = {
            "": _DirectoryMetadata(0o755, 0, 0, 0)
        }
        # Keys of warnings already logged. Callers share one set across the layers of
        # an operation, so each warning appears once per import or load.
        self._warned = warned if warned is not None else set()

    # -- public entry point --------------------------------------------------

    def extract(self, tar: tarfile.TarFile) -> ExtractResult:
        """Extract every member of TAR, or raise HutchError naming the first bad member."""
        self._root_fd = os.open(self.destination, _DIR_FLAGS)
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
            os.close(self._root_fd)
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
        if member.issparse():
            raise self._error(
                member.name, "is a sparse file, which hutch does not support"
            )
        if parts[-1].startswith(WHITEOUT_PREFIX):
            self._extract_whiteout(member, parts)
            return
        if member.islnk():
            self._extract_hard_link(member, parts)
            return
        parent_fd = self._open_parent(parts, member.name)
        try:
            if member.isdir():
                self._extract_directory(parent_fd, parts, member)
                return
            self._remove_existing(parent_fd, parts, member.name)
            if member.isreg():
                self._extract_file(tar, parent_fd, parts, member)
            elif member.issym():
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
        finally:
            os.close(parent_fd)

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
        fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
        try:
            self._set_xattrs(fd, member)
        finally:
            os.close(fd)
        if not self.privileged:
            self._note_owner(member)
        self._directories["/".join(parts)] = _DirectoryMetadata(
            member.mode & 0o7777, member.uid, member.gid, _mtime_ns(member)
        )

    def _extract_file(
        self,
        tar: tarfile.TarFile,
        parent_fd: int,
        parts: list[str],
        member: tarfile.TarInfo,
    ) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(parts[-1], flags, 0o600, dir_fd=parent_fd)
        try:
            data = tar.extractfile(member)
            written = 0
            while data is not None and (chunk := data.read(CHUNK_SIZE)):
                written += len(chunk)
                self._file_bytes += len(chunk)
                if self._file_bytes > self.limits.max_layer_bytes:
                    raise HutchError(
                        f"{self.subject} is larger than the limit of "
                        f"{self.limits.max_layer_bytes} bytes"
                    )
                _write_all(fd, chunk)
            if written != member.size:
                raise self._error(
                    member.name, f"is truncated: {written} of {member.size} bytes"
                )
            self._set_owner(member, fd=fd)
            os.fchmod(fd, member.mode & 0o7777)
            self._set_xattrs(fd, member)
            mtime = _mtime_ns(member)
            os.utime(fd, ns=(mtime, mtime))
            self._remember_inode(parts, os.fstat(fd))
        finally:
            os.close(fd)

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
                f"is a hard link to {member.linkname!r}, which is not a file extracted earlier "
                "from this layer",
            )
        if target_parts == parts:
            return
        target_parent = self._open_parent(target_parts, member.name, create=False)
        try:
            info = os.stat(
                target_parts[-1], dir_fd=target_parent, follow_symlinks=False
            )
            if (info.st_dev, info.st_ino) != self._inodes[target_key]:
                raise self._error(
                    member.name,
                    f"is a hard link to {member.linkname!r}, which was replaced",
                )
            parent_fd = self._open_parent(parts, member.name)
            try:
                self._remove_existing(parent_fd, parts, member.name)
                os.link(
                    target_parts[-1],
                    parts[-1],
                    src_dir_fd=target_parent,
                    dst_dir_fd=parent_fd,
                    follow_symlinks=False,
                )
            finally:
                os.close(parent_fd)
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
            directory_fd = self._open_parent(parts, member.name)
            try:
                os.setxattr(directory_fd, OPAQUE_XATTR, b"y")
            finally:
                os.close(directory_fd)
            return
        if name.startswith(WHITEOUT_PREFIX + WHITEOUT_PREFIX):
            return  # AUFS bookkeeping such as .wh..wh.plnk, meaningless to overlayfs
        hidden = name[len(WHITEOUT_PREFIX) :]
        if hidden in ("", ".", ".."):
            raise self._error(member.name, "is a whiteout of an invalid name")
        hidden_parts = [*parts[:-1], hidden]
        parent_fd = self._open_parent(parts, member.name)
        try:
            self._remove_existing(parent_fd, hidden_parts, member.name)
            os.mknod(hidden, stat.S_IFCHR | 0o000, os.makedev(0, 0), dir_fd=parent_fd)
        finally:
            os.close(parent_fd)

    # -- path walking --------------------------------------------------------

    def _open_parent(
        self, parts: list[str], member_name: str, *, create: bool = True
    ) -> int:
        """Return an fd of the directory that contains PARTS[-1], creating missing ones."""
        fd = os.dup(self._root_fd)
        try:
            for depth, part in enumerate(parts[:-1], start=1):
                try:
                    child = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise self._error(
                            member_name,
                            f"refers to {'/'.join(parts)}, which does not exist",
                        ) from None
                    os.mkdir(part, 0o700, dir_fd=fd)
                    # Parents a tar leaves out get Docker's 0755, owned by root.
                    self._directories.setdefault(
                        "/".join(parts[:depth]), _DirectoryMetadata(0o755, 0, 0, 0)
                    )
                    child = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except OSError as error:
                    if error.errno in (errno.ELOOP, errno.ENOTDIR):
                        raise self._error(
                            member_name,
                            f"lies under {'/'.join(parts[:depth])}, which is a symlink "
                            "or not a directory",
                        ) from None
                    raise
                os.close(fd)
                fd = child
            return fd
        except BaseException:
            os.close(fd)
            raise

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
            fd = self._open_directory(path)
            try:
                if self.privileged:
                    os.fchown(fd, metadata.uid, metadata.gid)
                os.fchmod(fd, metadata.mode)
                os.utime(fd, ns=(metadata.mtime_ns, metadata.mtime_ns))
            finally:
                os.close(fd)

    def _open_directory(self, path: str) -> int:
        if not path:
            return os.dup(self._root_fd)
        parts = path.split("/")
        parent_fd = self._open_parent(parts, path, create=False)
        try:
            return os.open(parts[-1], _DIR_FLAGS, dir_fd=parent_fd)
        finally:
            os.close(parent_fd)

    def _remember_inode(self, parts: list[str], info: os.stat_result) -> None:
        self._inodes["/".join(parts)] = (info.st_dev, info.st_ino)

    def _warn_once(self, key: str, message: str, *args: object) -> None:
        if key not in self._warned:
            self._warned.add(key)
            logger.warning(message, *args)

    def _error(self, member_name: str, problem: str) -> HutchError:
        return HutchError(
            f"{self.subject}: member {member_name!r} {problem}, so nothing was stored"
        )


def extract_layer(
    source: BinaryIO,
    destination: Path,
    limits: Limits,
    subject: str,
    warned: set[str] | None = None,
) -> ExtractResult:
    """Extract the layer tar read from SOURCE into the empty directory DESTINATION."""
    tar = open_tar_stream(source, limits)
    return LayerExtractor(destination, limits, subject, warned).extract(tar)


def _mtime_ns(member: tarfile.TarInfo) -> int:
    return int(member.mtime * 1_000_000_000)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
