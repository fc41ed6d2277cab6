"""The study report: the data, figures and palette of `han-search report`'s self-contained
HTML page (laid out by templates/report.html.j2), and its writing and logging."""

from __future__ import annotations

import html
import io
import re
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache, partial
from pathlib import Path
from typing import Any

import jinja2
import matplotlib.pyplot as plt
import numpy as np
import optuna
from markupsafe import Markup
from matplotlib.colors import to_rgb
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator
from optuna.trial import FrozenTrial, TrialState
from optuna.visualization import matplotlib as optuna_plots
from sklearn.metrics import precision_recall_fscore_support

from han.files import WriteFailed, check_writable, writing, written_atomically
from han.train import macro_scores
from search import reports
from search.errors import SearchError
from search.formatting import duration, redact, short
from search.records import BaselineRecord, StudyRecord, TrialRecord
from search.storage import check_sqlite_target, open_study
from search.summary import versus_baseline
from search.tracking import Tracker, TrackingError

REPORT_ARTIFACT_DIR = "report"
METRIC = "dev macro-F1"
STATE_NAMES = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned",
               TrialState.FAIL: "failed", TrialState.RUNNING: "running",
               TrialState.WAITING: "waiting"}


@dataclass(frozen=True)
class StateStyle:
    """How trials of one state are drawn, in every figure and in the page's CSS."""

    colour: str
    line: str | None = None  # intermediate values' line style; None: not drawn there
    marker: str = ""  # at the last epoch: where a pruned or failed trial stopped, a running one is


# The one palette: ggplot's colours, as in Optuna's plots. The confusion table is shaded in
# the complete trials' colour.
PALETTE = {"complete": StateStyle("#348ABD", "-"), "pruned": StateStyle("#E24A33", "--", "x"),
           "failed": StateStyle("#777777", ":", "v"), "running": StateStyle("#988ED5", "-.", "o"),
           "waiting": StateStyle("#BBBBBB")}
FIGURE_WIDTH = 9.0
# Ids must be unique in the page, and every matplotlib SVG defines the same glyph ids.
_SVG_ID = re.compile(r'(\bid="|href="#|url\(#)')


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
        loader=jinja2.PackageLoader("search", "templates"), autoescape=True,
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
        history=_history(study, best), importances=_importances(study),
        intermediate=_intermediate(trials, best), parallel=_parallel(study),
        why_not=why_not, scores=None if matrix is None else _scores(matrix, names),
        confusion=None if matrix is None else _confusion(matrix, names),
        times=_times(trials), pruning=pruning_savings(trials),
        spent=sum(t.duration.total_seconds() for t in trials if t.duration is not None),
        trials=[_trial_row(t, best) for t in trials])


def _state(trial: FrozenTrial) -> str:
    return STATE_NAMES[trial.state]


def _counts(trials: Sequence[FrozenTrial]) -> Counter[str]:
    return Counter(_state(t) for t in trials)


def _rgb(colour: str) -> str:
    """`colour` as CSS rgba()'s first three arguments."""
    return ", ".join(str(round(255 * channel)) for channel in to_rgb(colour))


def _states(trials: Sequence[FrozenTrial]) -> str:
    """Trials by state, and the share of finished trials pruned."""
    counts = _counts(trials)
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
        return f"trial {reference.number}, {_state(reference)}: no value"
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


# ------------------------------------------------------------------- figures
# Matplotlib SVGs inlined in the page, which needs no network, no JavaScript and no file
# beside it (it is mailed, kept on MLflow, opened years later). Class names (often Chinese)
# stay HTML text, never matplotlib text: servers rarely have CJK fonts, browsers do.


@dataclass(frozen=True)
class Figure:
    """A figure of the page: its SVG, or the note `missing` saying why there is none."""

    key: str
    caption: str
    svg: Markup | None
    missing: str


def _figure(key: str, figure: plt.Figure | None, *, caption: str, missing: str) -> Figure:
    return Figure(key=key, caption=caption, missing=missing,
                  svg=None if figure is None else _inline_svg(figure, prefix=key,
                                                              label=caption))


def _inline_svg(figure: plt.Figure, *, prefix: str, label: str) -> Markup:
    """The figure as SVG markup of our own (matplotlib's, ids prefixed): safe to inline."""
    buffer = io.StringIO()
    try:
        figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    finally:
        plt.close(figure)
    svg = buffer.getvalue()
    svg = _SVG_ID.sub(lambda match: f"{match.group(1)}{prefix}-", svg[svg.index("<svg"):])
    opening = Markup('<svg role="img" aria-label="{}" ').format(label)  # escapes the label
    # matplotlib escapes any text it writes into the SVG (param names, in comments).
    return opening + Markup(svg.removeprefix("<svg "))


def _history(study: optuna.Study, best: FrozenTrial | None) -> Figure:
    figure = None if best is None else reports.study_plot(
        partial(optuna_plots.plot_optimization_history, target_name=METRIC), study,
        size=(FIGURE_WIDTH, 4.2))
    return _figure("optimization-history", figure,
                   caption=f"{METRIC} of each complete trial and the best so far.",
                   missing="No complete trial yet.")


