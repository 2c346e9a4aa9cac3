"""Check a StartContainer request and turn it into argv for the C programs.

The CLI is not a trust boundary: every field is checked here again, and
hutch-cgroup checks its own argv once more. The option names come from the
table in docs/helper-spec.md; tests compare them with `--list-options`.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from hutch.helper.v1 import helper_pb2

ID_PATTERN = re.compile(r"[0-9a-f]{64}")
HOSTNAME_PATTERN = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,62})?")
ENV_NAME_PATTERN = re.compile(r"[^=\0]+")
MAX_ARGS = 4096
MAX_ARG_BYTES = 128 * 1024
MAX_LAYERS = 128
MAX_ENV = 256
DEFAULT_PIDS_LIMIT = 2048
MIN_MEMORY = 4 * 1024 * 1024
MIN_LOG_BYTES = 4096


class InvalidRequest(ValueError):
    """A request field is out of range or names a path the helper rejects."""


@dataclass
class Plan:
    argv: list[str]
    uses_cgroup: bool


def check_id(container_id: str) -> str:
    if not ID_PATTERN.fullmatch(container_id):
        raise InvalidRequest(f"invalid container id {container_id!r}: expected 64 hex digits")
    return container_id


def _check_text(value: str, what: str) -> str:
    if "\0" in value:
        raise InvalidRequest(f"{what} contains a NUL byte")
    if len(value.encode()) > MAX_ARG_BYTES:
        raise InvalidRequest(f"{what} is longer than {MAX_ARG_BYTES} bytes")
    return value


def check_own_dir(path: str, what: str) -> Path:
    """Check that PATH is an absolute, real directory that this uid owns."""
    _check_text(path, what)
    if not os.path.isabs(path):
        raise InvalidRequest(f"{what} {path!r} is not an absolute path")
    try:
        info = os.lstat(path)
    except OSError as error:
        raise InvalidRequest(f"{what} {path}: {error.strerror}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise InvalidRequest(f"{what} {path} is not a directory")
    if info.st_uid != os.geteuid():
        raise InvalidRequest(f"{what} {path} is not owned by uid {os.geteuid()}")
    return Path(path)


def _limit_args(limits: helper_pb2.Limits, default_pids: bool, pids_writable: bool) -> list[str]:
    args: list[str] = []
    if limits.memory_bytes:
        if limits.memory_bytes < MIN_MEMORY:
            raise InvalidRequest("memory limit must be at least 4 MiB")
        args += ["--memory", str(limits.memory_bytes)]
    if limits.memory_swap_bytes > 0:
        if limits.memory_swap_bytes < limits.memory_bytes:
            raise InvalidRequest("memory+swap limit must not be below the memory limit")
        args += ["--memory-swap", str(limits.memory_swap_bytes)]
    pids = limits.pids
    # For a non-root user, the setuid hutch-cgroup applies the policy's pids
    # ceiling itself when no pids limit is given.
    if not pids and default_pids and pids_writable and os.geteuid() == 0:
        pids = DEFAULT_PIDS_LIMIT
    if pids:
        if pids < 0:
            raise InvalidRequest("pids limit must be positive")
        args += ["--pids", str(pids)]
    if limits.cpu_quota_us:
        args += ["--cpu-quota", str(limits.cpu_quota_us)]
        if limits.cpu_period_us:
            args += ["--cpu-period", str(limits.cpu_period_us)]
    if limits.cpu_shares:
        args += ["--cpu-shares", str(limits.cpu_shares)]
    return args


@dataclass
class Io:
    """The descriptors and sockets a monitor gets, chosen by the helper."""

    log_fd: int
    status_fd: int
    attach_socket: str = ""
    rotate_fd: int = -1  # log.1, when the log has a size cap


def _keep_fd_args(io: Io) -> list[str]:
    """Return the hutch-cgroup options that keep hutch-spawn's fds open; it closes the rest."""
    args = ["--keep-fd", str(io.log_fd), "--keep-fd", str(io.status_fd)]
    if io.rotate_fd >= 0:
        args += ["--keep-fd", str(io.rotate_fd)]
    return args


CAPABILITY_PATTERN = re.compile(r"(CAP_)?[A-Za-z_]{2,32}")


