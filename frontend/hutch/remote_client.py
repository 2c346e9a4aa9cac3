"""`hutch --host tcp://HOST:PORT …`: run the command on another host's helper.

The arguments go to the remote hutch-helper unchanged, and it runs them as
its own user there. It streams stdout and stderr back, and our stdin, when
it is not a terminal, streams to it. Client certificate, key and CA come from
--tls-cert/--tls-key/--tls-ca, HUTCH_TLS_CERT/HUTCH_TLS_KEY/HUTCH_TLS_CA, or
$XDG_CONFIG_HOME/hutch/tls/{cert,key,ca}.pem.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from hutch.errors import HutchError

CHUNK_BYTES = 256 * 1024
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
GLOBAL_OPTIONS = {"--host": "host", "-H": "host", "--tls-cert": "cert", "--tls-key": "key", "--tls-ca": "ca"}


def split_global_options(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    """Take --host and the TLS options off the front of ARGV."""
    options: dict[str, str] = {}
    rest = list(argv)
    while rest:
        name, equals, value = rest[0].partition("=")
        if name not in GLOBAL_OPTIONS:
            break
        if not equals:
            if len(rest) < 2:
                raise HutchError(f"option {name} needs a value")
            value = rest[1]
            rest = rest[2:]
        else:
            rest = rest[1:]
        options[GLOBAL_OPTIONS[name]] = value
    return options, rest


def _tls_file(options: dict[str, str], key: str, variable: str, default_name: str) -> bytes:
    config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "hutch" / "tls"
    path = Path(options.get(key) or os.environ.get(variable) or config / default_name)
    try:
        return path.read_bytes()
    except OSError as error:
        raise HutchError(
            f"cannot read the TLS file {path}: {error.strerror}; a remote host needs a client "
            f"certificate, key and CA (--tls-cert, --tls-key, --tls-ca or {variable})"
        ) from None


def _target(host: str) -> str:
    if not host.startswith("tcp://"):
        raise HutchError(f"invalid --host {host!r}: expected tcp://HOST:PORT")
    target = host[len("tcp://") :]
    name, _, port = target.rpartition(":")
    if not name or not port.isdigit():
        raise HutchError(f"invalid --host {host!r}: expected tcp://HOST:PORT")
    return target


def run_remote(options: dict[str, str], argv: list[str]) -> int:
    """Run ARGV on the host in OPTIONS; relay the streams; return the exit code."""
    import grpc

    from hutch.remote.v1 import remote_pb2, remote_pb2_grpc

    target = _target(options["host"])
    credentials = grpc.ssl_channel_credentials(
        root_certificates=_tls_file(options, "ca", "HUTCH_TLS_CA", "ca.pem"),
        private_key=_tls_file(options, "key", "HUTCH_TLS_KEY", "key.pem"),
        certificate_chain=_tls_file(options, "cert", "HUTCH_TLS_CERT", "cert.pem"),
    )
    channel = grpc.secure_channel(
        target,
        credentials,
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ],
    )
    stub = remote_pb2_grpc.RemoteStub(channel)
    send_stdin = not sys.stdin.isatty()
    done = threading.Event()

    def requests() -> Iterator[remote_pb2.CommandInput]:
        yield remote_pb2.CommandInput(argv=argv, close_stdin=not send_stdin)
        if not send_stdin:
            done.wait()
            return
        while data := sys.stdin.buffer.read1(CHUNK_BYTES):
            yield remote_pb2.CommandInput(stdin=data)
        yield remote_pb2.CommandInput(close_stdin=True)
        done.wait()

    code = 125
    try:
        for output in stub.RunCommand(requests()):
            kind = output.WhichOneof("payload")
            if kind == "stdout":
                sys.stdout.buffer.write(output.stdout)
                sys.stdout.buffer.flush()
            elif kind == "stderr":
                sys.stderr.buffer.write(output.stderr)
                sys.stderr.buffer.flush()
            elif kind == "exit_code":
                code = output.exit_code
    except grpc.RpcError as error:
        raise HutchError(f"remote host {target}: {error.details() or error.code().name}") from None
    finally:
        done.set()
        channel.close()
    return code
