"""The study report: the data, figures and palette of `han-search report`'s self-contained
HTML page (laid out by templates/report.html.j2), and its writing and logging."""

from __future__ import annotations

import html
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import optuna
from markupsafe import Markup
from matplotlib.colors import to_rgb
from optuna.trial import FrozenTrial, TrialState
from sklearn.metrics import precision_recall_fscore_support

from han.errors import WriteFailed
from han.files import check_writable, writing, written_atomically
from han.train import macro_scores
from search.errors import SearchError, TrackingError
from search.formatting import duration, redact, short
from search.records import BaselineRecord, StudyRecord, TrialRecord
from search.stores.optuna_storage import check_sqlite_target, open_study
from search.stores.tracking import Tracker
from search.views import figures
from search.views.report_charts import (
    METRIC,
    PALETTE,
    STATE_NAMES,
    history,
    importances,
    intermediate,
    parallel,
    state,
    state_counts,
    times,
)
from search.views.summary import versus_baseline

REPORT_ARTIFACT_DIR = "report"
def report_name(study_name: str) -> str:
    return f"{study_name}-report.html"


def report_path(out: Path, study_name: str) -> Path:
    """`out` itself when it names an .html file (not an existing folder), else
    STUDY-report.html inside folder `out`."""
    is_page = out.suffix.lower() in (".html", ".htm") and not out.is_dir()
    return out if is_page else out / report_name(study_name)


# ------------------------------------------------------------------- writing and logging


@dataclass(frozen=True)
class Logged:
    """Where MLflow holds the page, or why it does not."""

    parent_run_id: str | None = None
    artifact: str | None = None
    note: str | None = None  # nothing failed: no MLflow store, or no parent run in it
    warning: str | None = None  # MLflow failed


@dataclass(frozen=True)
class ReportResult:
    out: Path
    size_bytes: int
    trials: int
    seconds: float  # loading, rendering and writing; not the MLflow upload
    logged: Logged


def write_report(*, study_name: str, storage: str, tracking_uri: str,
                 out: Path) -> ReportResult:
    """Write the page atomically to `out` (see `report_path`), then log it on the study's
    parent run.

    An unwritable `out` raises UnwritablePath before anything is read, an unknown study or
    storage SearchError; neither leaves a file. MLflow trouble never costs the page: it is
    written first, and the result says why it was not logged.
    """
    started = time.perf_counter()
    out = report_path(out, study_name)
    check_writable(out)
    study = open_study(study_name, storage)
    page = render_report(study, class_names=StudyRecord.of(study).class_names, storage=storage)
    try:
        with written_atomically(out, what="the report") as temporary:
            temporary.write_text(page, encoding="utf-8")
    except OSError as error:  # --out is a file, a read-only folder, a full disk...
        where = f"{error.filename}: " if error.filename else ""
        raise SearchError(f"cannot write {out} ({where}{error.strerror or error})"
                                 ) from error
    seconds = time.perf_counter() - started
    return ReportResult(out=out, size_bytes=out.stat().st_size,
                        trials=len(study.get_trials(deepcopy=False)),
                        seconds=seconds,
                        logged=log_report(out, study_name=study_name,
                                          tracking_uri=tracking_uri))


def log_report(page: Path, *, study_name: str, tracking_uri: str) -> Logged:
    """Upload the page under report/ on the study's existing parent run; creates no run."""
    try:
        # Opening a SQLite URI creates the database: a missing one stays missing.
        check_sqlite_target(tracking_uri, what="MLflow store", must_exist=True)
    except SearchError as missing:
        return Logged(note=f"{missing}; the report was not logged")
    tracker = Tracker(tracking_uri=tracking_uri)
    try:
        tracker.check_reachable()
    except TrackingError as down:
        return Logged(warning=f"{down}; the report was not logged")
    run_id = tracker.find_parent_run(study_name)
    if run_id is None:
        if tracker.not_logged:
            return Logged(warning=_not_logged(tracker))
        return Logged(note=f"study {study_name!r} has no MLflow parent run in "
                      f"{redact(tracking_uri)}; the report was not logged")
    # One name in MLflow whatever the file was called, so a later report replaces it there.
    name = report_name(study_name)
    try:
        with tempfile.TemporaryDirectory() as folder, writing(folder, what="MLflow's copy"):
            upload = page if page.name == name else Path(shutil.copyfile(page,
                                                                         Path(folder) / name))
            uploaded = tracker.run(run_id).log_artifact(upload,
                                                        artifact_path=REPORT_ARTIFACT_DIR)
    except WriteFailed as refused:  # the page is written: MLflow's copy is what failed
        return Logged(parent_run_id=run_id, warning=f"{refused}; the report was not logged")
    if not uploaded:
        return Logged(parent_run_id=run_id, warning=_not_logged(tracker))
    return Logged(parent_run_id=run_id, artifact=f"{REPORT_ARTIFACT_DIR}/{name}")


