"""MLflow tags, params and metrics han-search writes, by name: what a run is, how it ended,
where it ran, the study's best on its parent run."""

from __future__ import annotations

import enum
import platform
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from han.errors import WriteFailed
from search.errors import TrialStopped


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
    # Outcome.PAUSED: its model usable, its training to be resumed in this same run (MLflow
    # SCHEDULED until then).
    PAUSED = "paused"

    @property
    def status(self) -> str:
        return {RunState.RUNNING: "RUNNING", RunState.COMPLETE: "FINISHED",
                RunState.STOPPED: "FINISHED", RunState.FAILED: "FAILED",
                RunState.PAUSED: "SCHEDULED"}.get(self, "KILLED")

    @classmethod
    def ended_by(cls, error: BaseException) -> tuple[RunState, str]:
        """How a run ends when `error` leaves it, and the reason: pruned (a pruned trial),
        interrupted (a stop before anything was kept, or a second Ctrl-C), or failed."""
        if isinstance(error, optuna.TrialPruned):
            return cls.PRUNED, str(error)
        if isinstance(error, TrialStopped | KeyboardInterrupt):
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
    # The trial that resumed a paused trial in its run (search.session.promotion).
    PROMOTED_TRIAL = "promoted_trial"
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

# What a registered model may be called here: safe in a `models:/NAME@alias` URI (the study
# file's `[export] registered_model` and export-best's --register).
MODEL_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
MODEL_NAME_RULE = "letters, digits, '_', '.' and '-', starting with a letter or digit"

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
