"""Files on disk: the one atomic write of the project, and scratch folders."""

from __future__ import annotations

import os
import tempfile
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


def temporary_directory(prefix: str) -> tempfile.TemporaryDirectory[str]:
    """A scratch folder removed on exit, under $TMPDIR as it is now (the `tempfile` module
    reads it once per process)."""
    return tempfile.TemporaryDirectory(prefix=prefix, dir=os.environ.get("TMPDIR"))
