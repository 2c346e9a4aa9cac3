"""The hutch-helper gRPC server on a private unix socket."""

from __future__ import annotations

import argparse
import fcntl
import functools
import itertools
import logging
import os
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc

from hutch import paths
from hutch.errors import HutchError
from hutch.helper.v1 import helper_pb2, helper_pb2_grpc
from hutch_helper import __version__, plan, remote
from hutch_helper.containers import Manager, StartFailed, UnknownContainer
from hutch_helper.logs import LogFormatError, read_records

logger = logging.getLogger("hutch_helper")

MAX_MESSAGE_BYTES = 8 * 1024 * 1024
MAX_WORKERS = 64
EXIT_CODE_KEY = "hutch-exit-code"
STREAMS = {"stdout": helper_pb2.LogChunk.STREAM_STDOUT, "stderr": helper_pb2.LogChunk.STREAM_STDERR}

Handler = TypeVar("Handler", bound=Callable[..., Any])


def _abort(context: grpc.ServicerContext, code: grpc.StatusCode, message: str) -> None:
    logger.info("rejected request: %s", message)
    context.abort(code, message)


def mapped_errors(method: Handler) -> Handler:
    """Turn the helper's exceptions into gRPC status codes, in one place."""

    @functools.wraps(method)
    def wrapper(self: Service, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return method(self, request, context)
        except plan.InvalidRequest as error:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(error))
        except plan.CgroupUnavailable as error:
            _abort(
                context,
                grpc.StatusCode.FAILED_PRECONDITION,
                f"cgroup-unavailable:{error}|{error.reason}",
            )
        except StartFailed as error:
            context.set_trailing_metadata(((EXIT_CODE_KEY, str(error.exit_code)),))
            _abort(context, grpc.StatusCode.ABORTED, str(error))
        except UnknownContainer as error:
            _abort(context, grpc.StatusCode.NOT_FOUND, f"no such container: {error.args[0]}")
        except FileExistsError as error:
            _abort(context, grpc.StatusCode.ALREADY_EXISTS, f"container {error} already exists")
        except ProcessLookupError as error:
            _abort(context, grpc.StatusCode.FAILED_PRECONDITION, f"container {error} is not running")
        except (LogFormatError, RuntimeError) as error:
            _abort(context, grpc.StatusCode.FAILED_PRECONDITION, str(error))

    return wrapper  # type: ignore[return-value]


