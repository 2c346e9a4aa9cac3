"""Paths, limits and file helpers of the image store's directory.

The store root holds:
  blobs/sha256/<hex>         layer tars (uncompressed), image configs, manifests
  layers/<diffid-hex>/diff/  one layer extracted in overlayfs form
  layers/<diffid-hex>/size   the size of the layer tar in bytes
  images.json                image ids -> tags and manifest digest
  tmp/                       scratch directories of running operations
  lock                       flock(2) held while images.json is rewritten
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import errno
import os
import stat
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hutch.errors import HutchError

CHUNK_SIZE = 1 << 20
HEX_DIGITS = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class Limits:
    """Caps on untrusted archives, so that a hostile one cannot exhaust the host."""

    max_entries: int = 1_000_000  # members in one layer tar
    max_name_length: int = 4096  # bytes in one member name or link target
    max_component_length: int = 255  # bytes in one path component (NAME_MAX)
    max_depth: int = 128  # path components in one member name
    max_layer_bytes: int = 64 << 30  # uncompressed bytes of one layer tar
    max_archive_members: int = 100_000  # members of a save/load archive
    max_json_bytes: int = 16 << 20  # manifest.json, index.json, configs, manifests
    max_extended_header_bytes: int = 1 << 20  # one PAX or GNU long-name header
    max_layers: int = 127  # layers of one image


DEFAULT_LIMITS = Limits()


def default_root() -> Path:
    """Return the store root: /var/lib/hutch for root, else $XDG_DATA_HOME/hutch."""
    if os.geteuid() == 0:
        return Path("/var/lib/hutch")
    data_home = os.environ.get("XDG_DATA_HOME", "")
    if not data_home or not os.path.isabs(data_home):
        data_home = os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(data_home) / "hutch"


def is_hex_digest(value: str) -> bool:
    """Return whether VALUE is 64 lowercase hex digits (a sha256 digest)."""
    return len(value) == 64 and set(value) <= HEX_DIGITS


def split_digest(value: str, subject: str) -> str:
    """Return the hex of "sha256:<hex>", or raise naming WHAT."""
    algorithm, _, hex_part = value.partition(":")
    if algorithm != "sha256" or not is_hex_digest(hex_part):
        raise HutchError(
            f"invalid digest {quoted(value)} in {subject}: expected sha256:<64 hex>"
        )
    return hex_part


def member_components(name: str, limits: Limits) -> list[str]:
    """Split a tar member name into components, or raise ValueError naming why it is unsafe.

    One leading "./" is dropped and a trailing "/" is allowed. An empty result means
    the root itself. Absolute names, "..", "." inside the name and empty components
    are rejected, never rewritten.
    """
    if len(os.fsencode(name)) > limits.max_name_length:
        raise ValueError(f"name is longer than {limits.max_name_length} bytes")
    if name.startswith("/"):
        raise ValueError("absolute path")
    if name.startswith("./"):
        name = name[2:]
    elif name == ".":
        return []
    name = name[:-1] if name.endswith("/") else name
    if not name:
        return []
    parts = name.split("/")
    if len(parts) > limits.max_depth:
        raise ValueError(f"path is deeper than {limits.max_depth} components")
    for part in parts:
        if part in ("", ".", ".."):
            raise ValueError(f"path component {part!r} is not allowed")
        if len(os.fsencode(part)) > limits.max_component_length:
            raise ValueError(
                f"a component is longer than {limits.max_component_length} bytes"
            )
    return parts


# A message shows a long name from input as its first and last characters.
_SHOWN_HEAD = 100
_SHOWN_TAIL = 60


def quoted(text: str) -> str:
    """Return repr(TEXT) for a message, with its middle cut out when TEXT is long.

    Member names, link targets and --change lines come from input and may run to
    thousands of characters, so a message keeps the first 100 and last 60 of them.
    """
    if len(text) <= _SHOWN_HEAD + _SHOWN_TAIL + 3:
        return repr(text)
    return repr(text[:_SHOWN_HEAD] + "..." + text[-_SHOWN_TAIL:])


class Layout:
    """The paths inside one store root."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs" / "sha256"
        self.layers = root / "layers"
        self.tmp = root / "tmp"
        self.images_file = root / "images.json"
        self.lock_file = root / "lock"

    def blob(self, hex_digest: str) -> Path:
        return self.blobs / hex_digest

    def layer(self, diff_id_hex: str) -> Path:
        return self.layers / diff_id_hex

    def diff(self, diff_id_hex: str) -> Path:
        return self.layers / diff_id_hex / "diff"

    def prepare(self) -> None:
        """Create or validate the root and its subdirectories, and clear stale scratch."""
        _check_ancestors(self.root)
        old_umask = os.umask(0o077)
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            _check_private_dir(self.root)
            for directory in (self.root / "blobs", self.blobs, self.layers, self.tmp):
                directory.mkdir(mode=0o700, exist_ok=True)
                _check_private_dir(directory)
        finally:
            os.umask(old_umask)
        self._clear_stale_scratch()

    @contextlib.contextmanager
    def locked(self, *, wait: bool = True) -> Iterator[bool]:
        """Hold the store's exclusive lock while the block runs.

        With wait=False the block runs at once and receives False when another
        process holds the lock, and True when this one got it.
        """
        fd = os.open(
            self.lock_file, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
        )
        try:
            try:
                fcntl.flock(
                    fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB
                )
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def scratch(self, purpose: str) -> Iterator[Path]:
        """Yield a fresh directory under tmp/, removed afterwards whatever happens.

        A flock on its .lock file marks it as in use, so that Store.open in another
        process leaves it alone and removes only directories of dead operations.
        """
        path = self.tmp / f"{purpose}-{uuid.uuid4().hex}"
        path.mkdir(mode=0o700)
        lock_fd = os.open(
            path / ".lock", os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600
        )
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            yield path
        finally:
            try:
                remove_tree(path)
            finally:
                os.close(lock_fd)

    def _clear_stale_scratch(self) -> None:
        for entry in os.scandir(self.tmp):
            path = Path(entry.path)
            if not entry.is_dir(follow_symlinks=False):
                path.unlink(missing_ok=True)
                continue
            try:
                lock_fd = os.open(
                    path / ".lock", os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC
                )
            except FileNotFoundError:
                remove_tree(path)
                continue
            try:
                fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(lock_fd)
                continue  # a live operation has it locked
            try:
                remove_tree(path)
            finally:
                os.close(lock_fd)

    def read_records(self) -> dict[str, Any]:
        """Return the parsed images.json, or an empty record set when it does not exist."""
        try:
            data = self.images_file.read_bytes()
        except FileNotFoundError:
            return {"images": {}}
        try:
            records = json.loads(data)
        except ValueError as error:
            raise HutchError(
                f"image records {self.images_file} are corrupt ({error}): "
                "restore the file or remove the store"
            ) from None
        if not isinstance(records, dict) or not isinstance(records.get("images"), dict):
            raise HutchError(f"image records {self.images_file} have an unknown layout")
        return records

    def write_records(self, records: dict[str, Any]) -> None:
        """Replace images.json atomically (write a temporary file, fsync, rename)."""
        data = json.dumps(records, indent=1, sort_keys=True).encode() + b"\n"
        atomic_write(self.images_file, data, self.tmp)


