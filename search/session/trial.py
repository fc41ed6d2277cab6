"""The Optuna objective: suggest, build the trial, train with a callback per epoch and per
report (which may stop it), write how it ended (search.session.outcome), return its F1."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import optuna

from han.dev_reports import EpochMetrics, Report
from han.files import folder_made
from han.stopping import Stop, StopReason
from han.train import train
from search import records
from search.pruners import Comparison, decision
from search.records import Key, Tag, TrialRecord
from search.session.budget import Budget
from search.session.draws import CostModel
from search.session.learning import stop_if_not_learning
from search.session.outcome import conclude, writes_of
from search.session.progress import Progress
from search.session.shared_state import fetch, shared, this_worker, upload
from search.session.watch import BudgetWatch, PauseRule
from search.setup.build import build_trial
from search.setup.resolve import ResolvedRun
from search.stores.datasets import trial_inputs
from search.stores.tracking import RunHandle, Tracker
from search.studyfile.space import suggest


@dataclass(kw_only=True)
class TrialContext:
    """What every trial of one session shares: the resolved run, its stores and parent run,
    where trials keep their training state, the budget, the user's stop (a signal) and who
    watches."""

    resolved: ResolvedRun
    tracker: Tracker
    parent_run_id: str
    work_dir: Path
    # --timeout: trials that cannot fit are skipped, the running one stops at it.
    budget: Budget = field(default_factory=lambda: Budget(None))
    should_stop: Callable[[], bool] | None = None
    progress: Progress | None = None
    # Whether a trial whose share is spent pauses (search.session.promotion); None: never.
    pause: PauseRule | None = None
    # Learns each trial's cost from its timed first batches (search.session.draws).
    cost: CostModel | None = None


def objective(trial: optuna.Trial, ctx: TrialContext) -> float:
    params = suggest(trial, ctx.resolved.spec.space)
    built = build_trial(params, ctx.resolved)
    epochs = built.train_config.epochs
    records.set_max_epochs(trial, epochs, epoch_docs=len(built.split.train_docs))
    if ctx.progress is not None:
        ctx.progress.trial_started(trial, params)
    # A retry of a trial whose worker died, or a promoted trial, resumes from the last
    # finished epoch of the trial it continues.
    record = TrialRecord.of(trial)
    origin = trial.number if record.origin is None else record.origin
    checkpoint_dir = ctx.work_dir / ctx.resolved.name / f"trial-{origin}"
    records.set_worker(trial, this_worker())
    sharing = shared(ctx.tracker.tracking_uri)
    promoted = record.promoted_from is not None
    watch = BudgetWatch(trial, ctx.budget, epochs=epochs, user_stop=ctx.should_stop,
                        progress=ctx.progress, promoted=promoted,
                        pause=None if promoted else ctx.pause,
                        on_estimate=None if ctx.cost is None else partial(ctx.cost.observe,
                                                                          params))
    with writes_of(trial), ctx.tracker.trial_run(
            trial, study_name=ctx.resolved.name, parent_run_id=ctx.parent_run_id,
            params=built.params(), tags=ctx.resolved.tags,
            reopen=_paused_run(trial, record.promoted_from)) as run:
        folder_made(checkpoint_dir, under=ctx.work_dir, what="the checkpoint")
        if sharing and record.origin is not None:  # it may have trained on another machine
            fetch(ctx.tracker, trial.study, record.origin, checkpoint_dir)
        if record.retry_of is not None:
            run.set_tags({Tag.RETRY_OF_TRIAL: record.retry_of})
        if promoted:
            run.set_tags({Tag.PROMOTED_TRIAL: trial.number})
        if not promoted:
            run.log_datasets(trial_inputs(ctx.resolved.dataset, built.split,
                                          built.data_config))
        reporter = Reporter(trial, run, watch, progress=ctx.progress,
                            classes=built.split.num_classes,
                            batch_size=built.train_config.batch_size,
                            epoch_docs=len(built.split.train_docs),
                            resumed=record.origin is not None)
        result = train(built.split, model_config=built.model_config,
                       data_config=built.data_config, train_config=built.train_config,
                       checkpoint_dir=checkpoint_dir,
                       on_epoch=_epoch_logger(trial, run, ctx.progress,
                                              checkpoint_dir if sharing else None),
                       on_report=reporter,
                       should_stop=watch.should_stop, resume=record.origin is not None,
                       on_estimate=watch.estimated)
        return conclude(trial, run, result, split=built.split, checkpoint_dir=checkpoint_dir,
                        pruned_by=reporter.pruned_by)


def _paused_run(trial: optuna.Trial, paused: int | None) -> str | None:
    """The MLflow run of the paused trial a promoted trial resumes (None: no promotion)."""
    if paused is None:
        return None
    return TrialRecord.of(trial.study.get_trials(deepcopy=False)[paused]).run_id


def _epoch_logger(trial: optuna.Trial, run: RunHandle, progress: Progress | None,
                  shared_from: Path | None) -> Callable[[EpochMetrics], None]:
    """Each epoch: its metrics on the run (step = epoch), the epochs done on the trial, and
    the training state on the run when it is `shared_from` that folder."""

    def on_epoch(metrics: EpochMetrics) -> None:
        run.log_metrics(metrics.as_dict(), step=metrics.epoch)
        records.set_epochs_done(trial, metrics.epoch)
        if shared_from is not None:
            upload(trial, run, shared_from, metrics.epoch)
        if progress is not None:
            progress.epoch_done(trial, metrics)

    return on_epoch


class Reporter:
    """Each report (step = training documents seen): the value and its noise on the run and
    to Optuna; a stop when the pruner says so (`pruned_by` then holds its comparison, when it
    explains itself) or, at an epoch's end, when the trial is not learning or the budget
    cannot hold another epoch."""

    def __init__(self, trial: optuna.Trial, run: RunHandle, watch: BudgetWatch, *,
                 progress: Progress | None, classes: int, batch_size: int, epoch_docs: int,
                 resumed: bool) -> None:
        self.trial, self.run, self.watch, self.progress = trial, run, watch, progress
        self.classes, self.batch_size = classes, batch_size
        self.epoch_docs, self.resumed = epoch_docs, resumed
        self.pruned_by: Comparison | None = None

    def __call__(self, report: Report) -> Stop | None:
        self.run.log_metrics({Key.REPORTED_DEV_F1: report.dev_macro_f1,
                              Key.REPORTED_DEV_F1_NOISE: report.dev_macro_f1_noise},
                             step=report.step)
        # The noise first: the pruner reads it beside the value.
        records.add_report_noise(self.trial, report.step, report.dev_macro_f1_noise)
        self.trial.report(report.dev_macro_f1, report.step)
        if not report.end_of_epoch and self.progress is not None:
            self.progress.reported(self.trial, report)
        metrics = report.epoch_metrics
        if metrics is not None:
            stuck = stop_if_not_learning(metrics, classes=self.classes,
                                         updates=report.docs_seen // self.batch_size)
            if stuck is not None:
                return stuck
        # The budget's word first (a pruning still comes before it), as the report finds the
        # clock.
        budget_stop = None if metrics is None else self.watch.at_report(metrics)
        # The last epoch's report ends the trial anyway: pruning it there would only throw
        # away a finished trial's result. A promoted trial is the study's best: not pruned.
        last = report.end_of_epoch and report.epoch >= self.watch.epochs
        if not last and not self.watch.promoted:
            # How far the trial could still go, for a pruner that projects its trend.
            records.set_horizon(self.trial, self.watch.documents_left(
                report.docs_seen, self.epoch_docs, resumed=self.resumed))
            if self.trial.should_prune():
                return self._pruned(report)
        return budget_stop

    def _pruned(self, report: Report) -> Stop:
        """The pruning at `report`, with the comparison that decided it when its pruner says."""
        scored = "" if report.end_of_epoch else f" on {report.dev_docs:,} dev docs"
        where = f"at {report.step:,} documents, epoch {report.epoch}"
        self.pruned_by = decision(self.trial.study.pruner, self.trial.number)
        if self.pruned_by is None:
            return Stop(StopReason.PRUNED, f"{where} (dev F1 {report.dev_macro_f1:.4f}{scored})")
        return Stop(StopReason.PRUNED, f"{where}{scored}: {self.pruned_by.describe()}")
