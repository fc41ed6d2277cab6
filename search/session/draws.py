"""What a session lets its sampler draw: configurations whose epoch fits a trial's share of
the time left, as the session's cost model predicts it, and whose learning rate still has a
useful share of its start after the first epoch (search.samplers.ShapedSampler draws again
what these rules refuse)."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from han.config import HANConfig
from han.cost import EpochEstimate, Shape, workload
from han.model import trainable_parameters
from search.formatting import duration
from search.samplers import ShapedSampler
from search.session.budget import Budget
from search.setup.build import build_configs
from search.setup.resolve import ResolvedRun
from search.studyfile.space import CategoricalParam, FloatParam, IntParam

# A learning rate that falls below this share of its start within the first epoch has
# decayed away before the trial could learn (a decay of 0.67 every 52 steps leaves 9% of it
# after an epoch of 350 steps).
MIN_FIRST_EPOCH_LR = 0.25
# The sizes a draw that fits nowhere is brought down in, in this order.
SHRINKABLE = ("word_hidden", "max_segments", "seg_len", "sent_hidden")


# The share of a timed epoch taken to grow with the configuration's arithmetic; the rest grows
# with its batches (the Python loop, each recurrent step's launch, the optimiser step). On
# Reuters R8 (2 cores, fp32) an arithmetic-only model was off by 0.3x to 3.7x on the next
# trial's epoch (its seconds per unit ran from 20 to 210 ps across 15 trials); this split,
# 0.6x to 2.5x, and 0.9x to 2.6x on a later run (docs/time-budget.md).
ARITHMETIC_SHARE = 0.5


@dataclass
class CostModel:
    """An epoch's seconds for a configuration before it runs, from the session's timed
    trials (each one's first-batches estimate): a timed epoch scaled to the configuration,
    half by its modeled arithmetic (han.cost.workload) and half by its batches, the median
    of that over the trials timed. Silent until a trial was timed."""

    resolved: ResolvedRun
    vocabulary: int
    # (arithmetic units, batches, seconds) of each timed trial's epoch.
    timed: list[tuple[float, int, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        reference = self.resolved.reference_data
        fold_of, _, _ = self.resolved.cache.fold_vocabulary(self.resolved.corpus, reference)
        lengths = self.resolved.corpus.lengths
        self._train = lengths[fold_of != reference.dev_fold]
        self._dev = lengths[fold_of == reference.dev_fold]
        self._shapes: dict[tuple[Any, ...], Shape] = {}

    def shape(self, params: dict[str, Any]) -> Shape:
        model, data, train = build_configs(params, self.resolved)
        key = (tuple(sorted(model.items())), data.seg_len, data.max_segments, train.batch_size)
        if key not in self._shapes:
            config = HANConfig(vocab_size=self.vocabulary + 2,
                               num_classes=self.resolved.corpus.num_classes, **model)
            self._shapes[key] = Shape(
                seg_len=data.seg_len, max_segments=data.max_segments,
                batch_size=train.batch_size, embed_dim=config.embed_dim,
                word_hidden=config.word_hidden, sent_hidden=config.sent_hidden,
                word_layers=config.word_layers, sent_layers=config.sent_layers,
                cell=config.cell, trainable_params=trainable_parameters(config))
        return self._shapes[key]

    def units(self, params: dict[str, Any]) -> float:
        return workload(self.shape(params), self._train, self._dev)

    def batches(self, params: dict[str, Any]) -> int:
        """An epoch's batches: training ones (forward and backward) and dev ones."""
        size = self.shape(params).batch_size
        return -(-len(self._train) // size) + -(-len(self._dev) // size)

    def observe(self, params: dict[str, Any], estimate: EpochEstimate) -> None:
        """A trial's timed estimate of its epoch on this machine and data."""
        units, batches = self.units(params), self.batches(params)
        if units > 0 and batches > 0 and estimate.seconds > 0:
            self.timed.append((units, batches, estimate.seconds))

    def seconds(self, params: dict[str, Any]) -> float | None:
        """The predicted epoch; None before any trial was timed."""
        if not self.timed:
            return None
        units, batches = self.units(params), self.batches(params)
        return statistics.median(
            seconds * (ARITHMETIC_SHARE * units / timed_units
                       + (1 - ARITHMETIC_SHARE) * batches / timed_batches)
            for timed_units, timed_batches, seconds in self.timed)


def distributions(resolved: ResolvedRun) -> dict[str, BaseDistribution]:
    """The study's space as Optuna's distributions, as its trials suggest them."""
    space: dict[str, BaseDistribution] = {}
    for param in resolved.spec.space:
        if isinstance(param, CategoricalParam):
            space[param.name] = CategoricalDistribution(list(param.choices))
        elif isinstance(param, IntParam):
            space[param.name] = IntDistribution(param.low, param.high, log=param.log,
                                                step=param.step or 1)
        elif isinstance(param, FloatParam):
            space[param.name] = FloatDistribution(param.low, param.high, log=param.log,
                                                  step=param.step)
    return space


@dataclass
class DrawRules:
    """Why a configuration may not be drawn now (`__call__`), from the run's data, its
    budget and its cost model."""

    resolved: ResolvedRun
    budget: Budget
    cost: CostModel

    def __call__(self, params: dict[str, Any]) -> str | None:
        return self.decays_away(params) or self.too_long(params)

    def decays_away(self, params: dict[str, Any]) -> str | None:
        _, _, train = build_configs(params, self.resolved)
        steps = math.ceil(self.resolved.epoch_docs / train.batch_size)
        kept = train.lr_decay ** (steps // train.decay_steps)
        if kept >= MIN_FIRST_EPOCH_LR:
            return None
        return (f"the learning rate decays to {kept:.0%} of its start within the first "
                f"epoch (x {train.lr_decay:.2f} every {train.decay_steps} of {steps} steps)")

    def too_long(self, params: dict[str, Any]) -> str | None:
        limit, seconds = self.budget.limit(), self.cost.seconds(params)
        if limit is None or seconds is None or seconds <= limit:
            return None
        return f"an epoch of about {duration(seconds)} > the {duration(limit)} a trial has"

    def nothing_fits(self) -> str | None:
        """Why no new draw is worth its cost in the time left: the space's cheapest
        configuration, as predicted, has a longer epoch, or every epoch timed in this run
        was longer (None: something fits, or nothing is known yet). The second holds where
        the prediction is too low: a draw would then cost its timed batches, an Optuna trial
        and an MLflow run, only to be skipped or to train for less than the run's fastest
        epoch."""
        left = self.budget.left()
        cheapest = _cheapest(distributions(self.resolved))
        seconds = self.cost.seconds(cheapest)
        if left is None or seconds is None:
            return None
        if seconds > left:
            return (f"the {duration(left)} of --timeout left hold no epoch of the space's "
                    f"cheapest configuration (about {duration(seconds)})")
        if self.budget.below_cheapest():
            return (f"the {duration(left)} of --timeout left are less than the shortest "
                    f"epoch timed in this run ({duration(self.budget.cheapest or 0.0)})")
        return None


def _cheapest(space: dict[str, BaseDistribution]) -> dict[str, Any]:
    """Every setting at its least costly value: sizes and segments at their smallest,
    batches at their largest (fewer updates), a GRU over an LSTM."""
    cheapest: dict[str, Any] = {}
    for name, distribution in space.items():
        if isinstance(distribution, CategoricalDistribution):
            choices = list(distribution.choices)
            numbers = [c for c in choices if isinstance(c, int | float)
                       and not isinstance(c, bool)]
            if name == "batch_size" and numbers:
                cheapest[name] = max(numbers)
            elif numbers:
                cheapest[name] = min(numbers)
            else:
                cheapest[name] = "gru" if "gru" in choices else choices[0]
        elif isinstance(distribution, FloatDistribution | IntDistribution):
            cheapest[name] = distribution.low
    return cheapest


def shaped_sampler(resolved: ResolvedRun, sampler: Any, rules: DrawRules) -> ShapedSampler:
    """`sampler` drawing only what `rules` allow, over the study's space."""
    return ShapedSampler(sampler, space=distributions(resolved), refuse=rules,
                         shrinkable=SHRINKABLE)

