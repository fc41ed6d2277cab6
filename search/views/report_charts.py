"""The study report's charts and palette: matplotlib figures of a study, inlined in the page
as SVG (search.views.html_report lays them out)."""

from __future__ import annotations

import io
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import matplotlib.pyplot as plt
import optuna
from markupsafe import Markup
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator
from optuna.trial import FrozenTrial, TrialState
from optuna.visualization import matplotlib as optuna_plots

from search.records import TrialRecord
from search.views import figures

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


def state(trial: FrozenTrial) -> str:
    return STATE_NAMES[trial.state]


def state_counts(trials: Sequence[FrozenTrial]) -> Counter[str]:
    return Counter(state(t) for t in trials)


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


def history(study: optuna.Study, best: FrozenTrial | None) -> Figure:
    figure = None if best is None else figures.study_plot(
        partial(optuna_plots.plot_optimization_history, target_name=METRIC), study,
        size=(FIGURE_WIDTH, 4.2))
    return _figure("optimization-history", figure,
                   caption=f"{METRIC} of each complete trial and the best so far.",
                   missing="No complete trial yet.")


def importances(study: optuna.Study) -> Figure:
    why_not = figures.importances_unavailable(study)
    figure = None if why_not else figures.study_plot(
        partial(optuna_plots.plot_param_importances, target_name=METRIC), study,
        size=(FIGURE_WIDTH, 3.6))
    return _figure(
        "param-importances", figure,
        caption=f"How much of the variation in {METRIC} each parameter explains (Optuna's "
                "fANOVA over the complete trials).",
        missing=f"Parameter importances cannot be computed: {why_not}." if why_not
        else "Optuna could not compute parameter importances for this study.")


def parallel(study: optuna.Study) -> Figure:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    drawable = len(complete) >= 2 and any(t.params for t in complete)
    figure = figures.study_plot(
        partial(optuna_plots.plot_parallel_coordinate, target_name=METRIC), study,
        size=(FIGURE_WIDTH, 4.5)) if drawable else None
    return _figure(
        "parallel-coordinate", figure,
        caption=f"Each complete trial's parameters as one line, coloured by its {METRIC}.",
        missing="Optuna could not draw parallel coordinates for this study." if drawable
        else "Parallel coordinates need at least two complete trials with parameters.")


def intermediate(trials: Sequence[FrozenTrial], best: FrozenTrial | None) -> Figure:
    drawn = [t for t in trials if t.intermediate_values and PALETTE[state(t)].line]
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
    counts = state_counts(trials)
    with plt.style.context("ggplot"):
        figure, axes = plt.subplots(figsize=(FIGURE_WIDTH, 4.5))
        for trial in drawn:
            style = PALETTE[state(trial)]
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


def times(trials: Sequence[FrozenTrial]) -> Times:
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
    kinds = [state(t) for t in timed]
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
