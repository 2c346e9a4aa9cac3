"""Archives move between hutch and a real Docker engine (Debian's docker.io)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from hutchtest import Hutch

pytestmark = [
    pytest.mark.peer,
    pytest.mark.skipif(os.geteuid() != 0, reason="dockerd runs as root"),
]

DOCKER = "/usr/bin/docker"  # Debian's client; /usr/local/bin may hold another one


class Docker:
    """A private dockerd: its own data root, socket and containerd namespace."""

    def __init__(self) -> None:
        # Short paths: dockerd and containerd put unix sockets under them.
        self.base = Path(tempfile.mkdtemp(prefix="hutch-docker-"))
        self.socket = self.base / "docker.sock"
        self.log = open(self.base / "dockerd.log", "wb")
        self.process = subprocess.Popen(
            [
                "dockerd", "--data-root", str(self.base / "data"),
                "--exec-root", str(self.base / "exec"), "-H", f"unix://{self.socket}",
                "--pidfile", str(self.base / "dockerd.pid"), "--iptables=false",
                "--ip-masq=false", "--bridge=none", "--containerd-namespace", "hutch-test",
                "--containerd-plugins-namespace", "hutch-test-plugins",
            ],
            stdout=self.log,
            stderr=self.log,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.socket.exists() and self.run("version").returncode == 0:
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        self.stop()
        raise AssertionError(f"dockerd did not start: {(self.base / 'dockerd.log').read_text()[-2000:]}")

    def run(self, *args: str, **kwargs) -> subprocess.CompletedProcess[bytes]:
        kwargs.setdefault("capture_output", True)
        return subprocess.run([DOCKER, "-H", f"unix://{self.socket}", *args], timeout=300, **kwargs)

    def out(self, *args: str) -> str:
        result = self.run(*args)
        assert result.returncode == 0, result.stderr.decode(errors="replace")
        return result.stdout.decode()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
        for mount in sorted((m for m in mounts if m.startswith(str(self.base))), reverse=True):
            subprocess.run(["umount", "-l", mount], capture_output=True)
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture(scope="module")
def docker():
    if shutil.which("dockerd") is None or not os.path.exists(DOCKER):
        if os.environ.get("CI"):
            pytest.fail("docker.io is not installed; tests/run-all.sh installs it")
        pytest.skip("docker.io is not installed (apt-get install docker.io)")
    engine = Docker()
    try:
        yield engine
    finally:
        engine.stop()


def test_hutch_save_runs_in_docker(hutch: Hutch, docker: Docker, busybox_tar: Path, tmp_path: Path):
    hutch.out("import", str(busybox_tar), "dock/box:1", "--change", 'CMD ["sh"]')
    hutch.out("run", "--name", "w", "dock/box:1", "sh", "-c", "echo via-hutch > /etc/motd; rm /bin/vi")
    hutch.out("commit", "w", "dock/box:2")
    archive = tmp_path / "hutch.tar"
    hutch.out("save", "-o", str(archive), "dock/box:2")
    assert "dock/box:2" in docker.out("load", "-i", str(archive))
    script = "cat /etc/motd; test -e /bin/vi || echo vi-gone"
    output = docker.out("run", "--rm", "--network", "none", "dock/box:2", "sh", "-c", script)
    assert output == "via-hutch\nvi-gone\n"
    docker.run("rmi", "dock/box:2", "dock/box:1")


def test_docker_save_runs_in_hutch(hutch: Hutch, docker: Docker, busybox_tar: Path, tmp_path: Path):
    with open(busybox_tar, "rb") as source:
        result = docker.run("import", "-", "made/by-docker:1", stdin=source)
    assert result.returncode == 0, result.stderr
    docker.out("run", "--name", "dw", "--network", "none", "made/by-docker:1", "sh", "-c", "echo via-docker > /etc/motd")
    docker.out("commit", "dw", "made/by-docker:2")
    archive = tmp_path / "docker.tar"
    docker.out("save", "-o", str(archive), "made/by-docker:2")
    assert "made/by-docker:2" in hutch.out("load", "-i", str(archive))
    assert hutch.out("run", "--rm", "made/by-docker:2", "cat", "/etc/motd") == "via-docker\n"
    docker.run("rm", "-f", "dw")
    docker.run("rmi", "made/by-docker:2", "made/by-docker:1")
