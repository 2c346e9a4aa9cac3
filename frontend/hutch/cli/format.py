"""Sizes, durations and tables in the shapes Docker prints them."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any


def human_size(size: float) -> str:
    """Return SIZE in bytes as Docker's `images` shows it (SI units, 3 digits)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.3g}{unit}" if unit != "B" else f"{int(size)}B"
        size /= 1000
    return f"{size:.3g}TB"


def human_binary_size(size: float) -> str:
    """Return SIZE in bytes as Docker's `stats` shows it (binary units)."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.4g}{unit}" if unit != "B" else f"{int(size)}B"
        size /= 1024
    return f"{size:.4g}GiB"


def human_duration(seconds: float) -> str:
    """Return a duration as "3 seconds", "About a minute", "2 hours"."""
    seconds = int(seconds)
    if seconds < 1:
        return "Less than a second"
    if seconds < 60:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    minutes = round(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = round(seconds / 3600)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    days = round(seconds / 86400)
    if days < 14:
        return f"{days} days"
    return f"{days // 7} weeks"


def parse_time(stamp: str) -> datetime | None:
    if not stamp:
        return None
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None


def ago(stamp: str) -> str:
    moment = parse_time(stamp)
    if moment is None:
        return ""
    return human_duration((datetime.now(timezone.utc) - moment).total_seconds()) + " ago"


def table(headers: list[str], rows: list[list[str]]) -> str:
    """Return rows in columns separated by three spaces, as Docker aligns them."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row)]
    lines = []
    for row in [headers, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row, widths)]
        lines.append("   ".join(cells).rstrip())
    return "\n".join(lines)


def to_json(value: Any) -> str:
    return json.dumps(value, indent=4)