def _check_capability(name: str) -> str:
    if not CAPABILITY_PATTERN.fullmatch(name):
        raise InvalidRequest(f"invalid capability name {name!r}")
    return name.upper().removeprefix("CAP_")


def _check_container_path(path: str, what: str) -> str:
    _check_text(path, what)
    if not path.startswith("/") or ".." in path.split("/"):
        raise InvalidRequest(f"{what} {path!r} must be an absolute path without '..'")
    return path


def _namespace_args(request: helper_pb2.StartContainerRequest) -> list[str]:
    args = ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup"]
    if os.geteuid() != 0:
        args.append("--unshare-user")
    if request.network in ("", "none"):
        args.append("--unshare-net")
    elif request.network != "host":
        raise InvalidRequest(f"invalid network {request.network!r}: expected none or host")
    for name, maps in (("--uid-map", request.uid_maps), ("--gid-map", request.gid_maps)):
        for idmap in maps:
            args += [name, f"{idmap.inside}:{idmap.outside}:{idmap.count}"]
    if request.hostname:
        if not HOSTNAME_PATTERN.fullmatch(request.hostname):
            raise InvalidRequest(f"invalid hostname {request.hostname!r}")
        args += ["--hostname", request.hostname]
    return args


def _rootfs_args(request: helper_pb2.StartContainerRequest) -> list[str]:
    args = ["--rootfs", str(check_own_dir(request.rootfs, "rootfs"))]
    if len(request.lower_dirs) > MAX_LAYERS:
        raise InvalidRequest(f"too many layers: {len(request.lower_dirs)} (at most {MAX_LAYERS})")
    if request.lower_dirs:
        for lower in request.lower_dirs:
            args += ["--overlay-lower", str(check_own_dir(lower, "layer"))]
        args += ["--overlay-upper", str(check_own_dir(request.upper_dir, "upper dir"))]
        args += ["--overlay-work", str(check_own_dir(request.work_dir, "work dir"))]
    if request.readonly_rootfs:
        args.append("--readonly-rootfs")
    for bind in request.binds:
        source = _check_text(bind.source, "bind mount source")
        if not os.path.isabs(source) or not os.path.exists(source):
            raise InvalidRequest(f"bind mount source {source!r} does not exist or is not absolute")
        destination = _check_container_path(bind.destination, "bind mount destination")
        if ":" in source or ":" in destination:
            raise InvalidRequest(f"bind mount paths must not contain ':': {source}:{destination}")
        args += ["--bind", f"{source}:{destination}{':ro' if bind.readonly else ''}"]
    for mount in request.tmpfs:
        destination = _check_container_path(mount.destination, "tmpfs destination")
        if ":" in destination:
            raise InvalidRequest(f"tmpfs destination must not contain ':': {destination}")
        if mount.size_bytes < 0:
            raise InvalidRequest(f"invalid tmpfs size {mount.size_bytes}")
        args += ["--tmpfs", f"{destination}:{mount.size_bytes}" if mount.size_bytes else destination]
    if request.init:
        args.append("--init")
    return args


