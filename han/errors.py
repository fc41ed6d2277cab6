"""How a failure is named in one line: the first line of an error's message."""

from __future__ import annotations


def first_line(error: BaseException, limit: int | None = None) -> str:
    """The first line of `error`'s message, or its type's name when the message is empty,
    cut to `limit` characters when a limit is given."""
    text = str(error).strip()
    line = text.splitlines()[0] if text else type(error).__name__
    return line if limit is None else line[:limit]
