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


@dataclass
class CostModel:
    """An epoch's seconds for a configuration before it runs: its modeled arithmetic
    (han.cost.workload) at the seconds per unit the session's trials were timed at (each
    trial's first-batches estimate). Silent until a trial was timed."""

    resolved: ResolvedRun
    vocabulary: int
    rates: list[float] = field(default_factory=list)

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

    def observe(self, params: dict[str, Any], estimate: EpochEstimate) -> None:
        """A trial's timed estimate: the seconds per unit of this machine and data."""
        units = self.units(params)
        if units > 0 and estimate.seconds > 0:
            self.rates.append(estimate.seconds / units)

    def seconds(self, params: dict[str, Any]) -> float | None:
        """The predicted epoch, at the median rate seen; None before any trial was timed."""
        if not self.rates:
            return None
        return statistics.median(self.rates) * self.units(params)


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
        """Why no configuration of the space fits the time left: the cheapest one's epoch,
        as predicted, exceeds it (None: something fits, or nothing is known yet)."""
        left = self.budget.left()
        cheapest = _cheapest(distributions(self.resolved))
        seconds = self.cost.seconds(cheapest)
        if left is None or seconds is None or seconds <= left:
            return None
        return (f"the {duration(left)} of --timeout left hold no epoch of the space's "
                f"cheapest configuration (about {duration(seconds)})")


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

