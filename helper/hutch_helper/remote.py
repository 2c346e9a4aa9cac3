"""Remote control over TCP with mutual TLS: run hutch commands for a client.

Every client certificate signed by the configured client CA maps to the one
user this helper runs as, and nothing more. Each call passes through
`Authorizer.authorize`, is written to the audit log, and counts against a
per-client concurrency cap. The command itself runs as `python -m hutch`
here, talking to this helper over its unix socket like a local CLI.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from hutch.remote.v1 import remote_pb2, remote_pb2_grpc

logger = logging.getLogger(__name__)

MAX_ARGS = 1024
MAX_ARG_BYTES = 4096
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
CHUNK_BYTES = 256 * 1024
MAX_CALLS_PER_CLIENT = 8
MAX_WORKERS = 32
# Commands that would act on the server itself rather than on containers.
DENIED_COMMANDS = {"helper"}


@dataclass
class TlsFiles:
    cert: Path
    key: Path
    client_ca: Path

    def server_credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(self.key.read_bytes(), self.cert.read_bytes())],
            root_certificates=self.client_ca.read_bytes(),
            require_client_auth=True,
        )


@dataclass
class Authorizer:
    """The one place that decides whether a remote client may make a call."""

    allowed_clients: set[str] = field(default_factory=set)
    allow_binds: bool = False

    def authorize(self, identity: str, method: str, argv: list[str]) -> str:
        """Return "" to allow the call, or the reason to deny it."""
        if not identity:
            return "the client certificate has no common name"
        if self.allowed_clients and identity not in self.allowed_clients:
            return f"client {identity!r} is not in the allowed list"
        if method != "RunCommand":
            return f"unknown method {method}"
        command = command_name(argv)
        if not command:
            return "no command given"
        if command.startswith("-"):
            return f"the global option {command} is not available to remote clients"
        if command in DENIED_COMMANDS:
            return f"`hutch {command}` is not available to remote clients"
        # Host bind mounts are denied inside the command (HUTCH_DENY_BINDS),
        # where the CLI has parsed its options, unless allow_binds is set.
        return ""


# Global options a remote client may give before the command.
ALLOWED_GLOBAL_OPTIONS = {"--debug"}


def command_name(argv: list[str]) -> str:
    """Return the command word of ARGV, after the allowed global options.

    Any other leading option is returned as it is, so that the caller
    rejects it rather than guessing where the command starts.
    """
    for arg in argv:
        if arg not in ALLOWED_GLOBAL_OPTIONS:
            return arg
    return ""


class AuditLog:
    """JSON lines: time, client, uid, method, command, container, decision."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def write(self, identity: str, method: str, argv: list[str], decision: str) -> None:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "client": identity,
            "uid": os.geteuid(),
            "method": method,
            "command": command_name(argv),
            "arguments": len(argv),
            "container": _container_argument(argv),
            "decision": decision,
        }
        line = json.dumps(entry) + "\n"
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)


CONTAINER_COMMANDS = {"stop", "kill", "rm", "start", "restart", "exec", "attach", "logs", "wait",
                      "commit", "export", "inspect", "pause", "unpause"}  # fmt: skip


def _container_argument(argv: list[str]) -> str:
    """Return the container a command names, for the audit log: --name or the first operand."""
    command = command_name(argv)
    rest = argv[argv.index(command) + 1 :] if command else []
    if "--name" in rest[:-1]:
        return rest[rest.index("--name") + 1]
    if command not in CONTAINER_COMMANDS:
        return ""
    return next((arg for arg in rest if not arg.startswith("-")), "")


class Limiter:
    """At most MAX_CALLS_PER_CLIENT calls at once for each client identity."""

    def __init__(self, limit: int = MAX_CALLS_PER_CLIENT) -> None:
        self.limit = limit
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    @contextmanager
    def slot(self, identity: str) -> Iterator[bool]:
        with self._lock:
            count = self._counts.get(identity, 0)
            granted = count < self.limit
            if granted:
                self._counts[identity] = count + 1
        try:
            yield granted
        finally:
            if granted:
                with self._lock:
                    self._counts[identity] -= 1


def client_identity(context: grpc.ServicerContext) -> str:
    names = context.auth_context().get("x509_common_name") or []
    return names[0].decode(errors="replace") if names else ""


