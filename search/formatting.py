"""How durations, values and store URLs are written for people: the terminal, the study report
and MLflow's tags."""

from __future__ import annotations

import urllib.parse
from typing import Any


def duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def size(bytes_: int) -> str:
    """Bytes in the largest unit that keeps a figure of 1 or more: 124 KB, 15.2 MB, 3.1 GB."""
    value, unit = float(bytes_), "bytes"
    for larger in ("KB", "MB", "GB", "TB"):
        if value < 1024:
            break
        value, unit = value / 1024, larger
    return f"{value:.0f} {unit}" if unit == "bytes" or value >= 100 else f"{value:.1f} {unit}"


def redact(url: str) -> str:
    """The URL with any password replaced, for logs, tags and the terminal."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}"
    if parts.port:
        netloc += f":{parts.port}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))
