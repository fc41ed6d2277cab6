"""Everything a study writes down: Optuna study and trial attributes and MLflow tags, by name.

No other module spells a record key: they read and write through the accessors here, so a
key is renamed in one place and every reader of a study (the runner, the objective, the
refit, the report, the CLI) agrees on what it holds.
"""

from __future__ import annotations

import enum
import platform
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from han.config import COMPETITION_FORMAT, FileFormat
from han.train import TrainingInterrupted

# -- Optuna study attributes ----------------------------------------------------------------

_TRAIN_PATH = "train_path"
_TEST_PATH = "test_path"
# Class names in class-id order, for reports (absent when the classes have no names).
_CLASS_NAMES = "class_names"
# How the study's files are read (han.config.FileFormat as a dict).
_FILE_FORMAT = "file_format"


@dataclass(frozen=True, kw_only=True)
class StudyRecord:
    """What a study holds about its data, written when a run opens it."""

    train_path: Path | None = None
    test_path: Path | None = None
    file_format: FileFormat = COMPETITION_FORMAT
    class_names: tuple[str, ...] | None = None

    @classmethod
    def of(cls, study: optuna.Study) -> StudyRecord:
        """The study's record; studies run before a key was recorded get its default (the
        competition's file format, no class names)."""
        attrs = study.user_attrs
        return cls(train_path=_path(attrs.get(_TRAIN_PATH)),
                   test_path=_path(attrs.get(_TEST_PATH)),
                   file_format=FileFormat(**attrs.get(_FILE_FORMAT, {})),
                   class_names=_names(attrs.get(_CLASS_NAMES)))

    def write(self, study: optuna.Study) -> None:
        """Set every known field on the study (fields that are None are left alone)."""
        if self.train_path is not None:
            study.set_user_attr(_TRAIN_PATH, str(self.train_path.resolve()))
        if self.test_path is not None:
            study.set_user_attr(_TEST_PATH, str(self.test_path.resolve()))
        study.set_user_attr(_FILE_FORMAT, asdict(self.file_format))
        if self.class_names is not None:
            study.set_user_attr(_CLASS_NAMES, list(self.class_names))


# The study's linear baseline (han.baseline), trained once before its first trial.
_BASELINE = "baseline"


@dataclass(frozen=True, kw_only=True)
class BaselineRecord:
    """The study's linear baseline: how it scored on the trials' dev fold, what it cost, what
    it was and its MLflow run."""

    dev_macro_f1: float
    dev_accuracy: float
    seconds: float
    features: int
    model: str
    run_id: str | None = None

    @classmethod
    def of(cls, study: optuna.Study) -> BaselineRecord | None:
        """The study's baseline; None when it has none (turned off, or never trained)."""
        value = study.user_attrs.get(_BASELINE)
        if not isinstance(value, dict):
            return None
        return cls(dev_macro_f1=float(value["dev_macro_f1"]),
                   dev_accuracy=float(value["dev_accuracy"]), seconds=float(value["seconds"]),
                   features=int(value["features"]), model=str(value["model"]),
                   run_id=value.get("run_id"))

    def write(self, study: optuna.Study) -> None:
        study.set_user_attr(_BASELINE, asdict(self))


# -- Optuna trial attributes ----------------------------------------------------------------

_RUN_ID = "mlflow_run_id"
_REASON = "reason"
# The trial is the reference notebook's configuration, enqueued as a new study's first.
_REFERENCE = "reference"
# A retry of a trial whose worker died: the original's number and how many retries so far.
_RETRY_OF = "retry_of"
_RETRIES = "retries"
# The best checkpoint when MLflow could not take it (a path on the trial's machine).
_LOCAL_CHECKPOINT = "local_checkpoint"
# For the study report: the epochs a trial would run unpruned, and the best epoch's dev
# confusion matrix (rows: true class, columns: predicted), kept in Optuna so the report
# needs no MLflow download.
_MAX_EPOCHS = "max_epochs"
_DEV_CONFUSION = "dev_confusion"


@dataclass(frozen=True, kw_only=True)
class TrialRecord:
    """What han-search recorded on one Optuna trial, read back typed."""

    run_id: str | None = None
    reason: str | None = None
    reference: bool = False
    retry_of: int | None = None
    retries: int = 0
    local_checkpoint: Path | None = None
    max_epochs: int | None = None
    dev_confusion: list[list[int]] | None = None

    @classmethod
    def of(cls, trial: FrozenTrial | optuna.Trial) -> TrialRecord:
        attrs = trial.user_attrs
        retry_of = attrs.get(_RETRY_OF)
        max_epochs = attrs.get(_MAX_EPOCHS)
        return cls(run_id=attrs.get(_RUN_ID), reason=attrs.get(_REASON),
                   reference=bool(attrs.get(_REFERENCE)),
                   retry_of=None if retry_of is None else int(retry_of),
                   retries=int(attrs.get(_RETRIES, 0)),
                   local_checkpoint=_path(attrs.get(_LOCAL_CHECKPOINT)),
                   max_epochs=None if max_epochs is None else int(max_epochs),
                   dev_confusion=attrs.get(_DEV_CONFUSION))

    @property
    def origin(self) -> int | None:
        """The trial whose work a retry continues (None: the trial is no retry)."""
        return self.retry_of


