"""Writing a file so that no reader ever sees half of it: the one atomic write of the project."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def written_atomically(target: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path beside `target` to write to; it becomes `target` only once the block
    ends without an error, so a crash never leaves half a file, and a failed write leaves
    nothing (the temporary is removed). The folder of `target` is created when missing.

    The temporary's name is unique to the process and the call, so concurrent writers of
    the same file never write into each other's temporary.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        yield temporary
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
