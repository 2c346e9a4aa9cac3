"""The CLI's connection to hutch-helper, which it starts when none responds."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import grpc

from hutch import paths
from hutch.errors import HutchError
from hutch.helper.v1 import helper_pb2, helper_pb2_grpc

START_TIMEOUT_SECONDS = 10.0
EXIT_CODE_KEY = "hutch-exit-code"
# Deadlines in seconds for calls that return at once. WaitContainer,
# StopContainer, ReadLogs and Attach last as long as the container does.
DEADLINES = {
    "GetStatus": 5,
    "Shutdown": 10,
    "StartContainer": 60,
    "SignalContainer": 10,
    "GetStates": 30,
    "GetStats": 30,
    "ReleaseContainer": 30,
}


STREAMING = {"ReadLogs", "Attach"}


class Stream:
    """A server stream whose errors arrive as HutchError while iterating."""

    def __init__(self, call) -> None:
        self._call = call

    def __iter__(self):
        try:
            yield from self._call
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.CANCELLED:
                return
            raise translate(error) from None

    def cancel(self) -> None:
        self._call.cancel()


class HelperClient:
    """A stub for the local helper, plus error translation."""

    def __init__(self, socket_file: Path | None = None, *, autostart: bool = True) -> None:
        self.socket_file = socket_file or paths.socket_path()
        self.autostart = autostart
        self._channel: grpc.Channel | None = None
        self._stub: helper_pb2_grpc.HelperStub | None = None

    @property
    def stub(self) -> helper_pb2_grpc.HelperStub:
        if self._stub is None:
            self._channel = grpc.insecure_channel(f"unix:{self.socket_file}")
            self._stub = helper_pb2_grpc.HelperStub(self._channel)
        return self._stub

    def answers(self) -> bool:
        """Return whether a helper responds on the socket now."""
        if not self.socket_file.exists():
            return False
        try:
            self.stub.GetStatus(helper_pb2.GetStatusRequest(), timeout=2)
        except grpc.RpcError:
            return False
        return True

    def _start_and_wait(self) -> None:
        self._start_helper()
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            # A channel that failed to connect waits out a backoff before
            # it tries again, so each attempt gets a new one.
            self.close()
            if self.answers():
                return
            time.sleep(0.02)
        log = self.socket_file.parent / "helper.log"
        raise HutchError(f"hutch-helper did not start within {START_TIMEOUT_SECONDS:.0f} s; see {log}")

    def _start_helper(self) -> None:
        runtime = paths.ensure_private_dir(self.socket_file.parent)
        with open(runtime / "helper.log", "ab") as log:
            subprocess.Popen(
                [sys.executable, "-m", "hutch_helper", "--runtime-dir", str(runtime)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                close_fds=True,
                cwd="/",
            )

    def call(self, name: str, request, **kwargs):
        """Call RPC NAME; raise HutchError with the helper's message on failure.

        When no helper listens, start one and call again. UNAVAILABLE before
        any helper responded means the request never reached one, so the
        second call cannot repeat its effect.
        """
        if name in DEADLINES:
            kwargs.setdefault("timeout", DEADLINES[name])
        if name in STREAMING and self.autostart and not self.answers():
            # A stream reports a missing helper only once iterated, too late
            # to start one here, so check first.
            self._start_and_wait()
        try:
            return self._invoke(name, request, kwargs)
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.UNAVAILABLE or not self.autostart:
                raise translate(error) from None
        self._start_and_wait()
        try:
            return self._invoke(name, request, kwargs)
        except grpc.RpcError as error:
            raise translate(error) from None

    def _invoke(self, name: str, request, kwargs):
        result = getattr(self.stub, name)(request, **kwargs)
        if name in STREAMING:
            return Stream(result)
        return result

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
        self._channel = None
        self._stub = None


def translate(error: grpc.RpcError) -> HutchError:
    """Turn a gRPC error from the helper into the HutchError shown to the user."""
    code = 125
    for key, value in error.trailing_metadata() or ():
        if key == EXIT_CODE_KEY and value.isdigit():
            code = int(value)
    details = error.details() or str(error.code())
    if error.code() == grpc.StatusCode.UNAVAILABLE:
        return HutchError(f"lost the connection to hutch-helper: {details}")
    if error.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
        return HutchError(
            "hutch-helper did not respond in time; see `hutch helper status` and its log"
        )
    if details.startswith("cgroup-unavailable:"):
        controllers, _, reason = details.partition(":")[2].partition("|")
        if reason:
            return HutchError(f"the {controllers} limit cannot be set: {reason}")
        return HutchError(
            f"the {controllers} limit needs a cgroup that uid {os.geteuid()} can write, and this "
            "host has none; run without the limit, or have an administrator install "
            "hutch-cgroup setuid and name you in /etc/hutch/policy (README: Limits for "
            "non-root users)"
        )
    return HutchError(details, code)