def reference_attrs() -> dict[str, Any]:
    """User attributes that mark an enqueued trial as the reference configuration."""
    return {_REFERENCE: True}


def retry_attrs(trial: FrozenTrial) -> dict[str, Any]:
    """User attributes of a retry of `trial`: its own, pointing at the original trial."""
    record = TrialRecord.of(trial)
    origin = trial.number if record.retry_of is None else record.retry_of
    return {**trial.user_attrs, _RETRY_OF: origin, _RETRIES: record.retries + 1}


def set_run_id(trial: optuna.Trial, run_id: str) -> None:
    trial.set_user_attr(_RUN_ID, run_id)


def set_reason(trial: optuna.Trial, reason: str) -> None:
    trial.set_user_attr(_REASON, reason)


def set_max_epochs(trial: optuna.Trial, epochs: int) -> None:
    trial.set_user_attr(_MAX_EPOCHS, epochs)


def set_dev_confusion(trial: optuna.Trial, matrix: list[list[int]]) -> None:
    trial.set_user_attr(_DEV_CONFUSION, matrix)


def set_local_checkpoint(trial: optuna.Trial, path: Path) -> None:
    trial.set_user_attr(_LOCAL_CHECKPOINT, str(path.resolve()))



# -- MLflow tags ----------------------------------------------------------------------------

class Role(enum.StrEnum):
    """What an MLflow run is, tag `han.role`."""

    STUDY = "study"
    TRIAL = "trial"
    REFIT = "refit"
    FOLD = "fold"
    BASELINE = "baseline"


class RunState(enum.StrEnum):
    """How a run ended, tag `state`; the MLflow status it ends with is `status`."""

    RUNNING = "running"
    COMPLETE = "complete"
    PRUNED = "pruned"
    FAILED = "failed"
    INTERRUPTED = "interrupted"

    @property
    def status(self) -> str:
        return {RunState.RUNNING: "RUNNING", RunState.COMPLETE: "FINISHED",
                RunState.FAILED: "FAILED"}.get(self, "KILLED")

    @classmethod
    def ended_by(cls, error: BaseException) -> tuple[RunState, str]:
        """How a run ends when `error` leaves it, and the reason: pruned (a pruned trial,
        diverged training turned into one), interrupted (a stop was asked for), or failed."""
        if isinstance(error, optuna.TrialPruned):
            return cls.PRUNED, str(error)
        if isinstance(error, TrainingInterrupted | KeyboardInterrupt):
            return cls.INTERRUPTED, str(error) or type(error).__name__
        return cls.FAILED, f"{type(error).__name__}: {error}"


class Tag:
    """MLflow tag keys. Those of MLflow itself are its documented system tags."""

    PARENT = "mlflow.parentRunId"
    RUN_NAME = "mlflow.runName"
    ROLE = "han.role"
    STUDY = "han.study"
    STATE = "state"
    REASON = "reason"
    TRIAL_NUMBER = "trial_number"
    FOLD = "fold"
    FOLDS = "folds"
    STORAGE = "storage"
    STUDY_FILE = "study_file"
    RETRY_OF_TRIAL = "retry_of_trial"
    BEST_EPOCH = "best_epoch"
    STOP_REASON = "stop_reason"
    RESUMED_FROM_EPOCH = "resumed_from_epoch"
    # The word2vec file a trial's frozen embeddings came from.
    EMBEDDINGS = "data.embeddings"
    # Data fingerprint and file format: `data.path`, `data.sha256`, `data.sep`, ...
    DATA_PREFIX = "data."
    # The study's best so far on its parent run: `best.value`, `best.trial`, `best.<param>`.
    BEST_PREFIX = "best."
    # Where a trial ran: `device`, `python`, `host`, `gpu`, `version.<package>`.
    DEVICE = "device"
    PYTHON = "python"
    HOST = "host"
    GPU = "gpu"
    VERSION_PREFIX = "version."


