"""hutch-cgroup on the machine's real cgroup v1 tree and on fake v1 and v2 trees."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from c_support import CGROUP_ROOT, cgroup_bin, chown_tree, make_busybox_tree, run_cgroup, spawn_bin

HERE = Path(__file__).resolve().parent
SPEC_OPTIONS = {
    "--id", "--join", "--query", "--remove", "--freeze", "--thaw", "--probe", "--memory",
    "--memory-swap", "--pids", "--cpu-quota", "--cpu-period", "--cpu-shares", "--root",
    "--layout", "--keep-fd",
}


def real_layout() -> str:
    result = subprocess.run([str(cgroup_bin()), "--probe"], capture_output=True, text=True)
    return result.stdout.split("\n", 1)[0].removeprefix("layout ")


@pytest.fixture
def v1_root():
    """Skip unless the test runs as root on a v1 or hybrid cgroup layout."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    if real_layout() not in ("v1", "hybrid"):
        pytest.skip("the machine has no cgroup v1 controllers")


@pytest.fixture(scope="module")
def memhog(tmp_path_factory) -> Path:
    """A static binary that allocates and touches N MiB, built from memhog.c."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is needed to build the memory probe")
    out = tmp_path_factory.mktemp("probe") / "memhog"
    subprocess.run(["gcc", "-static", "-O1", "-o", str(out), str(HERE / "memhog.c")], check=True)
    return out


def spawn_args(rootfs: Path, *program: str) -> list[str]:
    return ["--", "--rootfs", str(rootfs), "--unshare-pid", "--unshare-net", "--", *program]


def query(cgroup_id: str, *extra: str) -> dict[str, str]:
    result = run_cgroup([*extra, "--query", cgroup_id])
    assert result.returncode == 0, result.stderr
    return dict(line.split(" ", 1) for line in result.stdout.splitlines())


def test_v1_limit_files_hold_values(v1_root, cgroup_ids, busybox_tree):
    cgroup_id = cgroup_ids()
    argv = ["--id", cgroup_id, "--memory", "64m", "--pids", "77", "--cpu-quota", "50000",
            "--cpu-period", "200000", "--cpu-shares", "512",
            *spawn_args(busybox_tree, "/bin/cat", "/proc/self/status")]
    result = run_cgroup(argv)
    assert result.returncode == 0, result.stderr
    base = f"hutch/0/{cgroup_id}"
    assert (CGROUP_ROOT / "memory" / base / "memory.limit_in_bytes").read_text() == "67108864\n"
    assert (CGROUP_ROOT / "pids" / base / "pids.max").read_text() == "77\n"
    assert (CGROUP_ROOT / "cpu" / base / "cpu.cfs_quota_us").read_text() == "50000\n"
    assert (CGROUP_ROOT / "cpu" / base / "cpu.cfs_period_us").read_text() == "200000\n"
    assert (CGROUP_ROOT / "cpu" / base / "cpu.shares").read_text() == "512\n"
    assert (CGROUP_ROOT / "freezer" / base).is_dir()
    figures = query(cgroup_id)
    assert figures["memory_limit"] == "67108864"
    assert figures["pids_limit"] == "77"
    assert figures["oom_kill"] == "0"
    assert int(figures["cpu_usage_ns"]) > 0


def test_v1_container_runs_inside_cgroup(v1_root, cgroup_ids, busybox_tree):
    cgroup_id = cgroup_ids()
    # /proc/self/cgroup of the container, read through a new pid namespace's /proc.
    result = run_cgroup(["--id", cgroup_id, "--pids", "10",
                         *spawn_args(busybox_tree, "/bin/cat", "/proc/self/cgroup")])
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(":", 2)[1:] for line in result.stdout.splitlines())
    assert lines["pids"] == f"/hutch/0/{cgroup_id}"
    assert lines["memory"] == f"/hutch/0/{cgroup_id}"


def test_v1_memory_limit_kills_allocation(v1_root, cgroup_ids, busybox_tree, memhog):
    shutil.copy2(memhog, busybox_tree / "bin" / "memhog")
    cgroup_id = cgroup_ids()
    argv = ["--id", cgroup_id, "--memory", "32m", "--memory-swap", "32m",
            *spawn_args(busybox_tree, "/bin/memhog", "100")]
    result = run_cgroup(argv)
    assert result.returncode == 137, (result.stdout, result.stderr)
    assert "allocated" not in result.stdout
    figures = query(cgroup_id)
    assert int(figures["oom_kill"]) >= 1
    assert int(figures["memory_peak"]) <= 32 * 1024 * 1024


def test_v1_memory_allows_small_allocation(v1_root, cgroup_ids, busybox_tree, memhog):
    shutil.copy2(memhog, busybox_tree / "bin" / "memhog")
    cgroup_id = cgroup_ids()
    result = run_cgroup(["--id", cgroup_id, "--memory", "64m",
                         *spawn_args(busybox_tree, "/bin/memhog", "8")])
    assert result.returncode == 0, result.stderr
    assert "allocated" in result.stdout
    assert query(cgroup_id)["oom_kill"] == "0"


def test_v1_pids_limit_stops_fork(v1_root, cgroup_ids, busybox_tree):
    script = "for i in 1 2 3 4 5 6 7 8; do sleep 1 & done; wait; echo done"
    # The monitor and the shell count too: with 4 pids, at most 2 sleeps start.
    limited = run_cgroup(["--id", cgroup_ids(), "--pids", "4",
                          *spawn_args(busybox_tree, "/bin/sh", "-c", script)])
    assert "can't fork" in limited.stderr
    unlimited = run_cgroup(["--id", cgroup_ids(), "--pids", "64",
                            *spawn_args(busybox_tree, "/bin/sh", "-c", script)])
    assert unlimited.returncode == 0, unlimited.stderr
    assert unlimited.stdout == "done\n"


def test_v1_remove_deletes_cgroup(v1_root, cgroup_ids, busybox_tree):
    cgroup_id = cgroup_ids()
    assert run_cgroup(["--id", cgroup_id, *spawn_args(busybox_tree, "/bin/true")]).returncode == 0
    dirs = list(CGROUP_ROOT.glob(f"*/hutch/0/{cgroup_id}"))
    assert {d.parts[4] for d in dirs} >= {"memory", "pids", "cpu", "freezer"}
    result = run_cgroup(["--remove", cgroup_id])
    assert result.returncode == 0, result.stderr
    assert list(CGROUP_ROOT.glob(f"*/hutch/0/{cgroup_id}")) == []
    again = run_cgroup(["--remove", cgroup_id])
    assert again.returncode == 125
    assert "no such cgroup" in again.stderr


def test_v1_existing_id_rejected(v1_root, cgroup_ids, busybox_tree):
    cgroup_id = cgroup_ids()
    assert run_cgroup(["--id", cgroup_id, *spawn_args(busybox_tree, "/bin/true")]).returncode == 0
    result = run_cgroup(["--id", cgroup_id, *spawn_args(busybox_tree, "/bin/true")])
    assert result.returncode == 125
    assert "already exists" in result.stderr


def test_spawn_failure_keeps_its_code(v1_root, cgroup_ids, busybox_tree):
    cgroup_id = cgroup_ids()
    result = run_cgroup(["--id", cgroup_id, *spawn_args(busybox_tree, "/no/such")])
    assert result.returncode == 127


def test_probe_on_real_tree(v1_root):
    result = run_cgroup(["--probe"])
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] in ("layout v1", "layout hybrid")
    assert lines[1:] == [f"controller {name} writable" for name in
                         ("memory", "pids", "cpu", "freezer")]


def test_user_without_delegation_gets_one_line(unprivileged_user, shared_tmp):
    if real_layout() not in ("v1", "hybrid"):
        pytest.skip("the machine has no cgroup v1 controllers")
    rootfs = make_busybox_tree(shared_tmp / "rootfs")
    chown_tree(shared_tmp, unprivileged_user.uid, unprivileged_user.gid)
    result = run_cgroup(["--id", "userbox", "--memory", "64m", *spawn_args(rootfs, "/bin/true")],
                        user=unprivileged_user)
    assert result.returncode == 125
    assert result.stderr.startswith("hutch-cgroup: ")
    assert result.stderr.count("\n") == 1
    assert list(CGROUP_ROOT.glob(f"*/hutch/{unprivileged_user.uid}/userbox")) == []
    probe = run_cgroup(["--probe"], user=unprivileged_user)
    assert "controller memory readonly" in probe.stdout


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--id", "a/b", "--", "x"], "invalid ID `a/b`"),
        (["--id", "..", "--", "x"], "invalid ID `..`"),
        (["--id", "", "--", "x"], "invalid ID ``"),
        (["--id", "x" * 65, "--", "x"], "invalid ID"),
        (["--id", "ok", "--memory", "1m", "--", "x"], "invalid --memory `1m`"),
        (["--id", "ok", "--memory", "5000000000g", "--", "x"], "invalid --memory"),
        (["--id", "ok", "--memory", "-5", "--", "x"], "invalid --memory `-5`"),
        (["--id", "ok", "--memory", "64m", "--memory-swap", "32m", "--", "x"],
         "--memory-swap must be at least --memory"),
        (["--id", "ok", "--memory-swap", "64m", "--", "x"], "--memory-swap needs --memory"),
        (["--id", "ok", "--pids", "0", "--", "x"], "invalid --pids `0`"),
        (["--id", "ok", "--pids", "4194305", "--", "x"], "invalid --pids `4194305`"),
        (["--id", "ok", "--cpu-quota", "999", "--", "x"], "invalid --cpu-quota `999`"),
        (["--id", "ok", "--cpu-period", "1000001", "--", "x"], "invalid --cpu-period"),
        (["--id", "ok", "--cpu-shares", "1", "--", "x"], "invalid --cpu-shares `1`"),
        (["--id", "ok", "--pids", "007", "--", "x"], "invalid --pids `007`"),
        (["--id", "ok", "--frobnicate", "--", "x"], "unknown option `--frobnicate`"),
        (["--id", "ok", "--pids"], "option `--pids` needs a value"),
        (["--id", "ok"], "missing `-- SPAWN-ARG...`"),
        (["--query", "ok", "--pids", "5"], "go only with --id"),
        (["--id", "a", "--query", "b"], "give only one of"),
        (["--layout", "v2", "--probe"], "--layout needs --root"),
        ([], "missing --id"),
    ],
)
def test_bad_argv_rejected(argv, message):
    result = run_cgroup(argv)
    assert result.returncode == 125
    assert result.stdout == ""
    assert result.stderr.startswith("hutch-cgroup: ")
    assert result.stderr.count("\n") == 1
    assert message in result.stderr


def test_root_option_rejected_for_user(unprivileged_user, shared_tmp):
    for option, value in (("--root", str(shared_tmp)), ("--layout", "v2")):
        result = run_cgroup([option, value, "--probe"], user=unprivileged_user)
        assert result.returncode == 125
        assert f"option `{option}` is only for tests run by root" in result.stderr


def test_list_options_matches_spec():
    result = run_cgroup(["--list-options"])
    assert result.returncode == 0
    assert set(result.stdout.split()) == SPEC_OPTIONS


def test_environment_is_cleared(root_runner, shared_tmp):
    root = shared_tmp / "cg"
    root.mkdir()
    rootfs = make_busybox_tree(shared_tmp / "rootfs")
    env = {"PATH": "/usr/bin:/bin", "LD_PRELOAD": "/nonexistent.so"}
    result = run_cgroup(["--root", str(root), "--layout", "v2", "--id", "envcheck",
                         *spawn_args(rootfs, "/bin/true")], env=env)
    assert result.returncode == 0, result.stderr
    # ld.so warns once, for hutch-cgroup itself; hutch-spawn starts with no environment.
    assert result.stderr.count("LD_PRELOAD") == 1


# --- fake trees ---

@pytest.fixture
def fake_root(shared_tmp):
    if os.geteuid() != 0:
        pytest.skip("--root is only for root")
    root = shared_tmp / "cgroupfs"
    root.mkdir()
    return root


def test_v2_fake_tree_writes(fake_root, shared_tmp):
    rootfs = make_busybox_tree(shared_tmp / "rootfs")
    argv = ["--root", str(fake_root), "--layout", "v2", "--id", "box", "--memory", "64m",
            "--memory-swap", "96m", "--pids", "99", "--cpu-quota", "50000", "--cpu-period",
            "100000", "--cpu-shares", "1024", *spawn_args(rootfs, "/bin/true")]
    result = run_cgroup(argv)
    assert result.returncode == 0, result.stderr
    cg = fake_root / "hutch" / "0" / "box"
    assert (cg / "memory.max").read_text() == "67108864"
    assert (cg / "memory.swap.max").read_text() == str(32 * 1024 * 1024)
    assert (cg / "pids.max").read_text() == "99"
    assert (cg / "cpu.max").read_text() == "50000 100000"
    assert (cg / "cpu.weight").read_text() == str(1 + (1024 - 2) * 9999 // 262142)
    assert int((cg / "cgroup.procs").read_text()) > 1
    for parent in (fake_root, fake_root / "hutch", fake_root / "hutch" / "0"):
        assert (parent / "cgroup.subtree_control").read_text().split() == ["memory", "pids",
                                                                             "cpu"]
    figures = query("box", "--root", str(fake_root), "--layout", "v2")
    assert figures == {"memory_limit": "67108864", "pids_limit": "99"}
    result = run_cgroup(["--root", str(fake_root), "--layout", "v2", "--remove", "box"])
    assert result.returncode == 0, result.stderr
    assert not cg.exists()


def test_v2_fake_tree_query_figures(fake_root):
    cg = fake_root / "hutch" / "0" / "q1"
    cg.mkdir(parents=True)
    (cg / "memory.events").write_text("low 0\nhigh 0\nmax 4\noom 2\noom_kill 2\n")
    (cg / "memory.current").write_text("1234\n")
    (cg / "memory.peak").write_text("5678\n")
    (cg / "memory.max").write_text("max\n")
    (cg / "pids.current").write_text("3\n")
    (cg / "pids.max").write_text("max\n")
    (cg / "cpu.stat").write_text("usage_usec 250\nuser_usec 200\nsystem_usec 50\n")
    assert query("q1", "--root", str(fake_root), "--layout", "v2") == {
        "oom_kill": "2", "memory_current": "1234", "memory_peak": "5678",
        "memory_limit": "max", "pids_current": "3", "pids_limit": "max",
        "cpu_usage_ns": "250000",
    }


def test_v1_fake_tree_writes(fake_root, shared_tmp):
    for name in ("memory", "pids", "cpu", "freezer"):
        (fake_root / name).mkdir()
    rootfs = make_busybox_tree(shared_tmp / "rootfs")
    argv = ["--root", str(fake_root), "--layout", "v1", "--id", "box", "--memory", "64m",
            "--memory-swap", "128m", "--cpu-quota", "20000", *spawn_args(rootfs, "/bin/true")]
    result = run_cgroup(argv)
    assert result.returncode == 0, result.stderr
    memory = fake_root / "memory" / "hutch" / "0" / "box"
    assert (memory / "memory.limit_in_bytes").read_text() == "67108864"
    assert (memory / "memory.memsw.limit_in_bytes").read_text() == "134217728"
    assert (fake_root / "cpu" / "hutch" / "0" / "box" / "cpu.cfs_quota_us").read_text() == "20000"
    assert (fake_root / "freezer" / "hutch" / "0" / "box" / "cgroup.procs").exists()
    assert not (fake_root / "cpuacct").exists()
    result = run_cgroup(["--root", str(fake_root), "--layout", "v1", "--remove", "box"])
    assert result.returncode == 0, result.stderr
    assert list(fake_root.glob("*/hutch/0/box")) == []


def test_v1_fake_tree_missing_controller(fake_root, shared_tmp):
    (fake_root / "memory").mkdir()
    result = run_cgroup(["--root", str(fake_root), "--layout", "v1", "--id", "box",
                         "--pids", "5", "--", "x"])
    assert result.returncode == 125
    assert "open `pids`" in result.stderr
    # The memory cgroup made before the failure is removed again.
    assert list(fake_root.glob("*/hutch/0/box")) == []


def test_symlinked_hutch_dir_rejected(fake_root, shared_tmp):
    elsewhere = shared_tmp / "elsewhere"
    elsewhere.mkdir()
    (fake_root / "hutch").symlink_to(elsewhere)
    result = run_cgroup(["--root", str(fake_root), "--layout", "v2", "--id", "box", "--", "x"])
    assert result.returncode == 125
    assert "open `hutch`" in result.stderr
    assert list(elsewhere.iterdir()) == []


def test_spawn_path_is_compiled_in():
    strings = subprocess.run(["strings", str(cgroup_bin())], capture_output=True, text=True)
    if strings.returncode != 0:
        pytest.skip("strings (binutils) is not installed")
    assert str(spawn_bin().resolve()) in strings.stdout.split()
