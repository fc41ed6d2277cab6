"""What a study holds so far, read from its Optuna storage: its summary, the list of studies,
its top trials."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from search.defaults import DEFAULT_STORAGE
from search.formatting import duration, redact
from search.records import BaselineRecord, DatasetRecord, TrialRecord
from search.stores.optuna_storage import open_storage, sqlite_file_missing

if TYPE_CHECKING:
    from han.blend import BlendChoice
    from search.stores.mlflow_models import RegisteredVersion
    from search.stores.tracking import Tracker


@dataclass
class RunSummary:
    study_name: str
    storage: str
    tracking_uri: str
    parent_run_id: str
    states: Counter[str] = field(default_factory=Counter)
    trials_this_run: int = 0
    best_value: float | None = None
    best_trial: int | None = None
    best_params: dict[str, Any] = field(default_factory=dict)
    reference_value: float | None = None
    # The reference trial however it ended: its number, state and reason (None: not run).
    reference_trial: int | None = None
    reference_outcome: str | None = None
    baseline: BaselineRecord | None = None
    maximize: bool = True
    seconds: float = 0.0
    # Why the run ended before its --timeout or trial count (None: it did not).
    ended_early: str | None = None
    not_logged: list[str] = field(default_factory=list)
    # Writes kept while the tracking server was away: how many, how many of all kept there
    # were sent since, and how many still wait (and where).
    delayed: int = 0
    replayed: int = 0
    waiting: int = 0
    journal: str = ""
    # The study's training data (None: a study from before datasets were recorded).
    dataset: DatasetRecord | None = None
    # The model registered at the end of the session ([export] registered_model), or why not.
    registered: RegisteredVersion | None = None
    # The experiment's runs table in the MLflow UI.
    runs_view: str = ""
    register_warning: str | None = None
    # The best trial, the baseline and their blend on the dev fold (None: not comparable).
    on_dev: BlendChoice | None = None
    # Paused trials resumed by a promoted trial: what each promotion took and gained.
    promotions: list[PromotionRow] = field(default_factory=list)


@dataclass(frozen=True)
class PromotionRow:
    """A paused trial, the trial that resumed it, its seconds and the dev F1 it gained."""

    paused: int
    promoted: int
    seconds: float
    gain: float | None  # None: the promoted trial has not completed


def summarize(study: optuna.Study, *, storage: str, tracking_uri: str,
              parent_run_id: str = "", tracker: Tracker | None = None) -> RunSummary:
    """The study so far; with a `tracker`, also the best trial against the baseline and
    their blend on the dev fold, from the outputs their MLflow runs keep."""
    trials = study.get_trials(deepcopy=False)
    summary = RunSummary(study_name=study.study_name, storage=redact(storage),
                         tracking_uri=redact(tracking_uri), parent_run_id=parent_run_id,
                         states=Counter(TrialRecord.of(t).state_name(t) for t in trials),
                         dataset=DatasetRecord.of(study), baseline=BaselineRecord.of(study),
                         maximize=study.direction.name == "MAXIMIZE")
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if complete:
        best = study.best_trial
        summary.best_value, summary.best_trial, summary.best_params = (
            best.value, best.number, dict(best.params))
    tries = [t for t in trials if TrialRecord.of(t).reference and t.state != TrialState.WAITING]
    if tries:
        # A retried reference trial (its worker died, a write failed) is its latest try, or
        # the one that completed.
        reference = max(tries, key=lambda t: (t.state == TrialState.COMPLETE, t.number))
        record = TrialRecord.of(reference)
        summary.reference_trial = reference.number
        # Optuna gives a pruned trial its last report as its value: not a result to compare.
        complete = reference.state == TrialState.COMPLETE
        summary.reference_value = reference.value if complete else None
        summary.reference_outcome = record.state_name(reference) + (
            f" {record.reason}" if record.reason and not complete else "")
    summary.promotions = promotions(trials)
    if tracker is not None:
        # Imported here: `studies` and `show` summarize without a tracker, and so never wait
        # for scikit-learn and MLflow, which the comparison imports.
        from search.stores.dev_outputs import compare_on_dev

        summary.on_dev = compare_on_dev(study, tracker)
    return summary


def promotions(trials: list[FrozenTrial]) -> list[PromotionRow]:
    """Every promotion of the study: which paused trial which trial resumed, how long it
    ran and what it gained over the paused trial's dev F1."""
    rows = []
    for trial in trials:
        paused = TrialRecord.of(trial).promoted_from
        if paused is None or paused >= len(trials):
            continue
        before, after = trials[paused].value, trial.value
        rows.append(PromotionRow(
            paused=paused, promoted=trial.number,
            seconds=trial.duration.total_seconds() if trial.duration else 0.0,
            gain=None if before is None or after is None else after - before))
    return rows


