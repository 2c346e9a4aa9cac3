"""Test helpers shared by every test directory: paths, a busybox tree, test users."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BUSYBOX = Path("/bin/busybox")


def libexec_dir() -> Path:
    """Return the directory that contains hutch-spawn and hutch-cgroup."""
    return Path(os.environ.get("HUTCH_LIBEXEC", REPO / "c-helper"))


def make_busybox_tree(root: Path) -> Path:
    """Fill ROOT with a static busybox and one link per applet."""
    if not BUSYBOX.exists():
        pytest.skip("busybox-static is not installed (apt-get install busybox-static)")
    for name in ("bin", "etc", "tmp", "root", "proc", "sys", "dev"):
        (root / name).mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    applets = subprocess.run(
        [str(BUSYBOX), "--list"], check=True, capture_output=True, text=True
    ).stdout.split()
    for applet in applets:
        link = root / "bin" / applet
        if applet != "busybox" and not link.exists():
            link.symlink_to("busybox")
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\n")
    (root / "tmp").chmod(0o1777)
    return root




class User:
    """A non-root user made for one test; removed with its processes after it."""

    def __init__(self, name: str) -> None:
        entry = pwd.getpwnam(name)
        self.name = name
        self.uid = entry.pw_uid
        self.gid = entry.pw_gid
        self.home = Path(entry.pw_dir)
        self.runtime_dir = Path(f"/tmp/hutch-test-run-{self.uid}")

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),
            "USER": self.name,
            "LOGNAME": self.name,
            "XDG_RUNTIME_DIR": str(self.runtime_dir),
            "LANG": "C.UTF-8",
        }
        for name in ("HUTCH_LIBEXEC", "PYTHONPATH"):
            if name in os.environ:
                env[name] = os.environ[name]
        env.update(extra or {})
        return env

    def command(self, argv: list[str]) -> list[str]:
        """Return ARGV wrapped so that it runs as this user with no privilege."""
        return [
            "setpriv",
            f"--reuid={self.uid}",
            f"--regid={self.gid}",
            "--init-groups",
            "--reset-env",
            "--",
            "env",
            *[f"{k}={v}" for k, v in self.env().items()],
            *argv,
        ]

    def run(self, argv: list[str], **kwargs) -> subprocess.CompletedProcess:
        kwargs.setdefault("capture_output", True)
        return subprocess.run(self.command(argv), **kwargs)
