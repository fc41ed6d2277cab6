"""The study report: one self-contained HTML page of a study, read from Optuna alone.

Figures are matplotlib SVGs inlined in the page and the CSS sits in a <style> tag: the page
needs no network, no JavaScript and no file beside it, so it can be mailed, kept on the
study's MLflow parent run, or opened years later. Class names (often Chinese) are HTML text,
never matplotlib text: servers rarely have CJK fonts, browsers do. Every string that comes
from the study (names, params, reasons) is escaped.
"""

from __future__ import annotations

import html
import io
import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import optuna
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator
from optuna.trial import FrozenTrial, TrialState
from optuna.visualization import matplotlib as optuna_plots
from sklearn.metrics import precision_recall_fscore_support

from han.train import macro_scores
from search import reports
from search.errors import SearchError
from search.export import written_atomically
from search.formatting import duration, short
from search.records import (  # merge: remove (old names: use StudyRecord and TrialRecord)
    CLASS_NAMES_ATTR,
    DEV_CONFUSION_ATTR,
    MAX_EPOCHS_ATTR,
    REFERENCE_ATTR,
)
from search.storage import check_sqlite_target, open_study
from search.summary import RunSummary, summarize, trial_row
from search.tracking import Tracker, TrackingError, redact

REPORT_ARTIFACT_DIR = "report"
METRIC = "dev macro-F1"
STATE_NAMES = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned",
               TrialState.FAIL: "failed", TrialState.RUNNING: "running",
               TrialState.WAITING: "waiting"}
# One colour per state in every figure and table: ggplot's palette, as in Optuna's plots.
STATE_COLOURS = {"complete": "#348ABD", "pruned": "#E24A33", "failed": "#777777",
                 "running": "#988ED5", "waiting": "#BBBBBB"}
# Intermediate values: line style, and the marker at the last epoch (where a pruned or
# failed trial stopped, where a running one is now).
LINE_STYLES = {"complete": ("-", ""), "pruned": ("--", "x"), "failed": (":", "v"),
               "running": ("-.", "o")}
FIGURE_WIDTH = 9.0
# Ids must be unique in the page, and every matplotlib SVG defines the same glyph ids.
_SVG_ID = re.compile(r'(\bid="|href="#|url\(#)')


def report_name(study_name: str) -> str:
    return f"{study_name}-report.html"


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
                 out_dir: Path) -> ReportResult:
    """Write OUT_DIR/STUDY-report.html atomically, then log it on the study's parent run.

    An unknown study or storage, or an unwritable OUT_DIR, raises SearchError and leaves no
    file. MLflow trouble never costs the page: it is written first, and the result says
    why it was not logged.
    """
    started = time.perf_counter()
    study = open_study(study_name, storage)
    page = render_report(study, class_names=study.user_attrs.get(CLASS_NAMES_ATTR),
                         storage=storage)
    out = out_dir / report_name(study_name)
    try:
        with written_atomically(out) as temporary:
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
    if not tracker.run(run_id).log_artifact(page, artifact_path=REPORT_ARTIFACT_DIR):
        return Logged(parent_run_id=run_id, warning=_not_logged(tracker))
    return Logged(parent_run_id=run_id, artifact=f"{REPORT_ARTIFACT_DIR}/{page.name}")


def _not_logged(tracker: Tracker) -> str:
    return (f"MLflow at {redact(tracker.tracking_uri)}: could not {tracker.not_logged[-1]}; "
            "the report was not logged")


# ------------------------------------------------------------------- the page


def render_report(study: optuna.Study, *, class_names: Sequence[str] | None,
                  storage: str) -> str:
    """The whole page as one string; `class_names` in class-id order, or None for ids."""
    trials = study.get_trials(deepcopy=False)
    summary = summarize(study, storage=storage, tracking_uri="")
    best = study.best_trial if summary.best_trial is not None else None
    sections = [
        ("history", "Optimization history", _history(study, best)),
        ("importances", "Parameter importances", _importances(study)),
        ("intermediate", "Intermediate values, pruned trials included",
         _intermediate(trials, best)),
        ("parallel", "Parallel coordinates", _parallel(study)),
        ("per-class", "Best trial: per-class scores", _per_class(best, class_names)),
        ("confusion", "Best trial: confusion matrix", _confusion(best, class_names)),
        ("time", "Time per trial", _times(trials)),
        ("pruning", "What pruning saved", _pruning(trials)),
        ("trials", "All trials", _trials_table(trials, best)),
    ]
    nav = "".join(f'<li><a href="#{key}">{title}</a></li>' for key, title, _ in sections)
    body = "".join(f'<section id="{key}"><h2>{title}</h2>{content}</section>'
                   for key, title, content in sections)
    return _PAGE.format(title=_e(f"{study.study_name} · han-search study report"),
                        style=_STYLE, header=_header(study, trials, summary),
                        nav=f"<nav><ol>{nav}</ol></nav>", body=body)


