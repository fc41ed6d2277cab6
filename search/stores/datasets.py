"""A trial's data as MLflow dataset inputs: the training file's training and dev parts, each
named, digested (the file's content hash) and profiled, so the runs table's Dataset column and
a run's page say what the trial learned from and was scored on."""

from __future__ import annotations

import hashlib

from han.batching import EncodedSplit
from han.config import DataConfig
from search.records import DataContext, DatasetRecord
from search.stores.tracking import DataInput

# The hash prefix an MLflow dataset digest holds (the `data.sha256` tag's length).
_DIGEST = 16


def _name(data: DatasetRecord) -> str:
    # The built-in corpus's files live in a cache: name the file too, so two corpora differ.
    return f"{data.name} ({data.path.name})" if data.builtin else data.name


def trial_inputs(data: DatasetRecord, split: EncodedSplit,
                 config: DataConfig) -> list[DataInput]:
    """The training file (context `training`) and the trial's dev fold of it (`validation`).

    The training input is the whole file, its digest the file's content hash and its profile
    the file's, the same for every trial: MLflow keeps one dataset per name and digest, so
    the file is listed once however many trials read it. The dev fold is a dataset of its
    own, its digest derived from the file's hash and the fold.
    """
    fold = f"fold {config.dev_fold + 1} of {config.folds}"
    common = _profile(data)
    split_key = f"{data.sha256[:_DIGEST]}:{config.folds}:{config.dev_fold}:{config.split_seed}"
    dev = DataInput(name=f"{_name(data)} dev {fold}",
                    digest=hashlib.sha256(split_key.encode()).hexdigest()[:_DIGEST],
                    source=data.path, context=DataContext.VALIDATION,
                    profile={"documents": len(split.dev_docs)} | common | {
                        "split": f"{fold}, split seed {config.split_seed}",
                        "training_file_digest": data.sha256[:_DIGEST]})
    return [training_input(data), dev]


def training_input(data: DatasetRecord) -> DataInput:
    """The training file as the input of a run (a trial's, and the study's parent run)."""
    return DataInput(name=_name(data), digest=data.sha256[:_DIGEST], source=data.path,
                     context=DataContext.TRAINING,
                     profile={"documents": data.docs} | _profile(data))


def _profile(data: DatasetRecord) -> dict[str, object]:
    return {"classes": data.classes, "tokens": data.file_format.tokens,
            "text_column": data.file_format.text_col}