class Key:
    """MLflow param and metric keys han-search writes besides the trial's settings and its
    per-epoch metrics (those are the field names of han.config and han.train.EpochMetrics)."""

    # Params of the study's parent run.
    STUDY_FILE = Tag.STUDY_FILE
    SAMPLER = "sampler"
    PRUNER = "pruner"
    DIRECTION = "direction"
    # Params of a refit run.
    TRIAL_NUMBER = Tag.TRIAL_NUMBER
    FOLDS = Tag.FOLDS
    SPLIT_SEED = "split_seed"
    TRIAL_RUN_ID = "trial_run_id"
    # Training settings read back from a trial run's params.
    SEED = "seed"
    PRETRAINED_EMBEDDINGS = "pretrained_embeddings"
    # Metrics.
    BEST_DEV_F1 = "best_dev_macro_f1"
    TRIALS_COMPLETE = "trials_complete"
    OOF_F1 = "oof_macro_f1"
    BEST_TRIAL_DEV_F1 = "best_trial_dev_macro_f1"
    MEAN_FOLD_DEV_F1 = "mean_fold_dev_macro_f1"
    # Metrics of the baseline run (its dev scores are named as a trial's epoch metrics).
    DEV_F1 = "dev_macro_f1"
    DEV_ACCURACY = "dev_accuracy"
    SECONDS = "seconds"
    FEATURES = "features"

    @staticmethod
    def fold_dev_f1(fold: int) -> str:
        return f"fold_{fold}_best_dev_macro_f1"

    @staticmethod
    def fold_weight(fold: int) -> str:
        return f"fold_{fold}_weight"


# MLflow rejects longer values.
MAX_PARAM_LENGTH = 6000
MAX_TAG_LENGTH = 5000


def data_tags(fields: Mapping[str, Any]) -> dict[str, str]:
    """`fields` as `data.<key>` tags."""
    return {f"{Tag.DATA_PREFIX}{key}": str(value) for key, value in fields.items()}


def fingerprint_tags(*, path: Path, size: int, sha256: str, docs: int,
                     classes: int) -> dict[str, str]:
    """The training file's fingerprint on a trial's run: `data.path`, `data.bytes`, ..."""
    return data_tags({"path": path.resolve(), "bytes": size, "sha256": sha256, "docs": docs,
                      "classes": classes})


def role_filter(role: Role, *, parent_run_id: str | None = None,
                trial_number: int | None = None, folds: int | None = None) -> str:
    """An MLflow search filter for runs of one role (under one parent, of one trial and
    fold count)."""
    tags = {Tag.ROLE: role, Tag.PARENT: parent_run_id, Tag.TRIAL_NUMBER: trial_number,
            Tag.FOLDS: folds}
    return " and ".join(f"tags.`{key}` = '{value}'" for key, value in tags.items()
                        if value is not None)


def run_tags(role: Role, *, study: str, parent_run_id: str | None = None,
             trial_number: int | None = None, fold: int | None = None,
             folds: int | None = None) -> dict[str, str]:
    """The tags a new run of `role` starts with; every run but the study's starts running."""
    tags = {Tag.ROLE: role, Tag.STUDY: study, Tag.PARENT: parent_run_id,
            Tag.TRIAL_NUMBER: trial_number, Tag.FOLD: fold, Tag.FOLDS: folds,
            Tag.STATE: None if role is Role.STUDY else RunState.RUNNING}
    return {key: str(value) for key, value in tags.items() if value is not None}


def end_tags(state: RunState, reason: str | None = None) -> dict[str, str]:
    """The `state` tag of an ending run and, when there is one, its `reason`."""
    tags = {Tag.STATE: str(state)}
    if reason:
        tags[Tag.REASON] = reason[:MAX_TAG_LENGTH]
    return tags


def best_tags(trial: FrozenTrial) -> dict[str, str]:
    """The study's best trial on its parent run (tags: MLflow params are write-once)."""
    return {f"{Tag.BEST_PREFIX}{key}": str(value) for key, value in trial.params.items()} | {
        f"{Tag.BEST_PREFIX}trial": str(trial.number),
        f"{Tag.BEST_PREFIX}value": str(trial.value)}


def environment_tags(device: str, versions: Mapping[str, str],
                     gpu: str | None = None) -> dict[str, str]:
    """Where a trial ran: device, Python, host, package versions and GPU."""
    tags = {Tag.DEVICE: device, Tag.PYTHON: platform.python_version(),
            Tag.HOST: platform.node()}
    tags |= {f"{Tag.VERSION_PREFIX}{package}": version
             for package, version in versions.items()}
    if gpu is not None:
        tags[Tag.GPU] = gpu
    return tags


def _path(value: Any) -> Path | None:
    return None if value in (None, "") else Path(value)


def _names(value: Any) -> tuple[str, ...] | None:
    return None if value is None else tuple(str(name) for name in value)
