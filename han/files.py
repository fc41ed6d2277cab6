"""Files on disk: the one atomic write of the project, output paths checked before work,
content hashes, and scratch folders."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path


class UnwritablePath(ValueError):
    """An output path that cannot be written: one line naming the path and the problem."""


def check_writable(target: str | os.PathLike[str], *, folder: bool = False) -> None:
    """Refuse, before any work, an output file (with `folder`: an output folder) that could
    not be written: a folder where a file is wanted or the reverse, a file on the way to
    it, or a folder this process may not write into. Creates nothing.

    The message reads as the failed write would have (`cannot write out.csv (out.csv: Is a
    directory)`), but comes before the hours of work that would have preceded the write.
    """
    target = Path(target)
    if folder and target.exists() and not target.is_dir():
        raise _unwritable(target, target, errno.EEXIST)
    if not folder and target.is_dir():
        raise _unwritable(target, target, errno.EISDIR, "; name a file to write")
    holder = target if folder else target.parent
    existing = holder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        # What mkdir(parents=True) would meet: the folder itself is a file, or one above it.
        raise _unwritable(target, existing,
                          errno.EEXIST if existing == holder else errno.ENOTDIR)
    if not os.access(existing, os.W_OK | os.X_OK):
        raise _unwritable(target, existing, errno.EACCES)


def _unwritable(target: Path, where: Path, code: int, hint: str = "") -> UnwritablePath:
    return UnwritablePath(f"cannot write {target} ({where}: {os.strerror(code)}{hint})")


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


def content_hash(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of the file's bytes, in hex: what tells one dataset from another."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextmanager
def folder_lock(folder: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive advisory lock on `folder` while the block runs; other processes
    asking for it wait. The lock is taken on the folder itself (flock), so no lock file is
    left behind; where the folder cannot be opened or locked (some network filesystems),
    the block runs unlocked rather than not at all."""
    try:
        descriptor: int | None = os.open(folder, os.O_RDONLY)
    except OSError:
        descriptor = None
    try:
        if descriptor is not None:
            with suppress(OSError):
                fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        if descriptor is not None:
            os.close(descriptor)  # releases the lock
