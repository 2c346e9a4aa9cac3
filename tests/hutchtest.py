"""Drive the real hutch CLI in a subprocess with a private store and helper."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from support import User, libexec_dir


class Hutch:
    """The hutch CLI with its own store and runtime dir, as root or as USER."""

    def __init__(
        self, store: Path, runtime: Path, user: User | None = None, libexec: Path | None = None
    ) -> None:
        self.store = store
        self.runtime = runtime
        self.user = user
        self.libexec = libexec or libexec_dir()

    def env(self) -> dict[str, str]:
        env = {
            "HUTCH_STORE": str(self.store),
            "HUTCH_RUNTIME_DIR": str(self.runtime),
            "HUTCH_LIBEXEC": str(self.libexec),
        }
        if "PYTHONPATH" in os.environ:
            env["PYTHONPATH"] = os.environ["PYTHONPATH"]
        return env

    def argv(self, args: list[str]) -> list[str]:
        return [sys.executable, "-m", "hutch", *args]

    def command(self, args: list[str]) -> tuple[list[str], dict[str, str] | None]:
        """Return the argv and environment that run hutch ARGS as this instance's user."""
        if self.user is None:
            return self.argv(args), {**os.environ, **self.env()}
        env_args = [f"{k}={v}" for k, v in self.env().items()]
        return self.user.command(["env", *env_args, *self.argv(args)]), None

    def run(
        self, *args: str, input: bytes | None = None, timeout: float = 120, check: bool = False
    ) -> subprocess.CompletedProcess[bytes]:
        command, env = self.command(list(args))
        result = subprocess.run(
            command,
            input=input,
            capture_output=True,
            timeout=timeout,
            env=env,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"hutch {' '.join(args)} exited {result.returncode}: "
                f"{result.stderr.decode(errors='replace')}"
            )
        return result

    def out(self, *args: str, **kwargs) -> str:
        """Run hutch, require exit 0, and return stdout as text."""
        return self.run(*args, check=True, **kwargs).stdout.decode()

    def cleanup(self) -> None:
        """Remove every container and stop the helper."""
        listing = self.run("ps", "-aq", "--no-trunc")
        for container_id in listing.stdout.decode().split():
            self.run("rm", "-f", container_id)
        self.run("helper", "stop")
