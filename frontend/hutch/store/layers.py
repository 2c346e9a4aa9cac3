"""Tar streams made from layer directories in overlayfs form.

write_diff_tar turns a container's upper directory into a layer tar: an
overlayfs whiteout (a 0:0 character device) becomes a ".wh.NAME" member and a
directory with user.overlay.opaque=y gets a ".wh..wh..opq" member.
write_merged_tar writes the union of several layers as overlayfs would show
it, with no whiteouts. Both walk the trees through directory fds without
following symlinks, emit entries in sorted order, and hold open only the
directories on the current path.

NOTE: overlayfs redirect and metacopy xattrs are not followed, so upper dirs must
come from mounts with redirect_dir=off and metacopy=off.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, cast

from hutch.errors import HutchError
from hutch.store.extract import OPAQUE_MARKER, RESERVED_XATTR_PREFIXES, WHITEOUT_PREFIX
from hutch.store.layout import OPAQUE_XATTRS, is_opaque, is_whiteout, quoted  # noqa: F401
from hutch.store.tario import OutputError, TarOutput

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# Only these xattr namespaces are copied into tars, because security.selinux
# labels and the like describe the host, not the image.
_COPIED_XATTR_PREFIXES = ("user.", "security.capability")

class _TreeTarWriter:
    """Turn filesystem entries reached through directory fds into tar members."""

    def __init__(self, tar: TarOutput) -> None:
        self.tar = tar
        self.privileged = os.geteuid() == 0
        self.current = ""  # the path being written, for error messages
        self._links: dict[
            tuple[int, int], str
        ] = {}  # (dev, ino) of files with nlink > 1

    def add(self, parent_fd: int, name: str, path: str, info: os.stat_result) -> None:
        self.current = path
        member = tarfile.TarInfo(path + "/" if stat.S_ISDIR(info.st_mode) else path)
        member.mode = stat.S_IMODE(info.st_mode)
        member.mtime = int(info.st_mtime)
        member.uid, member.gid = self._owner(info)
        mode = info.st_mode
        if not stat.S_ISDIR(mode) and info.st_nlink > 1:
            key = (info.st_dev, info.st_ino)
            if key in self._links:
                member.type = tarfile.LNKTYPE
                member.linkname = self._links[key]
                self.tar.add(member)
                return
            self._links[key] = path
        if stat.S_ISDIR(mode):
            member.type = tarfile.DIRTYPE
            directory_fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
            try:
                self._add_xattrs(member, directory_fd)
            finally:
                os.close(directory_fd)
            self.tar.add(member)
        elif stat.S_ISREG(mode):
            self._add_file(member, parent_fd, name, info)
        elif stat.S_ISLNK(mode):
            member.type = tarfile.SYMTYPE
            member.linkname = os.readlink(name, dir_fd=parent_fd)
            self.tar.add(member)
        elif stat.S_ISFIFO(mode):
            member.type = tarfile.FIFOTYPE
            self.tar.add(member)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            member.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
            member.devmajor = os.major(info.st_rdev)
            member.devminor = os.minor(info.st_rdev)
            self.tar.add(member)
        # Sockets have no tar form, so they are left out, as GNU tar does.

    def add_empty_file(self, path: str, mtime: int) -> None:
        member = tarfile.TarInfo(path)
        member.mtime = mtime
        member.mode = 0o644
        self.tar.add(member)

    def _add_file(
        self, member: tarfile.TarInfo, parent_fd: int, name: str, info: os.stat_result
    ) -> None:
        fd = os.open(
            name,
            os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY,
            dir_fd=parent_fd,
        )
        try:
            opened = os.fstat(fd)
            if (opened.st_dev, opened.st_ino) != (info.st_dev, info.st_ino):
                raise HutchError(
                    f"{quoted(member.name)} changed while it was read: "
                    "stop the container and retry"
                )
            member.size = opened.st_size
            self._add_xattrs(member, fd)
            self.tar.add_data(member, fd)
        finally:
            os.close(fd)

    def _add_xattrs(self, member: tarfile.TarInfo, fd: int) -> None:
        headers = dict(member.pax_headers)
        try:
            names = os.listxattr(fd)
        except OSError as error:
            if error.errno in (errno.ENOTSUP, errno.EPERM):
                return
            raise
        for xattr in sorted(names):
            if xattr.startswith(RESERVED_XATTR_PREFIXES) or not xattr.startswith(
                _COPIED_XATTR_PREFIXES
            ):
                continue
            try:
                value = os.getxattr(fd, xattr)
            except OSError as error:
                if error.errno in (errno.ENODATA, errno.ENOTSUP, errno.EPERM):
                    continue
                raise
            headers["SCHILY.xattr." + xattr] = value.decode("utf-8", "surrogateescape")
        member.pax_headers = headers

    def _owner(self, info: os.stat_result) -> tuple[int, int]:
        if self.privileged:
            return info.st_uid, info.st_gid
        # Without root, layers were extracted with every owner flattened to the user,
        # who is root inside the container.
        uid = 0 if info.st_uid == os.geteuid() else info.st_uid
        gid = 0 if info.st_gid == os.getegid() else info.st_gid
        return uid, gid


def _sorted_entries(directory_fd: int) -> list[tuple[str, os.stat_result]]:
    entries = []
    with os.scandir(directory_fd) as scan:
        for entry in scan:
            entries.append((entry.name, entry.stat(follow_symlinks=False)))
    entries.sort(key=lambda item: os.fsencode(item[0]))
    return entries


@contextlib.contextmanager
def _tree_writer(out: BinaryIO, source: Path) -> Iterator[_TreeTarWriter]:
    """Yield a tree writer on OUT, turning errors reading SOURCE into HutchError."""
    writer = None
    try:
        tar = TarOutput(out, tar_format=tarfile.PAX_FORMAT)
        writer = _TreeTarWriter(tar)
        yield writer
        tar.close()
    except OutputError as error:
        raise cast(OSError, error.__cause__) from None
    except OSError as error:
        path = writer.current if writer is not None else ""
        raise HutchError(
            f"cannot read {quoted(path or '/')} in {source}: {error.strerror}: "
            "check its permissions, or stop the container and retry"
        ) from None


def write_diff_tar(upper: Path, out: BinaryIO) -> None:
    """Write the changes in UPPER, an overlayfs upper directory, as a layer tar to OUT."""
    root_fd = _open_root(upper)
    try:
        with _tree_writer(out, upper) as writer:
            _write_diff_directory(writer, root_fd, "")
    finally:
        os.close(root_fd)


def _write_diff_directory(
    writer: _TreeTarWriter, directory_fd: int, prefix: str
) -> None:
    if prefix and is_opaque(directory_fd):
        writer.add_empty_file(
            prefix + OPAQUE_MARKER, int(os.fstat(directory_fd).st_mtime)
        )
    for name, info in _sorted_entries(directory_fd):
        path = prefix + name
        if is_whiteout(info):
            writer.add_empty_file(prefix + WHITEOUT_PREFIX + name, int(info.st_mtime))
            continue
        writer.add(directory_fd, name, path, info)
        if stat.S_ISDIR(info.st_mode):
            child_fd = os.open(name, _DIR_FLAGS, dir_fd=directory_fd)
            try:
                _write_diff_directory(writer, child_fd, path + "/")
            finally:
                os.close(child_fd)


def write_merged_tar(layer_dirs: list[Path], upper: Path | None, out: BinaryIO) -> None:
    """Write the union of LAYER_DIRS (bottom first) and UPPER as one tar, with no whiteouts."""
    tops_first = ([upper] if upper is not None else []) + list(reversed(layer_dirs))
    fds: list[int] = []
    try:
        for directory in tops_first:
            fds.append(_open_root(directory))
        source = upper or (layer_dirs[-1] if layer_dirs else Path("/"))
        with _tree_writer(out, source) as writer:
            _write_merged_directory(writer, _cut_at_opaque(fds), "")
    finally:
        for fd in fds:
            os.close(fd)


def _cut_at_opaque(fds: list[int]) -> list[int]:
    """Return the fds down to the first opaque one: lower layers are hidden below it."""
    for index, fd in enumerate(fds):
        if is_opaque(fd):
            return fds[: index + 1]
    return fds


def _write_merged_directory(
    writer: _TreeTarWriter, fds: list[int], prefix: str
) -> None:
    """Write one merged directory. FDS are its copies in each layer, top layer first."""
    listings = [dict(_sorted_entries(fd)) for fd in fds]
    names = sorted({name for listing in listings for name in listing}, key=os.fsencode)
    for name in names:
        top = next(index for index, listing in enumerate(listings) if name in listing)
        info = listings[top][name]
        if is_whiteout(info):
            continue
        path = prefix + name
        writer.add(fds[top], name, path, info)
        if not stat.S_ISDIR(info.st_mode):
            continue
        child_fds = []
        try:
            for index in range(top, len(fds)):
                lower = listings[index].get(name)
                if lower is None:
                    continue
                if not stat.S_ISDIR(lower.st_mode):
                    break  # a file or whiteout hides everything below it
                child_fds.append(os.open(name, _DIR_FLAGS, dir_fd=fds[index]))
                if is_opaque(child_fds[-1]):
                    break
            _write_merged_directory(writer, child_fds, path + "/")
        finally:
            for fd in child_fds:
                os.close(fd)


def _open_root(directory: Path) -> int:
    try:
        return os.open(directory, _DIR_FLAGS)
    except OSError as error:
        raise HutchError(
            f"cannot open layer directory {directory}: {error.strerror}"
        ) from None