def _process_args(request: helper_pb2.StartContainerRequest, io: Io) -> list[str]:
    cwd = request.cwd or "/"
    if not cwd.startswith("/"):
        raise InvalidRequest(f"working directory {cwd!r} is not an absolute path")
    args = ["--cwd", _check_text(cwd, "working directory")]
    if os.geteuid() != 0 and not request.uid_maps and (request.uid or request.gid):
        raise InvalidRequest(
            f"user {request.uid}:{request.gid} does not exist in this rootless container: "
            "only uid and gid 0 (you) are mapped; run without -u or with -u 0"
        )
    args += ["--uid", str(request.uid), "--gid", str(request.gid)]
    if len(request.env) > MAX_ENV:
        raise InvalidRequest(f"too many environment variables: {len(request.env)} (at most {MAX_ENV})")
    for variable in request.env:
        name, equals, _ = variable.partition("=")
        if not equals or not ENV_NAME_PATTERN.fullmatch(name):
            raise InvalidRequest(f"invalid environment variable {variable!r}: expected NAME=VALUE")
        args += ["--env", _check_text(variable, "environment variable")]
    for name in request.cap_drop:
        args += ["--cap-drop", _check_capability(name)]
    for name in request.cap_add:
        if os.geteuid() != 0:
            raise InvalidRequest(f"--cap-add {name} needs real root; a rootless container cannot gain it")
        args += ["--cap-add", _check_capability(name)]
    if request.tty:
        args.append("--tty")
        if request.tty_rows and request.tty_cols:
            if not (0 < request.tty_rows < 65536 and 0 < request.tty_cols < 65536):
                raise InvalidRequest("terminal size out of range")
            args += ["--tty-size", f"{request.tty_rows}x{request.tty_cols}"]
    if request.stdin:
        args.append("--stdin")
    if io.attach_socket:
        args += ["--attach-socket", io.attach_socket]
    args += ["--log-fd", str(io.log_fd), "--status-fd", str(io.status_fd)]
    if request.log_max_bytes:
        if request.log_max_bytes < MIN_LOG_BYTES:
            raise InvalidRequest(f"log size cap must be at least {MIN_LOG_BYTES} bytes")
        args += ["--log-max-bytes", str(request.log_max_bytes), "--log-rotate-fd", str(io.rotate_fd)]

    if not request.argv:
        raise InvalidRequest("no command given")
    if len(request.argv) > MAX_ARGS:
        raise InvalidRequest(f"too many arguments: {len(request.argv)} (at most {MAX_ARGS})")
    for arg in request.argv:
        _check_text(arg, "command argument")
    return [*args, "--", *request.argv]


def build(
    request: helper_pb2.StartContainerRequest,
    libexec: Path,
    writable_controllers: set[str],
    io: Io,
) -> Plan:
    """Return the argv that starts the container REQUEST describes.

    IO names the descriptors that the process will inherit for
    hutch-spawn's --log-fd and --status-fd, and the attach socket path.
    """
    check_id(request.id)
    spawn_args = [*_namespace_args(request), *_rootfs_args(request), *_process_args(request, io)]
    limit_args = _limit_args(
        request.limits, request.default_pids_limit, "pids" in writable_controllers
    )
    needed = _needed_controllers(request.limits)
    missing = sorted(needed - writable_controllers)
    if missing:
        raise CgroupUnavailable(missing)
    # With a writable pids controller every container gets a cgroup, so that
    # the default pids limit, stats, pause and OOM reports work.
    if limit_args or (request.default_pids_limit and "pids" in writable_controllers):
        argv = [str(libexec / "hutch-cgroup"), "--id", request.id, *limit_args,
                *_keep_fd_args(io), "--", *spawn_args]  # fmt: skip
        return Plan(argv, uses_cgroup=True)
    return Plan([str(libexec / "hutch-spawn"), *spawn_args], uses_cgroup=False)


def build_exec(
    request: helper_pb2.StartContainerRequest,
    libexec: Path,
    container_pid: int,
    container_cgroup: str,
    io: Io,
) -> Plan:
    """Return the argv that runs REQUEST's process in a running container.

    CONTAINER_CGROUP is the id of the container's cgroup, or "" when it
    has none.
    """
    check_id(request.id)
    spawn_args = ["--join", str(container_pid), *_process_args(request, io)]
    if container_cgroup:
        argv = [str(libexec / "hutch-cgroup"), "--join", container_cgroup, *_keep_fd_args(io),
                "--", *spawn_args]  # fmt: skip
        # The exec'd process lives in the container's cgroup, which the
        # container's own record removes; the exec has none of its own.
        return Plan(argv, uses_cgroup=False)
    return Plan([str(libexec / "hutch-spawn"), *spawn_args], uses_cgroup=False)


def _needed_controllers(limits: helper_pb2.Limits) -> set[str]:
    needed = set()
    if limits.memory_bytes or limits.memory_swap_bytes > 0:
        needed.add("memory")
    if limits.pids:
        needed.add("pids")
    if limits.cpu_quota_us or limits.cpu_shares:
        needed.add("cpu")
    return needed


class CgroupUnavailable(Exception):
    """A limit was requested for a controller this user cannot write."""

    def __init__(self, controllers: list[str], reason: str = "") -> None:
        super().__init__(", ".join(controllers))
        self.controllers = controllers
        self.reason = reason  # why hutch-cgroup --probe failed, if it did