class RemoteService(remote_pb2_grpc.RemoteServicer):
    def __init__(self, authorizer: Authorizer, audit: AuditLog, runtime: Path) -> None:
        self.authorizer = authorizer
        self.audit = audit
        self.runtime = runtime
        self.limiter = Limiter()

    def RunCommand(self, request_iterator, context) -> Iterator[remote_pb2.CommandOutput]:
        identity = client_identity(context)
        first = next(request_iterator, None)
        argv = list(first.argv) if first is not None else []
        if len(argv) > MAX_ARGS or any(len(arg.encode()) > MAX_ARG_BYTES for arg in argv):
            reason = "the command line is too long"
        else:
            reason = self.authorizer.authorize(identity, "RunCommand", argv)
        # "allowed" means the command ran; it may still reject its own input.
        self.audit.write(identity, "RunCommand", argv, "denied: " + reason if reason else "allowed")
        if reason:
            logger.info("denied %s from %s: %s", argv[:1], identity, reason)
            context.abort(grpc.StatusCode.PERMISSION_DENIED, reason)
        with self.limiter.slot(identity) as granted:
            if not granted:
                context.abort(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"client {identity!r} already has {MAX_CALLS_PER_CLIENT} calls running",
                )
            yield from self._run(argv, first, request_iterator, context)

    def _run(self, argv, first, request_iterator, context) -> Iterator[remote_pb2.CommandOutput]:
        env = {
            **os.environ,
            "HUTCH_RUNTIME_DIR": str(self.runtime),
            "HUTCH_REMOTE_CLIENT": client_identity(context),
        }
        if not self.authorizer.allow_binds:
            env["HUTCH_DENY_BINDS"] = "1"
        process = subprocess.Popen(
            [sys.executable, "-m", "hutch", *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd="/",
        )
        outputs: queue.Queue = queue.Queue(maxsize=16)  # bounds memory per call
        context.add_callback(process.kill)

        threading.Thread(
            target=_feed_stdin, args=(process, first, request_iterator), daemon=True
        ).start()
        readers = [
            threading.Thread(target=_pump, args=(process.stdout, "stdout", outputs), daemon=True),
            threading.Thread(target=_pump, args=(process.stderr, "stderr", outputs), daemon=True),
        ]
        for reader in readers:
            reader.start()

        open_streams = len(readers)
        while open_streams:
            item = outputs.get()
            if item is None:
                open_streams -= 1
                continue
            yield item
        code = process.wait()
        yield remote_pb2.CommandOutput(exit_code=code if code >= 0 else 128 - code)


def _feed_stdin(process: subprocess.Popen, first, request_iterator) -> None:
    try:
        if first is not None and first.stdin:
            process.stdin.write(first.stdin)
        for message in request_iterator:
            if message.stdin:
                process.stdin.write(message.stdin)
                process.stdin.flush()
            if message.close_stdin:
                break
    except (OSError, ValueError, grpc.RpcError):
        pass
    finally:
        try:
            process.stdin.close()
        except OSError:
            pass


def _pump(pipe, stream: str, outputs: queue.Queue) -> None:
    try:
        while data := pipe.read1(CHUNK_BYTES):
            outputs.put(remote_pb2.CommandOutput(**{stream: data}))
    finally:
        outputs.put(None)


def parse_listen(address: str) -> str:
    """Turn tcp://[HOST]:PORT into HOST:PORT, with 127.0.0.1 when HOST is empty."""
    if not address.startswith("tcp://"):
        raise ValueError(f"invalid --listen {address!r}: expected tcp://[HOST]:PORT")
    host, _, port = address[len("tcp://") :].rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"invalid --listen {address!r}: missing or invalid port")
    return f"{host or '127.0.0.1'}:{port}"


def create_tcp_server(
    address: str, tls: TlsFiles, authorizer: Authorizer, audit: AuditLog, runtime: Path
) -> tuple[grpc.Server, int]:
    """Bind the Remote service with mutual TLS; return the server and its port."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=MAX_WORKERS),
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ],
    )
    remote_pb2_grpc.add_RemoteServicer_to_server(RemoteService(authorizer, audit, runtime), server)
    port = server.add_secure_port(address, tls.server_credentials())
    if port == 0:
        raise OSError(f"cannot listen on {address}")
    return server, port
