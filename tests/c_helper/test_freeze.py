"""hutch-cgroup --freeze and --thaw on the real v1 tree and on a fake v2 tree."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from c_support import CGROUP_ROOT, cgroup_bin, run_cgroup

BUSY_LOOP = "while :; do :; done"


def cpu_usage(cgroup_id: str) -> int:
    result = run_cgroup(["--query", cgroup_id])
    assert result.returncode == 0, result.stderr
    figures = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    return int(figures["cpu_usage_ns"])


@pytest.fixture
def v1_root():
    if os.geteuid() != 0:
        pytest.skip("needs root")
    probe = subprocess.run([str(cgroup_bin()), "--probe"], capture_output=True, text=True)
    if probe.stdout.split("\n", 1)[0] not in ("layout v1", "layout hybrid"):
        pytest.skip("the machine has no cgroup v1 controllers")


def test_v1_freeze_stops_busy_loop(v1_root, cgroup_ids, busybox_tree):
    cgroup_id = cgroup_ids()
    state = CGROUP_ROOT / "freezer" / "hutch" / "0" / cgroup_id / "freezer.state"
    argv = [str(cgroup_bin()), "--id", cgroup_id, "--", "--rootfs", str(busybox_tree),
            "--unshare-pid", "--", "/bin/sh", "-c", BUSY_LOOP]  # fmt: skip
    container = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE)  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        # The cgroup appears once hutch-cgroup has run, which Popen does not wait for.
        while not state.exists():
            assert container.poll() is None, container.stderr.read()
            assert time.monotonic() < deadline, "the cgroup never appeared"
            time.sleep(0.05)
        while cpu_usage(cgroup_id) < 50_000_000:
            assert container.poll() is None, container.stderr.read()
            assert time.monotonic() < deadline, "the busy loop never used 50 ms of CPU"
            time.sleep(0.05)

        frozen = run_cgroup(["--freeze", cgroup_id])
        assert frozen.returncode == 0, frozen.stderr
        assert state.read_text() == "FROZEN\n"
        before = cpu_usage(cgroup_id)
        time.sleep(0.5)
        assert cpu_usage(cgroup_id) == before

        thawed = run_cgroup(["--thaw", cgroup_id])
        assert thawed.returncode == 0, thawed.stderr
        assert state.read_text() == "THAWED\n"
        time.sleep(0.5)
        assert cpu_usage(cgroup_id) > before + 50_000_000
    finally:
        # Frozen tasks do not die until thawed, so thaw before the kill.
        if state.exists():
            state.write_text("THAWED")
        container.kill()
        container.wait()
        container.stderr.close()


def test_freeze_unknown_id_rejected(v1_root):
    result = run_cgroup(["--freeze", "nosuchcgroup"])
    assert result.returncode == 125
    assert result.stderr == "hutch-cgroup: open `hutch/0/nosuchcgroup`: no such cgroup\n"


@pytest.fixture
def fake_v2(shared_tmp) -> Path:
    if os.geteuid() != 0:
        pytest.skip("--root is only for root")
    cgroup = shared_tmp / "cgroupfs" / "hutch" / "0" / "box"
    cgroup.mkdir(parents=True)
    return cgroup


def fake_args(cgroup: Path, *argv: str) -> list[str]:
    return ["--root", str(cgroup.parents[2]), "--layout", "v2", *argv]


def test_v2_freeze_writes_and_waits(fake_v2):
    (fake_v2 / "cgroup.events").write_text("populated 1\nfrozen 1\n")
    result = run_cgroup(fake_args(fake_v2, "--freeze", "box"))
    assert result.returncode == 0, result.stderr
    assert (fake_v2 / "cgroup.freeze").read_text() == "1"

    (fake_v2 / "cgroup.events").write_text("populated 1\nfrozen 0\n")
    result = run_cgroup(fake_args(fake_v2, "--thaw", "box"))
    assert result.returncode == 0, result.stderr
    assert (fake_v2 / "cgroup.freeze").read_text() == "0"


def test_v2_freeze_times_out(fake_v2):
    # The kernel never reports frozen here, so the wait must end with an error.
    (fake_v2 / "cgroup.events").write_text("populated 1\nfrozen 0\n")
    started = time.monotonic()
    result = run_cgroup(fake_args(fake_v2, "--freeze", "box"))
    assert result.returncode == 125
    assert "timed out after 10 s waiting for `cgroup.events` to show `frozen 1`" in result.stderr
    assert time.monotonic() - started >= 10


def test_v2_freeze_foreign_owner_rejected(fake_v2):
    (fake_v2 / "cgroup.events").write_text("frozen 1\n")
    os.chown(fake_v2, 12345, 12345)
    result = run_cgroup(fake_args(fake_v2, "--freeze", "box"))
    assert result.returncode == 125
    assert "open `box`: owned by uid 12345, expected root or 0" in result.stderr
    assert not (fake_v2 / "cgroup.freeze").exists()
