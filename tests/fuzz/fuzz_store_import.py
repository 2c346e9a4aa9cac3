"""atheris target: any bytes given to `import` stay inside the store.

The oracle: whatever the input, import either succeeds or raises
HutchError, nothing appears in the directory around the store, and a
canary file beside the store keeps its bytes. Run it through
tests/test_fuzz_store.py, or by hand:
    python3 tests/fuzz/fuzz_store_import.py -max_total_time=60 CORPUS_DIR
"""

from __future__ import annotations

import io
import os
import sys
import tarfile
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from hutch.errors import HutchError
    from hutch.store import Store

# The test passes a directory it removes afterwards; by hand, a new temporary one.
WORK = Path(os.environ.get("HUTCH_FUZZ_WORK") or tempfile.mkdtemp(prefix="hutch-fuzz-"))
WORK.mkdir(parents=True, exist_ok=True)
CANARY = WORK / "canary"
CANARY_BYTES = b"canary: must never change\n"
CANARY.write_bytes(CANARY_BYTES)
STORE = Store.open(WORK / "store")
EXPECTED = {"canary", "store"}


def _seed(path: Path) -> None:
    """Write a few small tars with hostile members as a starting corpus."""
    path.mkdir(parents=True, exist_ok=True)
    cases = {
        "plain": [("etc/passwd", tarfile.REGTYPE, "", b"root:x:0:0::/:/bin/sh\n")],
        "climb": [("../escape", tarfile.REGTYPE, "", b"x")],
        "symlink-through": [("link", tarfile.SYMTYPE, "/tmp", b""), ("link/x", tarfile.REGTYPE, "", b"x")],
        "hardlink-out": [("h", tarfile.LNKTYPE, "/etc/shadow", b"")],
        "whiteout": [("d/.wh.f", tarfile.REGTYPE, "", b""), ("d/.wh..wh..opq", tarfile.REGTYPE, "", b"")],
    }
    for name, members in cases.items():
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for member_name, kind, link, data in members:
                info = tarfile.TarInfo(member_name)
                info.type, info.linkname, info.size = kind, link, len(data)
                tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
        (path / name).write_bytes(buffer.getvalue())


def test_one_input(data: bytes) -> None:
    try:
        STORE.import_tar(io.BytesIO(data), ref=None, changes=[])
    except HutchError:
        pass
    leftovers = set(os.listdir(WORK)) - EXPECTED
    if leftovers:
        raise AssertionError(f"import wrote outside the store: {sorted(leftovers)}")
    if CANARY.read_bytes() != CANARY_BYTES:
        raise AssertionError("import changed the canary beside the store")


def main() -> None:
    corpus = [arg for arg in sys.argv[1:] if not arg.startswith("-")]
    if corpus:
        _seed(Path(corpus[0]))
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
