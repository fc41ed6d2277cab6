"""What a study records about each trial, on the Optuna trial: its MLflow run, how it ended,
its reports' noise, what it is (the reference, a retry, the one derived from the data)."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial

_RUN_ID = "mlflow_run_id"
_REASON = "reason"
# The trial is the reference configuration (han.config's defaults), enqueued once a study.
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
# The paused trial a promoted trial resumes (search.session.promotion).
_PROMOTED_FROM = "promoted_from"
# Training documents the trial can still see within its share and epochs, as it reports
# (the evidence pruner projects its trend that far).
_HORIZON = "horizon_docs"
# A drawn configuration brought down to what the budget affords: {name: [drawn, trained]}.
_RESHAPED = "reshaped"
# Who trains the trial: "host:pid", so that a run on the same machine sees at once that its
# worker is gone (a worker elsewhere is known dead only when its heartbeats stop).
_WORKER = "worker"
# Finished epochs whose training state reached the trial's MLflow run, from which a retry
# on any machine resumes (search.session.shared_state).
_STATE_EPOCHS = "state_epochs"
_STATE_UPLOAD_S = "state_upload_s"


class Outcome(enum.StrEnum):
    """What the budget did to a trial, on top of its Optuna state.

    SKIPPED: not trained, not one epoch (estimated) fitting the time left or the
    trial's share of it (Optuna PRUNED).
    STOPPED: cut short by --timeout or its share of it; with a finished epoch it is
    COMPLETE with its best epoch's dev F1 and checkpoint, else FAIL.
    PAUSED: its share spent while it was among the study's best and still improving: COMPLETE
    with its best epoch's dev F1 and checkpoint, its training state kept, so that a later
    trial (`promoted_from` it) resumes it when the time left is better spent so.
    """

    SKIPPED = "skipped"
    STOPPED = "stopped"
    PAUSED = "paused"


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
    promoted_from: int | None = None
    horizon: int | None = None
    reshaped: dict[str, list[Any]] | None = None
    worker: str | None = None
    state_epochs: int = 0

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
                   pruned_by=attrs.get(_PRUNED_BY), from_data=bool(attrs.get(_FROM_DATA)),
                   promoted_from=_int(attrs.get(_PROMOTED_FROM)),
                   horizon=_int(attrs.get(_HORIZON)), reshaped=attrs.get(_RESHAPED),
                   worker=attrs.get(_WORKER), state_epochs=int(attrs.get(_STATE_EPOCHS, 0)))

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
        """The trial whose work this one continues: a retry's original, a promoted trial's
        paused one (None: neither)."""
        return self.retry_of if self.retry_of is not None else self.promoted_from


def reference_attrs() -> dict[str, Any]:
    """User attributes that mark an enqueued trial as the reference configuration."""
    return {_REFERENCE: True}


def from_data_attrs() -> dict[str, Any]:
    """User attributes that mark an enqueued trial as the settings derived from the data."""
    return {_FROM_DATA: True}


def promotion_attrs(paused: FrozenTrial) -> dict[str, Any]:
    """User attributes of the trial that resumes the paused trial `paused`."""
    return {_PROMOTED_FROM: paused.number}


def set_horizon(trial: optuna.Trial, docs: int) -> None:
    trial.set_user_attr(_HORIZON, docs)


def set_reshaped(storage: optuna.storages.BaseStorage, trial_id: int,
                 changes: Mapping[str, list[Any]]) -> None:
    """A drawn configuration's sizes brought down, on the trial being drawn (a sampler holds
    its storage and id, not a Trial)."""
    storage.set_trial_user_attr(trial_id, _RESHAPED, dict(changes))


def retry_attrs(trial: FrozenTrial) -> dict[str, Any]:
    """User attributes of a retry of `trial`: its own, pointing at the original trial."""
    record = TrialRecord.of(trial)
    origin = trial.number if record.retry_of is None else record.retry_of
    # How the original ended, who trained it and what it uploaded are not the retry's.
    kept = {k: v for k, v in trial.user_attrs.items()
            if k not in (_OUTCOME, _REASON, _WORKER, _STATE_EPOCHS, _STATE_UPLOAD_S)}
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


def set_worker(trial: optuna.Trial, worker: str) -> None:
    trial.set_user_attr(_WORKER, worker)


def set_state_epochs(trial: optuna.Trial, epochs: int, *, upload_s: float) -> None:
    """The epochs whose state reached MLflow, and the seconds its uploads took in all."""
    trial.set_user_attr(_STATE_EPOCHS, epochs)
    trial.set_user_attr(_STATE_UPLOAD_S,
                        round(float(trial.user_attrs.get(_STATE_UPLOAD_S, 0.0)) + upload_s, 3))


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


def _path(value: Any) -> Path | None:
    return None if value in (None, "") else Path(value)


def _noise(value: Any) -> dict[int, float] | None:
    """Report noise by step: JSON keeps the steps as strings."""
    return None if not isinstance(value, dict) else {int(k): float(v) for k, v in value.items()}


def _int(value: Any) -> int | None:
    return None if value is None else int(value)
