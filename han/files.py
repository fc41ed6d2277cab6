"""Files on disk: the one atomic write of the project, the one-line error of a write the
filesystem refused, output paths checked before work, content hashes, and scratch folders."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import tempfile
import uuid
from collections.abc import Collection, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, BinaryIO, cast

from han.errors import UnwritablePath, WriteFailed


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


# Why a write failed when the user must act (free space, make a folder writable, put back
# a removed one), by errno. Space is shared by a whole filesystem: its mount point is named.
_REFUSALS = {
    errno.ENOSPC: "no space left on {mount}",
    errno.EDQUOT: "disk quota exceeded on {mount}",
    errno.EROFS: "{folder} is read-only",
    errno.EACCES: "{folder} is not writable",
    errno.EPERM: "{folder} is not writable",
    errno.ENOENT: "{missing} was removed",
}
# SQLite's names for the same refusals (MLflow's and Optuna's SQLite stores); a subcode
# (SQLITE_READONLY_DIRECTORY...) counts as its code unless named itself.
_SQLITE_REFUSALS = {"SQLITE_FULL": errno.ENOSPC, "SQLITE_READONLY_DBMOVED": errno.ENOENT,
                    "SQLITE_READONLY": errno.EROFS}


def refusal(target: Path, code: int) -> str:
    """What a refused write of `target` (errno `code`) means for the user, in words."""
    folder = Path(os.path.abspath(target)).parent
    existing = nearest_existing(folder)
    # The highest folder gone (the target itself when its folder is there).
    missing = Path(os.path.abspath(target)) if existing == folder else next(
        above for above in (folder, *folder.parents) if above.parent == existing)
    return _REFUSALS[code].format(mount=mount_point(existing), folder=folder, missing=missing)


def nearest_existing(path: str | os.PathLike[str]) -> Path:
    """`path` made absolute, or the nearest folder above it that exists."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def mount_point(path: str | os.PathLike[str]) -> Path:
    """Where the filesystem that holds `path` (or would: see `nearest_existing`) is mounted:
    free space is that filesystem's, shared by all its folders."""
    mount = nearest_existing(path)
    with suppress(OSError):
        device = mount.stat().st_dev
        while mount != mount.parent and mount.parent.stat().st_dev == device:
            mount = mount.parent
    return mount


# The refusals that only a write meets: a block that also reads may miss a file or lack the
# permission to read one.
WRITE_ONLY = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})


def refused_errno(error: BaseException, *,
                  os_errors: Collection[int] = frozenset(_REFUSALS)) -> int | None:
    """The errno of a write refused for a reason the user must fix (no space or quota, a
    read-only, unwritable or removed folder) in `error` or the errors it was raised from
    (MLflow and Optuna raise theirs from SQLAlchemy's, raised from SQLite's, which only a
    write meets); None for any other failure. An OSError counts with an errno of
    `os_errors`."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, OSError) and cause.errno in os_errors:
            return cause.errno
        name = getattr(cause, "sqlite_errorname", None)
        if isinstance(name, str):
            return _SQLITE_REFUSALS.get(name, _SQLITE_REFUSALS.get(name.rsplit("_", 1)[0]))
        cause = cause.__cause__
    return None


@contextmanager
def writing(target: str | os.PathLike[str], *, what: str | None = None) -> Iterator[None]:
    """A block that writes `target`: a refusal the user must fix (see `refused_errno`)
    leaves it as WriteFailed naming `what` and `target`; other errors pass unchanged."""
    try:
        yield
    except WriteFailed:
        raise
    except Exception as error:
        code = refused_errno(error)
        if code is None:
            raise
        raise WriteFailed(target=target, what=what, code=code) from error


@contextmanager
def written_atomically(target: str | os.PathLike[str], *, what: str | None = None,
                       new_folders: bool = True) -> Iterator[Path]:
    """A temporary path beside `target` to write to; it becomes `target` only once the block
    ends without an error, so a crash never leaves half a file, and a failed write leaves
    nothing (the temporary is removed). A refused write is WriteFailed (see `writing`).

    The folders of `target` are created when missing; with `new_folders` False they must
    exist: a folder made earlier for this write (a trial's) that is gone was removed under
    the process, perhaps with its disk, and making it again would write where nobody looks.

    The temporary's name is unique to the process and the call, so concurrent writers of
    the same file never write into each other's temporary.
    """
    target = Path(target)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    with writing(target, what=what):
        if new_folders:
            target.parent.mkdir(parents=True, exist_ok=True)
        try:
            yield temporary
            os.replace(temporary, target)
        finally:
            temporary.unlink(missing_ok=True)


class _Sink:
    """A binary file that remembers the OSError its writes met: torch.save reports one as a
    RuntimeError that no longer says why (`unexpected pos 60928 vs 60816`)."""

    def __init__(self, handle: BinaryIO) -> None:
        self.handle = handle
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        try:
            return self.handle.write(data)
        except OSError as error:
            self.error = error
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self.handle, name)


@contextmanager
def written_file(target: str | os.PathLike[str], *, what: str | None = None,
                 new_folders: bool = True) -> Iterator[BinaryIO]:
    """`written_atomically`, opened for binary writing, for writers that hide the OSError of
    a failed write (torch.save): that OSError is what the block then raises."""
    with written_atomically(target, what=what, new_folders=new_folders) as temporary, \
            open(temporary, "wb") as handle:
        sink = _Sink(handle)
        try:
            yield cast(BinaryIO, sink)
        except Exception as error:
            if sink.error is None or sink.error is error:
                raise
            raise sink.error from error


def folder_made(folder: str | os.PathLike[str], *, under: str | os.PathLike[str],
                what: str | None = None) -> Path:
    """`folder`, created with its missing parents below `under`, which must exist: made
    before by the process, it was removed under it (see `written_atomically`)."""
    folder = Path(folder)
    with writing(folder, what=what):
        if not Path(under).is_dir():
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(under))
        folder.mkdir(parents=True, exist_ok=True)
    return folder


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
