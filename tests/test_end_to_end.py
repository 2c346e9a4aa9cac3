"""The whole chain through the real CLI, helper, C programs and kernel, as root."""

from __future__ import annotations

import io
import json
import os
import tarfile
import time
from pathlib import Path

import pytest

from hutchtest import Hutch

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="these tests run as root")

CGROUP_V1 = Path("/sys/fs/cgroup")


def store_listing(store: Path) -> list[tuple[str, int]]:
    """Every path under STORE with its size, except the helper's scratch."""
    entries = []
    for root, dirs, files in os.walk(store):
        for name in dirs + files:
            path = Path(root, name)
            entries.append((str(path.relative_to(store)), path.lstat().st_size if name in files else 0))
    return sorted(entries)


def test_import_lists_image(hutch: Hutch, image: str):
    listing = hutch.out("images")
    assert "busybox" in listing
    assert "test" in listing


def test_run_prints_output_and_exit_code(hutch: Hutch, image: str):
    result = hutch.run("run", "--rm", image, "sh", "-c", "echo out; echo err >&2; exit 3")
    assert result.returncode == 3
    assert result.stdout == b"out\n"
    assert result.stderr == b"err\n"


def test_container_is_pid_1_with_own_hostname(hutch: Hutch, image: str):
    result = hutch.run("run", "--rm", "--hostname", "box1", image, "sh", "-c", "echo $$; hostname")
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().split() == ["1", "box1"]


def test_default_hostname_is_short_id(hutch: Hutch, image: str):
    container_id = hutch.out("run", "-d", image, "hostname").strip()
    assert hutch.out("wait", container_id).strip() == "0"
    assert hutch.out("logs", container_id).strip() == container_id[:12]


def test_network_none_has_only_loopback(hutch: Hutch, image: str):
    result = hutch.run("run", "--rm", image, "ls", "/sys/class/net")
    assert result.stdout.decode().split() == ["lo"]


def test_namespaces_differ_from_host(hutch: Hutch, image: str):
    script = "for n in pid net ipc mnt uts; do readlink /proc/self/ns/$n; done"
    inside = hutch.out("run", "--rm", image, "sh", "-c", script).split()
    outside = [os.readlink(f"/proc/self/ns/{n}") for n in ("pid", "net", "ipc", "mnt", "uts")]
    for mine, theirs in zip(inside, outside):
        assert mine != theirs


def test_missing_program_exits_127(hutch: Hutch, image: str):
    result = hutch.run("run", "--rm", image, "/no/such/program")
    assert result.returncode == 127
    assert result.stderr.decode().count("\n") == 1


def test_non_executable_exits_126(hutch: Hutch, image: str):
    result = hutch.run("run", "--rm", image, "/etc/passwd")
    assert result.returncode == 126


def test_memory_limit_kills_and_reports_oom(hutch: Hutch, image: str):
    result = hutch.run(
        "run", "--name", "hog", "-m", "32m", image,
        "dd", "if=/dev/zero", "of=/dev/null", "bs=100M", "count=1",
    )  # fmt: skip
    assert result.returncode == 137
    state = json.loads(hutch.out("inspect", "hog"))[0]["State"]
    assert state["OOMKilled"] is True
    assert state["ExitCode"] == 137


def test_small_allocation_fits_under_limit(hutch: Hutch, image: str):
    result = hutch.run(
        "run", "--rm", "-m", "64m", image, "dd", "if=/dev/zero", "of=/dev/null", "bs=8M", "count=1"
    )
    assert result.returncode == 0, result.stderr


def test_limits_reach_cgroup_files(hutch: Hutch, image: str):
    container_id = hutch.out(
        "run", "-d", "-m", "48m", "--pids-limit", "77", "--cpus", "0.5", image, "sleep", "30"
    ).strip()
    cgroup = f"hutch/0/{container_id}"
    memory = (CGROUP_V1 / "memory" / cgroup / "memory.limit_in_bytes").read_text()
    pids = (CGROUP_V1 / "pids" / cgroup / "pids.max").read_text()
    quota = (CGROUP_V1 / "cpu" / cgroup / "cpu.cfs_quota_us").read_text()
    assert int(memory) == 48 * 1024 * 1024
    assert pids.strip() == "77"
    assert quota.strip() == "50000"
    hutch.out("rm", "-f", container_id)
    assert not (CGROUP_V1 / "memory" / cgroup).exists()


