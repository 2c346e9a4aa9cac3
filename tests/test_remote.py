"""Remote control over TCP with mutual TLS, on loopback, with test-made certificates."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tarfile
import io
import time
from pathlib import Path

import pytest

from hutchtest import Hutch

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="these tests run as root")


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(directory: Path, name: str) -> None:
    openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN={name}",
        cwd=directory,
    )  # fmt: skip


def make_cert(directory: Path, ca: str, name: str, common_name: str) -> None:
    openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={common_name}",
        cwd=directory,
    )  # fmt: skip
    (directory / f"{name}.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
        "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext",
        cwd=directory,
    )  # fmt: skip


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("certs")
    make_ca(directory, "ca")
    make_ca(directory, "otherca")
    make_cert(directory, "ca", "server", "localhost")
    make_cert(directory, "ca", "alice", "alice")
    make_cert(directory, "otherca", "mallory", "mallory")
    return directory


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RemoteHelper:
    def __init__(self, tmp_path: Path, certs: Path, extra: list[str] | None = None) -> None:
        self.local = Hutch(tmp_path / "store", tmp_path / "run")
        self.port = free_port()
        self.certs = certs
        self.audit = tmp_path / "audit.log"
        argv = [
            sys.executable, "-m", "hutch_helper", "--runtime-dir", str(self.local.runtime),
            "--listen", f"tcp://127.0.0.1:{self.port}", "--tls-cert", str(certs / "server.pem"),
            "--tls-key", str(certs / "server.key"), "--tls-client-ca", str(certs / "ca.pem"),
            "--audit-log", str(self.audit), *(extra or []),
        ]  # fmt: skip
        self.process = subprocess.Popen(
            argv, env={**os.environ, **self.local.env()}, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("the remote helper did not start listening")

    def client(self, *args: str, identity: str = "alice", ca: str = "ca", **kwargs):
        tls = [
            "--host", f"tcp://127.0.0.1:{self.port}",
            "--tls-cert", str(self.certs / f"{identity}.pem"),
            "--tls-key", str(self.certs / f"{identity}.key"),
            "--tls-ca", str(self.certs / f"{ca}.pem"),
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("HUTCH_")}
        return subprocess.run(
            [sys.executable, "-m", "hutch", *tls, *args],
            capture_output=True,
            timeout=120,
            env=env,
            **kwargs,
        )

    def stop(self) -> None:
        self.local.cleanup()
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


@pytest.fixture
def remote(tmp_path: Path, certs: Path):
    helper = RemoteHelper(tmp_path, certs)
    try:
        yield helper
    finally:
        helper.stop()


def test_remote_import_run_save(remote: RemoteHelper, busybox_tar: Path):
    result = remote.client("import", "-", "far/box", input=busybox_tar.read_bytes())
    assert result.returncode == 0, result.stderr
    assert "far/box" in remote.local.out("images")
    result = remote.client("run", "--rm", "--hostname", "far", "far/box", "hostname")
    assert result.stdout == b"far\n"
    result = remote.client("run", "--rm", "far/box", "sh", "-c", "exit 9")
    assert result.returncode == 9
    saved = remote.client("save", "far/box")
    assert saved.returncode == 0
    with tarfile.open(fileobj=io.BytesIO(saved.stdout)) as tar:
        assert "manifest.json" in tar.getnames()


def test_remote_errors_keep_exit_code(remote: RemoteHelper):
    result = remote.client("run", "no-such-image")
    assert result.returncode == 125
    assert b"no-such-image" in result.stderr


def test_remote_bind_mounts_are_denied(remote: RemoteHelper, busybox_tar: Path):
    remote.client("import", "-", "far/box", input=busybox_tar.read_bytes())
    result = remote.client("run", "--rm", "-v", "/etc:/host", "far/box", "ls", "/host")
    assert result.returncode == 125
    assert b"bind" in result.stderr


def test_remote_helper_command_is_denied(remote: RemoteHelper):
    result = remote.client("helper", "stop")
    assert result.returncode == 125
    assert b"not available" in result.stderr
    assert remote.process.poll() is None


def test_other_ca_is_rejected(remote: RemoteHelper):
    result = remote.client("images", identity="mallory")
    assert result.returncode == 125
    assert remote.audit.exists() is False or b"mallory" not in remote.audit.read_bytes()


def test_client_without_certificate_is_rejected(remote: RemoteHelper):
    import grpc

    from hutch.remote.v1 import remote_pb2, remote_pb2_grpc

    credentials = grpc.ssl_channel_credentials(root_certificates=(remote.certs / "ca.pem").read_bytes())
    with grpc.secure_channel(f"127.0.0.1:{remote.port}", credentials) as channel:
        stub = remote_pb2_grpc.RemoteStub(channel)
        with pytest.raises(grpc.RpcError):
            list(stub.RunCommand(iter([remote_pb2.CommandInput(argv=["images"])]), timeout=10))


def test_audit_log_records_calls(remote: RemoteHelper):
    remote.client("ps", "-a")
    remote.client("helper", "status")
    entries = [json.loads(line) for line in remote.audit.read_text().splitlines()]
    assert entries[0]["client"] == "alice"
    assert entries[0]["command"] == "ps"
    assert entries[0]["decision"] == "allowed"
    assert entries[0]["uid"] == 0
    assert entries[1]["decision"].startswith("denied")


def test_listen_without_tls_is_refused(tmp_path: Path):
    result = subprocess.run(
        [sys.executable, "-m", "hutch_helper", "--runtime-dir", str(tmp_path / "run"),
         "--listen", "tcp://127.0.0.1:1"],
        capture_output=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 125
    assert b"mutual TLS" in result.stderr


def test_remote_cannot_name_server_files(remote: RemoteHelper, busybox_tar: Path, tmp_path: Path):
    remote.client("import", "-", "far/box", input=busybox_tar.read_bytes())
    secret = tmp_path / "secret.env"
    secret.write_text("TOPSECRET=value\n")
    target = tmp_path / "written.tar"
    attempts = [
        ["save", "-o", str(target), "far/box"],
        ["import", str(busybox_tar), "stolen"],
        ["load", "-i", str(busybox_tar)],
        ["run", "--rm", "--env-file", str(secret), "far/box", "env"],
        ["run", "--rm", "-e", "HOME", "far/box", "env"],
    ]
    for argv in attempts:
        result = remote.client(*argv)
        assert result.returncode == 125, argv
        assert b"remote" in result.stderr, argv
        assert b"TOPSECRET" not in result.stdout + result.stderr
    assert not target.exists()
    assert "stolen" not in remote.local.out("images")


def test_remote_global_option_cannot_reach_helper(remote: RemoteHelper):
    for argv in (["--debug", "helper", "stop"], ["--host", "x", "helper", "stop"]):
        result = remote.client(*argv)
        assert result.returncode == 125, argv
    assert remote.process.poll() is None
    entries = [json.loads(line) for line in remote.audit.read_text().splitlines()]
    assert entries[0]["command"] == "helper"
    assert entries[0]["decision"].startswith("denied")
