"""The libFuzzer target of the option and policy parsers, run for a bounded time."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from support import REPO

FUZZ_SECONDS = 20
SEEDS = [
    b"\x00--id\x00box\x00--memory\x0064m\x00--\x00--rootfs",
    b"\x01--rootfs\x00/r\x00--bind\x00/a:/b:ro\x00--tmpfs\x00/t:4096\x00--\x00sh",
    b"\x01--rootfs\x00/r\x00--cap-drop\x00ALL\x00--cap-add\x00net_raw\x00--\x00sh",
    b"\x02user 1000 memory=1g pids=512 cpus=1.5 containers=10 memory-swap=2g\n",
]


def test_parsers_survive_fuzzing(tmp_path):
    if shutil.which("clang") is None:
        pytest.skip("clang is not installed (packaging/install-deps.sh installs it)")
    build = tmp_path / "build"
    subprocess.run(["make", "-s", "-C", str(REPO / "c-helper"), "fuzz", f"FUZZ_BUILD={build}"],
                   check=True, capture_output=True)  # fmt: skip
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for number, seed in enumerate(SEEDS):
        (corpus / f"seed{number}").write_bytes(seed)
    result = subprocess.run(
        [str(build / "fuzz-options"), f"-max_total_time={FUZZ_SECONDS}", "-timeout=10",
         "-rss_limit_mb=1024", f"-artifact_prefix={tmp_path}/", str(corpus)],
        capture_output=True, text=True, timeout=FUZZ_SECONDS + 120,
    )  # fmt: skip
    crashes = sorted(path.name for path in tmp_path.glob("crash-*"))
    assert result.returncode == 0, result.stderr[-4000:]
    assert crashes == []
    assert "Done" in result.stderr
