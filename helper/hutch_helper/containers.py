"""Container processes: start, watch, signal, and record how they ended.

Each container runs under its own hutch-spawn monitor, started in a new
session so that it outlives this helper. The monitor writes `pid N` and
later `exit N` or `signal N` to the container's `status` file, and the
container's output to its `log` file. The helper keeps one record per
container in its runtime directory, so a helper started later finds the
running containers again and learns how the others ended.
"""

from __future__ import annotations

import json
import logging
import os
import re
import select
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path

from hutch.helper.v1 import helper_pb2
from hutch.store.layout import remove_tree
from hutch_helper import plan

logger = logging.getLogger(__name__)

START_TIMEOUT_SECONDS = 30.0
REMOVE_DELAY_SECONDS = 2.0
REMOVE_ATTEMPTS = 50
MAX_SOCKET_PATH = 107  # sun_path is 108 bytes with the terminating NUL


CEILING_ERROR = re.compile(
    r"hutch-cgroup: --(memory|memory-swap|pids) (\d+) is above the ceiling of (\d+) in (.*)"
)
CEILING_OPTIONS = {"memory": "-m/--memory", "memory-swap": "--memory-swap", "pids": "--pids-limit"}


def _size_text(number: int) -> str:
    for unit, suffix in ((1 << 30, "g"), (1 << 20, "m"), (1 << 10, "k")):
        if number % unit == 0:
            return f"{number // unit}{suffix}"
    return str(number)


def explain_start_error(message: str) -> str:
    """Say a policy ceiling error in the CLI's terms rather than hutch-cgroup's flags."""
    match = CEILING_ERROR.fullmatch(message)
    if match is None:
        return message
    kind, value, ceiling, where = match.groups()
    if kind != "pids":
        value, ceiling = _size_text(int(value)), _size_text(int(ceiling))
    return f"{CEILING_OPTIONS[kind]} {value} is above your ceiling of {ceiling}, set in {where}"


class StartFailed(Exception):
    """The container's process could not be started."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class UnknownContainer(KeyError):
    """The helper has no record of this container."""


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _process_start_time(pid: int) -> str:
    """Return the start time field of /proc/PID/stat, or "" if PID is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    # The command name may hold spaces and parentheses: split after the last ")".
    return text[text.rindex(")") + 2 :].split()[19]


@dataclass
class Record:
    id: str
    state_dir: str
    status: str = "created"
    pid: int = 0
    monitor_pid: int = 0
    monitor_start_time: str = ""
    uses_cgroup: bool = False
    exit_code: int = 0
    oom_killed: bool = False
    started_at: str = ""
    finished_at: str = ""
    error: str = ""
    remove_when_done: bool = False
    attach_socket: str = ""
    tty: bool = False
    parent_id: str = ""  # the container an exec'd process runs in
    paused: bool = False
    ended: threading.Event = field(default_factory=threading.Event, repr=False)
    pidfd: int = -1

    def to_json(self) -> str:
        data = {
            item.name: getattr(self, item.name)
            for item in fields(self)
            if item.name not in ("ended", "pidfd")
        }
        return json.dumps(data, indent=1)

    def to_proto(self) -> helper_pb2.ContainerState:
        return helper_pb2.ContainerState(
            id=self.id,
            status=self.status,
            pid=self.pid if self.status == "running" else 0,
            exit_code=self.exit_code,
            oom_killed=self.oom_killed,
            started_at=self.started_at,
            finished_at=self.finished_at,
            error=self.error,
            paused=self.paused and self.status == "running",
        )


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "w") as file:
        file.write(text)
    os.replace(temporary, path)


def read_status_file(path: Path) -> dict[str, int]:
    """Parse the `pid N`, `exit N` and `signal N` lines of a status file."""
    values: dict[str, int] = {}
    try:
        text = path.read_text()
    except OSError:
        return values
    for line in text.splitlines():
        key, _, number = line.partition(" ")
        if key in ("pid", "exit", "signal") and number.isdigit():
            values[key] = int(number)
    return values


