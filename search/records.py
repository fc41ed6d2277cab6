"""Everything a study writes down: Optuna study and trial attributes and MLflow tags, by name.

No other module spells a record key: they read and write through the accessors here, so a
key is renamed in one place and every reader of a study (the runner, the objective, the
refit, the report, the CLI) agrees on what it holds.
"""

from __future__ import annotations

import enum
import platform
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from han.config import COMPETITION_FORMAT, FileFormat
from han.errors import TrainingInterrupted
from han.files import WriteFailed
from search.budget import TrialSkipped

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
                   file_format=replace(COMPETITION_FORMAT, **attrs.get(_FILE_FORMAT, {})),
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


# The training data the study was created with (DatasetRecord as a dict).
_DATASET = "dataset"
# How much of the content hash is shown (`studies`, `show`, messages) and kept in tags.
SHORT_HASH = 12
_TAG_HASH = 16


@dataclass(frozen=True, kw_only=True)
class DatasetRecord:
    """A study's training data: what makes two datasets the same (the SHA-256 of the file's
    bytes and the format it is read with, never the path) and what describes it.

    `path` is where the data was last read: the same bytes under another path are the same
    dataset, and the record follows the file to where it is now. `builtin`: the generated
    corpus of a study file that names no training file.
    """

    path: Path
    sha256: str
    size: int
    docs: int
    classes: int
    file_format: FileFormat = COMPETITION_FORMAT
    builtin: bool = False

    @property
    def short_hash(self) -> str:
        return self.sha256[:SHORT_HASH]

    @property
    def name(self) -> str:
        """The data's name for people: its file name, or "built-in corpus"."""
        return "built-in corpus" if self.builtin else self.path.name

    def same_data(self, other: DatasetRecord) -> bool:
        return self.sha256 == other.sha256 and self.file_format == other.file_format

    def describe(self, *, with_format: bool = False) -> str:
        """One phrase: `train.tsv (240 docs, 4 classes, sha256 0123456789ab)`."""
        read_as = ""
        if with_format:
            read_as = ", read with " + " ".join(
                f"{key} {value!r}" for key, value in asdict(self.file_format).items())
        return (f"{self.name} ({self.docs} docs, {self.classes} classes, sha256 "
                f"{self.short_hash}{read_as})")

    def tags(self) -> dict[str, str]:
        """The fingerprint on a trial's MLflow run: `data.path`, `data.sha256` (a prefix)..."""
        return fingerprint_tags(path=self.path, size=self.size, sha256=self.sha256[:_TAG_HASH],
                                docs=self.docs, classes=self.classes)

    @classmethod
    def of(cls, study: optuna.Study | optuna.study.StudySummary) -> DatasetRecord | None:
        """The study's dataset; None for a study created before datasets were recorded."""
        value = study.user_attrs.get(_DATASET)
        if not isinstance(value, dict):
            return None
        return cls(path=Path(value["path"]), sha256=str(value["sha256"]),
                   size=int(value["size"]), docs=int(value["docs"]),
                   classes=int(value["classes"]),
                   file_format=replace(COMPETITION_FORMAT, **value.get("file_format", {})),
                   builtin=bool(value.get("builtin", False)))

    def write(self, study: optuna.Study) -> None:
        study.set_user_attr(_DATASET, asdict(self) | {"path": str(self.path.resolve())})
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


# The word2vec vectors a run trained (or found cached) for the study's trials.
_WORD2VEC = "word2vec"


@dataclass(frozen=True, kw_only=True)
class Word2VecRecord:
    """The word2vec vectors file of the study's trials, its cache key, and the MLflow run
    `word2vec` that logged it (so a later session that reuses the file logs no second run)."""

    key: str
    path: Path
    run_id: str | None = None

    @classmethod
    def of(cls, study: optuna.Study) -> Word2VecRecord | None:
        value = study.user_attrs.get(_WORD2VEC)
        if not isinstance(value, dict):
            return None
        return cls(key=str(value["key"]), path=Path(value["path"]), run_id=value.get("run_id"))

    def write(self, study: optuna.Study) -> None:
        study.set_user_attr(_WORD2VEC, asdict(self) | {"path": str(self.path.resolve())})


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
# A trial's training documents per epoch (its report steps count training documents seen)
# and the epochs it finished.
_EPOCH_DOCS = "epoch_docs"
_EPOCHS_DONE = "epochs_done"
_DEV_CONFUSION = "dev_confusion"
# How the budget (--timeout) ended a trial, when it did: Outcome.SKIPPED or STOPPED.
_OUTCOME = "outcome"
# The noise of each report (step -> standard deviation of its macro-F1), which the evidence
# pruner weighs differences against.
_REPORT_NOISE = "report_noise"
# The comparison that pruned a trial (search.pruners.Comparison as a dict).
_PRUNED_BY = "pruned_by"
# The trial is the study's first, its settings derived from the data (han.starting_point).
_FROM_DATA = "from_data"


