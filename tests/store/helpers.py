"""Helpers of the image store tests: tar builders, tar readers, store listings."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from collections.abc import Iterable
from pathlib import Path

FRONTEND = Path(__file__).resolve().parents[2] / "frontend"
CANARY_TEXT = b"canary: must never change\n"


def store_listing(root: Path) -> list[tuple[str, str, int]]:
    """Return (relative path, type, size) of everything under ROOT, for before/after checks."""
    listing = []
    for directory, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            path = Path(directory, name)
            info = path.lstat()
            kind = stat.filemode(info.st_mode)[0]
            size = info.st_size if stat.S_ISREG(info.st_mode) else 0
            listing.append((str(path.relative_to(root)), kind, size))
    return sorted(listing)


def tar_entry(
    name: str,
    kind: bytes = tarfile.REGTYPE,
    data: bytes = b"",
    *,
    mode: int | None = None,
    linkname: str = "",
    uid: int = 0,
    gid: int = 0,
    mtime: int = 1_600_000_000,
    pax: dict[str, str] | None = None,
) -> tuple[tarfile.TarInfo, bytes]:
    member = tarfile.TarInfo(name)
    member.type = kind
    if mode is None:
        mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    member.mode = mode
    member.linkname = linkname
    member.uid, member.gid = uid, gid
    member.mtime = mtime
    member.size = len(data) if kind in (tarfile.REGTYPE, tarfile.AREGTYPE) else 0
    if pax:
        member.pax_headers = dict(pax)
    return member, data


def make_tar(entries: Iterable[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    """Build a PAX tar in memory from (TarInfo, data) pairs, in the order given."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for member, data in entries:
            tar.addfile(member, io.BytesIO(data) if member.isreg() else None)
    return buffer.getvalue()


def tar_members(data: bytes) -> dict[str, tuple[str, int, bytes, str]]:
    """Return name -> (type, mode, content, linkname) of a tar's members, names without ./ or /."""
    result = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
        for member in tar:
            name = member.name.removeprefix("./").rstrip("/")
            if not name or name == ".":
                continue
            content = tar.extractfile(member).read() if member.isreg() else b""
            result[name] = (member.type.decode(), member.mode, content, member.linkname)
    return result