class Service(helper_pb2_grpc.HelperServicer):
    def __init__(self, manager: Manager, stop: Callable[[], None]) -> None:
        self.manager = manager
        self._stop = stop

    @mapped_errors
    def GetStatus(self, request, context):
        running = sum(1 for r in self.manager.all() if r.status == "running")
        return helper_pb2.GetStatusResponse(
            version=__version__,
            pid=os.getpid(),
            uid=os.geteuid(),
            cgroup_layout=self.manager.cgroup_layout,
            writable_controllers=sorted(self.manager.writable_controllers),
            running_containers=running,
        )

    @mapped_errors
    def Shutdown(self, request, context):
        logger.info("shutdown requested")
        threading.Timer(0.1, self._stop).start()
        return helper_pb2.ShutdownResponse()

    @mapped_errors
    def StartContainer(self, request, context):
        record = self.manager.start(request)
        return helper_pb2.StartContainerResponse(pid=record.pid, started_at=record.started_at)

    @mapped_errors
    def ReadLogs(self, request, context) -> Iterator[helper_pb2.LogChunk]:
        record = self.manager.get(plan.check_id(request.id))
        streams = {
            name
            for name, on in (("stdout", request.stdout), ("stderr", request.stderr))
            if on or not (request.stdout or request.stderr)
        }
        rotated = Path(record.state_dir) / "log.1"
        if rotated.exists():
            with open(rotated, "rb") as older:
                for entry in read_records(older):
                    if entry.stream in streams:
                        yield helper_pb2.LogChunk(
                            stream=STREAMS[entry.stream],
                            data=entry.data,
                            time_unix_nano=entry.time_unix_nano,
                        )
        try:
            log = open(Path(record.state_dir) / "log", "rb")
        except FileNotFoundError:
            return
        with log:
            records = read_records(
                log,
                follow=request.follow,
                wait_ended=lambda timeout: record.ended.wait(timeout) or not context.is_active(),
            )
            for entry in records:
                if entry.stream in streams:
                    yield helper_pb2.LogChunk(
                        stream=STREAMS[entry.stream],
                        data=entry.data,
                        time_unix_nano=entry.time_unix_nano,
                    )

    @mapped_errors
    def WaitContainer(self, request, context):
        record = self.manager.get(plan.check_id(request.id))
        while not record.ended.wait(0.5):
            if not context.is_active():
                break
        return record.to_proto()

    @mapped_errors
    def SignalContainer(self, request, context):
        if not 1 <= request.signal <= 64:
            raise plan.InvalidRequest(f"invalid signal number {request.signal}")
        self.manager.signal(plan.check_id(request.id), request.signal)
        return helper_pb2.SignalContainerResponse()

    @mapped_errors
    def StopContainer(self, request, context):
        if not 0 <= request.signal <= 64:
            raise plan.InvalidRequest(f"invalid signal number {request.signal}")
        timeout = 10 if request.timeout_seconds < 0 else request.timeout_seconds
        record = self.manager.stop(plan.check_id(request.id), request.signal, timeout)
        return record.to_proto()

    @mapped_errors
    def GetStates(self, request, context):
        if request.ids:
            states = []
            for container_id in request.ids:
                try:
                    states.append(self.manager.get(container_id).to_proto())
                except UnknownContainer:
                    states.append(helper_pb2.ContainerState(id=container_id, status="unknown"))
        else:
            states = [record.to_proto() for record in self.manager.all()]
        return helper_pb2.GetStatesResponse(states=states)

    @mapped_errors
    def Attach(self, request_iterator, context) -> Iterator[helper_pb2.LogChunk]:
        first = next(request_iterator, None)
        if first is None:
            return
        record = self.manager.get(plan.check_id(first.id))
        if record.status == "running" and record.attach_socket:
            connection = _connect_attach(record.attach_socket)
            threading.Thread(
                target=_forward_input,
                args=(connection, itertools.chain([first], request_iterator), record.id),
                daemon=True,
            ).start()
        try:
            log = open(Path(record.state_dir) / "log", "rb")
        except FileNotFoundError:
            return
        with log:
            skip_to = 0 if first.from_start else os.fstat(log.fileno()).st_size
            records = read_records(
                log,
                follow=True,
                wait_ended=lambda timeout: record.ended.wait(timeout) or not context.is_active(),
            )
            for entry in records:
                if entry.end_offset > skip_to:
                    yield helper_pb2.LogChunk(
                        stream=STREAMS[entry.stream],
                        data=entry.data,
                        time_unix_nano=entry.time_unix_nano,
                    )

    @mapped_errors
    def GetStats(self, request, context):
        ids = set(request.ids)
        stats = []
        for record in self.manager.all():
            if record.status != "running" or record.parent_id or (ids and record.id not in ids):
                continue
            figures = self.manager.query_cgroup(record.id) if record.uses_cgroup else {}
            stats.append(
                helper_pb2.ContainerStats(
                    id=record.id,
                    memory_bytes=figures.get("memory_current", 0),
                    memory_limit_bytes=figures.get("memory_limit", 0),
                    pids=figures.get("pids_current", 0),
                    pids_limit=figures.get("pids_limit", 0),
                    cpu_usage_ns=figures.get("cpu_usage_ns", 0),
                    read_time_unix_nano=time.time_ns(),
                    has_cgroup=record.uses_cgroup,
                )
            )
        return helper_pb2.GetStatsResponse(stats=stats)

    @mapped_errors
    def PauseContainer(self, request, context):
        return self.manager.set_frozen(plan.check_id(request.id), True).to_proto()

    @mapped_errors
    def UnpauseContainer(self, request, context):
        return self.manager.set_frozen(plan.check_id(request.id), False).to_proto()

    @mapped_errors
    def ReleaseContainer(self, request, context):
        self.manager.release(plan.check_id(request.id))
        return helper_pb2.ReleaseContainerResponse()


ATTACH_CONNECT_ATTEMPTS = 100


def _connect_attach(path: str) -> socket.socket:
    """Connect to a monitor's attach socket, which appears as the container starts."""
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    for _ in range(ATTACH_CONNECT_ATTEMPTS):
        try:
            connection.connect(path)
            return connection
        except (FileNotFoundError, ConnectionRefusedError):
            time.sleep(0.01)
    connection.close()
    raise RuntimeError(f"the container's attach socket {path} does not accept connections")


def _frame(kind: bytes, payload: bytes) -> bytes:
    return kind + struct.pack(">I", len(payload)) + payload


def _forward_input(connection: socket.socket, messages, container_id: str) -> None:
    """Send a client's stdin and terminal sizes to the monitor as attach frames."""
    try:
        for message in messages:
            if message.rows and message.cols:
                connection.sendall(_frame(b"w", struct.pack(">HH", message.rows, message.cols)))
            if message.data:
                connection.sendall(_frame(b"d", message.data))
            if message.close_stdin:
                connection.sendall(_frame(b"c", b""))
    except (OSError, grpc.RpcError) as error:
        logger.info("input to %s stopped: %s", container_id[:12], error)
    finally:
        connection.close()