class Outcome(enum.StrEnum):
    """What the budget did to a trial, on top of its Optuna state.

    SKIPPED: not trained, not one epoch (estimated) fitting the time left or the
    trial's share of it (Optuna PRUNED).
    STOPPED: cut short by --timeout or its share of it; with a finished epoch it is
    COMPLETE with its best epoch's dev F1 and checkpoint, else FAIL.
    """

    SKIPPED = "skipped"
    STOPPED = "stopped"


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
    epoch_docs: int | None = None
    epochs_done: int = 0
    dev_confusion: list[list[int]] | None = None
    outcome: Outcome | None = None
    report_noise: dict[int, float] | None = None
    pruned_by: dict[str, Any] | None = None
    from_data: bool = False

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
                   epoch_docs=attrs.get(_EPOCH_DOCS), epochs_done=int(attrs.get(_EPOCHS_DONE, 0)),
                   dev_confusion=attrs.get(_DEV_CONFUSION),
                   outcome=Outcome(attrs[_OUTCOME]) if _OUTCOME in attrs else None,
                   report_noise=_noise(attrs.get(_REPORT_NOISE)),
                   pruned_by=attrs.get(_PRUNED_BY), from_data=bool(attrs.get(_FROM_DATA)))

    def state_name(self, trial: FrozenTrial) -> str:
        """The trial's state in words: the budget's outcome when it had one, else Optuna's."""
        return str(self.outcome) if self.outcome is not None else trial.state.name.lower()

    def epochs_trained(self, trial: FrozenTrial) -> float:
        """Epochs of training the trial did: its finished epochs, plus the share of the next
        that a trial stopped inside an epoch had seen at its last report. A trial recorded
        before reports counted documents reported once per epoch."""
        if self.epoch_docs is None:
            return float(len(trial.intermediate_values))
        last = max(trial.intermediate_values, default=0)
        return max(float(self.epochs_done), last / self.epoch_docs)

    @property
    def origin(self) -> int | None:
        """The trial whose work a retry continues (None: the trial is no retry)."""
        return self.retry_of


def reference_attrs() -> dict[str, Any]:
    """User attributes that mark an enqueued trial as the reference configuration."""
    return {_REFERENCE: True}


def from_data_attrs() -> dict[str, Any]:
    """User attributes that mark an enqueued trial as the settings derived from the data."""
    return {_FROM_DATA: True}


def retry_attrs(trial: FrozenTrial) -> dict[str, Any]:
    """User attributes of a retry of `trial`: its own, pointing at the original trial."""
    record = TrialRecord.of(trial)
    origin = trial.number if record.retry_of is None else record.retry_of
    # How the original ended is not the retry's: it gets its own outcome and reason.
    kept = {k: v for k, v in trial.user_attrs.items() if k not in (_OUTCOME, _REASON)}
    return {**kept, _RETRY_OF: origin, _RETRIES: record.retries + 1}


def set_run_id(trial: optuna.Trial, run_id: str) -> None:
    trial.set_user_attr(_RUN_ID, run_id)


def set_reason(trial: optuna.Trial, reason: str) -> None:
    trial.set_user_attr(_REASON, reason)


def set_max_epochs(trial: optuna.Trial, epochs: int, *, epoch_docs: int) -> None:
    trial.set_user_attr(_MAX_EPOCHS, epochs)
    trial.set_user_attr(_EPOCH_DOCS, epoch_docs)


def set_epochs_done(trial: optuna.Trial, epochs: int) -> None:
    trial.set_user_attr(_EPOCHS_DONE, epochs)


def set_dev_confusion(trial: optuna.Trial, matrix: list[list[int]]) -> None:
    trial.set_user_attr(_DEV_CONFUSION, matrix)


