"""Strict parsers for the values users type: sizes, cpus, signals, env."""

from __future__ import annotations

import os
import re
import signal
import time
from datetime import datetime

from hutch.errors import HutchError

SIZE_PATTERN = re.compile(r"([0-9]+)([bkmg]?)", re.IGNORECASE)
SIZE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
MAX_BYTES = 1 << 62
CPU_PERIOD_US = 100_000


def parse_size(text: str, what: str) -> int:
    """Parse Docker's size form: a number with an optional b, k, m or g suffix."""
    match = SIZE_PATTERN.fullmatch(text.strip())
    if not match:
        raise HutchError(f"invalid {what} {text!r}: expected a number with an optional b, k, m or g suffix")
    value = int(match.group(1)) * SIZE_UNITS[match.group(2).lower()]
    if not 0 < value <= MAX_BYTES:
        raise HutchError(f"invalid {what} {text!r}: out of range")
    return value


def parse_memory_swap(text: str, memory: int) -> int:
    """Parse --memory-swap: memory plus swap in bytes, or -1 for unlimited swap."""
    if text.strip() == "-1":
        return -1
    value = parse_size(text, "memory+swap limit")
    if memory and value < memory:
        raise HutchError(
            f"invalid memory+swap limit {text!r}: it must be at least the memory limit"
        )
    return value


def parse_cpus(text: str) -> tuple[int, int]:
    """Parse --cpus into a CFS (quota, period) pair in microseconds."""
    try:
        cpus = float(text)
    except ValueError:
        raise HutchError(f"invalid --cpus value {text!r}: expected a number such as 0.5") from None
    if not 0.01 <= cpus <= 1024:
        raise HutchError(f"invalid --cpus value {text!r}: expected 0.01 to 1024")
    return round(cpus * CPU_PERIOD_US), CPU_PERIOD_US


def parse_signal(text: str) -> int:
    """Parse a signal as a number, NAME or SIGNAME (case-insensitive)."""
    text = text.strip()
    if text.isdigit():
        number = int(text)
        if 1 <= number <= 64:
            return number
        raise HutchError(f"invalid signal {text!r}: expected 1 to 64")
    name = text.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    try:
        return int(signal.Signals[name])
    except KeyError:
        raise HutchError(f"invalid signal {text!r}: unknown name") from None


def parse_env(items: list[str], host_env: dict[str, str]) -> list[str]:
    """Turn -e values into NAME=VALUE; a bare NAME takes the host's value."""
    result = []
    for item in items:
        name, equals, value = item.partition("=")
        if not name or "\0" in item:
            raise HutchError(f"invalid environment variable {item!r}: expected NAME=VALUE")
        if not equals:
            if name not in host_env:
                continue
            value = host_env[name]
        result.append(f"{name}={value}")
    return result


def merge_env(base: list[str], overrides: list[str]) -> list[str]:
    """Return BASE with each NAME=VALUE of OVERRIDES replacing the same NAME."""
    merged: dict[str, str] = {}
    for item in [*base, *overrides]:
        name, _, value = item.partition("=")
        merged[name] = value
    return [f"{name}={value}" for name, value in merged.items()]


DURATION_PATTERN = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}


def parse_since(text: str, now: float | None = None) -> int:
    """Parse --since (RFC 3339, Unix seconds, or a duration ago) into Unix nanoseconds."""
    text = text.strip()
    now = time.time() if now is None else now
    parts = DURATION_PATTERN.findall(text)
    if parts and "".join(number + unit for number, unit in parts) == text:
        seconds = sum(float(number) * DURATION_UNITS[unit] for number, unit in parts)
        return int((now - seconds) * 1e9)
    try:
        return int(float(text) * 1e9)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise HutchError(
            f"invalid --since {text!r}: expected RFC 3339, Unix seconds, or a duration such as 10m"
        ) from None
    if moment.tzinfo is None:
        moment = moment.astimezone()
    return int(moment.timestamp() * 1e9)


USER_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,31})?")


def check_user_spec(text: str) -> str:
    """Check --user: NAME or UID, optionally :GROUP or :GID."""
    if not USER_PATTERN.fullmatch(text):
        raise HutchError(f"invalid --user {text!r}: expected NAME, UID, NAME:GROUP or UID:GID")
    for part in text.split(":"):
        if part.isdigit() and int(part) >= 2**32 - 1:
            raise HutchError(f"invalid --user {text!r}: {part} is out of range")
    return text


def read_env_files(paths: list[str]) -> list[str]:
    """Read --env-file files: NAME=VALUE or NAME lines; # starts a comment line."""
    items = []
    for path in paths:
        try:
            text = open(path, encoding="utf-8").read()
        except (OSError, UnicodeDecodeError) as error:
            raise HutchError(f"cannot read env file {path}: {error}") from None
        for number, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("=") or " " in line.partition("=")[0]:
                raise HutchError(f"invalid line {number} in env file {path}: {line!r}")
            items.append(line)
    return items


def parse_volume(text: str) -> str:
    """Parse -v HOST:CONTAINER[:ro|rw] into "HOST:CONTAINER:ro|rw" with HOST resolved."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
        raise HutchError(f"invalid volume {text!r}: expected HOST-PATH:CONTAINER-PATH[:ro]")
    source, destination = parts[0], parts[1]
    if not os.path.isabs(source):
        raise HutchError(f"invalid volume {text!r}: named volumes are not supported; give an absolute host path")
    if not os.path.exists(source):
        raise HutchError(f"invalid volume {text!r}: {source} does not exist")
    if not destination.startswith("/") or ".." in destination.split("/"):
        raise HutchError(f"invalid volume {text!r}: the container path must be absolute, without '..'")
    mode = parts[2] if len(parts) == 3 else "rw"
    return f"{os.path.realpath(source)}:{os.path.normpath(destination)}:{mode}"


def parse_tmpfs(text: str) -> tuple[str, int]:
    """Parse --tmpfs PATH[:size=SIZE] into (PATH, bytes); 0 bytes means the default."""
    destination, _, options = text.partition(":")
    if not destination.startswith("/") or ".." in destination.split("/"):
        raise HutchError(f"invalid --tmpfs {text!r}: the path must be absolute, without '..'")
    size = 0
    for option in filter(None, options.split(",")):
        name, _, value = option.partition("=")
        if name != "size" or not value:
            raise HutchError(f"invalid --tmpfs option {option!r}: only size=SIZE is supported")
        size = parse_size(value, "tmpfs size")
    return os.path.normpath(destination), size


MIN_LOG_BYTES = 4096


# A container that floods its output must not fill the disk: Docker's and
# Podman's logs grow without a limit by default, hutch's stop at this size
# (plus the one older part that rotation keeps).
DEFAULT_LOG_MAX_BYTES = 100 * 1024 * 1024


def parse_log_options(items: list[str]) -> dict[str, str]:
    """Parse --log-opt NAME=VALUE items; max-size is the only one supported."""
    options: dict[str, str] = {"max-size": str(DEFAULT_LOG_MAX_BYTES)}
    for item in items:
        name, equals, value = item.partition("=")
        if name != "max-size" or not equals:
            raise HutchError(f"invalid --log-opt {item!r}: only max-size=SIZE is supported")
        size = parse_size(value, "log max-size")
        if size < MIN_LOG_BYTES:
            raise HutchError(f"invalid --log-opt {item!r}: max-size must be at least 4k")
        options["max-size"] = str(size)
    return options
