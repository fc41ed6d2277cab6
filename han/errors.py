"""Every exception class of han/, and how a failure is named in one line.

They all live here, each imported from here only, in a module that imports nothing rather
than beside the code that raises them (han.io, han.checkpoint, han.device, han.train, which
import numpy, pandas and torch): the command line names them in its one-line errors without
loading those libraries first, which `han-search --help` would otherwise wait for.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from han.config import TokenMode


class DataError(ValueError):
    """Bad input data; the message is one line naming the file and, where known, the line."""


class TokenMismatch(DataError):
    """Text that is not the integer ids it was read as, and reads as `fits` instead."""

    def __init__(self, message: str, *, fits: TokenMode) -> None:
        super().__init__(message)
        self.fits = fits


class CheckpointError(ValueError):
    """The file is not a han-search checkpoint, or is damaged: `path` and the `problem`
    apart, so a caller that knows where the file came from (a trial's MLflow run) can name
    that instead of a temporary download path."""

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = Path(path)
        self.problem = problem


class DeviceError(ValueError):
    """A device or an arithmetic this machine cannot give; the message is one line."""


class DimensionMismatch(DataError):
    """A word2vec file whose vectors do not have the model's embed_dim."""

    def __init__(self, *, path: Path, file_dim: int, dim: int) -> None:
        super().__init__(f"{path}: line 1: vectors have dimension {file_dim}, the model's "
                         f"embed_dim is {dim}")
        self.file_dim, self.dim = file_dim, dim


class NotAnId(DataError):
    """A token of text `doc` (an index into the texts parsed) is not an integer id: raised
    and caught inside han.io's parser, which then names the line."""

    def __init__(self, message: str, *, doc: int) -> None:
        super().__init__(message)
        self.doc = doc


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the configuration diverged (`train` ends with a
    not-learning stop, han.stopping)."""

    def __init__(self, *, epoch: int, step: int, loss: float) -> None:
        super().__init__(f"non-finite loss {loss} at epoch {epoch}, step {step}")
        self.epoch, self.step, self.loss = epoch, step, loss


class DeviceOutOfMemoryError(RuntimeError):
    """The device ran out of memory; the message gives the batch and segment shape."""


class UnwritablePath(ValueError):
    """An output path that cannot be written: one line naming the path and the problem."""


class WriteFailed(UnwritablePath):
    """A write the filesystem refused for a reason the user must fix, in one line naming
    what was written, the problem and the file: `cannot write the checkpoint of trial 3: no
    space left on /mnt/x (/mnt/x/work/demo/trial-3/best.pt)`."""

    def __init__(self, *, target: str | os.PathLike[str], what: str | None, code: int) -> None:
        # han.files says what the refusal means where it happened (the mount point, the
        # folder); imported here, so that naming this class loads nothing.
        from han.files import refusal

        self.target, self.what, self.code = Path(target), what, code
        problem = refusal(self.target, code)
        super().__init__(f"cannot write {what}: {problem} ({self.target})" if what
                         else f"cannot write {self.target}: {problem}")

    def of(self, owner: str) -> WriteFailed:
        """The same failure, naming whose file it was (`trial 3`)."""
        return WriteFailed(target=self.target, what=f"{self.what or 'a file'} of {owner}",
                           code=self.code)


def first_line(error: BaseException, limit: int | None = None) -> str:
    """The first line of `error`'s message, or its type's name when the message is empty,
    cut to `limit` characters when a limit is given."""
    text = str(error).strip()
    line = text.splitlines()[0] if text else type(error).__name__
    return line if limit is None else line[:limit]