def set_outcome(trial: optuna.Trial, outcome: Outcome, reason: str) -> None:
    trial.set_user_attr(_OUTCOME, str(outcome))
    trial.set_user_attr(_REASON, reason)


def set_local_checkpoint(trial: optuna.Trial, path: Path) -> None:
    trial.set_user_attr(_LOCAL_CHECKPOINT, str(path.resolve()))


def add_report_noise(trial: optuna.Trial, step: int, noise: float) -> None:
    """Record the noise of the trial's report at `step` beside the ones before it."""
    recorded = dict(trial.user_attrs.get(_REPORT_NOISE, {}))
    recorded[str(step)] = noise
    trial.set_user_attr(_REPORT_NOISE, recorded)


def set_pruned_by(trial: optuna.Trial, comparison: Mapping[str, Any]) -> None:
    trial.set_user_attr(_PRUNED_BY, dict(comparison))


# The study's first rung: where learning first showed in its first trials (search.pruners).
_FIRST_RUNG = "first_rung"


def first_rung(study: optuna.Study) -> dict[str, Any] | None:
    value = study.user_attrs.get(_FIRST_RUNG)
    return value if isinstance(value, dict) else None


def set_first_rung(study: optuna.Study, rung: Mapping[str, Any]) -> None:
    study.set_user_attr(_FIRST_RUNG, dict(rung))



# -- MLflow tags ----------------------------------------------------------------------------

class Role(enum.StrEnum):
    """What an MLflow run is, tag `han.role`."""

    STUDY = "study"
    TRIAL = "trial"
    REFIT = "refit"
    FOLD = "fold"
    BASELINE = "baseline"
    BLEND = "blend"
    WORD2VEC = "word2vec"


class RunState(enum.StrEnum):
    """How a run ended, tag `state`; the MLflow status it ends with is `status`."""

    RUNNING = "running"
    COMPLETE = "complete"
    PRUNED = "pruned"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    # Outcome.SKIPPED, and Outcome.STOPPED with its best epoch kept (its model is usable).
    SKIPPED = "skipped"
    STOPPED = "stopped"

    @property
    def status(self) -> str:
        return {RunState.RUNNING: "RUNNING", RunState.COMPLETE: "FINISHED",
                RunState.STOPPED: "FINISHED", RunState.FAILED: "FAILED"}.get(self, "KILLED")

    @classmethod
    def ended_by(cls, error: BaseException) -> tuple[RunState, str]:
        """How a run ends when `error` leaves it, and the reason: pruned (a pruned trial,
        diverged training turned into one), interrupted (a stop was asked for), or failed."""
        if isinstance(error, TrialSkipped):
            return cls.SKIPPED, str(error)
        if isinstance(error, optuna.TrialPruned):
            return cls.PRUNED, str(error)
        if isinstance(error, TrainingInterrupted | KeyboardInterrupt):
            return cls.INTERRUPTED, str(error) or type(error).__name__
        if isinstance(error, WriteFailed):  # says all in its own words
            return cls.FAILED, str(error)
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
    # The comparison that pruned a trial: `pruned_by.value`, `pruned_by.bar`, ...
    PRUNED_BY_PREFIX = "pruned_by."
    # The word2vec file a trial's frozen embeddings came from (and the word2vec run's file).
    EMBEDDINGS = "data.embeddings"
    # The word2vec run: whether its file was found in the cache rather than trained, and why
    # the file is not among its artifacts when it is not.
    REUSED = "reused"
    ARTIFACT = "artifact"
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
    # The code that produced a run, as MLflow's Source column reads it.
    SOURCE_NAME = "mlflow.source.name"
    SOURCE_TYPE = "mlflow.source.type"
    GIT_COMMIT = "mlflow.source.git.commit"
    GIT_BRANCH = "mlflow.source.git.branch"
    # The context of a dataset input (a tag of the input, not of the run).
    DATA_CONTEXT = "mlflow.data.context"
    # Experiment tags: MLflow 3's UI opens an experiment on the view its kind names (the
    # runs table for model training, else a GenAI overview), and sorts by its primary metric.
    EXPERIMENT_KIND = "mlflow.experimentKind"
    PRIMARY_METRIC = "mlflow.experiment.primaryMetric.name"
    PRIMARY_METRIC_GREATER_IS_BETTER = "mlflow.experiment.primaryMetric.greaterIsBetter"


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
    # Each value reported to the pruner, at step = training documents seen: inside an
    # epoch the dev sample's macro-F1, at an epoch's end the whole dev fold's.
    REPORTED_DEV_F1 = "reported_dev_macro_f1"
    # ... and its noise (the standard deviation of that macro-F1 over resampled documents).
    REPORTED_DEV_F1_NOISE = "reported_dev_macro_f1_noise"
    # The parent run's history, one step per finished trial (step = trial number).
    TRIAL_DEV_F1 = "trial_dev_macro_f1"
    TRIALS_COMPLETE = "trials_complete"
    TRIALS_PRUNED = "trials_pruned"
    TRIALS_FAILED = "trials_failed"
    OOF_F1 = "oof_macro_f1"
    BEST_TRIAL_DEV_F1 = "best_trial_dev_macro_f1"
    MEAN_FOLD_DEV_F1 = "mean_fold_dev_macro_f1"
    # Metrics of the baseline run (its dev scores are named as a trial's epoch metrics).
    DEV_F1 = "dev_macro_f1"
    DEV_ACCURACY = "dev_accuracy"
    SECONDS = "seconds"
    FEATURES = "features"
    # Metrics of a blend run (search/blend.py): the HAN's weight, the baseline's softmax
    # temperature, and macro-F1s named by `blend_f1`.
    BLEND_WEIGHT = "blend_weight"
    BASELINE_TEMPERATURE = "baseline_temperature"
    HELD_OUT_DOCS = "held_out_docs"
    # Params and metrics of the word2vec run (its settings are Word2VecConfig's fields).
    CACHE_KEY = "cache_key"
    TEST_SHA256 = "test_sha256"
    VECTORS = "vectors"
    DOCUMENTS = "documents"

    @staticmethod
    def fold_dev_f1(fold: int) -> str:
        return f"fold_{fold}_best_dev_macro_f1"

    @staticmethod
    def fold_weight(fold: int) -> str:
        return f"fold_{fold}_weight"

    @staticmethod
    def blend_f1(model: str, *, out_of_fold: bool) -> str:
        """`han_dev_macro_f1`, `blend_oof_macro_f1`...: a blend run's macro-F1 of `model`
        (han, baseline, blend) on the dev fold or out of fold."""
        return f"{model}_{'oof' if out_of_fold else 'dev'}_macro_f1"