def baseline_text(record: BaselineRecord) -> str:
    """The baseline's dev F1, model and training time, as the run and `show` print it."""
    return f"dev F1 {record.dev_macro_f1:.4f} ({record.model}, {duration(record.seconds)})"


def dataset_text(dataset: DatasetRecord | None) -> str:
    """The study's training data in one line, or that it was not recorded."""
    return dataset.describe() if dataset is not None else "- (not recorded yet)"


def registered_text(version: RegisteredVersion) -> str:
    """A registered model version: its name, version, URI and MLflow run."""
    return (f"{version.name} version {version.version} ({version.uri}, MLflow run "
            f"{version.run_id})")


def versus_baseline(best: float | None, baseline: BaselineRecord | None, *,
                    maximize: bool = True) -> str | None:
    """Best trial vs baseline in plain words (None: the study has no baseline)."""
    if baseline is None:
        return None
    if best is None:
        return "no complete trial yet to compare with the baseline"
    gain = (best - baseline.dev_macro_f1) * (1 if maximize else -1)
    if gain > 0:
        return f"the search beat the baseline by {gain:.4f}"
    if gain == 0:
        return "the search tied the baseline"
    return f"the search has not beaten the baseline ({-gain:.4f} short of it)"


@dataclass(frozen=True)
class StudyRow:
    name: str
    states: dict[str, int]
    best_value: float | None
    best_trial: int | None
    dataset: DatasetRecord | None = None
    baseline_value: float | None = None


def list_studies(storage: str = DEFAULT_STORAGE) -> list[StudyRow]:
    if sqlite_file_missing(storage):
        return []  # listing must not create the database it looks into
    optuna_storage = open_storage(storage)
    rows = []
    for name in sorted(optuna.get_all_study_names(optuna_storage)):
        summary = summarize(optuna.load_study(study_name=name, storage=optuna_storage),
                            storage=storage, tracking_uri="")
        rows.append(StudyRow(name=name, states=dict(summary.states),
                             best_value=summary.best_value, best_trial=summary.best_trial,
                             dataset=summary.dataset,
                             baseline_value=summary.baseline.dev_macro_f1
                             if summary.baseline is not None else None))
    return rows


@dataclass(frozen=True)
class TrialRow:
    number: int
    state: str
    value: float | None
    epochs: float
    params: dict[str, Any]
    run_id: str | None
    reason: str | None


def trial_row(trial: FrozenTrial) -> TrialRow:
    record = TrialRecord.of(trial)
    return TrialRow(number=trial.number, state=record.state_name(trial), value=trial.value,
                    epochs=record.epochs_trained(trial), params=dict(trial.params),
                    run_id=record.run_id, reason=record.reason)


def top_trials(study: optuna.Study, *, limit: int = 10) -> list[TrialRow]:
    trials = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    trials.sort(key=lambda t: t.value or 0.0, reverse=study.direction.name == "MAXIMIZE")
    return [trial_row(t) for t in trials[:limit]]
