"""`evidence`: successive halving that prunes only beyond the noise of the reports it
compares."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from han.metrics import NOISE_MULTIPLE, chance_f1
from search import records
from search.pruners.field_percentile import FIELD


@dataclass(frozen=True, kw_only=True)
class Comparison:
    """How a trial's report stood against a bar, and whether the gap is evidence enough to
    prune: its value and noise, the bar and its noise. Rule "rung": the bar is the last
    report a rung of successive halving keeps. Rule "best curve": the bar is the study's
    best trial's report at the same documents (`best_trial`), and the trial's own trend,
    carried over the documents its share still holds, reaches `projected` at most, short
    of that trial's value (`target`)."""

    step: int
    value: float
    noise: float
    bar: float
    bar_noise: float
    # The gap the trial must fall short of the bar by: noise_multiple x the noise of the
    # difference of the two reports.
    margin: float
    rank: int  # 1: the best report at the rung
    reports: int  # the trial's included
    kept: int  # the best `kept` reports go on whatever the noise
    chance: float
    pruned: bool
    rule: str = "rung"
    best_trial: int | None = None
    projected: float | None = None
    target: float | None = None

    def describe(self) -> str:
        if self.rule == BEST_CURVE:
            return (f"dev F1 {self.value:.4f} ± {self.noise:.4f} below trial "
                    f"{self.best_trial}'s {self.bar:.4f} ± {self.bar_noise:.4f} at the same "
                    f"documents by more than {self.margin:.4f}, and its trend reaches "
                    f"{self.projected:.4f} at most within its share, short of trial "
                    f"{self.best_trial}'s {self.target:.4f}")
        return (f"dev F1 {self.value:.4f} ± {self.noise:.4f} below the bar "
                f"{self.bar:.4f} ± {self.bar_noise:.4f} by more than {self.margin:.4f} "
                f"(rank {self.rank} of {self.reports}, the best {self.kept} go on)")


BEST_CURVE = "best curve"


# The first rung lies where the study's first learning trial had gone this share of the way
# from a guess's macro-F1 to its best.
FIRST_RUNG_GAIN = 0.5