def _importances(study: optuna.Study) -> Figure:
    why_not = reports.importances_unavailable(study)
    figure = None if why_not else reports.study_plot(
        partial(optuna_plots.plot_param_importances, target_name=METRIC), study,
        size=(FIGURE_WIDTH, 3.6))
    return _figure(
        "param-importances", figure,
        caption=f"How much of the variation in {METRIC} each parameter explains (Optuna's "
                "fANOVA over the complete trials).",
        missing=f"Parameter importances cannot be computed: {why_not}." if why_not
        else "Optuna could not compute parameter importances for this study.")


def _parallel(study: optuna.Study) -> Figure:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    drawable = len(complete) >= 2 and any(t.params for t in complete)
    figure = reports.study_plot(
        partial(optuna_plots.plot_parallel_coordinate, target_name=METRIC), study,
        size=(FIGURE_WIDTH, 4.5)) if drawable else None
    return _figure(
        "parallel-coordinate", figure,
        caption=f"Each complete trial's parameters as one line, coloured by its {METRIC}.",
        missing="Optuna could not draw parallel coordinates for this study." if drawable
        else "Parallel coordinates need at least two complete trials with parameters.")


def _intermediate(trials: Sequence[FrozenTrial], best: FrozenTrial | None) -> Figure:
    drawn = [t for t in trials if t.intermediate_values and PALETTE[_state(t)].line]
    figure = _intermediate_figure(drawn, trials, best) if drawn else None
    return _figure(
        "intermediate-values", figure,
        caption=f"{METRIC} at each report to the pruner, against epochs of training (reports "
                "inside an epoch score a fixed sample of the dev fold). Complete trials "
                "solid, pruned trials dashed with × where the pruner stopped them, failed "
                "trials dotted with ▼ at their last report, running trials dash-dotted "
                "with ● at their latest.",
        missing="No trial has reported an epoch yet.")


def _intermediate_figure(drawn: Sequence[FrozenTrial], trials: Sequence[FrozenTrial],
                         best: FrozenTrial | None) -> plt.Figure:
    counts = _counts(trials)
    with plt.style.context("ggplot"):
        figure, axes = plt.subplots(figsize=(FIGURE_WIDTH, 4.5))
        for trial in drawn:
            style = PALETTE[_state(trial)]
            steps = sorted(trial.intermediate_values)
            values = [trial.intermediate_values[step] for step in steps]
            # Steps count training documents seen (epochs in studies recorded before that).
            per_epoch = TrialRecord.of(trial).epoch_docs or 1
            epochs = [step / per_epoch for step in steps]
            is_best = best is not None and trial.number == best.number
            axes.plot(epochs, values, color=style.colour, linestyle=style.line,
                      linewidth=2.6 if is_best else 1.3, alpha=1.0 if is_best else 0.75)
            if style.marker:
                axes.plot(epochs[-1:], values[-1:], linestyle="none", marker=style.marker,
                          markersize=8, markeredgewidth=2, color=style.colour)
        handles = [Line2D([], [], color=style.colour, linestyle=style.line,
                          marker=style.marker or None, label=f"{kind} ({counts[kind]})")
                   for kind, style in PALETTE.items()
                   if style.line and (kind != "running" or counts[kind])]
        if best is not None:
            handles.append(Line2D([], [], color=PALETTE["complete"].colour, linewidth=2.6,
                                  label=f"best (trial {best.number})"))
        axes.legend(handles=handles, loc="lower right", fontsize=9)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_xlabel("epochs trained")
        axes.set_ylabel(METRIC)
        figure.tight_layout()
    return figure


@dataclass(frozen=True)
class Times:
    total: float  # seconds, the sum of the trials' durations
    span: float | None  # seconds from the first start to the last end; None: none finished
    figure: Figure


def _times(trials: Sequence[FrozenTrial]) -> Times:
    timed = [t for t in trials if t.duration is not None]
    span = None
    if timed:
        first = min(t.datetime_start for t in timed if t.datetime_start is not None)
        last = max(t.datetime_complete for t in timed if t.datetime_complete is not None)
        span = (last - first).total_seconds()
    return Times(
        total=sum(t.duration.total_seconds() for t in timed if t.duration is not None),
        span=span, figure=_figure(
            "trial-times", _times_figure(timed) if timed else None,
            caption="Wall time of each finished trial (start to end), coloured by its state.",
            missing="No trial has finished yet."))


def _times_figure(timed: Sequence[FrozenTrial]) -> plt.Figure:
    kinds = [_state(t) for t in timed]
    seconds = [t.duration.total_seconds() for t in timed if t.duration is not None]
    minutes = max(seconds) > 600  # long trials read better in minutes
    with plt.style.context("ggplot"):
        figure, axes = plt.subplots(figsize=(FIGURE_WIDTH, 3.2))
        axes.bar([t.number for t in timed], [s / 60 if minutes else s for s in seconds],
                 color=[PALETTE[kind].colour for kind in kinds])
        axes.legend(handles=[Patch(color=style.colour, label=kind)
                             for kind, style in PALETTE.items() if kind in kinds], fontsize=9)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_xlabel("trial")
        axes.set_ylabel("minutes" if minutes else "seconds")
        figure.tight_layout()
    return figure


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
    return reports.class_names(count, usable)


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
    return {"number": trial.number, "state": _state(trial), "value": trial.value,
            "best": best is not None and trial.number == best.number,
            "reference": record.reference,
            "epochs": f"{epochs} / {record.max_epochs}" if record.max_epochs else epochs,
            "seconds": None if trial.duration is None else trial.duration.total_seconds(),
            "params": dict(trial.params), "reason": record.reason or "",
            "run_id": record.run_id or "-"}
