"""A real distribution root filesystem through import and export (opt-in: it is large).

Set HUTCH_ROOTFS_TAR to a root filesystem tar, for example one made with
debootstrap --variant=minbase bookworm DIR && tar --numeric-owner --xattrs -C DIR -cf F .
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from pathlib import Path

import pytest
from hutch.store import Store


def describe(data_source) -> dict[str, tuple]:
    """Return name -> (type, mode, uid, gid, mtime, size, digest, symlink, hard) of a tar."""
    result = {}
    with tarfile.open(fileobj=data_source, mode="r|*") as tar:
        for member in tar:
            name = member.name.removeprefix("./").rstrip("/")
            if name in ("", "."):
                continue
            digest = ""
            if member.isreg():
                digest = hashlib.sha256(tar.extractfile(member).read()).hexdigest()
            result[name] = (
                member.type,
                member.mode,
                member.uid,
                member.gid,
                int(member.mtime),
                member.size if member.isreg() else 0,
                digest,
                member.linkname if member.issym() else "",
                member.islnk(),
            )
    return result


def test_real_rootfs_round_trip(store: Store) -> None:
    tar_path = os.environ.get("HUTCH_ROOTFS_TAR")
    if not tar_path:
        pytest.skip("set HUTCH_ROOTFS_TAR to a root filesystem tar to run this test")
    with open(tar_path, "rb") as source:
        image = store.import_tar(source, ref="rootfs", changes=[])
    with open(tar_path, "rb") as source:
        original = describe(source)
    out = io.BytesIO()
    store.export(image, None, out)
    out.seek(0)
    exported = describe(out)

    assert sorted(exported) == sorted(original)
    for name, facts in original.items():
        (kind, mode, uid, gid, mtime, size, digest, link, hard) = facts
        got = exported[name]
        # Which name of a hard-linked pair carries the data depends on the order.
        if hard or got[8]:
            assert got[1:4] == (mode, uid, gid), name
            continue
        assert got == facts, name
    assert image.size == Path(tar_path).stat().st_size