class EvidencePruner(optuna.pruners.BasePruner):
    """Successive halving that prunes only on evidence.

    Rungs lie at `min_resource` x reduction_factor^k training documents. At a rung, the
    best 1/reduction_factor of the trials that reported there go on; a trial below them is
    pruned only when its report falls short of the last one kept (the bar) by more than
    `noise_multiple` times the noise of their difference, and when the bar itself is
    clearly above the macro-F1 of a guess (1 / classes). Each report's noise is the
    standard deviation of its macro-F1 over resamples of the dev documents it scored
    (recorded by the objective), so a field of reports at chance prunes no one, and a
    small dev sample prunes less than a large one.

    `min_resource` "auto": the first rung is where learning showed in the study's first
    finished trial that learned: its first report clearly above a guess and half way from
    a guess to its best (FIRST_RUNG_GAIN), recorded on the study once found; until then no
    trial is pruned. A rung at the first report above a guess ranked how fast trials
    start: on R8 that was a quarter of an epoch, where the trial that ended best (0.90)
    stood at 0.30 and another at 0.35. No pruning either while fewer than `min_reports`
    other trials reported at the rung.
    """

    def __init__(self, *, min_resource: int | str = "auto", reduction_factor: int = 3,
                 noise_multiple: float = NOISE_MULTIPLE, min_reports: int = 2) -> None:
        if min_resource != "auto" and (not isinstance(min_resource, int) or min_resource < 1):
            raise ValueError(f"min_resource must be 'auto' or a positive number of "
                             f"documents, got {min_resource!r}")
        if reduction_factor < 2:
            raise ValueError(f"reduction_factor must be at least 2, got {reduction_factor}")
        if noise_multiple < 0 or min_reports < 1:
            raise ValueError("noise_multiple must not be negative; min_reports must be at "
                             "least 1")
        self._min_resource = min_resource
        self._eta = reduction_factor
        self._z = noise_multiple
        self._min_reports = min_reports
        # The last comparison made for each trial, for the objective to record when it prunes.
        self.decisions: dict[int, Comparison] = {}

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        step = trial.last_step
        if step is None:
            return False
        chance = _chance(study)
        first = self.first_rung(study, chance)
        if first is None or step < first:
            return False
        rung = first * self._eta ** int(math.log(step / first, self._eta) + 1e-9)
        comparison = None
        if not any(rung <= earlier < step for earlier in trial.intermediate_values):
            # The rung's first report: decided against the others there.
            comparison = self.compare(study, trial, step=step, rung=rung, chance=chance)
        if comparison is None or not comparison.pruned:
            # Too few others at the rung, or kept there: against the best trial's curve.
            comparison = against_best(study, trial, step=step, chance=chance,
                                      noise_multiple=self._z) or comparison
        if comparison is None:
            return False
        self.decisions[trial.number] = comparison
        return comparison.pruned

    def first_rung(self, study: optuna.Study, chance: float) -> int | None:
        """The first rung in training documents: `min_resource`, the one on record, or
        where the study's first finished trial that learned showed it (recorded now)."""
        if isinstance(self._min_resource, int):
            return self._min_resource
        recorded = records.first_rung(study)
        if recorded is not None:
            return int(recorded["step"])
        finished = study.get_trials(deepcopy=False,
                                    states=(TrialState.COMPLETE, TrialState.PRUNED))
        for trial in sorted(finished, key=lambda t: t.number):
            rung = self._learning_shown(trial, chance)
            if rung is not None:
                records.set_first_rung(study, rung)
                return int(rung["step"])
        return None

    def _learning_shown(self, trial: FrozenTrial, chance: float) -> dict[str, Any] | None:
        """The trial's first report clearly above a guess and FIRST_RUNG_GAIN of the way
        from a guess to its best report, or None when none is."""
        noise = records.TrialRecord.of(trial).report_noise or {}
        reports = sorted((step, value) for step, value in trial.intermediate_values.items()
                         if not math.isnan(value))
        best = max((value for _, value in reports), default=chance)
        for step, value in reports:
            if (value - self._z * noise.get(step, 0.0) > chance
                    and value - chance >= FIRST_RUNG_GAIN * (best - chance)):
                return {"step": step, "trial": trial.number, "value": value,
                        "noise": noise.get(step), "chance": chance, "best": best}
        return None

    def compare(self, study: optuna.Study, trial: FrozenTrial, *, step: int, rung: int,
                chance: float) -> Comparison | None:
        """The trial's report at `step` (its first at or past `rung`) against the others'
        at the rung; None when too few reported there."""
        field = [(t.intermediate_values[rung], _noise(t, rung))
                 for t in study.get_trials(deepcopy=False, states=FIELD)
                 if t.number != trial.number and not math.isnan(
                     t.intermediate_values.get(rung, math.nan))]
        if len(field) < self._min_reports:
            return None
        value, noise = trial.intermediate_values[step], _noise(trial, step)
        if math.isnan(value):
            value = -math.inf
        ranked = sorted([*field, (value, noise)], key=lambda report: -report[0])
        kept = max(1, len(ranked) // self._eta)
        bar, bar_noise = ranked[kept - 1]
        margin = self._z * math.hypot(noise, bar_noise)
        rank = 1 + sum(other > value for other, _ in field)
        learned = bar - self._z * bar_noise > chance
        return Comparison(step=step, value=value, noise=noise, bar=bar, bar_noise=bar_noise,
                          margin=margin, rank=rank, reports=len(ranked), kept=kept,
                          chance=chance,
                          pruned=rank > kept and learned and value < bar - margin)


def against_best(study: optuna.Study, trial: FrozenTrial, *, step: int, chance: float,
                 noise_multiple: float) -> Comparison | None:
    """The trial's report at `step` against the study's best trial's report at the same
    documents (its learning curve is on record): pruned when it is below by more than
    `noise_multiple` times the noise of the difference, the best's report is clearly above a
    guess, and the trial's own trend (the slope of its reports over the last epoch, carried
    over the documents its share still holds: its `horizon`) cannot reach the best's value.
    None when there is no best to compare with at `step`, no horizon recorded, or no trend
    yet (fewer than two reports in the last epoch)."""
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if t.value is not None and t.number != trial.number]
    horizon = records.TrialRecord.of(trial).horizon
    if not complete or horizon is None:
        return None
    best = max(complete, key=lambda t: t.value or 0.0)
    bar = best.intermediate_values.get(step)
    value = trial.intermediate_values[step]
    if bar is None or math.isnan(bar) or math.isnan(value):
        return None
    noise, bar_noise = _noise(trial, step), _noise(best, step)
    margin = noise_multiple * math.hypot(noise, bar_noise)
    slope = _slope(trial, step)
    if slope is None:
        return None
    target = float(best.value or 0.0)
    projected = value + max(0.0, slope) * horizon
    learned = bar - noise_multiple * bar_noise > chance
    pruned = (learned and value < bar - margin
              and projected + noise_multiple * noise < target)
    return Comparison(step=step, value=value, noise=noise, bar=bar, bar_noise=bar_noise,
                      margin=margin, rank=2 if value < bar else 1, reports=2, kept=1,
                      chance=chance, pruned=pruned, rule=BEST_CURVE, best_trial=best.number,
                      projected=projected, target=target)


def _slope(trial: FrozenTrial, step: int) -> float | None:
    """The trial's dev F1 gained per training document over its last epoch of reports (a
    least-squares line through them); None with fewer than two."""
    epoch_docs = records.TrialRecord.of(trial).epoch_docs or step
    points = sorted((s, v) for s, v in trial.intermediate_values.items()
                    if step - epoch_docs <= s <= step and not math.isnan(v))
    if len(points) < 2:
        return None
    steps = np.array([s for s, _ in points], dtype=float)
    values = np.array([v for _, v in points])
    return float(np.polyfit(steps, values, 1)[0])


def _noise(trial: FrozenTrial, step: int) -> float:
    return (records.TrialRecord.of(trial).report_noise or {}).get(step, 0.0)


def _chance(study: optuna.Study) -> float:
    """The macro-F1 of a guess on the study's data (0 when the study records no dataset)."""
    dataset = records.DatasetRecord.of(study)
    return 0.0 if dataset is None else chance_f1(dataset.classes)


def decision(pruner: optuna.pruners.BasePruner, trial_number: int) -> Comparison | None:
    """The comparison that `pruner` last made for a trial, when it is one that explains
    itself (EvidencePruner); taken off its record."""
    decisions = getattr(pruner, "decisions", None)
    return None if decisions is None else decisions.pop(trial_number, None)
