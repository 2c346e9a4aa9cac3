"""The committed gRPC stubs match proto/, and argv uses only real options."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from support import REPO, libexec_dir

STUBS = [
    f"{service}/v1/{service}{suffix}"
    for service in ("helper", "remote")
    for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")
]


def test_stubs_are_current(tmp_path: Path):
    pytest.importorskip("grpc_tools")
    subprocess.run(
        [
            sys.executable, "-m", "grpc_tools.protoc", "-I", str(REPO / "proto"),
            f"--python_out={tmp_path}", f"--pyi_out={tmp_path}", f"--grpc_python_out={tmp_path}",
            str(REPO / "proto/hutch/helper/v1/helper.proto"),
            str(REPO / "proto/hutch/remote/v1/remote.proto"),
        ],
        check=True,
    )  # fmt: skip
    for name in STUBS:
        fresh = (tmp_path / "hutch" / name).read_text()
        committed = (REPO / "frontend/hutch" / name).read_text()
        assert fresh == committed, f"{name} is stale: run sh proto/generate.sh"


def _listed_options(program: str) -> set[str]:
    result = subprocess.run(
        [str(libexec_dir() / program), "--list-options"], capture_output=True, text=True, check=True
    )
    return set(result.stdout.split())


def test_plan_uses_only_listed_options(tmp_path: Path):
    from hutch.helper.v1 import helper_pb2
    from hutch_helper import plan

    for sub in ("rootfs", "upper", "work", "lower"):
        (tmp_path / sub).mkdir()
    request = helper_pb2.StartContainerRequest(
        id="a" * 64,
        state_dir=str(tmp_path),
        lower_dirs=[str(tmp_path / "lower")],
        upper_dir=str(tmp_path / "upper"),
        work_dir=str(tmp_path / "work"),
        rootfs=str(tmp_path / "rootfs"),
        readonly_rootfs=True,
        argv=["sh"],
        env=["A=b"],
        cwd="/",
        hostname="h",
        limits=helper_pb2.Limits(
            memory_bytes=64 << 20, memory_swap_bytes=128 << 20, pids=10,
            cpu_quota_us=50000, cpu_period_us=100000, cpu_shares=512,
        ),
        uid_maps=[helper_pb2.IdMap(inside=0, outside=1000, count=1)],
        gid_maps=[helper_pb2.IdMap(inside=0, outside=1000, count=1)],
    )  # fmt: skip
    built = plan.build(request, libexec_dir(), {"memory", "pids", "cpu"}, plan.Io(3, 4)).argv
    separator = built.index("--")
    cgroup_options = {arg for arg in built[1:separator] if arg.startswith("--")}
    rest = built[separator + 1 :]
    spawn_options = {arg for arg in rest[: rest.index("--")] if arg.startswith("--")}
    assert cgroup_options <= _listed_options("hutch-cgroup")
    assert spawn_options <= _listed_options("hutch-spawn")
    assert "--overlay-lower" in spawn_options
    assert "--memory-swap" in cgroup_options
