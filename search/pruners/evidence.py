"""`evidence`: successive halving that prunes only beyond the noise of the reports it
compares."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from han.metrics import NOISE_MULTIPLE, chance_f1
from search import records
from search.pruners.field_percentile import FIELD


@dataclass(frozen=True, kw_only=True)
class Comparison:
    """How a trial's report at a rung stood against the reports of the others there: its
    value and noise, the bar (the value of the last report the rung keeps) and its noise,
    and whether the gap is evidence enough to prune."""

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

    def describe(self) -> str:
        return (f"dev F1 {self.value:.4f} ± {self.noise:.4f} below the bar "
                f"{self.bar:.4f} ± {self.bar_noise:.4f} by more than {self.margin:.4f} "
                f"(rank {self.rank} of {self.reports}, the best {self.kept} go on)")


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
        if any(rung <= earlier < step for earlier in trial.intermediate_values):
            return False  # decided at this rung's first report
        comparison = self.compare(study, trial, step=step, rung=rung, chance=chance)
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
