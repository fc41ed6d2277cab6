"""The Optuna objective: suggest, build configs, train with a reporting callback, return F1."""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import optuna
from sklearn.metrics import confusion_matrix

from han.batching import DataCache, EncodedSplit, prepare
from han.config import DataConfig, HANConfig, TrainConfig
from han.cost import EpochEstimate
from han.files import WriteFailed, folder_made
from han.io import Corpus
from han.metrics import above_chance, chance_f1
from han.model import config_for
from han.train import (
    EpochMetrics,
    NonFiniteLossError,
    Report,
    TrainingInterrupted,
    TrainResult,
    train,
)
from search import records
from search.budget import Budget, StoppedBeforeAnEpoch, TrialEstimate, TrialSkipped
from search.datasets import trial_inputs
from search.dev_scores import TRIAL_ARTIFACT, DevOutputs
from search.pruners import decision
from search.records import DatasetRecord, Key, Outcome, RunState, Tag, TrialRecord
from search.reports import confusion_figure, evaluation_report
from search.storage import retry_stale_trial
from search.studyspec import StudySpec, split_settings, suggest
from search.tracking import CHECKPOINT_ARTIFACT, RunHandle, Tracker


@dataclass(kw_only=True)
class SearchContext:
    """What every trial of one process shares."""

    spec: StudySpec
    corpus: Corpus
    tracker: Tracker
    parent_run_id: str
    work_dir: Path
    device: str
    seed: int | None = None
    embeddings: Path | None = None
    run_tags: dict[str, str] = field(default_factory=dict)
    on_start: Callable[[optuna.Trial, dict[str, Any]], None] | None = None
    on_epoch: Callable[[optuna.Trial, EpochMetrics], None] | None = None
    # Reports inside an epoch (its end is on_epoch's).
    on_report: Callable[[optuna.Trial, Report], None] | None = None
    should_stop: Callable[[], bool] | None = None
    # Parsed and encoded data shared by the process's trials (one word2vec parse, one
    # vocabulary per fold split).
    cache: DataCache = field(default_factory=DataCache)
    # --timeout: trials that cannot fit are skipped, the running one stops at it.
    budget: Budget = field(default_factory=lambda: Budget(None))
    on_estimate: Callable[[optuna.Trial, TrialEstimate], None] | None = None
    # The training file as an MLflow dataset (None: trials log no dataset inputs).
    dataset: DatasetRecord | None = None


@dataclass(frozen=True, kw_only=True)
class TrialBuild:
    """One trial's encoded data and configurations."""

    split: EncodedSplit
    model_config: HANConfig
    data_config: DataConfig
    train_config: TrainConfig

    def params(self) -> dict[str, Any]:
        """Every setting, searched and fixed, as the run's params."""
        return asdict(self.model_config) | asdict(self.data_config) | asdict(self.train_config)


def build_configs(params: dict[str, Any], ctx: SearchContext
                  ) -> tuple[dict[str, Any], DataConfig, TrainConfig]:
    model_kwargs, data_kwargs, train_kwargs = split_settings({**ctx.spec.fixed, **params})
    train_kwargs["device"] = ctx.device
    if ctx.seed is not None:
        train_kwargs["seed"] = ctx.seed
    return model_kwargs, DataConfig(**data_kwargs), TrainConfig(**train_kwargs)


def build_trial(params: dict[str, Any], ctx: SearchContext) -> TrialBuild:
    model_kwargs, data_config, train_config = build_configs(params, ctx)
    split = prepare(ctx.corpus, data_config, embeddings=ctx.embeddings,
                    embed_dim=model_kwargs.get("embed_dim", HANConfig.embed_dim),
                    label_names=ctx.spec.label_names, cache=ctx.cache)
    model_config = config_for(split, **model_kwargs)
    return TrialBuild(split=split, model_config=model_config, data_config=data_config,
                      train_config=train_config)


