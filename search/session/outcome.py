"""How a trial ended, written in one place: its Optuna state, the budget's mark on it
(skipped, stopped) and its reason on the Optuna trial, and its state and reason on its MLflow
run; the complete trial's checkpoint and evaluation uploaded.

A trial ends in one of three ways. Its training stopped for one of han.stopping's reasons
(`conclude`: complete, pruned, or failed with nothing kept); or the filesystem refused a
write (`writes_of`: the user must act, and its settings are tried again); or another
failure left it (an exception: its MLflow run ends failed, its reason on the trial too, as
search.stores.tracking's trial runs do).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import optuna
from optuna.trial import TrialState
from sklearn.metrics import confusion_matrix

from han.batching import EncodedSplit
from han.errors import WriteFailed
from han.stopping import StopReason
from han.train import TrainResult
from search import records
from search.errors import TrialStopped
from search.pruners import Comparison
from search.records import Key, Outcome, RunState, Tag
from search.session.shared_state import discard
from search.stores.dev_outputs import TRIAL_ARTIFACT, DevOutputs
from search.stores.optuna_storage import retry_stale_trial
from search.stores.tracking import CHECKPOINT_ARTIFACT, RunHandle
from search.views.figures import confusion_figure, evaluation_report

_BUDGET = (StopReason.BUDGET_SHARE, StopReason.TIMEOUT)


@dataclass(frozen=True)
class Ending:
    """How a trial ends: its Optuna state, its MLflow run's, the budget's mark on it (None:
    none) and the reason (None: it ran its course)."""

    state: TrialState
    run_state: RunState
    outcome: Outcome | None = None
    reason: str | None = None


def ending_of(result: TrainResult) -> Ending:
    """The ending of a trial whose training returned `result`."""
    stop = result.stop
    reason = stop.describe()
    if stop.reason in (StopReason.EARLY_STOPPING, StopReason.EPOCH_LIMIT):
        return Ending(TrialState.COMPLETE, RunState.COMPLETE)
    if stop.reason is StopReason.PAUSED:
        return Ending(TrialState.COMPLETE, RunState.PAUSED, Outcome.PAUSED, reason)
    if stop.reason in _BUDGET and result.best_epoch > 0:
        # Cut inside an epoch, the partial epoch is lost: its best epoch is the result.
        kept = "" if stop.where is None else f"; best epoch {result.best_epoch} kept"
        return Ending(TrialState.COMPLETE, RunState.STOPPED, Outcome.STOPPED, reason + kept)
    if stop.reason in _BUDGET:
        return Ending(TrialState.FAIL, RunState.INTERRUPTED, Outcome.STOPPED,
                      f"{reason}, before its first epoch ended")
    if stop.reason is StopReason.SKIPPED:
        return Ending(TrialState.PRUNED, RunState.SKIPPED, Outcome.SKIPPED, reason)
    if stop.reason in (StopReason.PRUNED, StopReason.NOT_LEARNING):
        return Ending(TrialState.PRUNED, RunState.PRUNED, reason=reason)
    return Ending(TrialState.FAIL, RunState.INTERRUPTED, reason=reason)


def conclude(trial: optuna.Trial, run: RunHandle, result: TrainResult, *,
             split: EncodedSplit, checkpoint_dir: Path,
             pruned_by: Comparison | None = None) -> float:
    """Write how the trial ended; its value when it is complete (its checkpoint and
    evaluation on its run), else the exception Optuna records the ending by: TrialPruned,
    or TrialStopped (Optuna FAIL). A pruned trial's training state is not needed again; a
    failed one's is kept, for a retry to resume from."""
    ending = ending_of(result)
    if ending.outcome is not None:
        records.set_outcome(trial, ending.outcome, ending.reason or "")
    elif ending.reason is not None:
        records.set_reason(trial, ending.reason)
    if pruned_by is not None and ending.state == TrialState.PRUNED:
        records.set_pruned_by(trial, asdict(pruned_by))
        run.set_tags({f"{Tag.PRUNED_BY_PREFIX}{key}": value
                      for key, value in asdict(pruned_by).items()})
    if ending.state == TrialState.COMPLETE:
        # Uploaded first: a write the disk refuses on the way fails the trial instead.
        uploaded = _log_complete(trial, run, result, split)
        run.finish_as(ending.run_state, ending.reason)
        # A paused trial's training state is what its promotion resumes from.
        if uploaded and ending.outcome is not Outcome.PAUSED:
            shutil.rmtree(checkpoint_dir, ignore_errors=True)
            discard(trial, run)
        return result.best_dev_f1
    run.finish_as(ending.run_state, ending.reason)
    if ending.state == TrialState.PRUNED:
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
        discard(trial, run)
        raise optuna.TrialPruned(ending.reason)
    if result.stop.reason is StopReason.INTERRUPTED:
        # The user's stop (Ctrl-C, SIGTERM) is no verdict on the settings: the next run, on
        # any machine, takes the trial up from its last finished epoch before new draws.
        retry_stale_trial(trial.study, trial.study.get_trials(deepcopy=False)[trial.number],
                          counted=False)
    raise TrialStopped(ending.reason)


@contextmanager
def writes_of(trial: optuna.Trial) -> Iterator[None]:
    """A write the filesystem refused during the trial names it, for the user; the trial
    fails with the refusal as its reason and the run stops (the user must act). Its settings
    are not to blame: the next run trains them again, from the last epoch the work dir kept."""
    try:
        yield
    except WriteFailed as refused:
        records.set_reason(trial, str(refused))  # also when MLflow could not start its run
        retry_stale_trial(trial.study, trial.study.get_trials(deepcopy=False)[trial.number])
        raise refused.of(f"trial {trial.number}") from refused


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
    if result.dev_probabilities is not None:  # for blending with the baseline (export.blend)
        DevOutputs(docs=split.dev_docs, labels=result.dev_labels,
                   values=result.dev_probabilities).log(run, TRIAL_ARTIFACT)
    run.set_tags({Tag.BEST_EPOCH: result.best_epoch, Tag.STOP_REASON: result.stop.reason,
                  Tag.RESUMED_FROM_EPOCH: result.resumed_from_epoch})
    run.log_metrics({Key.BEST_DEV_F1: result.best_dev_f1}, step=result.best_epoch)
    return uploaded
