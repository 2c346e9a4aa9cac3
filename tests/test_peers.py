"""Images move between hutch and real Podman and skopeo, and run on both."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from hutchtest import Hutch

pytestmark = [
    pytest.mark.peer,
    pytest.mark.skipif(os.geteuid() != 0, reason="Podman runs as root here"),
]

PODMAN_CONF = """[containers]
default_ulimits = ["nofile=20000:20000", "nproc=20000:20000"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""


class Podman:
    """Podman with a private store, so the host's images are untouched."""

    def __init__(self, base: Path) -> None:
        self.base = base
        conf = base / "containers.conf"
        conf.write_text(PODMAN_CONF)
        self.env = {**os.environ, "CONTAINERS_CONF": str(conf)}
        # Podman rejects a run root longer than 50 characters.
        self.runroot = Path(tempfile.mkdtemp(prefix="hutch-podman-"))
        self.prefix = [
            "podman", "--root", str(base / "root"), "--runroot", str(self.runroot),
            "--storage-driver", "vfs",
        ]  # fmt: skip

    def run(self, *args: str, **kwargs) -> subprocess.CompletedProcess[bytes]:
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("timeout", 300)
        return subprocess.run([*self.prefix, *args], env=self.env, **kwargs)

    def out(self, *args: str, **kwargs) -> str:
        result = self.run(*args, **kwargs)
        assert result.returncode == 0, result.stderr.decode(errors="replace")
        return result.stdout.decode()


def _require(tool: str) -> None:
    if shutil.which(tool) is None:
        if os.environ.get("CI"):
            pytest.fail(f"{tool} is not installed; tests/run-all.sh installs it")
        pytest.skip(f"{tool} is not installed (apt-get install {tool})")


@pytest.fixture
def podman(tmp_path: Path):
    _require("podman")
    base = tmp_path / "podman"
    base.mkdir()
    instance = Podman(base)
    try:
        yield instance
    finally:
        instance.run("rm", "-af")
        instance.run("system", "reset", "-f")
        shutil.rmtree(instance.runroot, ignore_errors=True)


@pytest.fixture
def image(hutch: Hutch, busybox_tar: Path) -> str:
    hutch.out("import", str(busybox_tar), "peer/busybox:v1", "--change", 'CMD ["sh"]')
    hutch.out("run", "--name", "edit", "peer/busybox:v1", "sh", "-c", "echo from-hutch > /etc/motd")
    hutch.out("commit", "edit", "peer/busybox:v2")
    return "peer/busybox:v2"


def test_hutch_save_runs_in_podman(hutch: Hutch, podman: Podman, image: str, tmp_path: Path):
    archive = tmp_path / "hutch.tar"
    hutch.out("save", "-o", str(archive), image)
    loaded = podman.out("load", "-i", str(archive))
    assert "peer/busybox:v2" in loaded
    result = podman.out("run", "--rm", "--network", "none", "peer/busybox:v2", "cat", "/etc/motd")
    assert result == "from-hutch\n"


def test_podman_docker_archive_runs_in_hutch(hutch: Hutch, podman: Podman, busybox_tar: Path, tmp_path: Path):
    podman.out("import", str(busybox_tar), "made/by-podman:1")
    podman.out("run", "--name", "w", "--network", "none", "made/by-podman:1", "sh", "-c", "echo from-podman > /etc/motd")
    podman.out("commit", "w", "made/by-podman:2")
    archive = tmp_path / "podman.tar"
    podman.out("save", "--format", "docker-archive", "-o", str(archive), "made/by-podman:2")
    loaded = hutch.out("load", "-i", str(archive))
    assert "made/by-podman:2" in loaded
    assert hutch.out("run", "--rm", "localhost/made/by-podman:2", "cat", "/etc/motd") == "from-podman\n"


def test_podman_oci_archive_runs_in_hutch(hutch: Hutch, podman: Podman, busybox_tar: Path, tmp_path: Path):
    podman.out("import", str(busybox_tar), "made/oci:1")
    archive = tmp_path / "podman-oci.tar"
    podman.out("save", "--format", "oci-archive", "-o", str(archive), "made/oci:1")
    lines = hutch.out("load", "-i", str(archive))
    assert lines
    reference = lines.split()[-1]
    assert hutch.out("run", "--rm", reference, "echo", "oci-ok") == "oci-ok\n"


def test_skopeo_inspects_hutch_save(hutch: Hutch, image: str, tmp_path: Path):
    _require("skopeo")
    archive = tmp_path / "hutch.tar"
    hutch.out("save", "-o", str(archive), image)
    result = subprocess.run(
        ["skopeo", "inspect", f"docker-archive:{archive}"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    inspected = json.loads(result.stdout)
    local = json.loads(hutch.out("inspect", image))[0]
    assert inspected["Layers"][-1].startswith("sha256:")
    assert len(inspected["Layers"]) == len(local["RootFS"]["Layers"])