def objective(trial: optuna.Trial, ctx: SearchContext) -> float:
    params = suggest(trial, ctx.spec.space)
    if ctx.on_start is not None:
        ctx.on_start(trial, params)
    built = build_trial(params, ctx)
    records.set_max_epochs(trial, built.train_config.epochs,
                           epoch_docs=len(built.split.train_docs))
    # A retry of a trial whose worker died resumes from that trial's last finished epoch.
    retry_of = TrialRecord.of(trial).retry_of
    origin = trial.number if retry_of is None else retry_of
    checkpoint_dir = ctx.work_dir / ctx.spec.name / f"trial-{origin}"
    watch = BudgetWatch(trial, ctx, epochs=built.train_config.epochs)
    with _writes_of(trial), ctx.tracker.trial_run(
            trial, study_name=ctx.spec.name, parent_run_id=ctx.parent_run_id,
            params=built.params(), tags=ctx.run_tags) as run, _removed_if_pruned(checkpoint_dir):
        folder_made(checkpoint_dir, under=ctx.work_dir, what="the checkpoint")
        if retry_of is not None:
            run.set_tags({Tag.RETRY_OF_TRIAL: retry_of})
        if ctx.dataset is not None:
            run.log_datasets(trial_inputs(ctx.dataset, built.split, built.data_config))
        try:
            result = train(built.split, model_config=built.model_config,
                           data_config=built.data_config, train_config=built.train_config,
                           checkpoint_dir=checkpoint_dir,
                           on_epoch=_epoch_logger(trial, run, ctx),
                           on_report=_reporter(trial, run, ctx, watch,
                                               classes=built.split.num_classes,
                                               batch_size=built.train_config.batch_size),
                           should_stop=watch.should_stop, resume=retry_of is not None,
                           on_estimate=watch.estimated)
        except NonFiniteLossError as diverged:
            raise optuna.TrialPruned(f"not learning: diverged, {diverged}") from diverged
        except TrainingInterrupted as stopped:
            result = watch.kept(stopped)
        uploaded = _log_complete(trial, run, result, built.split)
        if watch.stop_reason is not None:
            run.finish_as(RunState.STOPPED, watch.stop_reason)
    if uploaded:
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
    return result.best_dev_f1


class BudgetWatch:
    """One trial under the run's budget: admits it on its estimate, stops it at --timeout
    (at the next batch) or at the report past its share, and keeps its best epoch."""

    def __init__(self, trial: optuna.Trial, ctx: SearchContext, *, epochs: int) -> None:
        self.trial, self.ctx, self.epochs = trial, ctx, epochs
        self.started = ctx.budget.clock()
        self.stop_reason: str | None = None

    def estimated(self, epoch: EpochEstimate) -> None:
        """The estimate after the first batches: skip the trial when it cannot fit."""
        try:
            estimate = self.ctx.budget.admit(epoch, self.epochs)
        except TrialSkipped as skipped:
            records.set_outcome(self.trial, Outcome.SKIPPED, f"skipped: {skipped}")
            raise TrialSkipped(f"skipped: {skipped}") from None
        if self.ctx.on_estimate is not None:
            self.ctx.on_estimate(self.trial, estimate)

    def should_stop(self) -> bool:
        """At a batch boundary: a signal (the user's stop) or --timeout reached."""
        if self.ctx.should_stop is not None and self.ctx.should_stop():
            return True
        if self.ctx.budget.expired():
            self.stop_reason = "stopped at --timeout"
            return True
        return False

    def at_report(self, metrics: EpochMetrics) -> bool:
        """After an epoch's report: True to stop here, before an epoch the budget cannot
        hold (the last epoch ends the trial anyway)."""
        if metrics.epoch >= self.epochs:
            return False
        self.stop_reason = self.ctx.budget.stop_at_report(self.started, metrics.epoch_seconds)
        return self.stop_reason is not None

    def kept(self, stopped: TrainingInterrupted) -> TrainResult:
        """The result of a trial the budget stopped mid-epoch: its best epoch so far. A
        user's stop, or a stop before any epoch ended, goes on as an interruption."""
        result = stopped.result
        if self.stop_reason is None:
            raise stopped
        reason = f"{self.stop_reason} ({stopped})"
        if result is None or result.best_epoch == 0:
            records.set_outcome(self.trial, Outcome.STOPPED, reason)
            self.stop_reason = None
            raise StoppedBeforeAnEpoch(f"{reason}, before its first epoch ended") from stopped
        self.stop_reason = f"{reason}; best epoch {result.best_epoch} kept"
        records.set_outcome(self.trial, Outcome.STOPPED, self.stop_reason)
        return result