def atomic_write(path: Path, data: bytes, tmp_dir: Path) -> None:
    """Write DATA to PATH so that readers see either the old or the new contents."""
    tmp_path = tmp_dir / f"write-{uuid.uuid4().hex}"
    fd = os.open(
        tmp_path,
        os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
        0o600,
    )
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def read_capped(path: Path, limit: int, subject: str) -> bytes:
    """Return the contents of PATH, or raise when it is larger than LIMIT bytes."""
    size = os.stat(path).st_size
    if size > limit:
        raise HutchError(f"{subject} is {size} bytes, more than the limit of {limit}")
    return path.read_bytes()


def remove_tree(path: Path) -> None:
    """Remove PATH and everything under it, even directories whose mode blocks the owner.

    Extracted layers may hold directories of mode 0555 or 0000, which a non-root owner
    cannot empty until they are made writable again.
    """
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(info.st_mode):
        os.unlink(path)
        return
    if os.geteuid() != 0:
        _make_owner_writable(path, info)
    # shutil imports zlib, bz2 and lzma, which opening the store does not need.
    import shutil

    shutil.rmtree(path)


def _make_owner_writable(path: Path, info: os.stat_result) -> None:
    # Only real directories reached without following symlinks are changed, so this
    # never touches anything outside PATH.
    if info.st_mode & 0o700 != 0o700:
        os.chmod(path, stat.S_IMODE(info.st_mode) | 0o700)
    with os.scandir(path) as entries:
        children = [
            Path(entry.path) for entry in entries if entry.is_dir(follow_symlinks=False)
        ]
    for child in children:
        _make_owner_writable(child, os.lstat(child))


def _check_private_dir(path: Path) -> None:
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise HutchError(
            f"image store directory {path} is a symlink or not a directory: remove it"
        )
    if info.st_uid != os.geteuid():
        raise HutchError(
            f"image store directory {path} is owned by uid {info.st_uid}, not {os.geteuid()}: "
            "use a store of your own"
        )
    if info.st_mode & 0o022:
        raise HutchError(
            f"image store directory {path} has mode {stat.S_IMODE(info.st_mode):04o}, which "
            f"lets other users write to it: run chmod 700 {path}"
        )


def _check_ancestors(root: Path) -> None:
    """Reject a root under a directory that another user could write to or swap."""
    if not root.is_absolute():
        raise HutchError(f"image store path {root} is not absolute")
    for ancestor in reversed(root.parents):
        try:
            info = os.lstat(ancestor)
        except FileNotFoundError:
            return
        if stat.S_ISLNK(info.st_mode):
            ancestor = Path(os.path.realpath(ancestor))
            info = os.stat(ancestor)
        mode = stat.S_IMODE(info.st_mode)
        if info.st_uid not in (0, os.geteuid()):
            raise HutchError(
                f"image store path {root} is inside {ancestor}, which is owned by "
                f"another user (uid {info.st_uid}): put the store elsewhere"
            )
        sticky = bool(info.st_mode & stat.S_ISVTX)
        if info.st_mode & 0o022 and not sticky:
            raise HutchError(
                f"image store path {root} is inside {ancestor}, which other users can "
                f"write to (mode {mode:04o}): put the store elsewhere"
            )


# overlayfs marks, as the store's layer dirs and containers' upper dirs hold them.
OPAQUE_XATTRS = ("user.overlay.opaque", "trusted.overlay.opaque")


def is_whiteout(info: os.stat_result) -> bool:
    """Return whether INFO describes an overlayfs whiteout (a 0:0 character device)."""
    return stat.S_ISCHR(info.st_mode) and info.st_rdev == 0


def is_opaque(directory_fd: int) -> bool:
    """Return whether the directory open at DIRECTORY_FD is an opaque overlayfs directory."""
    for name in OPAQUE_XATTRS:
        try:
            if os.getxattr(directory_fd, name) == b"y":
                return True
        except OSError as error:
            if error.errno not in (
                errno.ENODATA,
                errno.ENOTSUP,
                errno.EPERM,
                errno.EACCES,
            ):
                raise
    return False
