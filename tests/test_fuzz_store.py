"""Run the atheris target of the store's tar reader for a bounded time."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TARGET = Path(__file__).resolve().parent / "fuzz" / "fuzz_store_import.py"


def test_fuzz_store_import(tmp_path: Path):
    try:
        import atheris  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("atheris is not installed; tests/run-all.sh installs the test extras")
        pytest.skip("atheris is not installed (pip install atheris)")
    corpus = tmp_path / "corpus"
    result = subprocess.run(
        [sys.executable, str(TARGET), "-max_total_time=20", "-rss_limit_mb=1024", str(corpus)],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "HUTCH_FUZZ_WORK": str(tmp_path / "work")},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    runs = int(result.stderr.rsplit("Done ", 1)[1].split()[0])
    assert runs > 200  # about 50 inputs a second: each import makes and removes scratch dirs