def _epoch_logger(trial: optuna.Trial, run: RunHandle,
                  ctx: SearchContext) -> Callable[[EpochMetrics], None]:
    """Each epoch: its metrics on the run (step = epoch) and the epochs done on the trial."""

    def on_epoch(metrics: EpochMetrics) -> None:
        run.log_metrics(metrics.as_dict(), step=metrics.epoch)
        records.set_epochs_done(trial, metrics.epoch)
        if ctx.on_epoch is not None:
            ctx.on_epoch(trial, metrics)

    return on_epoch


def _reporter(trial: optuna.Trial, run: RunHandle, ctx: SearchContext,
              watch: BudgetWatch, *, classes: int,
              batch_size: int) -> Callable[[Report], bool]:
    """Each report (step = training documents seen): the value and its noise on the run and
    to Optuna; pruned when the pruner says so or, at an epoch's end, when the trial is not
    learning; at an epoch's end, stop when the budget cannot hold another epoch."""

    def on_report(report: Report) -> bool:
        run.log_metrics({Key.REPORTED_DEV_F1: report.dev_macro_f1,
                         Key.REPORTED_DEV_F1_NOISE: report.dev_macro_f1_noise},
                        step=report.step)
        # The noise first: the pruner reads it beside the value.
        records.add_report_noise(trial, report.step, report.dev_macro_f1_noise)
        trial.report(report.dev_macro_f1, report.step)
        if not report.end_of_epoch and ctx.on_report is not None:
            ctx.on_report(trial, report)
        if report.epoch_metrics is not None:
            stop_if_not_learning(report.epoch_metrics, classes=classes,
                                 updates=report.docs_seen // batch_size)
        # The last epoch's report ends the trial anyway: pruning it there would only throw
        # away a finished trial's result.
        last = report.end_of_epoch and report.epoch >= watch.epochs
        if not last and trial.should_prune():
            raise _pruned(trial, run, report)
        if report.epoch_metrics is not None and watch.at_report(report.epoch_metrics):
            records.set_outcome(trial, Outcome.STOPPED, watch.stop_reason or "")
            return True
        return False

    return on_report


# A trial whose dev loss is within this share of ln C after an epoch has learned nothing a
# uniform guess does not know: not even the class shares (which score below ln C).
UNIFORM_LOSS_SHARE = 0.99
# A model at ln C after a handful of optimiser updates has simply not begun: on a few hundred
# documents an epoch is a dozen updates, and a configuration that ends best can still be at
# ln C after its first (seen on a 96-document corpus at 5 updates an epoch).
MIN_UPDATES_JUDGED = 50


def stop_if_not_learning(metrics: EpochMetrics, *, classes: int, updates: int) -> None:
    """Prune a trial whose dev loss, after an epoch, is not finite, or, after at least
    MIN_UPDATES_JUDGED optimiser `updates`, is still at the uniform guess's ln C while its dev
    macro-F1 is no better than a guess's: more epochs of it are wasted time, the study's
    first trial included. (A loss above ln C alone is no proof: a model that ranks well but
    is overconfident where it errs has one.)"""
    uniform = math.log(classes)
    if math.isfinite(metrics.dev_loss) and (
            updates < MIN_UPDATES_JUDGED
            or metrics.dev_loss < UNIFORM_LOSS_SHARE * uniform
            or above_chance(metrics.dev_macro_f1, metrics.dev_macro_f1_noise, classes)):
        return
    raise optuna.TrialPruned(
        f"not learning: dev loss {metrics.dev_loss:.3f} after epoch {metrics.epoch}, a "
        f"uniform guess's is ln {classes} = {uniform:.3f} (dev F1 "
        f"{metrics.dev_macro_f1:.4f}, a guess's {chance_f1(classes):.4f})")


def _pruned(trial: optuna.Trial, run: RunHandle, report: Report) -> optuna.TrialPruned:
    """The pruning of a trial at `report`, with the comparison that decided it (when its
    pruner says) on the trial and its MLflow run."""
    scored = "" if report.end_of_epoch else f" on {report.dev_docs:,} dev docs"
    where = f"at {report.step:,} documents, epoch {report.epoch}"
    comparison = decision(trial.study.pruner, trial.number)
    if comparison is None:
        return optuna.TrialPruned(f"{where} (dev F1 {report.dev_macro_f1:.4f}{scored})")
    records.set_pruned_by(trial, asdict(comparison))
    run.set_tags({f"{Tag.PRUNED_BY_PREFIX}{key}": value
                  for key, value in asdict(comparison).items()})
    return optuna.TrialPruned(f"{where}{scored}: {comparison.describe()}")


@contextmanager
def _writes_of(trial: optuna.Trial) -> Iterator[None]:
    """A write the filesystem refused during the trial names it, for the user; the trial
    fails with the refusal as its reason and the run stops (the user must act). Its settings
    are not to blame: the next run trains them again, from the last epoch the work dir kept."""
    try:
        yield
    except WriteFailed as refused:
        records.set_reason(trial, str(refused))  # also when MLflow could not start its run
        retry_stale_trial(trial.study, trial.study.get_trials(deepcopy=False)[trial.number])
        raise refused.of(f"trial {trial.number}") from refused


@contextmanager
def _removed_if_pruned(checkpoint_dir: Path) -> Iterator[None]:
    """A pruned trial's training state is not needed again; an interrupted or failed one's
    is kept, for a retry to resume from."""
    try:
        yield
    except optuna.TrialPruned:
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
        raise


def _log_complete(trial: optuna.Trial, run: RunHandle, result: TrainResult,
                  split: EncodedSplit) -> bool:
    """The best checkpoint and the best epoch's evaluation, on the run and the trial.

    Returns whether the checkpoint reached MLflow; one that did not stays where the trial
    records it.
    """
    confusion = confusion_matrix(result.dev_labels, result.dev_predictions,
                                 labels=list(range(split.num_classes)))
    records.set_dev_confusion(trial, confusion.tolist())
    uploaded = run.log_artifact(result.checkpoint_path,
                                artifact_path=str(Path(CHECKPOINT_ARTIFACT).parent))
    if not uploaded:
        records.set_local_checkpoint(trial, result.checkpoint_path)
    run.log_text(evaluation_report(result.dev_labels, result.dev_predictions,
                                   split.num_classes, split.label_names),
                 "evaluation/classification_report.txt")
    figure = confusion_figure(confusion)
    run.log_figure(figure, "evaluation/confusion_matrix.png")
    plt.close(figure)
    if result.dev_probabilities is not None:  # for blending with the baseline (search/blend.py)
        DevOutputs(docs=split.dev_docs, labels=result.dev_labels,
                   values=result.dev_probabilities).log(run, TRIAL_ARTIFACT)
    run.set_tags({Tag.BEST_EPOCH: result.best_epoch, Tag.STOP_REASON: result.stop_reason,
                  Tag.RESUMED_FROM_EPOCH: result.resumed_from_epoch})
    run.log_metrics({Key.BEST_DEV_F1: result.best_dev_f1}, step=result.best_epoch)
    return uploaded
