"""A sampler that draws what fits: the wrapped sampler's draw of a whole configuration,
drawn again while a rule refuses it (an epoch the budget cannot afford, a learning rate that
decays to nothing within the first epoch), and brought down to what fits when no draw
does."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.trial import FrozenTrial

from search import records

# Why a configuration may not be drawn (None: it may).
Refusal = Callable[[dict[str, Any]], str | None]
# Draws of the wrapped sampler a trial gets before its configuration is brought down.
MAX_DRAWS = 30


class ShapedSampler(optuna.samplers.BaseSampler):
    """`base`'s draws of whole configurations over `space` (the study's distributions by
    name), redrawn while `refuse` gives a reason; after MAX_DRAWS refusals the last draw's
    sizes (`shrinkable`, in order: each categorical stepped down its choices) are brought
    down until it fits, and the trial records the change (`reshaped`).

    Optuna asks a sampler for a trial's relative parameters before its objective suggests
    any: this one answers for every parameter of the space at once, drawing those the
    wrapped sampler leaves out (its independent ones, all of them while TPE is in its random
    start) with the wrapped sampler's own `sample_independent`. Enqueued trials keep their
    parameters and are not judged.
    """

    def __init__(self, base: optuna.samplers.BaseSampler, *,
                 space: Mapping[str, BaseDistribution], refuse: Refusal,
                 shrinkable: Sequence[str] = ()) -> None:
        self.base = base
        self.space = dict(space)
        self.refuse = refuse
        self.shrinkable = tuple(name for name in shrinkable
                                if isinstance(self.space.get(name), CategoricalDistribution))
        # Refused draws so far, for the session's summary and tests.
        self.refused: list[tuple[dict[str, Any], str]] = []

    def infer_relative_search_space(self, study: optuna.Study,
                                    trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return dict(self.space)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        if "fixed_params" in trial.system_attrs:  # enqueued: its parameters are given
            return {}
        params: dict[str, Any] = {}
        for _ in range(MAX_DRAWS):
            params = self._draw(study, trial)
            reason = self.refuse(params)
            if reason is None:
                return params
            self.refused.append((params, reason))
        fitted = self._brought_down(params)
        records.set_reshaped(study._storage, trial._trial_id, {
            name: [params[name], fitted[name]] for name in fitted if fitted[name] != params[name]})
        return fitted

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self.base.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.base.before_trial(study, trial)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial,
                    state: optuna.trial.TrialState, values: Sequence[float] | None) -> None:
        self.base.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.base.reseed_rng()

    def _draw(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, Any]:
        """One whole configuration: the wrapped sampler's relative draw, the rest drawn
        independently by it."""
        relative = self.base.infer_relative_search_space(study, trial)
        params = dict(self.base.sample_relative(study, trial, relative)) if relative else {}
        for name, distribution in self.space.items():
            if name not in params:
                params[name] = self.base.sample_independent(study, trial, name, distribution)
        return params

    def _brought_down(self, params: dict[str, Any]) -> dict[str, Any]:
        """`params` with its sizes stepped down, in `shrinkable` order, until no rule
        refuses it (or nothing is left to step down: the budget then skips the trial)."""
        fitted = dict(params)
        for name in self.shrinkable:
            choices = sorted(self.space[name].choices)  # type: ignore[attr-defined]
            while self.refuse(fitted) is not None and choices.index(fitted[name]) > 0:
                fitted[name] = choices[choices.index(fitted[name]) - 1]
            if self.refuse(fitted) is None:
                break
        return fitted
