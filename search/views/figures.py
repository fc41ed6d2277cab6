"""Figures and text reports logged to MLflow: per-trial evaluation and study-level plots."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI

import matplotlib.pyplot as plt
import numpy as np
import optuna
from sklearn.metrics import classification_report

from search.stores.tracking import RunHandle


def class_names(num_classes: int, names: Sequence[str] | None) -> list[str]:
    if names is None:
        return [str(index) for index in range(num_classes)]
    return [f"{index} {name}" for index, name in enumerate(names[:num_classes])]


def evaluation_report(true: np.ndarray, predicted: np.ndarray, num_classes: int,
                      names: Sequence[str] | None) -> str:
    return classification_report(true, predicted, labels=list(range(num_classes)),
                                 target_names=class_names(num_classes, names), digits=4,
                                 zero_division=0)


def confusion_figure(matrix: np.ndarray) -> plt.Figure:
    """A (classes, classes) confusion matrix (rows true, columns predicted) as a heat map."""
    num_classes = len(matrix)
    size = max(4.0, 0.45 * num_classes + 2)
    figure, axes = plt.subplots(figsize=(size, size))
    axes.imshow(matrix, cmap="Blues")
    # Class ids on the axes: the names (often Chinese) need fonts a server rarely has; the
    # classification report beside this figure names them.
    axes.set_xticks(range(num_classes), [str(i) for i in range(num_classes)], fontsize=7)
    axes.set_yticks(range(num_classes), [str(i) for i in range(num_classes)], fontsize=7)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    threshold = matrix.max() / 2 if matrix.size else 0
    for (row, column), count in np.ndenumerate(matrix):
        if count:
            axes.text(column, row, str(count), ha="center", va="center", fontsize=6,
                      color="white" if count > threshold else "black")
    axes.set_title("dev confusion matrix (best epoch)")
    figure.tight_layout()
    return figure


def importances_unavailable(study: optuna.Study) -> str | None:
    """Why Optuna cannot rank this study's parameters, or None when it can try."""
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(complete) < 2:
        return "they need at least two complete trials"
    if len({tuple(sorted(t.params.items())) for t in complete}) < 2:
        return "every complete trial has the same parameters"
    return None


def study_plot(plot: Callable[[optuna.Study], Any], study: optuna.Study, *,
               size: tuple[float, float] = (9, 5)) -> plt.Figure | None:
    """One of Optuna's matplotlib plots as a figure; None when Optuna cannot draw it."""
    opened = set(plt.get_fignums())
    # rc_context: Optuna switches the process-wide style to ggplot; keep that to its figure.
    with warnings.catch_warnings(), matplotlib.rc_context():
        warnings.simplefilter("ignore")  # optuna marks its matplotlib backend experimental
        try:
            axes = plot(study)
        except (ValueError, RuntimeError, ZeroDivisionError):  # e.g. importances of equal values
            for number in set(plt.get_fignums()) - opened:
                plt.close(number)
            return None
    figure = axes.figure if hasattr(axes, "figure") else np.ravel(axes)[0].figure
    figure.set_size_inches(*size)
    with warnings.catch_warnings():
        # Best effort: with many trials the legend outgrows the figure, and matplotlib's
        # "Tight layout not applied" landed in the middle of the run's progress lines.
        warnings.simplefilter("ignore", UserWarning)
        figure.tight_layout()
    return figure


def log_study_plots(run: RunHandle, study: optuna.Study) -> None:
    """Optimization history, parameter importances and intermediate values, as PNGs."""
    from optuna.visualization import matplotlib as optuna_plots

    plots = {"optimization_history.png": optuna_plots.plot_optimization_history,
             "intermediate_values.png": optuna_plots.plot_intermediate_values}
    if importances_unavailable(study) is None:
        plots["param_importances.png"] = optuna_plots.plot_param_importances
    for name, plot in plots.items():
        figure = study_plot(plot, study)
        if figure is None:
            continue
        run.log_figure(figure, f"study/{name}")
        plt.close(figure)
