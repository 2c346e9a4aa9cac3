"""commit of an overlay upper dir, and export of the merged view of layers and upper."""

from __future__ import annotations

import io
import os
import stat
import tarfile
import threading
from pathlib import Path

import pytest
from hutch.store import Store

from .helpers import make_tar, tar_entry, tar_members

BASE_ENTRIES = [
    tar_entry("etc/", tarfile.DIRTYPE),
    tar_entry("etc/a", data=b"a"),
    tar_entry("etc/b", data=b"b"),
    tar_entry("data/", tarfile.DIRTYPE),
    tar_entry("data/x", data=b"x"),
    tar_entry("data/sub/", tarfile.DIRTYPE),
    tar_entry("data/sub/y", data=b"y"),
    tar_entry("keep", data=b"old"),
    tar_entry("dir-to-file/", tarfile.DIRTYPE),
    tar_entry("dir-to-file/inner", data=b"inner"),
]


def make_upper(path: Path) -> Path:
    """Build an overlayfs upper dir by hand: a whiteout, an opaque dir, new and changed files."""
    (path / "etc").mkdir(parents=True)
    os.mknod(path / "etc" / "a", stat.S_IFCHR | 0o000, os.makedev(0, 0))
    (path / "data").mkdir()
    os.setxattr(path / "data", "user.overlay.opaque", b"y")
    (path / "data" / "z").write_bytes(b"z")
    (path / "new.txt").write_bytes(b"new")
    (path / "keep").write_bytes(b"changed")
    os.mknod(path / "dir-to-file", stat.S_IFCHR | 0o000, os.makedev(0, 0))
    return path


@pytest.fixture
def base(store: Store):
    return store.import_tar(
        io.BytesIO(make_tar(BASE_ENTRIES)), ref="base", changes=["CMD sh"]
    )


EXPECTED_MERGED = {"etc", "etc/b", "data", "data/z", "keep", "new.txt"}


def test_export_with_upper_merges(store: Store, base, tmp_path: Path) -> None:
    upper = make_upper(tmp_path / "upper")
    out = io.BytesIO()
    store.export(base, upper, out)
    members = tar_members(out.getvalue())
    assert set(members) == EXPECTED_MERGED
    assert members["keep"][2] == b"changed"
    assert not any(name.rsplit("/", 1)[-1].startswith(".wh.") for name in members)


def test_commit_records_whiteouts(store: Store, base, tmp_path: Path) -> None:
    upper = make_upper(tmp_path / "upper")
    image = store.commit(
        base,
        upper,
        ref="committed:v1",
        changes=["ENV MODE=test"],
        config={"Cmd": ["/bin/true"], "WorkingDir": "/data"},
        author="tester",
        message="a test commit",
    )
    assert image.repo_tags == ["committed:v1"]
    assert len(image.diff_ids) == 2
    assert image.diff_ids[0] == base.diff_ids[0]
    assert image.config["config"]["Cmd"] == ["/bin/true"]
    assert image.config["config"]["WorkingDir"] == "/data"
    assert image.config["config"]["Env"] == ["MODE=test"]
    assert image.config["author"] == "tester"
    assert image.config["history"][-1]["comment"] == "a test commit"
    assert len(image.config["history"]) == 2

    layer_tar = store.layout.blob(
        image.diff_ids[1].removeprefix("sha256:")
    ).read_bytes()
    names = set(tar_members(layer_tar))
    assert "etc/.wh.a" in names
    assert ".wh.dir-to-file" in names
    assert "data/.wh..wh..opq" in names
    assert {"data/z", "new.txt", "keep"} <= names

    top = image.layer_dirs[1]
    whiteout = os.lstat(top / "etc" / "a")
    assert stat.S_ISCHR(whiteout.st_mode)
    assert whiteout.st_rdev == 0
    assert os.getxattr(top / "data", "user.overlay.opaque") == b"y"

    out = io.BytesIO()
    store.export(image, None, out)
    members = tar_members(out.getvalue())
    assert set(members) == EXPECTED_MERGED
    assert members["keep"][2] == b"changed"
    assert members["data/z"][2] == b"z"


def test_commit_empty_upper(store: Store, base, tmp_path: Path) -> None:
    upper = tmp_path / "empty"
    upper.mkdir()
    image = store.commit(base, upper, ref=None, changes=[])
    assert image.repo_tags == []
    assert len(image.diff_ids) == 2
    out = io.BytesIO()
    store.export(image, None, out)
    assert set(tar_members(out.getvalue())) == set(tar_members(make_tar(BASE_ENTRIES)))


def test_export_streams_to_pipe(store: Store, base) -> None:
    read_fd, write_fd = os.pipe()
    errors: list[BaseException] = []

    def write_export() -> None:
        with os.fdopen(write_fd, "wb") as pipe:
            try:
                store.export(base, None, pipe)
            except BaseException as error:  # reported by the assert below
                errors.append(error)

    writer = threading.Thread(target=write_export)
    writer.start()
    with os.fdopen(read_fd, "rb") as pipe:
        data = pipe.read()
    writer.join()
    assert errors == []
    assert "data/sub/y" in tar_members(data)
