"""The tar writer's fast ustar headers match tarfile's, and pax cases fall back."""

from __future__ import annotations

import io
import os
import tarfile

import pytest
from hutch.store.tario import TarOutput, ustar_header


def member(name: str, kind: bytes = tarfile.REGTYPE, **fields) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = 0o4755
    info.uid, info.gid = 1000, 65534
    info.mtime = 1_600_000_000
    for key, value in fields.items():
        setattr(info, key, value)
    return info


@pytest.mark.parametrize(
    "info",
    [
        member("file", size=12345),
        member("dir", tarfile.DIRTYPE),
        member("dir/", tarfile.DIRTYPE),
        member("link", tarfile.SYMTYPE, linkname="/etc/passwd"),
        member("hard", tarfile.LNKTYPE, linkname="file"),
        member("null", tarfile.CHRTYPE, devmajor=1, devminor=3),
        member("loop", tarfile.BLKTYPE, devmajor=7, devminor=0),
        member("fifo", tarfile.FIFOTYPE),
        member("n" * 100),
        member("owned", uname="root", gname="wheel"),
    ],
    ids=lambda info: f"{info.type.decode()}-{info.name[:8]}",
)
def test_ustar_header_matches_tarfile(info: tarfile.TarInfo) -> None:
    expected = info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
    assert ustar_header(info) == expected


@pytest.mark.parametrize(
    "info",
    [
        member("n" * 101),
        member("caf\u00e9"),
        member(os.fsdecode(b"raw-\xff")),
        member("link", tarfile.SYMTYPE, linkname="t" * 101),
        member("high-uid", uid=8**7),
        member("huge", size=8**11),
        member("fraction", mtime=1.5),
        member("xattr", pax_headers={"SCHILY.xattr.user.a": "b"}),
    ],
    ids=lambda info: info.name[:12],
)
def test_ustar_header_needs_pax(info: tarfile.TarInfo) -> None:
    assert ustar_header(info) is None


def test_tar_output_readable_by_tarfile() -> None:
    out = io.BytesIO()
    tar = TarOutput(out, tar_format=tarfile.PAX_FORMAT)
    tar.add(member("dir", tarfile.DIRTYPE))
    tar.add_bytes(member("dir/data"), b"payload")
    tar.add_bytes(member(os.fsdecode(b"dir/raw-\xff") + "x" * 120), b"long")
    tar.close()
    data = out.getvalue()
    assert len(data) % tarfile.RECORDSIZE == 0
    with tarfile.open(
        fileobj=io.BytesIO(data), encoding="utf-8", errors="surrogateescape"
    ) as reader:
        names = [info.name for info in reader]
        assert reader.extractfile("dir/data").read() == b"payload"
    assert names == ["dir", "dir/data", os.fsdecode(b"dir/raw-\xff") + "x" * 120]