def _socket_answers(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        return False
    finally:
        probe.close()
    return True


def create_server(
    socket_file: Path, manager: Manager
) -> tuple[grpc.Server, threading.Event]:
    """Bind the service to SOCKET_FILE; return the server and its stop event."""
    stopped = threading.Event()
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=MAX_WORKERS),
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ],
    )

    def stop() -> None:
        server.stop(grace=1).wait()
        stopped.set()

    helper_pb2_grpc.add_HelperServicer_to_server(Service(manager, stop), server)
    if socket_file.exists() or socket_file.is_symlink():
        socket_file.unlink()
    old_umask = os.umask(0o177)
    try:
        server.add_insecure_port(f"unix:{socket_file}")
    finally:
        os.umask(old_umask)
    return server, stopped


@dataclass
class RemoteOptions:
    address: str
    tls: remote.TlsFiles
    authorizer: remote.Authorizer
    audit_log: Path


def serve(runtime: Path, remote_options: RemoteOptions | None = None) -> int:
    paths.ensure_private_dir(runtime)
    lock = open(runtime / "helper.lock", "a")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        if remote_options is not None:
            raise HutchError(
                f"another hutch-helper serves {runtime}; stop it (hutch helper stop) and try again"
            ) from None
        logger.info("another hutch-helper has the lock %s; exiting", runtime / "helper.lock")
        return 0
    socket_file = runtime / paths.SOCKET_NAME
    if _socket_answers(socket_file):
        logger.info("a helper already listens on %s; exiting", socket_file)
        return 0
    manager = Manager(paths.libexec_dir(), runtime / "containers")
    manager.recover()
    server, stopped = create_server(socket_file, manager)
    server.start()
    logger.info("hutch-helper %s listening on %s (pid %d)", __version__, socket_file, os.getpid())
    tcp_server = None
    if remote_options is not None:
        tcp_server, port = remote.create_tcp_server(
            remote_options.address,
            remote_options.tls,
            remote_options.authorizer,
            remote.AuditLog(remote_options.audit_log),
            runtime,
        )
        tcp_server.start()
        logger.info("remote control on %s (port %d), mutual TLS", remote_options.address, port)

    def on_signal(number: int, frame: object) -> None:
        logger.info("received signal %d; stopping", number)
        threading.Thread(target=lambda: (server.stop(grace=1).wait(), stopped.set())).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while not stopped.wait(1):
        pass
    if tcp_server is not None:
        tcp_server.stop(grace=1).wait()
    try:
        socket_file.unlink()
    except FileNotFoundError:
        pass
    logger.info("hutch-helper stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="hutch-helper", description="Serve hutch's container processes over gRPC."
    )
    parser.add_argument(
        "--runtime-dir",
        type=Path,
        help="directory of the socket and records (default: $XDG_RUNTIME_DIR/hutch, "
        "/run/hutch for root)",
    )
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    parser.add_argument(
        "--listen", metavar="tcp://[HOST]:PORT",
        help="also serve remote clients on TCP (HOST defaults to 127.0.0.1); needs the three TLS files",
    )  # fmt: skip
    parser.add_argument("--tls-cert", type=Path, help="server certificate (PEM)")
    parser.add_argument("--tls-key", type=Path, help="server private key (PEM)")
    parser.add_argument("--tls-client-ca", type=Path, help="CA that signs client certificates (PEM)")
    parser.add_argument(
        "--allow-client", action="append", default=[], metavar="CN",
        help="accept only client certificates with this common name (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--allow-binds", action="store_true", help="let remote clients bind mount host paths"
    )
    parser.add_argument(
        "--audit-log", type=Path, help="JSON lines of remote calls (default: RUNTIME-DIR/audit.log)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    runtime = args.runtime_dir or paths.runtime_dir()
    remote_options = None
    if args.listen:
        missing = [
            name
            for name, value in (
                ("--tls-cert", args.tls_cert),
                ("--tls-key", args.tls_key),
                ("--tls-client-ca", args.tls_client_ca),
            )
            if value is None
        ]
        if missing:
            print(
                f"hutch-helper: refusing to listen on TCP without mutual TLS; missing {', '.join(missing)}",
                file=sys.stderr,
            )
            return 125
        try:
            address = remote.parse_listen(args.listen)
        except ValueError as error:
            print(f"hutch-helper: {error}", file=sys.stderr)
            return 125
        remote_options = RemoteOptions(
            address=address,
            tls=remote.TlsFiles(args.tls_cert, args.tls_key, args.tls_client_ca),
            authorizer=remote.Authorizer(set(args.allow_client), args.allow_binds),
            audit_log=args.audit_log or runtime / "audit.log",
        )
    try:
        return serve(runtime, remote_options)
    except HutchError as error:
        print(f"hutch-helper: {error}", file=sys.stderr)
        return 125
    except OSError as error:
        print(f"hutch-helper: {error}", file=sys.stderr)
        return 125


if __name__ == "__main__":
    sys.exit(main())