def _not_logged(tracker: Tracker) -> str:
    return (f"MLflow at {redact(tracker.tracking_uri)}: could not {tracker.not_logged[-1]}; "
            "the report was not logged")


# ------------------------------------------------------------------- the page


def _escaped(value: object) -> object:
    """The environment's `finalize`: every `{{ value }}` not marked safe is escaped here, as
    html.escape writes it (`&quot;`, where markupsafe alone would write `&#34;`)."""
    if value is None or hasattr(value, "__html__"):
        return value
    return Markup(html.escape(str(value)))


@cache
def _template() -> jinja2.Template:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("search.views", "templates"), autoescape=True,
        finalize=_escaped, undefined=jinja2.StrictUndefined, trim_blocks=True,
        lstrip_blocks=True)
    environment.filters.update(short=short, duration=duration)
    return environment.get_template("report.html.j2")


def render_report(study: optuna.Study, *, class_names: Sequence[str] | None,
                  storage: str) -> str:
    """The whole page as one string; `class_names` in class-id order, or None for ids."""
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best = study.best_trial if complete else None
    matrix, why_not = _best_confusion(best)
    names = [] if matrix is None else _names(len(matrix), class_names)
    return _template().render(
        study_name=study.study_name, direction=study.direction.name.lower(),
        states=_states(trials), best=best, reference=_reference(trials, best),
        baseline=_baseline(study, best),
        storage=redact(storage),
        generated=datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %Z"),
        metric=METRIC, palette=PALETTE, heat_rgb=_rgb(PALETTE["complete"].colour),
        history=history(study, best), importances=importances(study),
        intermediate=intermediate(trials, best), parallel=parallel(study),
        why_not=why_not, scores=None if matrix is None else _scores(matrix, names),
        confusion=None if matrix is None else _confusion(matrix, names),
        times=times(trials), pruning=pruning_savings(trials),
        spent=sum(t.duration.total_seconds() for t in trials if t.duration is not None),
        trials=[_trial_row(t, best) for t in trials])


def _rgb(colour: str) -> str:
    """`colour` as CSS rgba()'s first three arguments."""
    return ", ".join(str(round(255 * channel)) for channel in to_rgb(colour))


def _states(trials: Sequence[FrozenTrial]) -> str:
    """Trials by state, and the share of finished trials pruned."""
    counts = state_counts(trials)
    finished = counts["complete"] + counts["pruned"] + counts["failed"]
    text = ", ".join(f"{counts[name]} {name}" for name in STATE_NAMES.values()
                     if counts[name] or name in ("complete", "pruned", "failed"))
    if finished:
        text += f" ({100 * counts['pruned'] / finished:.0f}% of finished trials pruned)"
    return text


def _reference(trials: Sequence[FrozenTrial], best: FrozenTrial | None) -> str:
    references = [t for t in trials if TrialRecord.of(t).reference]
    if not references:
        return "none (the study file enqueues no reference configuration)"
    # A retried reference trial leaves the original beside its retry: the one with a value.
    reference = next((t for t in references if t.state == TrialState.COMPLETE), references[0])
    if reference.state != TrialState.COMPLETE or reference.value is None:
        return f"trial {reference.number}, {state(reference)}: no value"
    text = f"{reference.value:.4f} (trial {reference.number})"
    if best is not None and best.value is not None:
        text += f"; best − reference = {best.value - reference.value:+.4f}"
    return text


def _baseline(study: optuna.Study, best: FrozenTrial | None) -> str:
    """Best trial vs baseline, for the header."""
    record = BaselineRecord.of(study)
    if record is None:
        return "none (turned off, or not trained yet)"
    text = (f"{record.dev_macro_f1:.4f} ({record.model}, {duration(record.seconds)}, MLflow "
            f"run {record.run_id or '-'})")
    verdict = versus_baseline(None if best is None else best.value, record,
                              maximize=study.direction.name == "MAXIMIZE")
    return f"{text}; {verdict}"


