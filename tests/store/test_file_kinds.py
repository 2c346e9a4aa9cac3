"""Every kind of file survives import, save, load, commit and export.

The input tar is made by GNU tar from a real directory tree, and each exported
tar is compared with it through `tar --list --verbose --numeric-owner
--full-time`. Only what must differ is normalised: the "./" prefix, the order of
members, and which name of a hard-link pair carries the data.
"""

from __future__ import annotations

import errno
import io
import os
import random
import shutil
import stat
import struct
import subprocess
import tarfile
from pathlib import Path

import pytest
from hutch.store import Store

from .helpers import make_tar, tar_entry

ROOT = os.geteuid() == 0
SPARSE_SIZE = 64 << 20
# A version 2 security.capability value (struct vfs_cap_data in linux/capability.h)
# that grants cap_net_bind_service, bit 10, in the permitted set.
CAP_NET_BIND_SERVICE = struct.pack("<5I", 0x02000000, 1 << 10, 0, 0, 0)
LONG_NAME = "n" * 150
DEEP_PATH = "deep/" + "/".join(["p" * 60] * 5) + "/file"
NON_UTF8_NAME = os.fsdecode(b"latin1-\xe9t\xe9")
BASE_MTIME = 1_500_000_000

pytestmark = pytest.mark.skipif(
    shutil.which("tar") is None, reason="GNU tar is not installed"
)


