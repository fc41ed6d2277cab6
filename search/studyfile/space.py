"""The searched settings of a study file ([space.NAME] tables): ranges and choices, what
they contain, their nearest value, and how a trial is asked for one."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Annotated, Any, Literal, Self

import optuna
from pydantic import Field, PrivateAttr, model_validator

from search.studyfile.validation import Table, fail


def same_choice(a: Any, b: Any) -> bool:
    # 1 == True in Python, but a study that lists [1, 2] does not accept `true`.
    return type(a) is type(b) and a == b


class _Param(Table):
    """One searched setting; its name is its [space.NAME] table's, given by `named`."""

    _name: str = PrivateAttr("")

    @property
    def name(self) -> str:
        return self._name

    def named(self, name: str) -> Self:
        copy = self.model_copy()
        copy._name = name
        return copy


class _Range(_Param):
    """A numeric range; `step` None keeps Optuna's default (continuous, or integer steps)."""

    @model_validator(mode="after")
    def _valid_range(self) -> Self:
        low, high, step, is_int = self.low, self.high, self.step, self.type == "int"
        if low > high:
            raise fail(f"low ({low}) > high ({high})")
        if self.log and (low < 1 if is_int else low <= 0):
            raise fail(f"a log scale needs low {'>= 1' if is_int else '> 0'}, got {low}", "low")
        if step is not None:
            if step <= 0:
                raise fail(f"must be positive, got {step}", "step")
            if self.log and (not is_int or step != 1):
                raise fail("a log scale cannot have a step", "step")
            k = (high - low) / step
            if abs(k - round(k)) > 1e-8:
                raise fail(f"high - low ({high - low}) is not a multiple of step ({step})",
                           "step")
        return self

    def contains(self, value: Any) -> bool:
        """Whether Optuna would accept `value` (as in an enqueued trial, which it only warns
        about when outside the space)."""
        number = int if self.type == "int" else int | float
        if isinstance(value, bool) or not isinstance(value, number):
            return False
        if not self.low <= value <= self.high:
            return False
        return self.step is None or abs((k := (value - self.low) / self.step) - round(k)) < 1e-8

    def nearest(self, value: Any) -> Any:
        """The value of the range closest to `value` (a number)."""
        inside = min(max(value, self.low), self.high)
        if self.step is not None:
            inside = self.low + round((inside - self.low) / self.step) * self.step
        return round(inside) if self.type == "int" else float(inside)

    def describe(self) -> str:
        """The space in words, for messages and reports."""
        step = f" step {self.step}" if self.step is not None else ""
        return f"[{self.low}, {self.high}]{' log' if self.log else ''}{step}"

    def suggest(self, trial: optuna.trial.BaseTrial) -> Any:
        # Only pass step when the file gives one, so Optuna's default stays Optuna's.
        step = {} if self.step is None else {"step": self.step}
        ask = trial.suggest_int if self.type == "int" else trial.suggest_float
        return ask(self.name, self.low, self.high, log=self.log, **step)


class FloatParam(_Range):
    type: Literal["float"]
    low: float
    high: float
    log: bool = False
    step: float | None = None


class IntParam(_Range):
    type: Literal["int"]
    low: int
    high: int
    log: bool = False
    step: int | None = None


class CategoricalParam(_Param):
    type: Literal["categorical"]
    choices: list[Any]

    @model_validator(mode="after")
    def _not_empty(self) -> Self:
        if not self.choices:
            raise fail("empty choices")
        return self

    def contains(self, value: Any) -> bool:
        return any(same_choice(value, choice) for choice in self.choices)

    def describe(self) -> str:
        return "one of " + ", ".join(repr(c) for c in self.choices)

    def nearest(self, value: Any) -> Any:
        """`value` when it is a choice; else, among numeric choices, the closest to it (by
        ratio: 48 is nearer 64 than 32); else the first choice."""
        if self.contains(value):
            return next(c for c in self.choices if same_choice(c, value))
        numbers = [c for c in self.choices if isinstance(c, int | float)
                   and not isinstance(c, bool) and c > 0]
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0 \
                and numbers:
            return min(numbers, key=lambda c: abs(math.log(c / value)))
        return self.choices[0]

    def suggest(self, trial: optuna.trial.BaseTrial) -> Any:
        return trial.suggest_categorical(self.name, list(self.choices))


#: A [space.NAME] table, told apart by its `type`.
ParamSpec = Annotated[FloatParam | IntParam | CategoricalParam, Field(discriminator="type")]


def suggest(trial: optuna.trial.BaseTrial, space: Sequence[Any]) -> dict[str, Any]:
    """Ask the trial for a value of each searched parameter, in the space's order."""
    return {param.name: param.suggest(trial) for param in space}


