"""Reading image files through layer directories without following symlinks."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from hutch.errors import HutchError
from hutch.rootfs import lookup_user, read_file


def layer(root: Path, files: dict[str, bytes | str | None]) -> Path:
    """Make a layer dir: bytes are files, str a symlink target, None a whiteout."""
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if content is None:
            os.mknod(path, stat.S_IFCHR | 0o600, 0)
        elif isinstance(content, str):
            path.symlink_to(content)
        else:
            path.write_bytes(content)
    return root


def test_upper_layer_wins(tmp_path: Path):
    lower = layer(tmp_path / "lower", {"etc/passwd": b"old"})
    upper = layer(tmp_path / "upper", {"etc/passwd": b"new"})
    assert read_file([upper, lower], "/etc/passwd") == b"new"
    assert read_file([lower], "/etc/passwd") == b"old"


def test_whiteout_hides_lower(tmp_path: Path):
    lower = layer(tmp_path / "lower", {"etc/passwd": b"old"})
    upper = layer(tmp_path / "upper", {"etc/passwd": None})
    assert read_file([upper, lower], "/etc/passwd") is None


def test_opaque_dir_hides_lower(tmp_path: Path):
    lower = layer(tmp_path / "lower", {"etc/passwd": b"old"})
    upper = layer(tmp_path / "upper", {"etc/other": b"x"})
    os.setxattr(upper / "etc", "user.overlay.opaque", b"y")
    assert read_file([upper, lower], "/etc/passwd") is None


def test_symlink_to_host_file_is_not_followed(tmp_path: Path):
    secret = tmp_path / "secret"
    secret.write_bytes(b"root:SECRET:0:0::/:/bin/sh\n")
    image = layer(tmp_path / "image", {"etc/passwd": str(secret)})
    with pytest.raises(HutchError, match="symlink"):
        read_file([image], "/etc/passwd")


def test_symlinked_directory_is_not_followed(tmp_path: Path):
    host = tmp_path / "hostetc"
    host.mkdir()
    (host / "passwd").write_bytes(b"x")
    image = layer(tmp_path / "image", {"etc": str(host)})
    with pytest.raises(HutchError, match="symlink"):
        read_file([image], "/etc/passwd")


def test_lookup_user_by_name(tmp_path: Path):
    image = layer(
        tmp_path / "image",
        {"etc/passwd": b"root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/app:/bin/sh\n",
         "etc/group": b"root:x:0:\nstaff:x:50:\n"},
    )  # fmt: skip
    assert lookup_user([image], "app") == (1000, 1001)
    assert lookup_user([image], "app:staff") == (1000, 50)
    assert lookup_user([image], "1000") == (1000, 1001)
    assert lookup_user([image], "4242:7") == (4242, 7)
    with pytest.raises(HutchError, match="nobody"):
        lookup_user([image], "nobody")
