"""The failures of han/ that callers catch, and how a failure is named in one line.

The exceptions live here, in a module that imports nothing, rather than beside the code
that raises them (han.io, han.checkpoint, han.device, han.train, which import numpy,
pandas and torch): the command line names them in its one-line errors without loading
those libraries first, which `han-search --help` would otherwise wait for.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from han.config import TokenMode
    from han.train import TrainResult


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


class TrainingInterrupted(RuntimeError):
    """`should_stop` asked to stop; raised at a batch boundary. `train` sets `result`: the
    run so far, its best epoch's checkpoint and predictions (best_epoch 0: none yet)."""

    result: TrainResult | None = None


def first_line(error: BaseException, limit: int | None = None) -> str:
    """The first line of `error`'s message, or its type's name when the message is empty,
    cut to `limit` characters when a limit is given."""
    text = str(error).strip()
    line = text.splitlines()[0] if text else type(error).__name__
    return line if limit is None else line[:limit]
