"""The samplers and pruners a study file may name, each table checked against the named
class's own signature (and built once, which checks what a signature cannot)."""

from __future__ import annotations

import functools
import inspect
import typing
import warnings
from collections.abc import Mapping
from typing import Any, ClassVar, Self

import optuna
from pydantic import ConfigDict, TypeAdapter, ValidationError, model_validator

from search.pruners import EvidencePruner, FieldPercentilePruner
from search.studyfile.settings import CHECK_EPOCH_DOCS, PRUNER_STEPS, in_documents
from search.studyfile.validation import STRICT, Table, check_keys, fail, type_name

SAMPLERS: dict[str, type[optuna.samplers.BaseSampler]] = {
    "gp": optuna.samplers.GPSampler, "qmc": optuna.samplers.QMCSampler,
    "random": optuna.samplers.RandomSampler, "tpe": optuna.samplers.TPESampler,
}
PRUNERS: dict[str, type[optuna.pruners.BasePruner]] = {
    "hyperband": optuna.pruners.HyperbandPruner, "median": optuna.pruners.MedianPruner,
    "none": optuna.pruners.NopPruner, "percentile": optuna.pruners.PercentilePruner,
    "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
    "field_percentile": FieldPercentilePruner, "evidence": EvidencePruner,
}

@functools.cache
def signature_arguments(target: type) -> dict[str, tuple[Any, inspect.Parameter]]:
    """A sampler's or pruner's keyword arguments: name -> (type, parameter). The type is None
    where a TOML value cannot be one: callables and objects, which Optuna annotates with
    classes or with names it imports only for type checking (Callable, FrozenTrial)."""
    arguments: dict[str, tuple[Any, inspect.Parameter]] = {}
    for name, param in inspect.signature(target).parameters.items():
        if param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY):
            holder = type("Holder", (), {"__annotations__": {"x": param.annotation},
                                         "__module__": target.__init__.__module__})
            try:
                hint = typing.get_type_hints(holder)["x"]
            except NameError:
                hint = None
            scalar = any(t in (bool, int, float, str) for t in typing.get_args(hint) or (hint,))
            arguments[name] = (hint if scalar else None, param)
    return arguments


def _check_argument(target: type, key: str, hint: Any, value: Any) -> None:
    if hint is None:
        raise fail(f"{target.__name__}'s {key} cannot be given in a study file", key)
    try:
        TypeAdapter(hint, config=STRICT).validate_python(value)
    except ValidationError:
        wanted = " or ".join(t.__name__ for t in typing.get_args(hint) or (hint,)
                             if t is not type(None))
        raise fail(f"expected {wanted}, got {type_name(value)} ({value!r})", key) from None


def _check_hyperband(**kwargs: Any) -> None:
    """HyperbandPruner checks its arguments only at the first prune, deep into a study; its
    brackets are SuccessiveHalvingPruners, which check theirs when built, so build one."""
    given = {name: kwargs.get(name, param.default)
             for name, (_, param) in signature_arguments(optuna.pruners.HyperbandPruner).items()}
    optuna.pruners.SuccessiveHalvingPruner(
        min_resource=given["min_resource"], reduction_factor=given["reduction_factor"],
        bootstrap_count=given["bootstrap_count"])
    low, high = given["min_resource"], given["max_resource"]
    if isinstance(high, int) and high < low:
        raise ValueError(f"max_resource ({high}) < min_resource ({low})")


class Component(Table):
    """[sampler] or [pruner]: `name` from the registry, the rest that class's arguments."""

    model_config = ConfigDict(extra="allow")
    registry: ClassVar[Mapping[str, type]]
    kind: ClassVar[str]
    name: str

    def table(self) -> dict[str, Any]:
        """The table as given, to log and to build from."""
        return {"name": self.name, **(self.model_extra or {})}

    @model_validator(mode="after")
    def _buildable(self) -> Self:
        target = self.registry.get(self.name)
        if target is None:
            raise fail(f"unknown {self.kind} {self.name!r} "
                       f"(choose from {', '.join(sorted(self.registry))})", "name")
        arguments, given = signature_arguments(target), self.model_extra or {}
        takes = ", ".join(arguments) or "no arguments"
        check_keys(given, list(arguments), hint=f" ({target.__name__} takes: {takes})")
        kwargs = dict(given)
        for key in PRUNER_STEPS:
            if isinstance(given.get(key), str) and given[key] != "auto":
                try:
                    kwargs[key] = in_documents(given[key], CHECK_EPOCH_DOCS)
                except ValueError as exc:
                    raise fail(str(exc), key) from None
        for key, value in kwargs.items():
            _check_argument(target, key, arguments[key][0], value)
        for key, (_, param) in arguments.items():
            if param.default is param.empty and key not in kwargs:
                raise fail(f"missing required key '{key}' for {self.kind} {self.name!r}")
        try:
            # Building it once checks values the signature cannot (e.g. reduction_factor).
            # Its warnings (experimental, deprecated) come when the study builds the real one.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                target(**kwargs)
                if target is optuna.pruners.HyperbandPruner:
                    _check_hyperband(**kwargs)
        except (TypeError, ValueError) as exc:
            raise fail(f"{target.__name__}: {exc}") from None
        return self


class SamplerTable(Component):
    registry, kind = SAMPLERS, "sampler"
    name: str = "tpe"  # Optuna's own default sampler, as the pruner below


class PrunerTable(Component):
    registry, kind = PRUNERS, "pruner"
    name: str = "median"


def build(registry: Mapping[str, type], table: Mapping[str, Any]) -> Any:
    return registry[table["name"]](**{k: v for k, v in table.items() if k != "name"})

