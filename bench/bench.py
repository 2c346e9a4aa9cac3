#!/usr/bin/env python3
"""Time hutch against Podman on the same image, in one run, as root.

For each operation the script runs hutch and Podman alternately REPEAT
times, takes the median wall time of each, and prints hutch/podman. Each
round imports a tar that differs from the earlier ones by one small file,
and loads its saved archive after removing the image, so both tools extract
every layer in full. It also
prints the peak resident memory of hutch's CLI process for each operation
(from wait4's rusage; hutch-helper is not included for `run`, and is
reported separately as its own resident size).

The image is a Debian minbase root filesystem made by debootstrap on first
use and cached in $HUTCH_BENCH_CACHE (default /var/tmp/hutch-bench).
Podman runs with runc, ulimits inside the hard limits, the overlay driver
and a private store, so the host's Podman store is not touched.

Usage: sudo python3 bench/bench.py [--repeat N] [--rootfs-tar FILE]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CACHE = Path(os.environ.get("HUTCH_BENCH_CACHE", "/var/tmp/hutch-bench"))
PODMAN_CONF = """[containers]
default_ulimits = ["nofile=20000:20000", "nproc=20000:20000"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""


def debian_mirror() -> str:
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    if sources.exists():
        for line in sources.read_text().splitlines():
            if line.startswith("URIs:"):
                return line.split()[1]
    return "http://deb.debian.org/debian"


def minbase_tar() -> Path:
    """Return a tar of a Debian minbase root filesystem, made once and cached."""
    tar = CACHE / "minbase.tar"
    if tar.exists():
        return tar
    CACHE.mkdir(parents=True, exist_ok=True)
    rootfs = CACHE / "minbase"
    if not (rootfs / "usr/bin/dpkg").exists():
        shutil.rmtree(rootfs, ignore_errors=True)
        print("making a Debian minbase with debootstrap (a few minutes, once)", file=sys.stderr)
        subprocess.run(
            ["debootstrap", "--variant=minbase", "bookworm", str(rootfs), debian_mirror()],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    partial = tar.with_suffix(".partial")
    subprocess.run(
        ["tar", "--numeric-owner", "--xattrs", "-C", str(rootfs), "-cf", str(partial), "."],
        check=True,
    )
    partial.rename(tar)
    return tar


def make_variant(rootfs_tar: Path, work: Path, number: int) -> Path:
    """Return a copy of ROOTFS_TAR with one extra small file, so its digest is new."""
    variant = work / f"variant-{number}.tar"
    shutil.copyfile(rootfs_tar, variant)
    marker = work / f"bench-round-{number}"
    marker.write_text(f"round {number}\n")
    subprocess.run(
        ["tar", "--append", "-f", str(variant), "-C", str(work), marker.name], check=True
    )
    marker.unlink()
    return variant


def measure(argv: list[str], env: dict[str, str], stdin=None, stdout=None) -> tuple[float, int]:
    """Run ARGV; return wall seconds and the peak RSS in KiB of it and its children."""
    started = time.perf_counter()
    process = subprocess.Popen(
        argv, env=env, stdin=stdin or subprocess.DEVNULL,
        stdout=stdout or subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    errors = process.stderr.read().decode(errors="replace") if process.stderr else ""
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({process.returncode}): {errors.strip()}")
    return elapsed, usage.ru_maxrss


class Tool:
    def __init__(self, name: str, base: list[str], env: dict[str, str]) -> None:
        self.name = name
        self.base = base
        self.env = env

    def __call__(self, *args: str, stdin=None, stdout=None) -> tuple[float, int]:
        return measure([*self.base, *args], self.env, stdin, stdout)

    def output(self, *args: str) -> str:
        return subprocess.run(
            [*self.base, *args], env=self.env, check=True, capture_output=True, text=True
        ).stdout.strip()


def helper_rss_kib(runtime: Path) -> int:
    pid_text = subprocess.run(
        ["pgrep", "-f", f"hutch_helper --runtime-dir {runtime}"], capture_output=True, text=True
    ).stdout.split()
    for line in Path(f"/proc/{pid_text[0]}/status").read_text().splitlines() if pid_text else []:
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs of each operation (median)")
    parser.add_argument("--rootfs-tar", type=Path, help="root filesystem tar (default: minbase)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench.py: run as root (Podman's rootless mode cannot run here)")

    rootfs_tar = args.rootfs_tar or minbase_tar()
    work = Path(tempfile.mkdtemp(prefix="hutch-bench-"))
    conf = work / "containers.conf"
    conf.write_text(PODMAN_CONF)
    base_env = {"PATH": os.environ["PATH"], "HOME": str(work)}
    podman = Tool(
        "podman",
        ["podman", "--root", str(work / "podman-root"), "--runroot", str(work / "podman-run"),
         "--storage-driver", "overlay"],
        {**base_env, "CONTAINERS_CONF": str(conf)},
    )  # fmt: skip
    runtime = work / "hutch-run"
    hutch = Tool(
        "hutch",
        [sys.executable, "-m", "hutch"],
        {**base_env, "HUTCH_STORE": str(work / "hutch-store"), "HUTCH_RUNTIME_DIR": str(runtime),
         **{k: v for k, v in os.environ.items() if k in ("HUTCH_LIBEXEC", "PYTHONPATH")}},
    )  # fmt: skip

    size = rootfs_tar.stat().st_size
    print(f"image: {rootfs_tar} ({size / 2**20:.0f} MiB), {args.repeat} runs each, median")
    results: dict[str, dict[str, list[tuple[float, int]]]] = {}

    def record(operation: str, tool: Tool, figures: tuple[float, int]) -> None:
        results.setdefault(operation, {}).setdefault(tool.name, []).append(figures)

    try:
        for tool in (hutch, podman):
            tool("import", str(rootfs_tar), "bench:base")
            if tool is podman:
                tool("run", "--rm", "--network", "none", "bench:base", "true")  # warm
            else:
                tool("run", "--rm", "bench:base", "true")  # starts the helper
            tool("create", "--name", "exp", "bench:base", "true") if tool is podman else tool(
                "run", "--name", "exp", "bench:base", "true"
            )
        for round_number in range(args.repeat):
            # A tar that differs from every earlier one, so that no tool can
            # reuse a layer it already stored: import and load extract it all.
            variant = make_variant(rootfs_tar, work, round_number)
            for tool in (hutch, podman):
                extra = ["--network", "none"] if tool is podman else []
                record("run --rm true", tool, tool("run", "--rm", *extra, "bench:base", "true"))
                name = f"bench:v{round_number}"
                record("import", tool, tool("import", str(variant), name))
                archive = work / f"{tool.name}.tar"
                with open(archive, "wb") as out:
                    record("save", tool, tool("save", name, stdout=out))
                tool("rmi", name)
                with open(archive, "rb") as source:
                    record("load", tool, tool("load", stdin=source))
                tool("rmi", name)
                with open(work / "export.tar", "wb") as out:
                    record("export", tool, tool("export", "exp", stdout=out))
            variant.unlink()
        cat_seconds = measure(["cat", str(rootfs_tar)], base_env, stdout=None)[0]
        helper_kib = helper_rss_kib(runtime)
    finally:
        subprocess.run([*hutch.base, "helper", "stop"], env=hutch.env, capture_output=True)
        subprocess.run([*podman.base, "rm", "-af"], env=podman.env, capture_output=True)
        subprocess.run([*podman.base, "system", "reset", "-f"], env=podman.env, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)

    print(f"{'operation':<16}{'hutch s':>10}{'podman s':>10}{'ratio':>8}{'hutch peak MiB':>16}")
    for operation, by_tool in results.items():
        ours = statistics.median(t for t, _ in by_tool["hutch"])
        theirs = statistics.median(t for t, _ in by_tool["podman"])
        peak = max(m for _, m in by_tool["hutch"]) / 1024
        print(f"{operation:<16}{ours:>10.3f}{theirs:>10.3f}{ours / theirs:>8.2f}{peak:>16.1f}")
    print(f"cat of the tar (read only, page cache): {cat_seconds:.3f} s")
    print(f"hutch-helper peak resident memory: {helper_kib / 1024:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