def test_default_pids_limit(hutch: Hutch, image: str):
    container_id = hutch.out("run", "-d", image, "sleep", "30").strip()
    pids = (CGROUP_V1 / "pids" / f"hutch/0/{container_id}" / "pids.max").read_text()
    assert pids.strip() == "2048"


def test_stop_kills_after_timeout(hutch: Hutch, image: str):
    container_id = hutch.out("run", "-d", "--name", "sleeper", image, "sleep", "100").strip()
    assert "sleeper" in hutch.out("ps")
    started = time.monotonic()
    hutch.out("stop", "-t", "1", "sleeper")
    assert time.monotonic() - started < 8
    assert hutch.out("wait", container_id).strip() == "137"
    assert "Exited (137)" in hutch.out("ps", "-a")
    assert "sleeper" not in hutch.out("ps")


def test_stop_with_handler_exits_cleanly(hutch: Hutch, image: str):
    script = "trap 'exit 0' TERM; while true; do sleep 0.1; done"
    container_id = hutch.out("run", "-d", image, "sh", "-c", script).strip()
    time.sleep(0.5)
    hutch.out("stop", container_id)
    assert hutch.out("wait", container_id).strip() == "0"


def test_kill_sends_signal(hutch: Hutch, image: str):
    container_id = hutch.out("run", "-d", image, "sleep", "100").strip()
    hutch.out("kill", container_id)
    assert hutch.out("wait", container_id).strip() == "137"


def test_rm_running_needs_force(hutch: Hutch, image: str):
    container_id = hutch.out("run", "-d", image, "sleep", "100").strip()
    result = hutch.run("rm", container_id)
    assert result.returncode == 125
    assert b"running" in result.stderr
    hutch.out("rm", "-f", container_id)
    assert container_id[:12] not in hutch.out("ps", "-a")


def test_rm_flag_removes_container(hutch: Hutch, image: str):
    hutch.out("run", "--rm", image, "true")
    assert hutch.out("ps", "-aq") == ""


def test_detached_rm_removes_after_exit(hutch: Hutch, image: str):
    container_id = hutch.out("run", "-d", "--rm", image, "true").strip()
    for _ in range(100):
        if container_id[:12] not in hutch.out("ps", "-aq"):
            break
        time.sleep(0.1)
    assert container_id[:12] not in hutch.out("ps", "-aq")


def test_env_and_workdir(hutch: Hutch, image: str):
    result = hutch.out("run", "--rm", "-e", "GREETING=hi there", "-w", "/tmp", image, "sh", "-c", 'echo "$GREETING"; pwd')
    assert result.split("\n")[:2] == ["hi there", "/tmp"]


def test_logs_keep_streams_apart(hutch: Hutch, image: str):
    container_id = hutch.out("run", "-d", image, "sh", "-c", "echo one; echo two >&2; echo three").strip()
    hutch.out("wait", container_id)
    result = hutch.run("logs", container_id)
    assert result.stdout == b"one\nthree\n"
    assert result.stderr == b"two\n"


def test_readonly_rootfs(hutch: Hutch, image: str):
    result = hutch.run("run", "--rm", "--read-only", image, "touch", "/x")
    assert result.returncode != 0
    assert b"Read-only" in result.stderr


def test_sys_is_readonly(hutch: Hutch, image: str):
    result = hutch.run("run", "--rm", image, "sh", "-c", "echo 1 > /sys/kernel/profiling")
    assert result.returncode != 0


def test_commit_save_load_roundtrip(hutch: Hutch, image: str, tmp_path: Path):
    hutch.out("run", "--name", "writer", image, "sh", "-c", "echo changed > /etc/motd; rm /bin/vi")
    hutch.out("commit", "writer", "busybox:changed")
    archive = tmp_path / "saved.tar"
    hutch.out("save", "-o", str(archive), "busybox:changed")
    hutch.out("rm", "writer")
    hutch.out("rmi", "busybox:changed")
    assert "changed" not in hutch.out("images")
    loaded = hutch.out("load", "-i", str(archive))
    assert "busybox:changed" in loaded
    result = hutch.run("run", "--rm", "busybox:changed", "sh", "-c", "cat /etc/motd; ls /bin/vi")
    assert result.stdout == b"changed\n"
    assert result.returncode == 1


