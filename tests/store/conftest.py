"""Fixtures of the image store tests: a store, and a canary file beside it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from .helpers import CANARY_TEXT, FRONTEND

if str(FRONTEND) not in sys.path:
    sys.path.insert(0, str(FRONTEND))

from hutch.store import Store  # noqa: E402


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store.open(tmp_path / "store")


@pytest.fixture
def canary(tmp_path: Path) -> Path:
    """A file beside the store that hostile archives try to reach."""
    path = tmp_path / "canary"
    path.write_bytes(CANARY_TEXT)
    return path