class DataContext(enum.StrEnum):
    """What a trial used a dataset input for, tag `mlflow.data.context` of the input."""

    TRAINING = "training"
    VALIDATION = "validation"


# The value of `mlflow.experimentKind` for model training, as MLflow 3.17's UI spells it
# (ExperimentKind.CUSTOM_MODEL_DEVELOPMENT in its JavaScript; no Python constant exists).
TRAINING_EXPERIMENT_KIND = "custom_model_development"
# MLflow's source type of a run started from a local program.
LOCAL_SOURCE = "LOCAL"
# The metric every trial reports, and MLflow's name for it.
PRIMARY_METRIC = "dev_macro_f1"

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


def experiment_tags(study: str) -> dict[str, str]:
    """The tags of a study's experiment: the study, the training kind, the primary metric
    (a macro-F1: greater is better, whichever way a study optimizes it)."""
    return {Tag.STUDY: study, Tag.EXPERIMENT_KIND: TRAINING_EXPERIMENT_KIND,
            Tag.PRIMARY_METRIC: PRIMARY_METRIC, Tag.PRIMARY_METRIC_GREATER_IS_BETTER: "true"}


def source_tags(*, program: str, commit: str | None = None,
                branch: str | None = None) -> dict[str, str]:
    """The code that produced a run: the program (with its version) and, from a git
    checkout, the commit and branch."""
    tags = {Tag.SOURCE_NAME: program, Tag.SOURCE_TYPE: LOCAL_SOURCE, Tag.GIT_COMMIT: commit,
            Tag.GIT_BRANCH: branch}
    return {key: value for key, value in tags.items() if value}


def _path(value: Any) -> Path | None:
    return None if value in (None, "") else Path(value)


def _noise(value: Any) -> dict[int, float] | None:
    """Report noise by step: JSON keeps the steps as strings."""
    return None if not isinstance(value, dict) else {int(k): float(v) for k, v in value.items()}


def _names(value: Any) -> tuple[str, ...] | None:
    return None if value is None else tuple(str(name) for name in value)
