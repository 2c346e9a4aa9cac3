"""Limits on commands that a remote client runs through hutch-helper.

The remote helper runs `python -m hutch ARGV` for the client as its own
user, with HUTCH_REMOTE_CLIENT set. Such a command may touch the store and
the helper, and stream through stdin and stdout, but never a path or an
environment variable of the server: those belong to the server's user, not
to the client.
"""

from __future__ import annotations

import os

from hutch.errors import HutchError


def is_remote() -> bool:
    return bool(os.environ.get("HUTCH_REMOTE_CLIENT"))


def binds_allowed() -> bool:
    return not (is_remote() and os.environ.get("HUTCH_DENY_BINDS"))


def check_server_path(option: str, value: str | None) -> None:
    """Reject a file of the server named by a remote client; "-" (a stream) is fine."""
    if is_remote() and value not in (None, "-"):
        raise HutchError(
            f"{option} {value} names a file on the remote host, which remote clients "
            "cannot use; stream through stdin or stdout instead"
        )


def check_host_env(items: list[str]) -> None:
    """Reject -e NAME (the host's value) for remote clients: it would read the server's."""
    if not is_remote():
        return
    for item in items:
        if "=" not in item:
            raise HutchError(
                f"-e {item} takes the value from the remote host's environment, "
                "which remote clients cannot read; give NAME=VALUE"
            )
