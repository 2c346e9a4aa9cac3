"""A load killed halfway leaves the store as it was, once the store is opened again."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from hutch.store import Store

from .helpers import FRONTEND, store_listing

SNIPPET = """
import sys
from pathlib import Path
from hutch.store import Store
Store.open(Path(sys.argv[1])).load(sys.stdin.buffer)
"""


def test_killed_load_leaves_store(
    tmp_path: Path, store: Store, busybox_tar: Path
) -> None:
    with open(busybox_tar, "rb") as source:
        store.import_tar(source, ref="source", changes=[])
    saved = io.BytesIO()
    store.save(["source"], saved)
    store.remove_image("source", in_use=set())
    before = store_listing(store.layout.root)

    loader = subprocess.Popen(
        [sys.executable, "-c", SNIPPET, str(store.layout.root)],
        stdin=subprocess.PIPE,
        env={
            "PYTHONPATH": str(FRONTEND),
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        },
    )
    data = saved.getvalue()
    assert loader.stdin is not None
    loader.stdin.write(data[: len(data) // 2])
    loader.stdin.flush()
    deadline = time.monotonic() + 30
    while not any(store.layout.tmp.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert any(store.layout.tmp.iterdir()), (
        "the loader never started its scratch directory"
    )
    loader.send_signal(signal.SIGKILL)
    loader.wait()
    loader.stdin.close()
    assert loader.returncode == -signal.SIGKILL

    reopened = Store.open(store.layout.root)
    assert store_listing(reopened.layout.root) == before
    assert reopened.images() == []


def test_open_removes_unpublished_content(store: Store, busybox_tar: Path) -> None:
    """A publish killed between the renames and images.json leaves unreferenced files."""
    with open(busybox_tar, "rb") as source:
        image = store.import_tar(source, ref="kept", changes=[])
    before = store_listing(store.layout.root)
    stray_blob = store.layout.blob("f" * 64)
    stray_blob.write_bytes(b"orphan")
    stray_layer = store.layout.diff("e" * 64)
    stray_layer.mkdir(parents=True)
    (stray_layer / "file").write_bytes(b"orphan")

    reopened = Store.open(store.layout.root)
    assert not stray_blob.exists()
    assert not stray_layer.parent.exists()
    assert store_listing(reopened.layout.root) == before
    assert reopened.image("kept").id == image.id
