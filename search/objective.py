"""The Optuna objective: suggest, build configs, train with a pruning callback, return F1."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import optuna
from sklearn.metrics import confusion_matrix

from han.batching import DataCache, EncodedSplit, prepare
from han.config import DataConfig, HANConfig, TrainConfig
from han.io import Corpus
from han.model import config_for
from han.train import EpochMetrics, NonFiniteLossError, TrainingInterrupted, TrainResult, train
from search.reports import confusion_figure, evaluation_report
from search.studyspec import StudySpec, split_settings, suggest
from search.tracking import CHECKPOINT_ARTIFACT, Tracker

RUN_ID_ATTR = "mlflow_run_id"
REASON_ATTR = "reason"
RETRY_OF_ATTR = "retry_of"
RETRIES_ATTR = "retries"
LOCAL_CHECKPOINT_ATTR = "local_checkpoint"
# For the study report: the epochs a trial would run unpruned, and the best epoch's dev
# confusion matrix (rows: true class, columns: predicted), kept in Optuna so the report
# needs no MLflow download.
MAX_EPOCHS_ATTR = "max_epochs"
DEV_CONFUSION_ATTR = "dev_confusion"


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
    should_stop: Callable[[], bool] | None = None
    cache: DataCache = field(default_factory=DataCache)  # parsed/encoded data, per process


def build_configs(params: dict[str, Any], ctx: SearchContext
                  ) -> tuple[dict[str, Any], DataConfig, TrainConfig]:
    model_kwargs, data_kwargs, train_kwargs = split_settings({**ctx.spec.fixed, **params})
    train_kwargs["device"] = ctx.device
    if ctx.seed is not None:
        train_kwargs["seed"] = ctx.seed
    return model_kwargs, DataConfig(**data_kwargs), TrainConfig(**train_kwargs)


def objective(trial: optuna.Trial, ctx: SearchContext) -> float:
    params = suggest(trial, ctx.spec.space)
    if ctx.on_start is not None:
        ctx.on_start(trial, params)
    model_kwargs, data_config, train_config = build_configs(params, ctx)
    split = prepare(ctx.corpus, data_config, embeddings=ctx.embeddings,
                    embed_dim=model_kwargs.get("embed_dim", HANConfig.embed_dim),
                    label_names=ctx.spec.label_names, cache=ctx.cache)
    model_config = config_for(split, **model_kwargs)
    all_params = asdict(model_config) | asdict(data_config) | asdict(train_config)
    trial.set_user_attr(MAX_EPOCHS_ATTR, train_config.epochs)
    run_id = ctx.tracker.start_trial(
        study_name=ctx.spec.name, parent_run_id=ctx.parent_run_id,
        trial_number=trial.number, params=all_params, tags=ctx.run_tags)
    if run_id is not None:
        trial.set_user_attr(RUN_ID_ATTR, run_id)

    def on_epoch(metrics: EpochMetrics) -> None:
        ctx.tracker.log_metrics(run_id, metrics.as_dict(), step=metrics.epoch)
        trial.report(metrics.dev_macro_f1, metrics.epoch)
        if ctx.on_epoch is not None:
            ctx.on_epoch(trial, metrics)
        if trial.should_prune():
            raise optuna.TrialPruned(f"at epoch {metrics.epoch} "
                                     f"(dev F1 {metrics.dev_macro_f1:.4f})")

    # A retry of a trial whose worker died resumes from that trial's last finished epoch.
    retried = trial.user_attrs.get(RETRY_OF_ATTR)
    origin = trial.number if retried is None else retried
    if retried is not None:
        ctx.tracker.set_tags(run_id, {"retry_of_trial": retried})
    checkpoint_dir = ctx.work_dir / ctx.spec.name / f"trial-{origin}"
    try:
        result = train(split, model_config=model_config, data_config=data_config,
                       train_config=train_config, checkpoint_dir=checkpoint_dir,
                       on_epoch=on_epoch, should_stop=ctx.should_stop,
                       resume=retried is not None)
    except optuna.TrialPruned as pruned:
        _end(trial, ctx, run_id, status="KILLED", state="pruned", reason=str(pruned))
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
        raise
    except NonFiniteLossError as diverged:
        reason = f"diverged: {diverged}"
        _end(trial, ctx, run_id, status="KILLED", state="pruned", reason=reason)
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
        raise optuna.TrialPruned(reason) from diverged
    except TrainingInterrupted as interrupted:
        _end(trial, ctx, run_id, status="KILLED", state="interrupted", reason=str(interrupted))
        raise
    except Exception as error:
        _end(trial, ctx, run_id, status="FAILED", state="failed",
             reason=f"{type(error).__name__}: {error}")
        raise

    confusion = confusion_matrix(result.dev_labels, result.dev_predictions,
                                 labels=list(range(split.num_classes)))
    trial.set_user_attr(DEV_CONFUSION_ATTR, confusion.tolist())
    if _log_complete(ctx, run_id, result, split, confusion=confusion):
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
    else:
        # MLflow did not take the checkpoint: keep it where the trial records it.
        trial.set_user_attr(LOCAL_CHECKPOINT_ATTR, str(result.checkpoint_path.resolve()))
    return result.best_dev_f1


def _log_complete(ctx: SearchContext, run_id: str | None, result: TrainResult,
                  split: EncodedSplit, *, confusion: np.ndarray) -> bool:
    """The best checkpoint and the best epoch's evaluation, then the run ends FINISHED.

    Returns whether the checkpoint reached MLflow.
    """
    uploaded = ctx.tracker.log_artifact(run_id, result.checkpoint_path,
                                        artifact_path=str(Path(CHECKPOINT_ARTIFACT).parent))
    ctx.tracker.log_text(run_id, evaluation_report(result.dev_labels, result.dev_predictions,
                                                   split.num_classes, split.label_names),
                         "evaluation/classification_report.txt")
    figure = confusion_figure(confusion)
    ctx.tracker.log_figure(run_id, figure, "evaluation/confusion_matrix.png")
    plt.close(figure)
    ctx.tracker.set_tags(run_id, {"best_epoch": result.best_epoch,
                                  "stop_reason": result.stop_reason,
                                  "resumed_from_epoch": result.resumed_from_epoch})
    ctx.tracker.log_metrics(run_id, {"best_dev_macro_f1": result.best_dev_f1},
                            step=result.best_epoch)
    ctx.tracker.finish(run_id, status="FINISHED", state="complete")
    return uploaded


def _end(trial: optuna.Trial, ctx: SearchContext, run_id: str | None, *, status: str,
         state: str, reason: str) -> None:
    trial.set_user_attr(REASON_ATTR, reason)
    ctx.tracker.finish(run_id, status=status, state=state, reason=reason)