# ------------------------------------------------------------------- the best trial


def _best_confusion(best: FrozenTrial | None) -> tuple[np.ndarray | None, str]:
    """The best trial's dev confusion matrix, or None and why not."""
    if best is None:
        return None, "No complete trial yet."
    matrix = TrialRecord.of(best).dev_confusion
    if not matrix:
        return None, (f"Trial {best.number} has no dev confusion matrix on record (trials run "
                      "before han-search recorded it).")
    return np.asarray(matrix, dtype=np.int64), ""


def _names(count: int, class_names: Sequence[str] | None) -> list[str]:
    usable = class_names if class_names is not None and len(class_names) >= count else None
    return figures.class_names(count, usable)


def _labels(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """True and predicted labels whose confusion matrix is `matrix`: scored with training's
    own functions, the macro averages are the trial's value."""
    true, predicted = np.nonzero(matrix)
    counts = matrix[true, predicted]
    return np.repeat(true, counts), np.repeat(predicted, counts)


@dataclass(frozen=True)
class Scores:
    """Per-class precision, recall, F1 and support, and training's macro averages."""

    rows: list[tuple[str, float, float, float, int]]
    macro: dict[str, float]
    support: int


def _scores(matrix: np.ndarray, names: Sequence[str]) -> Scores:
    true, predicted = _labels(matrix)
    precision, recall, f1, support = precision_recall_fscore_support(
        true, predicted, labels=list(range(len(matrix))), zero_division=0)
    return Scores(rows=list(zip(names, precision, recall, f1, support, strict=True)),
                  macro=macro_scores(true, predicted), support=int(support.sum()))


def _confusion(matrix: np.ndarray, names: Sequence[str]
               ) -> list[tuple[str, list[tuple[int, float]]]]:
    """Each true class's name and row: every count with its share of the row."""
    totals = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, totals, out=np.zeros(matrix.shape), where=totals > 0)
    return [(name, list(zip(row.tolist(), share.tolist(), strict=True)))
            for name, row, share in zip(names, matrix, shares, strict=True)]


# ------------------------------------------------------------------- pruning and trials


@dataclass(frozen=True)
class PruningSavings:
    epochs_run: float  # pruned trials can stop inside an epoch
    epochs_unpruned: float  # had no trial been pruned
    pruned_trials: int
    seconds_saved: float  # an estimate: see pruning_savings

    @property
    def epochs_saved(self) -> float:
        return self.epochs_unpruned - self.epochs_run

    @property
    def share(self) -> float:
        return self.epochs_saved / self.epochs_unpruned if self.epochs_unpruned else 0.0


def pruning_savings(trials: Sequence[FrozenTrial]) -> PruningSavings:
    """Epochs (and time) the pruner saved.

    A pruned trial would have run its `max_epochs` (the longest run in the study when the
    trial did not record it); complete and failed trials count as they ran. Each pruned
    trial's missing epochs are costed at its own mean epoch time.
    """
    longest = max((TrialRecord.of(t).epochs_trained(t) for t in trials), default=0.0)
    run = unpruned = 0.0
    pruned = 0
    seconds = 0.0
    for trial in trials:
        epochs = TrialRecord.of(trial).epochs_trained(trial)
        run += epochs
        if trial.state != TrialState.PRUNED:
            unpruned += epochs
            continue
        pruned += 1
        max_epochs = TrialRecord.of(trial).max_epochs
        full = max(longest if max_epochs is None else max_epochs, epochs)
        unpruned += full
        if epochs and trial.duration is not None:
            seconds += (full - epochs) * trial.duration.total_seconds() / epochs
    return PruningSavings(epochs_run=run, epochs_unpruned=unpruned, pruned_trials=pruned,
                          seconds_saved=seconds)


def _trial_row(trial: FrozenTrial, best: FrozenTrial | None) -> dict[str, Any]:
    """One row of the all-trials table, as plain values."""
    record = TrialRecord.of(trial)
    epochs = f"{record.epochs_trained(trial):.3g}"
    return {"number": trial.number, "state": state(trial), "value": trial.value,
            "best": best is not None and trial.number == best.number,
            "reference": record.reference,
            "epochs": f"{epochs} / {record.max_epochs}" if record.max_epochs else epochs,
            "seconds": None if trial.duration is None else trial.duration.total_seconds(),
            "params": dict(trial.params), "reason": record.reason or "",
            "run_id": record.run_id or "-"}
