"""Locations of the helper socket and of the C programs."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

from hutch.errors import HutchError

SOCKET_NAME = "helper.sock"
PROGRAMS = ("hutch-spawn", "hutch-cgroup")


def runtime_dir() -> Path:
    """Return the private directory that contains the helper's socket.

    $HUTCH_RUNTIME_DIR wins; otherwise root uses /run/hutch, and a user
    $XDG_RUNTIME_DIR/hutch, or /tmp/hutch-UID when XDG_RUNTIME_DIR is not set.
    """
    override = os.environ.get("HUTCH_RUNTIME_DIR")
    if override:
        return Path(override)
    if os.geteuid() == 0:
        return Path("/run/hutch")
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base:
        return Path(base) / "hutch"
    return Path(f"/tmp/hutch-{os.geteuid()}")


def socket_path() -> Path:
    return runtime_dir() / SOCKET_NAME


def ensure_private_dir(path: Path) -> Path:
    """Create PATH with mode 0700 if missing, then check that it is private.

    The directory must be a real directory (not a symlink), owned by the
    effective uid, and closed to group and others; anything else raises.
    """
    old_umask = os.umask(0o077)
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as error:
        raise HutchError(f"cannot create directory {path}: {error.strerror}") from None
    finally:
        os.umask(old_umask)
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        raise HutchError(f"{path} is not a directory; remove it and try again")
    if info.st_uid != os.geteuid():
        raise HutchError(
            f"{path} belongs to uid {info.st_uid}, not to you (uid {os.geteuid()}); "
            "remove it or set XDG_RUNTIME_DIR"
        )
    if info.st_mode & 0o077:
        raise HutchError(
            f"{path} is open to other users (mode {stat.S_IMODE(info.st_mode):o}); "
            f"run chmod 700 {path}"
        )
    return path


def libexec_dir() -> Path:
    """Return the directory holding hutch-spawn and hutch-cgroup.

    Searched in order: $HUTCH_LIBEXEC, PREFIX/libexec/hutch of this Python
    environment, the c-helper/ build directory of a source checkout, then
    /usr/local/libexec/hutch and /usr/libexec/hutch.
    """
    override = os.environ.get("HUTCH_LIBEXEC")
    if override:
        return Path(override)
    checkout = Path(__file__).resolve().parent.parent.parent / "c-helper"
    candidates = [
        Path(sys.prefix) / "libexec" / "hutch",
        checkout,
        Path("/usr/local/libexec/hutch"),
        Path("/usr/libexec/hutch"),
    ]
    for candidate in candidates:
        if all(os.access(candidate / name, os.X_OK) for name in PROGRAMS):
            return candidate
    raise HutchError(
        "hutch-spawn and hutch-cgroup were not found; build them with "
        "`make -C c-helper` or set HUTCH_LIBEXEC to their directory"
    )
