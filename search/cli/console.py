"""What `han-search run` prints: the data block and the start lines about word2vec and the
baseline, one line per trial start, epoch, report and end (ConsoleProgress), and the
summary at the end."""

from __future__ import annotations

import textwrap
import time
from typing import TYPE_CHECKING, Any

import optuna
import typer
from optuna.trial import FrozenTrial, TrialState

from han.profile import PERCENTILES
from search.formatting import duration, short
from search.records import Outcome, TrialRecord
from search.session.budget import Budget
from search.session.word2vec import Source
from search.views.summary import baseline_text, dataset_text, registered_text, versus_baseline

if TYPE_CHECKING:
    from han.blend import BlendChoice
    from han.dev_reports import EpochMetrics, Report
    from han.profile import DataProfile
    from search.session.baseline import BaselineOutcome
    from search.session.budget import TrialEstimate
    from search.session.diskspace import Shortage
    from search.session.word2vec import Word2VecOutcome
    from search.views.summary import RunSummary


class ConsoleProgress:
    """The data block, then one line per trial start (with its estimated cost), epoch and
    finished trial, with the study's best and an ETA within the budget."""

    def __init__(self, *, started: float, budget: Budget | None = None) -> None:
        self.started = started
        self.budget = budget or Budget(None)
        self.total: int | None = None
        self.index = 0
        self.best: float | None = None

    def echo(self, text: str) -> None:
        typer.echo(text)

    @staticmethod
    def _prefix(trial: optuna.Trial | FrozenTrial) -> str:
        # The study's trial number, as the summary, `show`, Optuna and MLflow say it.
        return f"[trial {trial.number}]"

    def _this_run(self) -> str:
        """This run's count and ETA, on a finished trial's line. Skipped trials do not
        count against --trials: past it, the count stands alone."""
        total = f" of {self.total}" if self.total and self.index <= self.total else ""
        eta = self.budget.eta(elapsed=time.perf_counter() - self.started, done=self.index,
                              total=self.total)
        return f"; this run {self.index}{total}" + ("" if eta is None
                                                     else f", ETA {duration(eta)}")

    def data_described(self, profile: DataProfile) -> None:
        self.echo(data_block(profile))

    def next_trial(self, index: int, total: int | None) -> None:
        self.index, self.total = index, total

    def trial_started(self, trial: optuna.Trial, params: dict[str, Any]) -> None:
        text = ", ".join(f"{k}={short(v)}" for k, v in params.items())
        record = TrialRecord.of(trial)
        origin = (" (derived from the data)" if record.from_data
                  else " (the reference configuration)" if record.reference
                  else f" (resumes paused trial {record.promoted_from})"
                  if record.promoted_from is not None else "")
        self.echo(f"{self._prefix(trial)} start {text}{origin}")

    def trial_estimated(self, trial: optuna.Trial, estimate: TrialEstimate) -> None:
        self.echo(f"{self._prefix(trial)} {estimate.describe()}")

    def epoch_done(self, trial: optuna.Trial, metrics: EpochMetrics) -> None:
        best = f" study best {self.best:.4f}" if self.best is not None else ""
        # The trial's own epochs, as it recorded them when it started.
        epochs = TrialRecord.of(trial).max_epochs
        self.echo(f"{self._prefix(trial)} epoch {metrics.epoch}/{epochs} dev F1 "
                   f"{metrics.dev_macro_f1:.4f} loss {metrics.train_loss:.3f} "
                   f"{metrics.train_docs_per_s:.0f} docs/s{best}")

    def reported(self, trial: optuna.Trial, report: Report) -> None:
        self.echo(f"{self._prefix(trial)} {report.step:,} docs (epoch {report.epoch}) dev F1 "
                   f"{report.dev_macro_f1:.4f} on {report.dev_docs:,} dev docs")

    def trial_done(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if trial.state == TrialState.COMPLETE and trial.value is not None:
            better = min if study.direction == optuna.study.StudyDirection.MINIMIZE else max
            self.best = trial.value if self.best is None else better(self.best, trial.value)
        record = TrialRecord.of(trial)
        reason = record.reason or ""
        outcome = {
            TrialState.COMPLETE: f"complete, dev F1 {trial.value or 0:.4f}",
            TrialState.PRUNED: f"pruned {reason}",
            TrialState.FAIL: f"failed ({reason})",
        }.get(trial.state, trial.state.name.lower())
        if record.outcome is Outcome.SKIPPED:
            outcome = reason
        elif record.outcome in (Outcome.STOPPED, Outcome.PAUSED):
            value = f", dev F1 {trial.value:.4f}" if trial.value is not None else ""
            outcome = f"{reason}{value}"
        seconds = trial.duration.total_seconds() if trial.duration else 0.0
        best = f", best {self.best:.4f}" if self.best is not None else ""
        self.echo(f"{self._prefix(trial)} {outcome} in {duration(seconds)}{best}"
                   f"{self._this_run()}")

    def baseline(self, outcome: BaselineOutcome) -> None:
        self.echo(baseline_line(outcome))

    def word2vec(self, outcome: Word2VecOutcome) -> None:
        self.echo(word2vec_line(outcome))

    def disk_short(self, shortage: Shortage) -> None:
        """A line of the data block: a filesystem that may not hold the run's trials."""
        self.echo(textwrap.fill(f"disk       warning: {shortage.describe()}", width=100,
                                 subsequent_indent=" " * 11, break_on_hyphens=False,
                                 break_long_words=False))


def baseline_line(outcome: BaselineOutcome) -> str:
    """The run's start line about the study's baseline."""
    if outcome.record is not None:
        again = "" if outcome.trained else "; on record, not retrained"
        return f"baseline  {baseline_text(outcome.record)}{again}"
    if outcome.error is not None:
        return f"baseline  failed ({outcome.error}); the search goes on without it"
    return "baseline  off ([study] baseline = false)"


def on_dev_text(choice: BlendChoice, study: str) -> str:
    """The best trial, the baseline and their blend on the dev fold, which is best, and the
    export that submits it."""
    figures = (f"HAN {choice.han_f1:.4f}, baseline {choice.baseline_f1:.4f}, blend "
               f"{choice.blend_f1:.4f} (HAN weight {choice.weight:.2f})")
    export = f"han-search export-best --study {study}"
    if choice.best == "HAN":
        return f"{figures}: the HAN is best; {export} submits it"
    if choice.best == "blend":
        return f"{figures}: the blend is best; {export} --blend submits it"
    return f"{figures}: the baseline is best; {export} --blend submits a blend level with it"


def word2vec_line(outcome: Word2VecOutcome) -> str:
    """The run's start line about the trials' word2vec vectors."""
    if outcome.source is Source.GIVEN:
        return f"word2vec   given: {outcome.path} (not trained)"
    if outcome.source is Source.OFF:
        return f"word2vec   off ({outcome.reason})"
    if outcome.source is Source.FAILED:
        return (f"word2vec   failed ({outcome.reason}); the trials go on without pretrained "
                "vectors")
    how = (f"in {duration(outcome.seconds)}" if outcome.source is Source.TRAINED
           else "reused")
    return (f"word2vec   {outcome.dim} dims, {outcome.vectors:,} vectors from "
            f"{outcome.documents:,} documents {how} ({outcome.path})")


def data_block(profile: DataProfile) -> str:
    """The data block printed at the start of a run."""
    names = profile.class_names or tuple(str(i) for i in range(len(profile.class_counts)))
    classes = ", ".join(f"{name} {count:,}" for name, count in
                        zip(names, profile.class_counts, strict=False))
    lengths = ", ".join(f"p{p} {n:,}" for p, n in zip(PERCENTILES, profile.length_percentiles,
                                                      strict=True))
    shapes = ", ".join(f"{c.label} {c.seg_len}x{c.max_segments} {c.kept:.1%}"
                       + (f" ({c.docs_cut:.0%} of documents cut)" if c.docs_cut else "")
                       for c in profile.coverage)
    read_as = ("detected from the file; --tokens to choose" if profile.tokens_detected
               else "as given")
    return "\n".join(textwrap.fill(line, width=100, subsequent_indent=" " * 11) for line in (
        f"documents  {profile.documents:,} ({profile.tokens:,} tokens), "
        f"{len(profile.class_counts)} classes: {classes}",
        f"tokens     {profile.token_mode} ({read_as})",
        f"lengths    tokens per document: {lengths}",
        f"vocabulary {profile.vocabulary:,} ids kept (min_count {profile.min_count}, "
        f"training folds) of {profile.distinct:,} distinct",
        f"segments   tokens kept: {shapes}"))


def reference_text(summary: RunSummary) -> str:
    """The reference trial in the summary: its dev F1 against the best, or how it ended."""
    trial = f"trial {summary.reference_trial}, the reference configuration"
    if summary.reference_value is None:
        return f"{trial}: {summary.reference_outcome}"
    gain = ("" if summary.best_value is None
            else f": best is {summary.best_value - summary.reference_value:+.4f}")
    return f"{summary.reference_value:.4f} ({trial}){gain}"


def print_summary(summary: RunSummary) -> None:
    """The lines a run ends with: the study, its trials, the best against the reference and
    the baseline, and where MLflow holds them."""
    states = ", ".join(f"{count} {state}" for state, count in sorted(summary.states.items()))
    pruned = summary.states.get("pruned", 0)
    finished = sum(summary.states.values())
    lines = [
        "",
        f"study          {summary.study_name}",
        f"dataset        {dataset_text(summary.dataset)}",
        f"this run       {summary.trials_this_run} trials in {duration(summary.seconds)}"
        + (f"; ended early: {summary.ended_early}" if summary.ended_early else ""),
        f"all trials     {states}"
        + (f" ({100 * pruned / finished:.0f}% pruned)" if finished else ""),
    ]
    if summary.best_value is not None:
        lines.append(f"best dev F1    {summary.best_value:.4f} (trial {summary.best_trial})")
    if summary.reference_trial is not None:
        lines.append(f"reference      {reference_text(summary)}")
    for row in summary.promotions:
        gained = "not complete" if row.gain is None else f"{row.gain:+.4f} dev F1"
        lines.append(f"promoted       trial {row.paused}, resumed by trial {row.promoted}: "
                     f"{gained} in {duration(row.seconds)}")
    verdict = versus_baseline(summary.best_value, summary.baseline, maximize=summary.maximize)
    if summary.baseline is not None:
        lines.append(f"baseline       {baseline_text(summary.baseline)}: {verdict}")
    if summary.on_dev is not None:
        lines.append(f"on dev         {on_dev_text(summary.on_dev, summary.study_name)}")
    if summary.best_params:
        lines.append("best params    " + ", ".join(
            f"{k}={short(v)}" for k, v in summary.best_params.items()))
    lines.append(f"MLflow         {summary.tracking_uri}, parent run {summary.parent_run_id}")
    if summary.runs_view:
        local = "" if summary.tracking_uri.startswith("http") else (
            f" (after: mlflow ui --backend-store-uri {summary.tracking_uri})")
        lines.append(f"runs in the UI {summary.runs_view}{local}")
    if summary.delayed or summary.waiting:
        lines.append("MLflow writes  " + delayed_text(summary))
    if summary.not_logged:
        lines.append(f"warning        {len(summary.not_logged)} MLflow writes failed: "
                     + "; ".join(summary.not_logged[:3]))
    if summary.registered is not None:
        lines.append(f"registered     {registered_text(summary.registered)}")
    if summary.register_warning is not None:
        lines.append(f"warning        {summary.register_warning}")
    typer.echo("\n".join(lines))



def delayed_text(summary: RunSummary) -> str:
    """What the journal did for the run: writes kept while the server was away, sent later."""
    kept = f"{summary.delayed} kept while the server was away"
    if not summary.waiting:
        return f"{kept}; all {summary.replayed} sent since, in order"
    return (f"{kept}; {summary.waiting} still wait in {summary.journal} "
            "(`han-search sync` sends them)")
