"""Pausing and promoting trials: a trial whose share of the budget is spent while it leads
and still improves is paused, not ended (complete with its best epoch, its training state
kept); when the time left is better spent continuing it than on a new draw, a trial
promoted from it resumes it, in its MLflow run, for as long as the time left allows.

The rule, before each new trial: the best paused trial not promoted yet is promoted when
its epoch fits the time left and either the budget is in its last PROMOTE_IN_LAST, or the
last BELOW_IN_A_ROW trials drawn since it paused all ended below it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

from han.dev_reports import EpochMetrics
from han.metrics import NOISE_MULTIPLE
from search.records import Outcome, TrialRecord
from search.session.budget import Budget
from search.session.watch import PauseRule

# The share of the budget, at its end, that paused trials may take rather than new draws.
PROMOTE_IN_LAST = 1 / 3
# Draws since a trial paused that all ended below it: the sampler is not finding better.
BELOW_IN_A_ROW = 3
# A trial improves while its best epoch is among its last this many.
IMPROVING_WITHIN = 2


def pause_rule(study: optuna.Study) -> PauseRule:
    """Whether a trial whose share is spent, with `history` its epochs so far, pauses: it
    still improves (its best epoch among its last IMPROVING_WITHIN) and it leads (its best
    dev F1 at least the study's best less twice its noise, or no trial is complete)."""

    def pause(history: list[EpochMetrics]) -> bool:
        best = max(history, key=lambda m: m.dev_macro_f1)
        if best.epoch <= history[-1].epoch - IMPROVING_WITHIN:
            return False
        values = [t.value for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                  if t.value is not None]
        noise = history[-1].dev_macro_f1_noise
        margin = NOISE_MULTIPLE * noise if math.isfinite(noise) else 0.0
        return not values or best.dev_macro_f1 >= max(values) - margin

    return pause


@dataclass(frozen=True)
class Promotion:
    """A paused trial to resume, and why now."""

    trial: FrozenTrial
    why: str


def promotion_due(study: optuna.Study, budget: Budget) -> Promotion | None:
    """The paused trial to promote before the next trial, when the rule says so."""
    left = budget.left()
    if left is None or budget.timeout is None:
        return None
    trials = study.get_trials(deepcopy=False)
    promoted = {TrialRecord.of(t).promoted_from for t in trials}
    paused = [t for t in trials if t.state == TrialState.COMPLETE and t.number not in promoted
              and TrialRecord.of(t).outcome is Outcome.PAUSED]
    if not paused:
        return None
    best = max(paused, key=lambda t: t.value or 0.0)
    if left < _epoch_seconds(best):
        return None
    if left <= PROMOTE_IN_LAST * budget.timeout:
        return Promotion(best, f"the last {PROMOTE_IN_LAST:.0%} of --timeout")
    drawn = [t for t in trials if t.number > best.number and _judged(t)]
    recent = drawn[-BELOW_IN_A_ROW:]
    if len(recent) == BELOW_IN_A_ROW and all(_reached(t) < (best.value or 0.0) for t in recent):
        return Promotion(best, f"the last {BELOW_IN_A_ROW} trials drawn ended below it")
    return None


def _judged(trial: FrozenTrial) -> bool:
    """A trial the sampler drew that ran far enough to be compared: complete or pruned, not
    skipped, no promotion."""
    record = TrialRecord.of(trial)
    return (trial.state in (TrialState.COMPLETE, TrialState.PRUNED)
            and record.outcome is not Outcome.SKIPPED and record.promoted_from is None)


def _reached(trial: FrozenTrial) -> float:
    """The best dev F1 a trial reached: its value, or its best report when pruned."""
    if trial.value is not None:
        return trial.value
    return max(trial.intermediate_values.values(), default=0.0)


def _epoch_seconds(trial: FrozenTrial) -> float:
    """A trial's time per epoch, from its duration and epochs."""
    record = TrialRecord.of(trial)
    seconds = trial.duration.total_seconds() if trial.duration else 0.0
    return seconds / max(record.epochs_done, 1)
