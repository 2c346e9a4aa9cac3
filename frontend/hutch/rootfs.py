"""Read files of a container's root filesystem without mounting it.

A root filesystem here is a stack of layer directories in overlayfs form
(topmost first), as the image store and the container's upper dir hold
them. Each path is resolved one component at a time with O_NOFOLLOW from
the layer's directory fd, so a symlink in the image can never lead to a
host file.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from hutch.errors import HutchError
from hutch.store.layout import is_opaque, is_whiteout

MAX_FILE_BYTES = 4 * 1024 * 1024
DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _components(path: str) -> list[str]:
    parts = [part for part in path.split("/") if part not in ("", ".")]
    if not parts or ".." in parts:
        raise HutchError(f"invalid path {path!r} inside the image")
    return parts


def read_file(layers: list[Path], path: str) -> bytes | None:
    """Return the bytes of PATH in the merged view of LAYERS, or None if absent.

    A symlink anywhere on the path raises HutchError instead of being
    followed. Files larger than MAX_FILE_BYTES raise too.
    """
    parts = _components(path)
    for layer in layers:
        data, hides_lower = _read_in_layer(layer, parts, path)
        if data is not None:
            return data
        if hides_lower:
            return None
    return None


def _read_in_layer(layer: Path, parts: list[str], path: str) -> tuple[bytes | None, bool]:
    """Look for PATH in one layer.

    Return its data (or None) and whether the layers below cannot supply
    it: a whiteout, a non-directory on the way, or an opaque directory.
    """
    try:
        fd = os.open(layer, DIRECTORY_FLAGS)
    except FileNotFoundError:
        return None, False
    hides_lower = False
    try:
        for name in parts[:-1]:
            info = _lstat(fd, name)
            if info is None:
                return None, hides_lower
            if stat.S_ISLNK(info.st_mode):
                raise HutchError(f"{path} in the image passes through a symlink ({name}); not followed")
            if is_whiteout(info) or not stat.S_ISDIR(info.st_mode):
                return None, True
            next_fd = os.open(name, DIRECTORY_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = next_fd
            hides_lower = hides_lower or is_opaque(fd)
        info = _lstat(fd, parts[-1])
        if info is None:
            return None, hides_lower
        if stat.S_ISLNK(info.st_mode):
            raise HutchError(f"{path} in the image is a symlink; hutch does not follow it")
        if not stat.S_ISREG(info.st_mode):
            return None, True
        if info.st_size > MAX_FILE_BYTES:
            raise HutchError(f"{path} in the image is larger than {MAX_FILE_BYTES} bytes")
        file_fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
        with os.fdopen(file_fd, "rb") as file:
            return file.read(MAX_FILE_BYTES), True
    finally:
        os.close(fd)


def _lstat(directory_fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=directory_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def lookup_user(layers: list[Path], spec: str) -> tuple[int, int]:
    """Resolve -u NAME[:GROUP] or UID[:GID] against the image's passwd and group files."""
    user, _, group = spec.partition(":")
    uid = gid = None
    if user.isdigit():
        uid = int(user)
    else:
        entry = _find_entry(layers, "/etc/passwd", user, spec)
        uid, gid = int(entry[2]), int(entry[3])
    if group:
        gid = int(group) if group.isdigit() else int(_find_entry(layers, "/etc/group", group, spec)[2])
    elif gid is None:
        gid = _primary_gid(layers, uid)
    return uid, gid


def _find_entry(layers: list[Path], path: str, name: str, spec: str) -> list[str]:
    data = read_file(layers, path)
    if data is None:
        raise HutchError(f"cannot resolve --user {spec!r}: the image has no {path}")
    for line in data.decode(errors="replace").splitlines():
        fields = line.split(":")
        if len(fields) >= 4 and fields[0] == name and fields[2].isdigit():
            if path == "/etc/passwd" and not fields[3].isdigit():
                continue
            return fields
    raise HutchError(f"cannot resolve --user {spec!r}: {name!r} is not in the image's {path}")


def _primary_gid(layers: list[Path], uid: int) -> int:
    try:
        data = read_file(layers, "/etc/passwd")
    except HutchError:
        data = None
    for line in (data or b"").decode(errors="replace").splitlines():
        fields = line.split(":")
        if len(fields) >= 4 and fields[2] == str(uid) and fields[3].isdigit():
            return int(fields[3])
    return uid