def _e(value: object) -> str:
    return html.escape(str(value))


def _state(trial: FrozenTrial) -> str:
    return STATE_NAMES[trial.state]


def _counts(trials: Sequence[FrozenTrial]) -> Counter[str]:
    return Counter(_state(t) for t in trials)


def _header(study: optuna.Study, trials: Sequence[FrozenTrial],
            summary: RunSummary) -> str:
    counts = _counts(trials)
    finished = counts["complete"] + counts["pruned"] + counts["failed"]
    states = ", ".join(f"{counts[name]} {name}" for name in STATE_NAMES.values()
                       if counts[name] or name in ("complete", "pruned", "failed"))
    if finished:
        states += f" ({100 * counts['pruned'] / finished:.0f}% of finished trials pruned)"
    facts = {"direction": _e(study.direction.name.lower()), "trials": _e(states)}
    if summary.best_value is not None:
        facts[f"best {METRIC}"] = (f"<strong>{summary.best_value:.4f}</strong> "
                                   f"(trial {summary.best_trial})")
        facts["best params"] = _params(summary.best_params)
    else:
        facts[f"best {METRIC}"] = "no complete trial yet"
    facts["reference"] = _reference(trials, summary)
    facts["storage"] = f"<code>{_e(summary.storage)}</code>"
    facts["generated"] = _e(datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %Z"))
    rows = "".join(f"<dt>{key}</dt><dd>{value}</dd>" for key, value in facts.items())
    return (f"<header><h1>Study <span class=\"study\">{_e(study.study_name)}</span></h1>"
            f"<p class=\"subtitle\">han-search study report</p>"
            f"<dl class=\"facts\">{rows}</dl></header>")


def _reference(trials: Sequence[FrozenTrial], summary: RunSummary) -> str:
    reference = next((t for t in trials if t.user_attrs.get(REFERENCE_ATTR)), None)
    if reference is None:
        return "none (the study file enqueues no reference configuration)"
    if summary.reference_value is None:
        return f"trial {reference.number}, {_state(reference)}: no value"
    text = f"{summary.reference_value:.4f} (trial {reference.number})"
    if summary.best_value is not None:
        text += f"; best − reference = {summary.best_value - summary.reference_value:+.4f}"
    return text


def _params(params: dict[str, object]) -> str:
    return ", ".join(f"<code>{_e(key)}={_e(short(value))}</code>"
                     for key, value in params.items())


def _note(text: str) -> str:
    return f'<p class="note">{text}</p>'


# ------------------------------------------------------------------- figures


def _inline_svg(figure: plt.Figure, *, prefix: str, label: str) -> str:
    buffer = io.StringIO()
    try:
        figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    finally:
        plt.close(figure)
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg"):]
    svg = _SVG_ID.sub(lambda match: f"{match.group(1)}{prefix}-", svg)
    return svg.replace("<svg ", f'<svg role="img" aria-label="{_e(label)}" ', 1)


def _figure(key: str, figure: plt.Figure | None, *, caption: str, missing: str) -> str:
    """A <figure id="fig-KEY"> holding the SVG, or the note `missing` when there is none."""
    content = (_note(missing) if figure is None
               else _inline_svg(figure, prefix=key, label=caption))
    return f'<figure id="fig-{key}">{content}<figcaption>{caption}</figcaption></figure>'


def _history(study: optuna.Study, best: FrozenTrial | None) -> str:
    figure = None if best is None else reports.study_plot(
        partial(optuna_plots.plot_optimization_history, target_name=METRIC), study,
        size=(FIGURE_WIDTH, 4.2))
    return _figure("optimization-history", figure,
                   caption=f"{METRIC} of each complete trial and the best so far.",
                   missing="No complete trial yet.")


def _importances(study: optuna.Study) -> str:
    why_not = reports.importances_unavailable(study)
    figure = None if why_not else reports.study_plot(
        partial(optuna_plots.plot_param_importances, target_name=METRIC), study,
        size=(FIGURE_WIDTH, 3.6))
    return _figure(
        "param-importances", figure,
        caption=f"How much of the variation in {METRIC} each parameter explains (Optuna's "
                "fANOVA over the complete trials).",
        missing=f"Parameter importances cannot be computed: {_e(why_not)}." if why_not
        else "Optuna could not compute parameter importances for this study.")


def _parallel(study: optuna.Study) -> str:
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


def _intermediate(trials: Sequence[FrozenTrial], best: FrozenTrial | None) -> str:
    drawn = [t for t in trials if t.intermediate_values and _state(t) in LINE_STYLES]
    figure = _intermediate_figure(drawn, trials, best) if drawn else None
    return _figure(
        "intermediate-values", figure,
        caption=f"{METRIC} after each epoch. Complete trials solid, pruned trials dashed with "
                "× at the epoch where the pruner stopped them, failed trials dotted with ▼ "
                "at their last epoch, running trials dash-dotted with ● at their latest.",
        missing="No trial has reported an epoch yet.")


def _intermediate_figure(drawn: Sequence[FrozenTrial], trials: Sequence[FrozenTrial],
                         best: FrozenTrial | None) -> plt.Figure:
    counts = _counts(trials)
    with plt.style.context("ggplot"):
        figure, axes = plt.subplots(figsize=(FIGURE_WIDTH, 4.5))
        for trial in drawn:
            kind = _state(trial)
            line, end = LINE_STYLES[kind]
            epochs = sorted(trial.intermediate_values)
            values = [trial.intermediate_values[epoch] for epoch in epochs]
            is_best = best is not None and trial.number == best.number
            axes.plot(epochs, values, color=STATE_COLOURS[kind], linestyle=line,
                      linewidth=2.6 if is_best else 1.3, alpha=1.0 if is_best else 0.75)
            if end:
                axes.plot(epochs[-1:], values[-1:], linestyle="none", marker=end,
                          markersize=8, markeredgewidth=2, color=STATE_COLOURS[kind])
        kinds = [k for k in LINE_STYLES if k != "running" or counts[k]]
        handles = [Line2D([], [], color=STATE_COLOURS[k], linestyle=LINE_STYLES[k][0],
                          marker=LINE_STYLES[k][1] or None, label=f"{k} ({counts[k]})")
                   for k in kinds]
        if best is not None:
            handles.append(Line2D([], [], color=STATE_COLOURS["complete"], linewidth=2.6,
                                  label=f"best (trial {best.number})"))
        axes.legend(handles=handles, loc="lower right", fontsize=9)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_xlabel("epoch")
        axes.set_ylabel(METRIC)
        figure.tight_layout()
    return figure


def _times(trials: Sequence[FrozenTrial]) -> str:
    timed = [t for t in trials if t.duration is not None]
    figure = _times_figure(timed) if timed else None
    total = sum(t.duration.total_seconds() for t in timed if t.duration is not None)
    text = (f"<p>Total time in trials: <strong>{duration(total)}</strong> (the sum of their "
            "durations)")
    if timed:
        first = min(t.datetime_start for t in timed if t.datetime_start is not None)
        last = max(t.datetime_complete for t in timed if t.datetime_complete is not None)
        span = duration((last - first).total_seconds())
        text += (f"; from the first start to the last end: {span} (with several workers, "
                 "less than the sum)")
    return text + "</p>" + _figure(
        "trial-times", figure,
        caption="Wall time of each finished trial (start to end), coloured by its state.",
        missing="No trial has finished yet.")


def _times_figure(timed: Sequence[FrozenTrial]) -> plt.Figure:
    kinds = [_state(t) for t in timed]
    seconds = [t.duration.total_seconds() for t in timed if t.duration is not None]
    minutes = max(seconds) > 600  # long trials read better in minutes
    with plt.style.context("ggplot"):
        figure, axes = plt.subplots(figsize=(FIGURE_WIDTH, 3.2))
        axes.bar([t.number for t in timed], [s / 60 if minutes else s for s in seconds],
                 color=[STATE_COLOURS[kind] for kind in kinds])
        axes.legend(handles=[Patch(color=STATE_COLOURS[k], label=k)
                             for k in STATE_COLOURS if k in kinds], fontsize=9)
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
    matrix = best.user_attrs.get(DEV_CONFUSION_ATTR)
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


def _per_class(best: FrozenTrial | None, class_names: Sequence[str] | None) -> str:
    matrix, why_not = _best_confusion(best)
    if matrix is None or best is None:
        return _note(_e(why_not))
    true, predicted = _labels(matrix)
    precision, recall, f1, support = precision_recall_fscore_support(
        true, predicted, labels=list(range(len(matrix))), zero_division=0)
    macro = macro_scores(true, predicted)
    rows = "".join(
        f"<tr><th scope=\"row\">{_e(name)}</th><td class=\"num\">{p:.4f}</td>"
        f"<td class=\"num\">{r:.4f}</td><td class=\"num\">{f:.4f}</td>"
        f"<td class=\"num\">{s}</td></tr>"
        for name, p, r, f, s in zip(_names(len(matrix), class_names), precision, recall, f1,
                                    support, strict=True))
    macro_row = (f"<tr class=\"total\"><th scope=\"row\">macro average</th>"
                 f"<td class=\"num\">{macro['dev_macro_precision']:.4f}</td>"
                 f"<td class=\"num\">{macro['dev_macro_recall']:.4f}</td>"
                 f"<td class=\"num\">{macro['dev_macro_f1']:.4f}</td>"
                 f"<td class=\"num\">{int(support.sum())}</td></tr>")
    return (f"<p>Trial {best.number}, best epoch, on the dev fold: accuracy "
            f"{macro['dev_accuracy']:.4f}; macro-F1 {macro['dev_macro_f1']:.4f} (the trial's "
            f"value: {best.value:.4f}). Averages are over the classes that occur in the dev "
            "fold or its predictions, as in training.</p>"
            "<div class=\"wide\"><table id=\"per-class-scores\"><thead><tr><th>class</th>"
            "<th>precision</th><th>recall</th><th>F1</th><th>support</th></tr></thead>"
            f"<tbody>{rows}{macro_row}</tbody></table></div>")


def _confusion(best: FrozenTrial | None, class_names: Sequence[str] | None) -> str:
    matrix, why_not = _best_confusion(best)
    if matrix is None:
        return _note(_e(why_not))
    names = [_e(name) for name in _names(len(matrix), class_names)]
    row_totals = matrix.sum(axis=1)
    head = "".join(f'<th scope="col">{name}</th>' for name in names)
    rows = []
    for true, (name, counts, total) in enumerate(zip(names, matrix, row_totals, strict=True)):
        cells = "".join(_heat_cell(count, total, true=name, predicted=names[predicted],
                                   diagonal=predicted == true)
                        for predicted, count in enumerate(counts))
        rows.append(f'<tr><th scope="row">{name}</th>{cells}</tr>')
    return ("<p>Rows: true class; columns: predicted class. A cell's shade is its share of "
            "the row (the true class's recall on the diagonal); hover for the share.</p>"
            f'<div class="wide"><table id="confusion-matrix" class="confusion"><thead><tr>'
            f'<th class="corner">true \\ predicted</th>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table></div>")


def _heat_cell(count: int, total: int, *, true: str, predicted: str, diagonal: bool) -> str:
    share = count / total if total else 0.0
    dark = " dark" if share > 0.55 else ""
    diagonal_class = " diagonal" if diagonal else ""
    return (f'<td class="heat{dark}{diagonal_class}" '
            f'style="background-color: rgba(52, 138, 189, {share:.3f})" '
            f'title="true {true}, predicted {predicted}: {count} ({100 * share:.1f}% of the '
            f'row)">{count}</td>')


# ------------------------------------------------------------------- pruning and trials


@dataclass(frozen=True)
class PruningSavings:
    epochs_run: int
    epochs_unpruned: int  # had no trial been pruned
    pruned_trials: int
    seconds_saved: float  # an estimate: see pruning_savings

    @property
    def epochs_saved(self) -> int:
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
    longest = max((len(t.intermediate_values) for t in trials), default=0)
    run = unpruned = pruned = 0
    seconds = 0.0
    for trial in trials:
        epochs = len(trial.intermediate_values)
        run += epochs
        if trial.state != TrialState.PRUNED:
            unpruned += epochs
            continue
        pruned += 1
        full = max(int(trial.user_attrs.get(MAX_EPOCHS_ATTR, longest)), epochs)
        unpruned += full
        if epochs and trial.duration is not None:
            seconds += (full - epochs) * trial.duration.total_seconds() / epochs
    return PruningSavings(epochs_run=run, epochs_unpruned=unpruned, pruned_trials=pruned,
                          seconds_saved=seconds)


def _pruning(trials: Sequence[FrozenTrial]) -> str:
    saved = pruning_savings(trials)
    spent = sum(t.duration.total_seconds() for t in trials if t.duration is not None)
    facts = {
        "epochs run, all trials": f"{saved.epochs_run}",
        "epochs without pruning": f"{saved.epochs_unpruned} (pruned trials counted at their "
                                  "full epoch count)",
        "epochs saved": f"<strong>{saved.epochs_saved}</strong> ({100 * saved.share:.0f}%) "
                        f"by {saved.pruned_trials} pruned trials",
        "time saved (estimate)": f"<strong>{duration(saved.seconds_saved)}</strong> "
                                 f"(against {duration(spent)} spent in trials)",
    }
    rows = "".join(f"<dt>{key}</dt><dd>{value}</dd>" for key, value in facts.items())
    return (f'<dl class="facts" id="pruning-facts">{rows}</dl>'
            "<p class=\"aside\">The time saved is an estimate: each pruned trial's missing "
            "epochs are costed at its own mean epoch time (set-up included), and early "
            "stopping might have ended some pruned trials sooner than their full epoch "
            "count.</p>")


def _trials_table(trials: Sequence[FrozenTrial], best: FrozenTrial | None) -> str:
    rows = []
    for trial in trials:
        row = trial_row(trial)
        kind = _state(trial)
        badges = "".join(f' <span class="badge">{label}</span>' for label, on in (
            ("best", best is not None and trial.number == best.number),
            ("reference", bool(trial.user_attrs.get(REFERENCE_ATTR)))) if on)
        max_epochs = trial.user_attrs.get(MAX_EPOCHS_ATTR)
        epochs = f"{row.epochs} / {max_epochs}" if max_epochs else str(row.epochs)
        seconds = "-" if trial.duration is None else duration(trial.duration.total_seconds())
        value = f"{row.value:.4f}" if row.value is not None else "-"
        rows.append(
            f'<tr class="{kind}{" best" if "best" in badges else ""}">'
            f'<td class="num">{row.number}{badges}</td>'
            f'<td><span class="state {kind}">{kind}</span></td>'
            f'<td class="num">{value}</td><td class="num">{_e(epochs)}</td>'
            f'<td class="num">{seconds}</td><td>{_params(row.params)}</td>'
            f"<td>{_e(row.reason or '')}</td><td><code>{_e(row.run_id or '-')}</code></td></tr>")
    return ('<div class="wide"><table id="all-trials"><thead><tr><th>trial</th><th>state</th>'
            f"<th>{METRIC}</th><th>epochs</th><th>duration</th><th>params</th><th>reason</th>"
            f"<th>MLflow run</th></tr></thead><tbody>{''.join(rows)}</tbody></table></div>")


_STYLE = """
body { margin: 0; background: #f4f4f2; color: #222;
       font: 15px/1.5 system-ui, "Segoe UI", Roboto, "Noto Sans", "Noto Sans CJK SC",
             "PingFang SC", "Microsoft YaHei", sans-serif; }
main { max-width: 1060px; margin: 0 auto; padding: 28px 36px 56px; background: #fff;
       box-shadow: 0 0 12px rgba(0, 0, 0, 0.06); }
h1 { font-size: 1.8em; margin: 0; }
h1 .study { font-family: ui-monospace, "DejaVu Sans Mono", monospace; }
.subtitle { margin: 0 0 1em; color: #666; }
h2 { font-size: 1.3em; margin: 2.2em 0 0.6em; padding-bottom: 0.2em;
     border-bottom: 2px solid #e4e4e4; }
nav ol { columns: 3; margin: 1em 0 0; padding-left: 1.4em; font-size: 0.92em; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 4px 18px; margin: 0; }
dl.facts dt { color: #666; }
dl.facts dd { margin: 0; }
code { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 0.9em; }
figure { margin: 1em 0; }
figure svg { display: block; max-width: 100%; height: auto; margin: 0 auto; }
figcaption { margin-top: 0.4em; color: #555; font-size: 0.9em; }
.note { background: #fff8e1; border-left: 4px solid #f0c36d; padding: 8px 12px; }
.aside { color: #555; font-size: 0.9em; }
.wide { overflow-x: auto; }
table { border-collapse: collapse; font-size: 0.88em; margin: 0.6em 0; }
th, td { border: 1px solid #d4d4d4; padding: 4px 8px; text-align: left; vertical-align: top; }
thead th { background: #f0f0ee; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.total th, tr.total td { font-weight: 600; background: #f7f7f5; }
tr.best td { background: #eef5fb; }
.badge { font-size: 0.75em; padding: 0 6px; border-radius: 8px; background: #e2e2e2; }
.state { font-weight: 600; }
.state.complete { color: #348ABD; }
.state.pruned { color: #E24A33; }
.state.failed { color: #777777; }
.state.running { color: #988ED5; }
.state.waiting { color: #999999; }
.confusion td.heat { text-align: center; min-width: 2.8em; font-variant-numeric: tabular-nums; }
.confusion td.dark { color: #fff; }
.confusion td.diagonal { font-weight: 700; }
.confusion th.corner { color: #666; font-weight: normal; font-size: 0.85em; }
"""

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>{title}</title>
<style>{style}</style>
</head>
<body>
<main>
{header}
{nav}
{body}
</main>
</body>
</html>
"""
