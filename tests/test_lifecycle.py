"""Containers that live: limits under load, signals, terminals, exec, as root."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from hutchtest import Hutch

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="these tests run as root")


def test_fork_bomb_is_contained(hutch: Hutch, image: str):
    bomb = "bomb() { bomb | bomb & }; bomb; sleep 30"
    container_id = hutch.out("run", "-d", "--pids-limit", "64", image, "sh", "-c", bomb).strip()
    current = Path(f"/sys/fs/cgroup/pids/hutch/0/{container_id}/pids.current")
    highest = 0
    deadline = time.monotonic() + 20
    # On a loaded machine the bomb takes a while to reach the limit.
    while time.monotonic() < deadline and highest < 60:
        highest = max(highest, int(current.read_text()))
        assert highest <= 64
        time.sleep(0.1)
    assert highest >= 60  # the bomb really forked up to the limit
    # The host still starts processes while the bomb runs.
    assert subprocess.run(["true"]).returncode == 0
    hutch.out("rm", "-f", container_id)


def test_cpus_half_gets_about_half_a_core(hutch: Hutch, image: str):
    container_id = hutch.out("run", "-d", "--cpus", "0.5", image, "sh", "-c", "while :; do :; done").strip()
    usage = Path(f"/sys/fs/cgroup/cpuacct/hutch/0/{container_id}/cpuacct.usage")
    time.sleep(0.5)
    first, started = int(usage.read_text()), time.monotonic()
    time.sleep(3)
    used = (int(usage.read_text()) - first) / 1e9
    share = used / (time.monotonic() - started)
    hutch.out("rm", "-f", container_id)
    assert 0.35 < share < 0.65


def test_sigterm_to_run_reaches_container(hutch: Hutch, image: str):
    script = "trap 'echo got-term; exit 7' TERM; echo ready; while :; do sleep 0.1; done"
    process = subprocess.Popen(
        hutch.argv(["run", "--rm", image, "sh", "-c", script]),
        env={**os.environ, **hutch.env()},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout.readline() == b"ready\n"
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=30)
    assert out == b"got-term\n"
    assert process.returncode == 7


def test_ps_columns_and_json(hutch: Hutch, image: str):
    hutch.out("run", "-d", "--name", "lister", image, "sleep", "100")
    header = hutch.out("ps").splitlines()[0].split()
    assert header == ["CONTAINER", "ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "NAMES"]
    row = next(line for line in hutch.out("ps").splitlines() if "lister" in line)
    assert "Up " in row
    assert '"sleep 100"' in row
    import json

    listed = json.loads(hutch.out("ps", "--format", "json"))
    assert listed[0]["Names"] == ["lister"]
    assert listed[0]["State"] == "running"
    assert len(hutch.out("ps", "-q").split()[0]) == 12


def test_rm_flag_after_kill(hutch: Hutch, image: str):
    process = subprocess.Popen(
        hutch.argv(["run", "--rm", "--name", "doomed", image, "sleep", "100"]),
        env={**os.environ, **hutch.env()},
    )
    for _ in range(100):
        if "doomed" in hutch.out("ps"):
            break
        time.sleep(0.1)
    hutch.out("kill", "doomed")
    assert process.wait(timeout=30) == 137
    assert "doomed" not in hutch.out("ps", "-a")


def test_bind_mounts_rw_and_ro(hutch: Hutch, image: str, tmp_path: Path):
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "in").write_text("from-host\n")
    output = hutch.out("run", "--rm", "-v", f"{shared}:/data", image, "sh", "-c", "cat /data/in; echo back > /data/out")
    assert output == "from-host\n"
    assert (shared / "out").read_text() == "back\n"
    result = hutch.run("run", "--rm", "-v", f"{shared}:/data:ro", image, "touch", "/data/x")
    assert result.returncode != 0
    assert not (shared / "x").exists()


def test_bind_source_must_exist(hutch: Hutch, image: str, tmp_path: Path):
    result = hutch.run("run", "--rm", "-v", f"{tmp_path}/missing:/data", image, "true")
    assert result.returncode == 125
    assert b"does not exist" in result.stderr


def test_tmpfs_mount(hutch: Hutch, image: str):
    output = hutch.out("run", "--rm", "--read-only", "--tmpfs", "/scratch:size=1m", image, "sh", "-c", "touch /scratch/ok && grep /scratch /proc/mounts")
    assert "tmpfs" in output
    assert "size=1024k" in output


def test_init_reaps_orphans(hutch: Hutch, image: str):
    script = "sh -c 'sleep 0.2 &' ; sleep 1; cat /proc/1/comm; ps -o stat | grep -c Z || true"
    output = hutch.out("run", "--rm", "--init", image, "sh", "-c", script).split()
    assert output[0] == "hutch-init"
    assert output[-1] == "0"


def test_exec_joins_cgroup(hutch: Hutch, image: str):
    container_id = hutch.out("run", "-d", "-m", "64m", image, "sleep", "100").strip()
    procs = Path(f"/sys/fs/cgroup/memory/hutch/0/{container_id}/cgroup.procs")
    before = set(procs.read_text().split())
    hutch.out("exec", "-d", container_id, "sleep", "30")
    time.sleep(0.5)
    added = set(procs.read_text().split()) - before
    commands = {Path(f"/proc/{pid}/comm").read_text().strip() for pid in added}
    assert "sleep" in commands


def test_helper_killed_then_stop_works(hutch: Hutch, image: str):
    container_id = hutch.out("run", "-d", image, "sh", "-c", "echo up; sleep 100").strip()
    status = hutch.out("helper", "status")
    helper_pid = int(next(line for line in status.splitlines() if "pid:" in line).split()[-1])
    os.kill(helper_pid, signal.SIGKILL)
    time.sleep(0.3)
    assert container_id[:12] in hutch.out("ps")
    assert hutch.out("logs", container_id) == "up\n"
    hutch.out("stop", "-t", "1", container_id)
    assert hutch.out("wait", container_id).strip() == "137"
    assert "Exited (137)" in hutch.out("ps", "-a")


def test_inspect_and_ps_templates(hutch: Hutch, image: str):
    assert hutch.run("run", "--name", "tpl", image, "sh", "-c", "exit 6").returncode == 6
    assert hutch.out("inspect", "-f", "{{.State.ExitCode}} {{.State.OOMKilled}}", "tpl") == "6 false\n"
    assert hutch.out("inspect", "--format", "{{json .Config.Cmd}}", "tpl") == '["sh", "-c", "exit 6"]\n'
    assert hutch.out("ps", "-a", "--format", "{{.Names}}\\t{{.State}}") == "tpl\texited\n"
    result = hutch.run("inspect", "-f", "{{.Nope}}", "tpl")
    assert result.returncode == 125
    assert b"Nope" in result.stderr


def test_killed_monitor_is_explained(hutch: Hutch, image: str):
    container_id = hutch.out("run", "-d", image, "sleep", "100").strip()
    state = json.loads(hutch.out("inspect", container_id))[0]["State"]
    monitor = int(Path(f"/proc/{state['Pid']}/stat").read_text().rsplit(")", 1)[1].split()[1])
    os.kill(monitor, signal.SIGKILL)
    assert hutch.out("wait", container_id).strip() == "137"
    state = json.loads(hutch.out("inspect", container_id))[0]["State"]
    assert "without reporting" in state["Error"]


def test_negative_stop_timeout_is_125(hutch: Hutch, image: str):
    container_id = hutch.out("run", "-d", image, "sleep", "100").strip()
    result = hutch.run("stop", "-t", "-5", container_id)
    assert result.returncode == 125
    assert "Up" in hutch.out("ps")


def test_log_max_size_caps_the_log(hutch: Hutch, image: str):
    script = "i=0; while [ $i -lt 20000 ]; do echo line-$i-padding-padding-padding; i=$((i+1)); done"
    container_id = hutch.out("run", "-d", "--log-opt", "max-size=64k", image, "sh", "-c", script).strip()
    hutch.out("wait", container_id)
    directory = next(p for p in (hutch.store / "containers").iterdir() if p.name == container_id)
    assert (directory / "log").stat().st_size <= 64 * 1024 + 70 * 1024
    assert (directory / "log.1").stat().st_size <= 64 * 1024 + 70 * 1024
    lines = hutch.out("logs", container_id).splitlines()
    assert lines[-1] == "line-19999-padding-padding-padding"
    assert len(lines) < 20000
    result = hutch.run("run", "--rm", "--log-opt", "max-file=3", image, "true")
    assert result.returncode == 125


def test_pause_freezes_and_unpause_resumes(hutch: Hutch, image: str):
    container_id = hutch.out("run", "-d", image, "sh", "-c", "while :; do :; done").strip()
    usage = Path(f"/sys/fs/cgroup/cpuacct/hutch/0/{container_id}/cpuacct.usage")
    hutch.out("pause", container_id)
    assert "(Paused)" in hutch.out("ps")
    first = int(usage.read_text())
    time.sleep(1)
    assert int(usage.read_text()) - first < 10_000_000  # under 10 ms of cpu while frozen
    assert hutch.run("pause", container_id).returncode == 125
    hutch.out("unpause", container_id)
    first = int(usage.read_text())
    time.sleep(1)
    assert int(usage.read_text()) - first > 300_000_000
    assert hutch.run("unpause", container_id).returncode == 125


def test_commit_of_running_container_pauses_then_resumes(hutch: Hutch, image: str):
    container_id = hutch.out("run", "-d", image, "sh", "-c", "echo v1 > /data; while :; do sleep 0.1; done").strip()
    time.sleep(0.5)
    hutch.out("commit", container_id, "busybox:live")
    assert "(Paused)" not in hutch.out("ps")
    assert hutch.out("run", "--rm", "busybox:live", "cat", "/data") == "v1\n"


def test_stop_of_paused_container(hutch: Hutch, image: str):
    container_id = hutch.out("run", "-d", image, "sleep", "100").strip()
    hutch.out("pause", container_id)
    hutch.out("stop", "-t", "1", container_id)
    assert hutch.out("wait", container_id).strip() == "137"


def test_log_has_a_default_cap(hutch: Hutch, image: str):
    container_id = hutch.out("run", "-d", image, "true").strip()
    config = json.loads(hutch.out("inspect", container_id))[0]["HostConfig"]["LogConfig"]
    assert config["Config"]["max-size"] == str(100 * 1024 * 1024)


def test_entrypoint_and_cmd_as_docker(hutch: Hutch, busybox_tar: Path):
    hutch.out(
        "import", str(busybox_tar), "busybox:ep",
        "--change", 'ENTRYPOINT ["echo", "from-entrypoint"]', "--change", 'CMD ["default-arg"]',
    )  # fmt: skip
    assert hutch.out("run", "--rm", "busybox:ep") == "from-entrypoint default-arg\n"
    assert hutch.out("run", "--rm", "busybox:ep", "given") == "from-entrypoint given\n"
    assert hutch.out("run", "--rm", "--entrypoint", "printf", "busybox:ep", "x%sx", "y") == "xyx"


def test_kill_with_named_signal(hutch: Hutch, image: str):
    script = "trap 'exit 42' USR1; while :; do sleep 0.1; done"
    container_id = hutch.out("run", "-d", image, "sh", "-c", script).strip()
    time.sleep(0.5)
    hutch.out("kill", "-s", "USR1", container_id)
    assert hutch.out("wait", container_id).strip() == "42"
    assert hutch.run("kill", "-s", "NOSUCH", container_id).returncode == 125


def test_stop_uses_image_stop_signal(hutch: Hutch, busybox_tar: Path):
    hutch.out("import", str(busybox_tar), "busybox:stopsig", "--change", "STOPSIGNAL SIGUSR2")
    script = "trap 'exit 12' USR2; trap 'exit 15' TERM; while :; do sleep 0.1; done"
    container_id = hutch.out("run", "-d", "busybox:stopsig", "sh", "-c", script).strip()
    time.sleep(0.5)
    hutch.out("stop", container_id)
    assert hutch.out("wait", container_id).strip() == "12"
