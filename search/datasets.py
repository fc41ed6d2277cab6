"""A trial's data as MLflow dataset inputs: the training file's training and dev parts, each
named, digested (the file's content hash) and profiled, so the runs table's Dataset column and
a run's page say what the trial learned from and was scored on."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from han.batching import EncodedSplit
from han.config import DataConfig, FileFormat
from search.records import DataContext
from search.tracking import DataInput

# What the built-in corpus is called where a file name would be (its files live in a cache).
BUILTIN_NAME = "built-in corpus"


def file_digest(path: Path) -> str:
    """The file's content hash: the first 16 hex digits of its SHA-256."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


@dataclass(frozen=True, kw_only=True)
class TrainingFile:
    """The study's training file as a dataset: where it is, its content hash, its size."""

    path: Path
    digest: str
    docs: int
    classes: int
    file_format: FileFormat
    builtin: bool = False

    @property
    def name(self) -> str:
        return f"{BUILTIN_NAME} ({self.path.name})" if self.builtin else self.path.name


def trial_inputs(data: TrainingFile, split: EncodedSplit,
                 config: DataConfig) -> list[DataInput]:
    """The training file (context `training`) and the trial's dev fold of it (`validation`).

    The training input is the whole file, its digest the file's content hash and its profile
    the file's, the same for every trial: MLflow keeps one dataset per name and digest, so
    the file is listed once however many trials read it. The dev fold is a dataset of its
    own, its digest derived from the file's hash and the fold.
    """
    fold = f"fold {config.dev_fold + 1} of {config.folds}"
    common = _profile(data)
    split_key = f"{data.digest}:{config.folds}:{config.dev_fold}:{config.split_seed}"
    dev = DataInput(name=f"{data.name} dev {fold}",
                    digest=hashlib.sha256(split_key.encode()).hexdigest()[:16],
                    source=data.path, context=DataContext.VALIDATION,
                    profile={"documents": len(split.dev_docs)} | common | {
                        "split": f"{fold}, split seed {config.split_seed}",
                        "training_file_digest": data.digest})
    return [training_input(data), dev]


def training_input(data: TrainingFile) -> DataInput:
    """The training file as the input of a run (a trial's, and the study's parent run)."""
    return DataInput(name=data.name, digest=data.digest, source=data.path,
                     context=DataContext.TRAINING,
                     profile={"documents": data.docs} | _profile(data))


def _profile(data: TrainingFile) -> dict[str, object]:
    return {"classes": data.classes, "tokens": data.file_format.tokens,
            "text_column": data.file_format.text_col}