class Manager:
    """All containers this helper tracks, by id."""

    def __init__(self, libexec: Path, records_dir: Path) -> None:
        self.libexec = libexec
        self.records_dir = records_dir
        self.records_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._records: dict[str, Record] = {}
        self.cgroup_layout, self.writable_controllers = self._probe_cgroups()

    # Cgroups -----------------------------------------------------------

    def _cgroup(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.libexec / "hutch-cgroup"), *args],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            check=False,
        )

    def _probe_cgroups(self) -> tuple[str, set[str]]:
        result = self._cgroup("--probe")
        layout, writable = "unknown", set()
        self.probe_error = ""
        if result.returncode != 0:
            self.probe_error = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else ""
            logger.warning("hutch-cgroup --probe failed: %s", result.stderr.strip())
            return layout, writable
        for line in result.stdout.splitlines():
            words = line.split()
            if words[:1] == ["layout"] and len(words) == 2:
                layout = words[1]
            elif words[:1] == ["controller"] and len(words) == 3 and words[2] == "writable":
                writable.add(words[1])
        logger.info("cgroup layout %s, writable controllers: %s", layout, sorted(writable))
        return layout, writable

    def query_cgroup(self, container_id: str) -> dict[str, int]:
        result = self._cgroup("--query", container_id)
        figures: dict[str, int] = {}
        for line in result.stdout.splitlines():
            key, _, value = line.partition(" ")
            if value.isdigit():
                figures[key] = int(value)
        return figures

    def _remove_cgroup(self, container_id: str) -> None:
        # The container's last processes may still be exiting after its
        # first process was reaped, and rmdir fails while any is left.
        for _ in range(REMOVE_ATTEMPTS):
            result = self._cgroup("--remove", container_id)
            if result.returncode == 0:
                return
            time.sleep(0.02)
        logger.error("cgroup of %s not removed: %s", container_id[:12], result.stderr.strip())

    # Records -----------------------------------------------------------

    def _save(self, record: Record) -> None:
        text = record.to_json()
        _write_atomically(self.records_dir / f"{record.id}.json", text)
        try:
            _write_atomically(Path(record.state_dir) / "state.json", text)
        except OSError as error:
            logger.warning("state of %s not written: %s", record.id[:12], error)

    def get(self, container_id: str) -> Record:
        with self._lock:
            record = self._records.get(container_id)
        if record is None:
            raise UnknownContainer(container_id)
        return record

    def all(self) -> list[Record]:
        with self._lock:
            return list(self._records.values())

    def recover(self) -> None:
        """Load the records left by an earlier helper and watch the live ones."""
        for path in sorted(self.records_dir.glob("*.json")):
            try:
                data = json.loads(path.read_text())
                record = Record(**data)
                plan.check_id(record.id)
            except (OSError, ValueError, TypeError) as error:
                logger.warning("skipping unreadable record %s: %s", path, error)
                continue
            with self._lock:
                self._records[record.id] = record
            if record.status != "running":
                record.ended.set()
                continue
            alive = (
                record.monitor_start_time
                and _process_start_time(record.monitor_pid) == record.monitor_start_time
            )
            if not alive:
                self._finish(record, None)
                continue
            try:
                record.pidfd = os.pidfd_open(record.pid)
            except OSError:
                record.pidfd = -1
            try:
                monitor_fd = os.pidfd_open(record.monitor_pid)
            except OSError:
                self._finish(record, None)  # it ended between the check and now
                continue
            threading.Thread(
                target=self._watch_adopted, args=(record, monitor_fd), daemon=True
            ).start()
            logger.info("found running container %s (pid %d)", record.id[:12], record.pid)

    # Lifecycle ---------------------------------------------------------

    def start(self, request: helper_pb2.StartContainerRequest) -> Record:
        plan.check_id(request.id)
        state_dir = plan.check_own_dir(request.state_dir, "state dir")
        with self._lock:
            if request.id in self._records:
                raise FileExistsError(request.id)
            record = Record(
                id=request.id,
                state_dir=str(state_dir),
                remove_when_done=request.remove_when_done,
            )
            self._records[request.id] = record
        try:
            self._launch(record, request, state_dir)
        except BaseException:
            with self._lock:
                del self._records[request.id]
            raise
        return record

    def _plan(
        self, record: Record, request: helper_pb2.StartContainerRequest, io: plan.Io
    ) -> plan.Plan:
        if not request.join_container_id:
            try:
                return plan.build(request, self.libexec, self.writable_controllers, io)
            except plan.CgroupUnavailable as error:
                # An administrator may have installed hutch-cgroup setuid or
                # changed the policy since the last probe: look again once.
                self.cgroup_layout, self.writable_controllers = self._probe_cgroups()
                if set(error.controllers) & self.writable_controllers:
                    return plan.build(request, self.libexec, self.writable_controllers, io)
                error.reason = self.probe_error
                raise
        container = self.get(plan.check_id(request.join_container_id))
        if container.status != "running" or container.parent_id:
            raise ProcessLookupError(request.join_container_id)
        record.parent_id = container.id
        cgroup = container.id if container.uses_cgroup else ""
        return plan.build_exec(request, self.libexec, container.pid, cgroup, io)

    def _attach_socket_path(self, container_id: str) -> str:
        directory = self.records_dir.parent / "attach"
        directory.mkdir(mode=0o700, exist_ok=True)
        path = directory / f"{container_id[:16]}.sock"
        path.unlink(missing_ok=True)
        if len(str(path).encode()) > MAX_SOCKET_PATH:
            raise plan.InvalidRequest(
                f"attach socket path {path} is longer than {MAX_SOCKET_PATH} bytes; "
                "use a shorter runtime directory (HUTCH_RUNTIME_DIR)"
            )
        return str(path)

    def _launch(
        self, record: Record, request: helper_pb2.StartContainerRequest, state_dir: Path
    ) -> None:
        if request.tty or request.stdin:
            record.attach_socket = self._attach_socket_path(record.id)
        record.tty = request.tty
        flags = os.O_CLOEXEC | os.O_NOFOLLOW
        # Read and write: with a size cap the monitor copies the log to log.1.
        log_fd = os.open(state_dir / "log", os.O_RDWR | os.O_CREAT | os.O_APPEND | flags, 0o600)
        status_path = state_dir / "status"
        status_fd = os.open(status_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | flags, 0o600)
        errors_fd = os.open(
            state_dir / "spawn.err", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | flags, 0o600
        )
        rotate_fd = -1
        if request.log_max_bytes:
            rotate_fd = os.open(state_dir / "log.1", os.O_RDWR | os.O_CREAT | flags, 0o600)
        io = plan.Io(log_fd, status_fd, record.attach_socket, rotate_fd)
        try:
            argv = self._plan(record, request, io)
            record.uses_cgroup = argv.uses_cgroup
            process = subprocess.Popen(
                argv.argv,
                stdin=subprocess.DEVNULL,
                stdout=errors_fd,
                stderr=errors_fd,
                pass_fds=tuple(fd for fd in (log_fd, status_fd, rotate_fd) if fd >= 0),
                start_new_session=True,
                env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
            )
        finally:
            for fd in (log_fd, status_fd, errors_fd, rotate_fd):
                if fd >= 0:
                    os.close(fd)
        record.monitor_pid = process.pid
        record.monitor_start_time = _process_start_time(process.pid)
        logger.debug("started %s: %s", record.id[:12], argv.argv)
        try:
            self._await_start(record, process, state_dir)
        except StartFailed:
            raise
        except BaseException:
            # Never leave a container running that no record describes.
            process.kill()
            process.wait()
            if record.uses_cgroup:
                self._remove_cgroup(record.id)
            raise

    def _await_start(
        self, record: Record, process: subprocess.Popen[bytes], state_dir: Path
    ) -> None:
        status_path = state_dir / "status"
        pid = self._wait_for_pid(status_path, process)
        if pid is None:
            code = process.wait()
            message = (state_dir / "spawn.err").read_text(errors="replace").strip()
            message = message.splitlines()[-1] if message else f"hutch-spawn exited {code}"
            if record.uses_cgroup:
                self._remove_cgroup(record.id)
            logger.info("container %s failed to start: %s", record.id[:12], message)
            raise StartFailed(explain_start_error(message), code if code in (126, 127) else 125)
        try:
            record.pidfd = os.pidfd_open(pid)
        except OSError:
            record.pidfd = -1
        record.pid = pid
        record.status = "running"
        record.started_at = utc_now()
        self._save(record)
        threading.Thread(target=self._watch_child, args=(record, process), daemon=True).start()

    @staticmethod
    def _wait_for_pid(status_path: Path, process: subprocess.Popen[bytes]) -> int | None:
        """Return the pid that the monitor reports, or None if it exited first."""
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        delay = 0.0002
        while time.monotonic() < deadline:
            pid = read_status_file(status_path).get("pid")
            if pid:
                return pid
            if process.poll() is not None:
                return read_status_file(status_path).get("pid")
            time.sleep(delay)
            delay = min(delay * 2, 0.005)
        process.kill()
        return None

    def _watch_child(self, record: Record, process: subprocess.Popen[bytes]) -> None:
        code = process.wait()
        self._finish(record, code)

    def _watch_adopted(self, record: Record, monitor_fd: int) -> None:
        try:
            select.select([monitor_fd], [], [])
        finally:
            os.close(monitor_fd)
        self._finish(record, None)

    def _finish(self, record: Record, monitor_code: int | None) -> None:
        status = read_status_file(Path(record.state_dir) / "status")
        if "exit" in status:
            record.exit_code = status["exit"]
        elif "signal" in status:
            record.exit_code = 128 + status["signal"]
        elif monitor_code is not None:
            record.exit_code = monitor_code if monitor_code >= 0 else 128 - monitor_code
            record.error = f"hutch-spawn ended with {monitor_code} without reporting an exit status"
        else:
            record.exit_code = 137
            record.error = "hutch-spawn ended without reporting an exit status (was it killed?)"
        if record.uses_cgroup:
            record.oom_killed = self.query_cgroup(record.id).get("oom_kill", 0) > 0
            self._remove_cgroup(record.id)
            record.uses_cgroup = False
        if record.pidfd >= 0:
            os.close(record.pidfd)
            record.pidfd = -1
        if record.attach_socket:
            Path(record.attach_socket).unlink(missing_ok=True)
        record.status = "exited"
        record.finished_at = utc_now()
        self._save(record)
        record.ended.set()
        logger.info(
            "container %s exited with %d%s",
            record.id[:12],
            record.exit_code,
            " (OOM killed)" if record.oom_killed else "",
        )
        if record.remove_when_done:
            # Give a client that follows the output a moment to read the end.
            threading.Timer(REMOVE_DELAY_SECONDS, self._remove_done, args=(record,)).start()

    def _remove_done(self, record: Record) -> None:
        state_dir = Path(record.state_dir)
        (state_dir / "config.json").unlink(missing_ok=True)
        if state_dir.exists():
            remove_tree(state_dir)
            logger.info("removed container %s", record.id[:12])
        try:
            self.release(record.id)
        except UnknownContainer:
            pass  # the CLI released it first

    def signal(self, container_id: str, number: int) -> None:
        record = self.get(container_id)
        if record.status != "running":
            raise ProcessLookupError(container_id)
        if record.pidfd >= 0:
            signal.pidfd_send_signal(record.pidfd, number)
        else:
            os.kill(record.pid, number)

    def stop(self, container_id: str, number: int, timeout: float) -> Record:
        record = self.get(container_id)
        if record.status == "running" and record.paused:
            # Frozen processes cannot act on a signal until they are thawed.
            self.set_frozen(container_id, False)
            record.paused = False
        if record.status == "running":
            try:
                self.signal(container_id, number or signal.SIGTERM)
            except ProcessLookupError:
                pass
            if not record.ended.wait(timeout):
                try:
                    self.signal(container_id, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                record.ended.wait()
        return record

    def set_frozen(self, container_id: str, frozen: bool) -> Record:
        """Freeze or thaw a running container through its cgroup's freezer."""
        record = self.get(container_id)
        if record.status != "running":
            raise ProcessLookupError(container_id)
        if not record.uses_cgroup:
            raise RuntimeError(
                f"container {container_id[:12]} has no cgroup, so it cannot be paused "
                "(a non-root user needs the setuid hutch-cgroup for this)"
            )
        if record.paused == frozen:
            state = "already paused" if frozen else "not paused"
            raise RuntimeError(f"container {container_id[:12]} is {state}")
        result = self._cgroup("--freeze" if frozen else "--thaw", container_id)
        if result.returncode != 0:
            raise RuntimeError(result.stderr.strip() or f"hutch-cgroup exited {result.returncode}")
        record.paused = frozen
        self._save(record)
        logger.info("%s container %s", "paused" if frozen else "unpaused", container_id[:12])
        return record

    def release(self, container_id: str) -> None:
        try:
            record = self.get(container_id)
        except UnknownContainer:
            if (self.records_dir / f"{container_id}.json").exists():
                (self.records_dir / f"{container_id}.json").unlink()
                return
            raise
        if record.status == "running":
            raise RuntimeError(f"container {container_id[:12]} is running")
        with self._lock:
            self._records.pop(container_id, None)
        try:
            (self.records_dir / f"{container_id}.json").unlink()
        except FileNotFoundError:
            pass
