"""Interactive sessions: `run -it`, `attach` and `exec` share this code.

Output comes back from the helper as log chunks; input (stdin bytes and
terminal sizes) goes to it on the same bidirectional Attach call. With a
terminal, the caller's terminal is put into raw mode, so that keys such as
Ctrl-C reach the container's own pty, and restored however hutch exits.
"""

from __future__ import annotations

import os
import queue
import signal
import sys
import termios
import threading
import tty as tty_module
from collections.abc import Iterator

from hutch.cli.app import App
from hutch.errors import HutchError

READ_SIZE = 64 * 1024
DETACH_KEYS = b"\x10\x11"  # Ctrl-P Ctrl-Q, Docker's default detach sequence
PROXIED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


def terminal_size() -> tuple[int, int]:
    """Return (rows, cols) of the caller's terminal, or (0, 0) without one."""
    for fd in (sys.stdout.fileno(), sys.stdin.fileno()):
        try:
            size = os.get_terminal_size(fd)
            return size.lines, size.columns
        except OSError:
            continue
    return 0, 0


class RawTerminal:
    """Put stdin's terminal in raw mode for the duration of a with block."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and os.isatty(sys.stdin.fileno())
        self._saved: list | None = None

    def __enter__(self) -> RawTerminal:
        if self.enabled:
            self._saved = termios.tcgetattr(sys.stdin.fileno())
            tty_module.setraw(sys.stdin.fileno())
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._saved is not None:
            termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, self._saved)


def check_terminal(tty: bool, interactive: bool) -> None:
    """Reject -it when stdin is not a terminal, as Docker does."""
    if tty and interactive and not os.isatty(sys.stdin.fileno()):
        raise HutchError("the input device is not a TTY; drop -t, or run from a terminal")


def session(
    app: App, container_id: str, *, tty: bool, interactive: bool, from_start: bool
) -> int:
    """Stream a container's output (and our stdin to it) until it ends; return its exit code."""
    from hutch.helper.v1 import helper_pb2

    inputs: queue.Queue = queue.Queue()
    rows, cols = terminal_size() if tty else (0, 0)
    inputs.put(helper_pb2.AttachInput(id=container_id, from_start=from_start, rows=rows, cols=cols))
    done = threading.Event()

    def requests() -> Iterator[helper_pb2.AttachInput]:
        while True:
            message = inputs.get()
            if message is None:
                return
            yield message

    detached = threading.Event()
    call = None

    def read_stdin() -> None:
        fd = sys.stdin.fileno()
        previous = b""
        while not done.is_set():
            try:
                data = os.read(fd, READ_SIZE)
            except OSError:
                data = b""
            if not data:
                inputs.put(helper_pb2.AttachInput(close_stdin=True))
                return
            if tty and DETACH_KEYS in previous[-1:] + data:
                # Leave the container running; what was typed before the keys still goes.
                before = (previous[-1:] + data).split(DETACH_KEYS, 1)[0][len(previous[-1:]):]
                if before:
                    inputs.put(helper_pb2.AttachInput(data=before))
                detached.set()
                if call is not None:
                    call.cancel()
                return
            inputs.put(helper_pb2.AttachInput(data=data))
            previous = data

    def on_resize(number: int, frame: object) -> None:
        new_rows, new_cols = terminal_size()
        if new_rows and new_cols:
            inputs.put(helper_pb2.AttachInput(rows=new_rows, cols=new_cols))

    def forward(number: int, frame: object) -> None:
        try:
            request = helper_pb2.SignalContainerRequest(id=container_id, signal=number)
            app.helper.call("SignalContainer", request)
        except HutchError:
            pass

    handlers = {signal.SIGWINCH: on_resize} if tty else {}
    if not tty:
        handlers.update({number: forward for number in PROXIED_SIGNALS})
    previous = {number: signal.signal(number, handler) for number, handler in handlers.items()}
    if interactive:
        threading.Thread(target=read_stdin, daemon=True).start()
    stdout, stderr = sys.stdout.buffer, sys.stderr.buffer
    try:
        with RawTerminal(tty and interactive):
            call = app.helper.call("Attach", requests())
            try:
                for chunk in call:
                    target = stderr if chunk.stream == helper_pb2.LogChunk.STREAM_STDERR else stdout
                    target.write(chunk.data)
                    target.flush()
            except HutchError:
                if not detached.is_set():
                    raise
    finally:
        done.set()
        inputs.put(None)
        for number, handler in previous.items():
            signal.signal(number, handler)
    if detached.is_set():
        sys.stderr.write("\r\nhutch: detached; the container keeps running\r\n")
        return 0
    state = app.helper.call("WaitContainer", helper_pb2.WaitContainerRequest(id=container_id))
    return state.exit_code
