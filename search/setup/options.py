"""What the command line says about a run: its stores, device, seed and data files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from search.defaults import (
    DEFAULT_HEARTBEAT_S,
    DEFAULT_STORAGE,
    DEFAULT_STORAGE_PATIENCE_S,
    DEFAULT_TRACKING_URI,
)


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    """Where a session's stores, device and data are: built once from the command line and
    passed on, to every worker too. None: the study file's choice (data), or none (seed)."""

    storage: str = DEFAULT_STORAGE
    tracking_uri: str = DEFAULT_TRACKING_URI
    device: str = "auto"
    seed: int | None = None
    train: Path | None = None
    test: Path | None = None
    embeddings: Path | None = None
    # --word2vec/--no-word2vec; None: the study file's [data] word2vec (search.session.word2vec).
    word2vec: bool | None = None
    heartbeat_s: int = DEFAULT_HEARTBEAT_S
    storage_patience_s: float = DEFAULT_STORAGE_PATIENCE_S
    # A worker's index: its sampler draws differ from the other workers'.
    sampler_seed_offset: int = 0
    # Whether the session ends by registering the study file's model: not in workers, whose
    # parent session does it once they are done.
    register: bool = True
    # Whether this process may train the study's baseline: workers started by --workers
    # leave it to their parent, which trains it before starting them.
    baseline: bool = True


@dataclass(frozen=True)
class DataFiles:
    """The files a run reads: the training file, the test file, the trials' word2vec vectors
    (given, or trained by the session), and whether the training file is the built-in
    corpus's."""

    train: Path
    test: Path | None
    embeddings: Path | None
    builtin: bool