def test_save_to_stdout_and_load_from_stdin(hutch: Hutch, image: str):
    archive = hutch.run("save", image, check=True).stdout
    hutch.out("rmi", image)
    hutch.out("load", input=archive)
    assert hutch.out("run", "--rm", image, "echo", "back").strip() == "back"


def test_export_has_merged_view(hutch: Hutch, image: str, tmp_path: Path):
    hutch.out("run", "--name", "exp", image, "sh", "-c", "echo data > /root/file; rm /bin/vi")
    archive = tmp_path / "export.tar"
    hutch.out("export", "-o", str(archive), "exp")
    with tarfile.open(archive) as tar:
        names = {member.name.lstrip("./") for member in tar}
        data = tar.extractfile(tar.getmember(next(n for n in tar.getnames() if n.endswith("root/file")))).read()
    assert data == b"data\n"
    assert "bin/vi" not in names
    assert "bin/sh" in names
    assert not any(".wh." in name for name in names)


def test_export_running_container(hutch: Hutch, image: str):
    container_id = hutch.out("run", "-d", image, "sh", "-c", "echo live > /live; sleep 100").strip()
    time.sleep(0.5)
    archive = hutch.run("export", container_id, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        names = [name.lstrip("./") for name in tar.getnames()]
    assert "live" in names


def test_unknown_image_is_one_line_125(hutch: Hutch):
    result = hutch.run("run", "nosuchimage")
    assert result.returncode == 125
    assert result.stderr.decode().count("\n") == 1
    assert b"nosuchimage" in result.stderr


def test_taken_name_is_rejected(hutch: Hutch, image: str):
    hutch.out("run", "--name", "twin", image, "true")
    before = store_listing(hutch.store)
    result = hutch.run("run", "--name", "twin", image, "true")
    assert result.returncode == 125
    assert b"twin" in result.stderr
    assert store_listing(hutch.store) == before


def test_truncated_archive_leaves_store(hutch: Hutch, image: str, tmp_path: Path):
    archive = hutch.run("save", image, check=True).stdout
    hutch.out("rmi", image)
    before = store_listing(hutch.store)
    result = hutch.run("load", input=archive[: len(archive) // 2])
    assert result.returncode == 125
    assert result.stderr.decode().count("\n") == 1
    assert store_listing(hutch.store) == before


def test_bad_flag_is_125(hutch: Hutch, image: str):
    result = hutch.run("run", "--no-such-flag", image)
    assert result.returncode == 125
    assert result.stderr.decode().count("\n") == 1


def test_bad_memory_value_is_125(hutch: Hutch, image: str):
    result = hutch.run("run", "-m", "lots", image, "true")
    assert result.returncode == 125
    assert b"memory" in result.stderr


def test_helper_status_and_stop(hutch: Hutch, image: str):
    hutch.out("images")
    hutch.out("run", "--rm", image, "true")
    status = hutch.out("helper", "status")
    assert "running" in status
    assert "memory" in status
    hutch.out("helper", "stop")
    assert hutch.run("helper", "status").returncode == 3


def test_socket_is_private(hutch: Hutch, image: str):
    hutch.out("run", "--rm", image, "true")
    socket_file = hutch.runtime / "helper.sock"
    assert (socket_file.stat().st_mode & 0o777) == 0o600
    assert (hutch.runtime.stat().st_mode & 0o777) == 0o700


def test_container_survives_helper_restart(hutch: Hutch, image: str):
    container_id = hutch.out("run", "-d", image, "sh", "-c", "echo before; sleep 3; echo after; exit 4").strip()
    hutch.out("helper", "stop")
    assert container_id[:12] in hutch.out("ps")
    assert hutch.out("wait", container_id).strip() == "4"
    assert hutch.out("logs", container_id) == "before\nafter\n"


def test_network_host_shares_namespace(hutch: Hutch, image: str):
    inside = hutch.out("run", "--rm", "--network", "host", image, "readlink", "/proc/self/ns/net")
    assert inside.strip() == os.readlink("/proc/self/ns/net")


def _hostile_tar(path: Path) -> None:
    with tarfile.open(path, "w") as tar:
        member = tarfile.TarInfo("../escaped")
        member.size = 4
        tar.addfile(member, io.BytesIO(b"evil"))


def test_import_of_climbing_member_is_rejected(hutch: Hutch, tmp_path: Path):
    archive = tmp_path / "hostile.tar"
    _hostile_tar(archive)
    hutch.out("images")
    before = store_listing(hutch.store)
    result = hutch.run("import", str(archive), "evil")
    assert result.returncode == 125
    assert result.stderr.decode().count("\n") == 1
    assert b"../escaped" in result.stderr
    assert store_listing(hutch.store) == before
    assert not (hutch.store.parent / "escaped").exists()


def test_create_then_start_attach(hutch: Hutch, image: str):
    container_id = hutch.out("create", "--name", "later", image, "sh", "-c", "echo started; exit 5").strip()
    assert "Created" in hutch.out("ps", "-a")
    result = hutch.run("start", "-a", "later")
    assert result.returncode == 5
    assert result.stdout == b"started\n"
    assert hutch.out("wait", container_id).strip() == "5"


def test_restart_keeps_files_and_log(hutch: Hutch, image: str):
    hutch.out("run", "--name", "again", image, "sh", "-c", "echo run >> /count; cat /count | wc -l")
    hutch.out("restart", "again")
    assert hutch.out("wait", "again").strip() == "0"
    assert hutch.out("logs", "again").split() == ["1", "2"]


def test_logs_tail_and_timestamps(hutch: Hutch, image: str):
    container_id = hutch.out("run", "-d", image, "sh", "-c", "for i in 1 2 3 4 5; do echo line$i; done").strip()
    hutch.out("wait", container_id)
    assert hutch.out("logs", "--tail", "2", container_id) == "line4\nline5\n"
    stamped = hutch.out("logs", "-t", "--tail", "1", container_id)
    assert stamped.endswith(" line5\n")
    assert stamped[:4].isdigit()
    assert hutch.out("logs", "--since", "2099-01-01T00:00:00Z", container_id) == ""


def test_memory_swap_needs_memory(hutch: Hutch, image: str):
    result = hutch.run("run", "--memory-swap", "64m", image, "true")
    assert result.returncode == 125
    assert b"--memory" in result.stderr


def test_stats_shows_memory_and_limit(hutch: Hutch, image: str):
    hutch.out("run", "-d", "--name", "busy", "-m", "64m", image, "sh", "-c", "while :; do :; done")
    output = hutch.out("stats", "--no-stream")
    line = next(row for row in output.splitlines() if "busy" in row)
    assert "/ 64MiB" in line
    cpu = float(line.split()[2].rstrip("%"))
    assert 20 < cpu < 150


def test_user_by_name_from_image(hutch: Hutch, image: str, tmp_path: Path):
    hutch.out("run", "--name", "adduser", image, "sh", "-c", "echo 'app:x:1234:2345::/:/bin/sh' >> /etc/passwd")
    hutch.out("commit", "adduser", "busybox:user")
    assert hutch.out("run", "--rm", "-u", "app", "busybox:user", "id", "-u").strip() == "1234"
    assert hutch.out("run", "--rm", "-u", "app", "busybox:user", "id", "-g").strip() == "2345"
    result = hutch.run("run", "--rm", "-u", "nobody", "busybox:user", "true")
    assert result.returncode == 125
    assert b"nobody" in result.stderr


def test_env_file(hutch: Hutch, image: str, tmp_path: Path):
    env_file = tmp_path / "env"
    env_file.write_text("# comment\nFIRST=one\n\nSECOND=two words\n")
    output = hutch.out("run", "--rm", "--env-file", str(env_file), image, "sh", "-c", 'echo "$FIRST/$SECOND"')
    assert output == "one/two words\n"
