"""Strict parsers for the values users type: sizes, cpus, signals, env."""

from __future__ import annotations

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
