"""Store.open: the checks on the store's path, and the modules it imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hutch.errors import HutchError
from hutch.store import Store

from .helpers import FRONTEND

OTHER_UID = 1003


def test_open_rejects_other_owner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parent = tmp_path / "theirs"
    parent.mkdir(mode=0o755)
    if os.geteuid() == 0:
        os.chown(parent, OTHER_UID, OTHER_UID)
        owner = OTHER_UID
    else:
        # Without root no directory can be given away, so the caller pretends to
        # be another user instead.
        owner = os.geteuid()
        monkeypatch.setattr("hutch.store.layout.os.geteuid", lambda: OTHER_UID)
    with pytest.raises(HutchError) as caught:
        Store.open(parent / "store")
    message = str(caught.value)
    assert f"inside {parent}, which is owned by another user (uid {owner})" in message
    assert "can change" not in message
    assert not (parent / "store").exists()


def test_open_rejects_writable_parent(tmp_path: Path) -> None:
    parent = tmp_path / "shared"
    parent.mkdir()
    parent.chmod(0o777)
    with pytest.raises(HutchError) as caught:
        Store.open(parent / "store")
    message = str(caught.value)
    assert f"inside {parent}, which other users can write to (mode 0777)" in message
    assert not (parent / "store").exists()


# Modules that reading and writing tars and compressed streams need, and that
# opening the store and looking up images must not import.
CONTENT_MODULES = [
    "bz2",
    "gzip",
    "lzma",
    "tarfile",
    "zlib",
    "hutch.store.archive",
    "hutch.store.blobs",
    "hutch.store.extract",
    "hutch.store.layers",
    "hutch.store.tario",
]

LOOKUP_SNIPPET = """
import json, sys
from pathlib import Path
from hutch.store import Store
store = Store.open(Path(sys.argv[1]))
store.images()
try:
    store.image("missing")
except Exception as error:
    pass
print(json.dumps(sorted(sys.modules)))
"""


def test_lookup_imports_no_content_modules(tmp_path: Path) -> None:
    # -S skips site, which on some installs imports zlib, bz2 and lzma itself.
    result = subprocess.run(
        [sys.executable, "-S", "-c", LOOKUP_SNIPPET, str(tmp_path / "store")],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(FRONTEND)},
        check=True,
        timeout=60,
    )
    imported = set(json.loads(result.stdout))
    assert "hutch.store.store" in imported
    for module in CONTENT_MODULES:
        assert module not in imported, module


def test_content_methods_import_their_modules(tmp_path: Path) -> None:
    """The lazy imports are reached: an import of a tar loads what it needs."""
    snippet = LOOKUP_SNIPPET.replace(
        "store.images()",
        "import io; store.import_tar(io.BytesIO(bytes(10240)), ref=None, changes=[])",
    )
    result = subprocess.run(
        [sys.executable, "-S", "-c", snippet, str(tmp_path / "store")],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(FRONTEND)},
        check=True,
        timeout=60,
    )
    imported = set(json.loads(result.stdout))
    for module in CONTENT_MODULES:
        assert module in imported, module