def build_tree(root: Path) -> None:
    """Fill ROOT with one of each kind of file, with fixed contents and mtimes."""
    root.mkdir()
    data = random.Random(7).randbytes(3 << 20)
    files = {
        "empty": b"",
        "small": b"hello\n",
        "large": data,
        "name with spaces": b"spaces\n",
        "new\nline": b"newline in the name\n",
        NON_UTF8_NAME: b"not utf-8\n",
        LONG_NAME: b"long name\n",
        DEEP_PATH: b"deep path\n",
        "dir/sub/inner": b"inner\n",
        "suid": b"#!/bin/sh\n",
        "sgid": b"#!/bin/sh\n",
        "hard1": b"two names\n",
        "xattr": b"user xattr\n",
    }
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        path.chmod(0o644)

    (root / "suid").chmod(0o4755)
    (root / "sgid").chmod(0o2711)
    (root / "dir").chmod(0o750)
    (root / "sticky").mkdir()
    (root / "sticky").chmod(0o1777)
    (root / "setgid-dir").mkdir()
    (root / "setgid-dir").chmod(0o2775)

    os.link(root / "hard1", root / "hard2")
    os.setxattr(root / "xattr", "user.note", b"kept")
    with open(root / "sparse", "wb") as sparse:
        sparse.truncate(SPARSE_SIZE)
        for offset in (0, SPARSE_SIZE // 2, SPARSE_SIZE - 4096):
            sparse.seek(offset)
            sparse.write(b"d" * 4096)

    os.symlink("small", root / "relative")
    os.symlink("/etc/passwd", root / "absolute")
    os.symlink("no/such/file", root / "dangling")
    os.mkfifo(root / "fifo", 0o640)

    if ROOT:
        os.mknod(root / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        os.mknod(root / "loop", stat.S_IFBLK | 0o660, os.makedev(7, 0))
        (root / "high-ids").write_bytes(b"owned above 65535\n")
        os.chown(root / "high-ids", 70000, 70001)
        (root / "capability").write_bytes(b"\x7fELF")
        os.setxattr(root / "capability", "security.capability", CAP_NET_BIND_SERVICE)

    _set_mtimes(root)


def _set_mtimes(root: Path) -> None:
    # Deepest first, because changing a directory's entries changes its mtime.
    paths = sorted(root.rglob("*"), key=lambda path: len(path.parts), reverse=True)
    for number, path in enumerate([*paths, root]):
        mtime = BASE_MTIME + number * 1000
        os.utime(path, ns=(mtime * 10**9, mtime * 10**9), follow_symlinks=False)


def gnu_tar(tree: Path, out: Path) -> Path:
    subprocess.run(
        [
            "tar",
            "--format=posix",
            "--xattrs",
            "--xattrs-include=*",
            "--sparse",
            "--numeric-owner",
            "--pax-option=delete=atime,delete=ctime",
            "-C",
            str(tree),
            "-cf",
            str(out),
            ".",
        ],
        check=True,
    )
    return out


def listing(tar_path: Path) -> tuple[dict[str, str], set[frozenset[str]]]:
    """Return name -> normalised `tar --list --verbose` line of TAR_PATH, and link groups."""
    output = subprocess.run(
        ["tar", "--list", "--verbose", "--numeric-owner", "--full-time", "-f"]
        + [str(tar_path)],
        check=True,
        capture_output=True,
    ).stdout.decode("utf-8", "backslashreplace")
    entries: dict[str, list[str]] = {}
    links: dict[str, str] = {}
    for line in output.splitlines():
        mode, owner, size, day, time, rest = line.split(maxsplit=5)
        display = _normalise(rest)
        if mode.startswith("h"):
            name, _, target = rest.partition(" link to ")
            display = _normalise(name)
            links[display] = _normalise(target)
            mode = "-" + mode[1:]
        elif mode.startswith("l"):
            name, _, target = rest.partition(" -> ")
            display = f"{_normalise(name)} -> {target}"
        if not display:
            continue
        if not ROOT:
            owner = "0/0"  # without root, owners are flattened to the user, shown as 0
        entries[display.partition(" -> ")[0]] = [mode, owner, size, day, time, display]
    groups: dict[str, set[str]] = {}
    for name, target in links.items():
        groups.setdefault(target, {target}).add(name)
        entries[name][2] = entries[target][2]  # a hard link member has no size
    lines = {name: " ".join(fields) for name, fields in entries.items()}
    return lines, {frozenset(group) for group in groups.values()}


def _normalise(name: str) -> str:
    return name.removeprefix("./").rstrip("/").removeprefix(".")


def xattrs(tar_path: Path) -> dict[str, dict[str, str]]:
    result = {}
    with tarfile.open(tar_path, encoding="utf-8", errors="surrogateescape") as tar:
        for member in tar:
            found = {
                key: value
                for key, value in member.pax_headers.items()
                if key.startswith("SCHILY.xattr.")
                and not key.startswith("SCHILY.xattr.security.selinux")
            }
            if found:
                result[_normalise(member.name)] = found
    return result


def export_to(store: Store, image, path: Path, upper: Path | None = None) -> Path:
    with open(path, "wb") as out:
        store.export(image, upper, out)
    return path


def save_and_load(store: Store, ref: str, tmp_path: Path, fmt: str) -> Store:
    other = Store.open(tmp_path / f"loaded-{fmt}")
    archive = tmp_path / f"saved-{fmt}.tar"
    with open(archive, "wb") as out:
        store.save([ref], out, fmt=fmt)
    with open(archive, "rb") as source:
        other.load(source)
    return other


@pytest.fixture
def input_tar(tmp_path: Path) -> Path:
    build_tree(tmp_path / "tree")
    return gnu_tar(tmp_path / "tree", tmp_path / "input.tar")


def assert_same_tars(expected: Path, actual: Path) -> None:
    expected_lines, expected_links = listing(expected)
    actual_lines, actual_links = listing(actual)
    assert actual_lines == expected_lines
    assert actual_links == expected_links
    assert xattrs(actual) == xattrs(expected)


def assert_sparse_kept(image) -> None:
    sparse = os.lstat(image.layer_dirs[-1] / "sparse")
    assert sparse.st_size == SPARSE_SIZE
    assert sparse.st_blocks * 512 < SPARSE_SIZE // 4


def test_kinds_import_export(store: Store, input_tar: Path, tmp_path: Path) -> None:
    with open(input_tar, "rb") as source:
        image = store.import_tar(source, ref="kinds", changes=[])
    assert_sparse_kept(image)
    assert os.lstat(image.layer_dirs[0] / "hard1").st_nlink == 2
    assert_same_tars(input_tar, export_to(store, image, tmp_path / "exported.tar"))


@pytest.mark.parametrize("fmt", ["docker-archive", "oci-archive"])
def test_kinds_save_load_export(
    store: Store, input_tar: Path, tmp_path: Path, fmt: str
) -> None:
    with open(input_tar, "rb") as source:
        store.import_tar(source, ref="kinds", changes=[])
    other = save_and_load(store, "kinds", tmp_path, fmt)
    image = other.image("kinds")
    assert_sparse_kept(image)
    exported = export_to(other, image, tmp_path / "exported.tar")
    assert_same_tars(input_tar, exported)


def test_kinds_commit_save_load_export(
    store: Store, input_tar: Path, tmp_path: Path
) -> None:
    base = store.import_tar(
        io.BytesIO(make_tar([tar_entry("base-file", data=b"from the base\n")])),
        ref="base",
        changes=[],
    )
    upper = tmp_path / "upper"
    build_tree(upper)
    store.commit(base, upper, ref="committed", changes=[])
    other = save_and_load(store, "committed", tmp_path, "docker-archive")
    image = other.image("committed")
    assert len(image.layer_dirs) == 2
    assert_sparse_kept(image)
    exported = export_to(other, image, tmp_path / "exported.tar")

    # The export is the tree with the base layer's one file beside it.
    with_base = tmp_path / "with-base"
    build_tree(with_base)
    (with_base / "base-file").write_bytes(b"from the base\n")
    os.chmod(with_base / "base-file", 0o644)
    os.utime(with_base / "base-file", (1_600_000_000, 1_600_000_000))
    expected = gnu_tar(with_base, tmp_path / "expected.tar")
    assert_same_tars(expected, exported)


def test_commit_hard_link_to_lower_file(store: Store, tmp_path: Path) -> None:
    """A file whose other name is outside the upper directory becomes a regular file."""
    base = store.import_tar(
        io.BytesIO(make_tar([tar_entry("lower", data=b"lower data\n")])),
        ref="base",
        changes=[],
    )
    upper = tmp_path / "upper"
    upper.mkdir()
    outside = tmp_path / "outside"
    outside.write_bytes(b"linked from below\n")
    os.link(outside, upper / "from-lower")
    (upper / "one").write_bytes(b"pair\n")
    os.link(upper / "one", upper / "two")

    image = store.commit(base, upper, ref="linked", changes=[])

    blob = store.layout.blob(image.diff_ids[-1].removeprefix("sha256:"))
    with tarfile.open(blob) as tar:
        members = {member.name: member for member in tar}
    assert members["from-lower"].isreg()
    assert members["from-lower"].size == len(b"linked from below\n")
    assert members["one"].isreg()
    assert members["two"].islnk()
    assert members["two"].linkname == "one"
    top = image.layer_dirs[-1]
    assert (top / "from-lower").read_bytes() == b"linked from below\n"
    assert os.lstat(top / "from-lower").st_nlink == 1
    assert os.lstat(top / "two").st_ino == os.lstat(top / "one").st_ino


def test_sparse_member_keeps_holes(store: Store) -> None:
    """A GNU tar sparse member is written with holes, not zeros."""
    size = 16 << 20
    image = _import_gnu_sparse(store, size)
    path = image.layer_dirs[0] / "holes"
    assert path.stat().st_size == size
    assert path.stat().st_blocks * 512 <= 64 << 10
    with open(path, "rb") as data:
        assert data.read(4096) == b"s" * 4096
        data.seek(size - 4096)
        assert data.read() == b"s" * 4096


def _import_gnu_sparse(store: Store, size: int):
    work = Path(store.layout.root).parent / "sparse-src"
    work.mkdir()
    with open(work / "holes", "wb") as file:
        file.truncate(size)
        file.write(b"s" * 4096)
        file.seek(size - 4096)
        file.write(b"s" * 4096)
    tar_path = work.parent / "sparse.tar"
    subprocess.run(
        ["tar", "--format=gnu", "--sparse", "-C", str(work), "-cf", str(tar_path)]
        + ["holes"],
        check=True,
    )
    with tarfile.open(tar_path) as tar:
        assert tar.getmember("holes").issparse()
    with open(tar_path, "rb") as source:
        return store.import_tar(source, ref="sparse", changes=[])


def test_directory_cache_eviction(store: Store, monkeypatch) -> None:
    """Hard links and deep files stay right when directory fds leave the cache."""
    monkeypatch.setattr("hutch.store.extract.MAX_CACHED_DIRECTORIES", 3)
    entries = []
    for number in range(12):
        entries.append(tar_entry(f"d{number}/", tarfile.DIRTYPE, mode=0o750))
        entries.append(tar_entry(f"d{number}/x/y/file", data=b"%d\n" % number))
    for number in range(12):
        # Each link's target lies in a directory opened long before.
        entries.append(
            tar_entry(
                f"d{11 - number}/x/link{number}",
                tarfile.LNKTYPE,
                linkname=f"d{number}/x/y/file",
            )
        )
    image = store.import_tar(io.BytesIO(make_tar(entries)), ref="many", changes=[])
    root = image.layer_dirs[0]
    for number in range(12):
        target = root / f"d{number}" / "x" / "y" / "file"
        link = root / f"d{11 - number}" / "x" / f"link{number}"
        assert target.read_bytes() == b"%d\n" % number
        assert os.lstat(link).st_ino == os.lstat(target).st_ino
        assert stat.S_IMODE(os.lstat(root / f"d{number}").st_mode) == 0o750


def test_copy_without_copy_file_range(store: Store, monkeypatch) -> None:
    """Extraction falls back to pread and pwrite where copy_file_range fails."""

    def unsupported(*args, **kwargs):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "copy_file_range", unsupported)
    data = random.Random(3).randbytes((3 << 20) + 5)
    tar = make_tar([tar_entry("big", data=data), tar_entry("small", data=b"x")])
    image = store.import_tar(io.BytesIO(tar), ref="fallback", changes=[])
    assert (image.layer_dirs[0] / "big").read_bytes() == data
    assert (image.layer_dirs[0] / "small").read_bytes() == b"x"
