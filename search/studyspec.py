"""What a loaded study file gives the search: `StudySpec`, its searched parameters, the
samplers and pruners it may name (checked against Optuna's signatures) and its settings
routed to han.config's dataclasses."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import re
import typing
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self

import optuna
from pydantic import ConfigDict, Field, PrivateAttr, TypeAdapter, ValidationError, model_validator

from han.config import DataConfig, FileFormat, HANConfig, TrainConfig
from search.pruners import EvidencePruner, FieldPercentilePruner
from search.studyerrors import STRICT, Table, check_keys, fail, type_name

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
CONFIGS: tuple[type, ...] = (HANConfig, DataConfig, TrainConfig)
#: Settings counted in training documents, which a study file may write as epochs instead
#: ("0.25 epochs"): the run turns them into documents of its data's training folds.
DOCUMENT_SETTINGS = ("report_every",)
#: Pruner arguments counted in steps. A step is a training document seen (search.objective
#: reports on that grid), so these too may be written as epochs.
PRUNER_STEPS = ("n_warmup_steps", "interval_steps", "n_startup_steps", "min_resource",
                "max_resource")
_EPOCHS = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*epochs?\s*", re.IGNORECASE)
# Stands in for the data's documents per epoch when a study file is checked, before any
# data is read.
CHECK_EPOCH_DOCS = 1000


def in_documents(value: Any, docs_per_epoch: int) -> Any:
    """A count of documents given as "N epochs" in documents (rounded, at least 1 for a
    positive N); anything else as it is. A string of another form raises ValueError."""
    if not isinstance(value, str):
        return value
    match = _EPOCHS.fullmatch(value)
    if match is None:
        raise ValueError(f'expected a number of documents or of epochs ("0.5 epochs"), '
                         f"got {value!r}")
    epochs = float(match.group(1))
    return max(1, round(epochs * docs_per_epoch)) if epochs > 0 else 0


#: HANConfig fields that come from the data, never from a study.
FROM_DATA = ("vocab_size", "num_classes", "pretrained_embeddings")


def pydantic_fields(config: type, skip: Sequence[str] = ()) -> dict[str, tuple[Any, None]]:
    """A dataclass's fields as pydantic field definitions: its types, and None for a default,
    meaning "not given" (read with exclude_unset), so no default is restated."""
    hints = typing.get_type_hints(config)
    return {f.name: (hints[f.name], None) for f in dataclasses.fields(config)
            if f.name not in skip}


def _settings_table() -> tuple[dict[str, int], dict[str, Any], dict[str, Any]]:
    """Which config owns each settable name, its type and its default (from han.config)."""
    owner: dict[str, int] = {}
    types: dict[str, Any] = {}
    for index, config in enumerate(CONFIGS):
        for name, (hint, _) in pydantic_fields(config, skip=FROM_DATA).items():
            if name in owner:  # split_settings routes by name alone
                raise RuntimeError(f"setting {name!r} is in two config classes")
            owner[name], types[name] = index, hint | str if name in DOCUMENT_SETTINGS else hint
    defaults = {f.name: f.default for c in CONFIGS for f in dataclasses.fields(c)}
    return owner, types, defaults


_OWNER, SETTING_TYPES, DEFAULTS = _settings_table()


@functools.cache
def _arguments(target: type) -> dict[str, tuple[Any, inspect.Parameter]]:
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
             for name, (_, param) in _arguments(optuna.pruners.HyperbandPruner).items()}
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
        arguments, given = _arguments(target), self.model_extra or {}
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


@dataclass(frozen=True, kw_only=True)
class StudySpec:
    """A loaded, validated study file.

    `sampler` and `pruner` hold the file's table as given (`name` plus that class's keyword
    arguments) so they can be logged; `make_sampler` and `make_pruner` build fresh objects.
    Paths are absolute (relative ones in the file resolve against the file's folder).
    `fixed` and `reference` hold config field values; `synthetic` the built-in corpus
    settings, empty when the file gives none or reads a train file; `file_format` how the
    data files are read. `label_names` are the class names in class-id order: the names of
    integer labels, or the class order of labels that are names. `register` names the MLflow
    registered model that every `run` ends by updating (None: none).
    """

    name: str
    direction: Literal["maximize", "minimize"]
    trials: int
    enqueue_reference: bool
    sampler: dict[str, Any]
    pruner: dict[str, Any]
    train_path: Path | None
    test_path: Path | None
    embeddings_path: Path | None
    label_names: tuple[str, ...] | None
    synthetic: dict[str, Any]
    file_format: FileFormat
    fixed: dict[str, Any]
    space: tuple[FloatParam | IntParam | CategoricalParam, ...]
    reference: dict[str, Any]
    source: Path
    # [export] registered_model: the registered model the best trial becomes after every `run`.
    register: str | None = None
    # Train the linear baseline (han.baseline) once per study, before its first trial.
    baseline: bool = True
    # [data] word2vec: without a word2vec file, train one on the data's texts before the
    # first trial (cached per dataset: search.word2vec) and give its vectors to every trial.
    word2vec: bool = True
    # With enqueue_reference: the reference trial runs after this many trials of the study
    # (0: first), so that a pruner past its startup trials can stop it like any other; a
    # session that would end first runs it last, so every study has it on record.
    reference_after: int = 0
    # A new study's first trial is han.starting_point's settings for its data (searched
    # ones only, brought inside the space), before the reference.
    start_from_data: bool = False

    def make_sampler(self) -> optuna.samplers.BaseSampler:
        """A new sampler; samplers keep state (their random generator), so never share one."""
        return _build(SAMPLERS, self.sampler)

    def make_pruner(self) -> optuna.pruners.BasePruner:
        """A new pruner, as the [pruner] table describes (`in_documents` first, when it
        counts steps in epochs)."""
        return _build(PRUNERS, self.pruner)

    def in_documents(self, docs_per_epoch: int) -> StudySpec:
        """The spec with every count written in epochs (pruner steps, `report_every`) in
        training documents, `docs_per_epoch` to an epoch."""
        def convert(table: Mapping[str, Any], keys: Sequence[str]) -> dict[str, Any]:
            return {key: in_documents(value, docs_per_epoch)
                    if key in keys and value != "auto" else value
                    for key, value in table.items()}

        return replace(self, pruner=convert(self.pruner, PRUNER_STEPS),
                       fixed=convert(self.fixed, DOCUMENT_SETTINGS))

    def reference_params(self) -> dict[str, Any]:
        """The reference trial: each searched parameter's [reference] value or config default.

        With `enqueue_reference` these are checked to lie inside the space when the file is
        loaded; without it a config default may lie outside the space.
        """
        return {p.name: self.reference.get(p.name, DEFAULTS[p.name]) for p in self.space}

    def within_space(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        """A trial of the space: each searched parameter's value in `settings` (else the
        reference's) brought to the nearest value the space holds."""
        reference = self.reference_params()
        return {p.name: p.nearest(settings.get(p.name, reference[p.name])) for p in self.space}

    def setting_range(self, name: str) -> tuple[Any, Any]:
        """The smallest and largest value the study gives a setting: its space's bounds when
        searched, else its fixed value or default (twice)."""
        for param in self.space:
            if param.name == name:
                if isinstance(param, CategoricalParam):
                    return min(param.choices), max(param.choices)
                return param.low, param.high
        value = self.fixed.get(name, DEFAULTS[name])
        return value, value

    def segment_shapes(self) -> list[tuple[str, int, int]]:
        """(label, seg_len, max_segments) of the reference configuration and of the
        smallest and largest segment shapes the space allows."""
        reference = {**self.fixed, **self.reference_params()}
        seg_len, max_segments = self.setting_range("seg_len"), self.setting_range("max_segments")
        return [("reference", reference.get("seg_len", DEFAULTS["seg_len"]),
                 reference.get("max_segments", DEFAULTS["max_segments"])),
                ("smallest", seg_len[0], max_segments[0]),
                ("largest", seg_len[1], max_segments[1])]


def _build(registry: Mapping[str, type], table: Mapping[str, Any]) -> Any:
    return registry[table["name"]](**{k: v for k, v in table.items() if k != "name"})


def suggest(trial: optuna.trial.BaseTrial, space: Sequence[Any]) -> dict[str, Any]:
    """Ask the trial for a value of each searched parameter, in the space's order."""
    return {param.name: param.suggest(trial) for param in space}


def split_settings(
    params: Mapping[str, Any],
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Route settings to (HANConfig, DataConfig, TrainConfig) keyword arguments.

    Typical use: `split_settings({**spec.fixed, **suggest(trial, spec.space)})`. Names
    outside the three configs raise KeyError, and so do `vocab_size` and `num_classes`,
    which the data decides.
    """
    parts: tuple[dict[str, Any], dict[str, Any], dict[str, Any]] = ({}, {}, {})
    for name, value in params.items():
        if name in FROM_DATA:
            raise KeyError(f"{name!r} comes from the data, not from the study settings")
        if name not in _OWNER:
            raise KeyError(f"unknown setting {name!r}")
        parts[_OWNER[name]][name] = value
    return parts
