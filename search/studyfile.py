"""The study-file schema: pydantic models of studies/*.toml, validated into a `StudySpec`.

A study file names the sampler and pruner, the data, the settings held fixed and the space
searched. Setting names and types are the fields of `han.config` (HANConfig, DataConfig,
TrainConfig), so a file only overrides them; every default lives there, none here. The whole
file is checked when it loads, before any training, and each problem is one
`StudyFileError` line naming the file and the key, which the CLI prints as it is.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import importlib.resources
import inspect
import re
import tomllib
import typing
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self

import optuna
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    TypeAdapter,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from han.config import COMPETITION_FORMAT, DataConfig, FileFormat, HANConfig, TrainConfig
from han.synthetic import SyntheticSpec

__all__ = [
    "PRUNERS", "SAMPLERS", "CategoricalParam", "FloatParam", "IntParam", "ParamSpec",
    "StudyFileError", "StudySpec", "builtin_study_path", "load_study_file", "split_settings",
    "suggest",
]

SAMPLERS: dict[str, type[optuna.samplers.BaseSampler]] = {
    "gp": optuna.samplers.GPSampler, "qmc": optuna.samplers.QMCSampler,
    "random": optuna.samplers.RandomSampler, "tpe": optuna.samplers.TPESampler,
}
PRUNERS: dict[str, type[optuna.pruners.BasePruner]] = {
    "hyperband": optuna.pruners.HyperbandPruner, "median": optuna.pruners.MedianPruner,
    "none": optuna.pruners.NopPruner, "percentile": optuna.pruners.PercentilePruner,
    "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
}
_NAME_RE = re.compile(r"[A-Za-z0-9_.-]+")
_CONFIGS: tuple[type, ...] = (HANConfig, DataConfig, TrainConfig)
# HANConfig fields that come from the data, never from a study.
_FROM_DATA = ("vocab_size", "num_classes", "pretrained_embeddings")
_STRICT = ConfigDict(strict=True, allow_inf_nan=False)


def _fields(config: type, skip: Sequence[str] = ()) -> dict[str, tuple[Any, None]]:
    """A dataclass's fields as pydantic field definitions: its types, but None for a default,
    marking "not given" (read with exclude_unset), so no default is restated."""
    hints = typing.get_type_hints(config)
    return {f.name: (hints[f.name], None) for f in dataclasses.fields(config)
            if f.name not in skip}


def _settings_table() -> tuple[dict[str, int], dict[str, Any], dict[str, Any]]:
    """Which config owns each settable name, its type and its default (from han.config)."""
    owner: dict[str, int] = {}
    hints: dict[str, Any] = {}
    for index, config in enumerate(_CONFIGS):
        for name, (hint, _) in _fields(config, skip=_FROM_DATA).items():
            if name in owner:  # split_settings routes by name alone
                raise RuntimeError(f"setting {name!r} is in two config classes")
            owner[name], hints[name] = index, hint
    defaults = {f.name: f.default for c in _CONFIGS for f in dataclasses.fields(c)}
    return owner, hints, defaults


_OWNER, _HINTS, _DEFAULTS = _settings_table()
_ADAPTERS = {name: TypeAdapter(hint, config=_STRICT) for name, hint in _HINTS.items()}
_FORMAT_KEYS = tuple(f.name for f in dataclasses.fields(FileFormat))


class StudyFileError(ValueError):
    """A study file is missing, unreadable or invalid; the message is one line."""


def _fail(message: str, *loc: str) -> PydanticCustomError:
    """A problem at `loc` below the table being validated; `load_study_file` words it."""
    return PydanticCustomError("study_file", "{message}", {"message": message, "loc": loc})


def _check_keys(table: Mapping[str, Any], allowed: Sequence[str],
                refused: Mapping[str, str] | None = None, hint: str = "") -> None:
    """Unknown keys fail with the closest known one, else `hint`, else the known keys."""
    for key in table:
        if refused and key in refused:
            raise _fail(refused[key], key)
        if key in allowed:
            continue
        close = difflib.get_close_matches(key, list(allowed), n=1)
        extra = (f" (did you mean '{close[0]}'?)" if close else
                 hint if hint or not allowed else f" (known keys: {', '.join(allowed)})")
        raise PydanticCustomError("unknown_key", "unknown key", {"key": key, "extra": extra})


def _as_setting(name: str, value: Any, *loc: str) -> Any:
    """`value` checked as the setting's type (an integer becomes a float for a float)."""
    try:
        return _ADAPTERS[name].validate_python(value)
    except ValidationError as exc:
        raise _fail(_message(exc.errors()[0]), *loc) from None


def _same_choice(a: Any, b: Any) -> bool:
    # 1 == True in Python, but a study that lists [1, 2] does not accept `true`.
    return type(a) is type(b) and a == b


class _Table(BaseModel):
    """A TOML table: TOML's own types, strictly; an unknown key is refused by name."""

    model_config = ConfigDict(extra="forbid", **_STRICT)
    #: Keys a file may not give, with the reason.
    refused: ClassVar[dict[str, str]] = {}
    #: What an unknown-key message adds when no known key is close.
    unknown_hint: ClassVar[str] = ""

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if isinstance(data, dict) and cls.model_config.get("extra") == "forbid":
            _check_keys(data, list(cls.model_fields), cls.refused, cls.unknown_hint)
        return data


class _SettingsTable(_Table):
    refused = dict.fromkeys(_FROM_DATA, "comes from the data and cannot be set")
    unknown_hint = " (settings are the fields of HANConfig, DataConfig and TrainConfig)"


#: [fixed] and [reference]: any field of the three configs, typed as there.
Settings = create_model("Settings", __base__=_SettingsTable, **_fields(_CONFIGS[0], _FROM_DATA),
                        **_fields(DataConfig), **_fields(TrainConfig))


class _Param(_Table):
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
            raise _fail(f"low ({low}) > high ({high})")
        if self.log and (low < 1 if is_int else low <= 0):
            raise _fail(f"a log scale needs low {'>= 1' if is_int else '> 0'}, got {low}", "low")
        if step is not None:
            if step <= 0:
                raise _fail(f"must be positive, got {step}", "step")
            if self.log and (not is_int or step != 1):
                raise _fail("a log scale cannot have a step", "step")
            k = (high - low) / step
            if abs(k - round(k)) > 1e-8:
                raise _fail(f"high - low ({high - low}) is not a multiple of step ({step})",
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
            raise _fail("empty choices")
        return self

    def contains(self, value: Any) -> bool:
        return any(_same_choice(value, choice) for choice in self.choices)

    def describe(self) -> str:
        return "one of " + ", ".join(repr(c) for c in self.choices)

    def suggest(self, trial: optuna.trial.BaseTrial) -> Any:
        return trial.suggest_categorical(self.name, list(self.choices))


#: A [space.NAME] table, told apart by its `type`.
ParamSpec = Annotated[FloatParam | IntParam | CategoricalParam, Field(discriminator="type")]


@functools.cache
def _arguments(target: type) -> dict[str, tuple[Any, bool]]:
    """A sampler's or pruner's keyword arguments: name -> (type, required). The type is None
    where a TOML value cannot be one: callables and objects, which Optuna annotates with
    classes or with names it imports only for type checking (Callable, FrozenTrial)."""
    arguments: dict[str, tuple[Any, bool]] = {}
    for name, param in inspect.signature(target).parameters.items():
        if param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY):
            holder = type("Holder", (), {"__annotations__": {"x": param.annotation},
                                         "__module__": target.__init__.__module__})
            try:
                hint = typing.get_type_hints(holder)["x"]
            except NameError:
                hint = None
            scalar = any(t in (bool, int, float, str) for t in typing.get_args(hint) or (hint,))
            arguments[name] = (hint if scalar else None, param.default is param.empty)
    return arguments


def _check_argument(target: type, key: str, hint: Any, value: Any) -> None:
    if hint is None:
        raise _fail(f"{target.__name__}'s {key} cannot be given in a study file", key)
    try:
        TypeAdapter(hint, config=_STRICT).validate_python(value)
    except ValidationError:
        wanted = " or ".join(t.__name__ for t in typing.get_args(hint) or (hint,)
                             if t is not type(None))
        raise _fail(f"expected {wanted}, got {_type_name(value)} ({value!r})", key) from None


def _check_hyperband(**kwargs: Any) -> None:
    """HyperbandPruner checks its arguments only at the first prune, deep into a study; its
    brackets are SuccessiveHalvingPruners, which check theirs when built, so build one."""
    args = _arguments(optuna.pruners.HyperbandPruner)
    given = {name: kwargs.get(name, inspect.signature(optuna.pruners.HyperbandPruner)
                               .parameters[name].default) for name in args}
    optuna.pruners.SuccessiveHalvingPruner(
        min_resource=given["min_resource"], reduction_factor=given["reduction_factor"],
        bootstrap_count=given["bootstrap_count"])
    if isinstance(given["max_resource"], int) and given["max_resource"] < given["min_resource"]:
        raise ValueError(f"max_resource ({given['max_resource']}) < min_resource "
                         f"({given['min_resource']})")


class _Component(_Table):
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
            raise _fail(f"unknown {self.kind} {self.name!r} "
                        f"(choose from {', '.join(sorted(self.registry))})", "name")
        arguments, kwargs = _arguments(target), self.model_extra or {}
        takes = ", ".join(arguments) or "no arguments"
        _check_keys(kwargs, list(arguments), hint=f" ({target.__name__} takes: {takes})")
        for key, value in kwargs.items():
            _check_argument(target, key, arguments[key][0], value)
        for key, (_, required) in arguments.items():
            if required and key not in kwargs:
                raise _fail(f"missing required key '{key}' for {self.kind} {self.name!r}")
        try:
            # Building it once checks values the signature cannot (e.g. reduction_factor).
            # Its warnings (experimental, deprecated) come when the study builds the real one.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                target(**kwargs)
                if target is optuna.pruners.HyperbandPruner:
                    _check_hyperband(**kwargs)
        except (TypeError, ValueError) as exc:
            raise _fail(f"{target.__name__}: {exc}") from None
        return self


class _Sampler(_Component):
    registry, kind = SAMPLERS, "sampler"
    name: str = "tpe"  # Optuna's own default sampler and pruner


class _Pruner(_Component):
    registry, kind = PRUNERS, "pruner"
    name: str = "median"


class _StudyTable(_Table):
    refused = {"metric": "removed: a study always maximises or minimises dev_macro_f1, the "
                         "metric the trainer reports each epoch (delete this line)"}
    name: str
    direction: Literal["maximize", "minimize"] = "maximize"
    trials: int = Field(ge=1)
    enqueue_reference: bool = True

    @field_validator("name")
    @classmethod
    def _plain_name(cls, name: str) -> str:
        if not _NAME_RE.fullmatch(name):
            raise _fail(f"{name!r} may only use letters, digits, '_', '.' and '-'")
        return name


class _SyntheticTable(_Table):
    @model_validator(mode="after")
    def _valid(self) -> Self:
        try:
            SyntheticSpec(**self.model_dump(exclude_unset=True))
        except (TypeError, ValueError) as exc:
            raise _fail(str(exc)) from None
        return self


#: [data.synthetic]: han.synthetic.SyntheticSpec's fields.
_Synthetic = create_model("Synthetic", __base__=_SyntheticTable, **_fields(SyntheticSpec))


class _DataTable(_Table):
    train: str | None = None
    test: str | None = None
    embeddings: str | None = None
    labels: tuple[str, ...] | None = None
    synthetic: _Synthetic = Field(default_factory=_Synthetic)  # type: ignore[valid-type]

    @field_validator("train", "test", "embeddings")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise _fail("empty path")
        return value

    @field_validator("labels", mode="before")
    @classmethod
    def _class_names(cls, labels: Any) -> tuple[str, ...]:
        if not isinstance(labels, list) or not labels:
            raise _fail("expected a non-empty array of strings")
        for label in labels:
            if not isinstance(label, str) or not label.strip():
                raise _fail(f"expected non-empty strings, got {label!r}")
        if repeated := sorted({label for label in labels if labels.count(label) > 1}):
            raise _fail(f"repeated names: {', '.join(repeated)}")
        return tuple(labels)

    def file_format(self) -> FileFormat:
        """[data] sep, text_col, label_col and tokens as han.config.FileFormat."""
        try:
            return FileFormat(**self.model_dump(include=set(_FORMAT_KEYS), exclude_unset=True))
        except ValueError as exc:
            raise _fail(str(exc)) from None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.test is not None and self.train is None:
            raise _fail("a test file needs a train file (set [data] train)", "test")
        if self.synthetic.model_fields_set and self.train is not None:
            raise _fail("settings of the built-in corpus, unused when [data] train is set",
                        "synthetic")
        if self.file_format() != COMPETITION_FORMAT and self.train is None:
            given = next(key for key in _FORMAT_KEYS if key in self.model_fields_set)
            raise _fail("describes a data file, but there is no [data] train (the built-in "
                        "corpus has the competition's format)", given)
        return self


#: [data]: the files, class names, built-in corpus and han.config.FileFormat's fields.
_Data = create_model("Data", __base__=_DataTable, **_fields(FileFormat))


def _searched(name: str, param: Any, fixed: Mapping[str, Any]) -> Any:
    """[space.NAME] checked against the setting NAME: its type, choices typed as it is."""
    if name in fixed:
        raise _fail(f"{name} is also in [fixed]; a setting is either fixed or searched",
                    "space", name)
    hint = _HINTS[name]
    if isinstance(param, CategoricalParam):
        choices = [_as_setting(name, c, "space", name, "choices") for c in param.choices]
        for i, choice in enumerate(choices):
            if any(_same_choice(choice, other) for other in choices[:i]):
                raise _fail(f"{choice!r} is listed twice", "space", name, "choices")
        return param.model_copy(update={"choices": choices}).named(name)
    if hint not in (int, float):
        raise _fail(f'{name} is not numeric; use type = "categorical"', "space", name, "type")
    if hint.__name__ != param.type:
        raise _fail(f"{name} is {'an' if hint is int else 'a'} {hint.__name__} setting; use "
                    f'type = "{hint.__name__}" or "categorical"', "space", name, "type")
    return param.named(name)


def _check_reference(reference: Mapping[str, Any], fixed: Mapping[str, Any],
                     space: Mapping[str, Any], *, enqueued: bool) -> None:
    """[reference] gives searched settings inside the space; with `enqueued`, so must every
    config default it leaves (Optuna only warns about an enqueued trial outside it)."""
    for name, value in reference.items():
        if name in fixed:
            raise _fail(f"{name} is fixed in [fixed]; the reference gives searched settings "
                        "only", "reference", name)
        if name not in space:
            raise _fail(f"{name} is not searched (no [space.{name}])", "reference", name)
        if not space[name].contains(value):
            raise _fail(f"{value!r} is outside [space.{name}] ({space[name].describe()})",
                        "reference", name)
    for name, param in space.items():
        if enqueued and name not in reference and not param.contains(_DEFAULTS[name]):
            raise _fail(f"the reference trial's {name} (config default {_DEFAULTS[name]!r}) is "
                        f"outside {param.describe()}; widen the space, set [reference] {name}, "
                        "or set enqueue_reference = false", "space", name)


def _check_configs(fixed: dict[str, Any], base: dict[str, Any], space: Mapping[str, Any]) -> None:
    """Build the configs at each edge of the space, so values the training core rejects
    (dropout 1.0, folds 1...) fail now rather than in a trial."""
    edges = [(("fixed",), fixed), (("reference",), base)]
    for name, param in space.items():
        ends = (("choices", c) for c in param.choices) if isinstance(param, CategoricalParam) \
            else (("low", param.low), ("high", param.high))
        edges += [(("space", name, key), {**base, name: value}) for key, value in ends]
    for loc, settings in edges:
        model, data, train = split_settings(settings)
        try:
            HANConfig(vocab_size=1, num_classes=2, **model)
            DataConfig(**data)
            TrainConfig(**train)
        except (TypeError, ValueError) as exc:
            raise _fail(str(exc), *loc) from None


class StudyFile(_Table):
    """A whole study file; `to_spec` gives what the search reads."""

    study: _StudyTable
    sampler: _Sampler = Field(default_factory=_Sampler)
    pruner: _Pruner = Field(default_factory=_Pruner)
    data: _Data = Field(default_factory=_Data)  # type: ignore[valid-type]
    fixed: Settings = Field(default_factory=Settings)  # type: ignore[valid-type]
    space: dict[str, ParamSpec] = Field(default_factory=dict, validate_default=True)
    reference: Settings = Field(default_factory=Settings)  # type: ignore[valid-type]

    @field_validator("space", mode="before")
    @classmethod
    def _setting_names(cls, space: Any) -> Any:
        if isinstance(space, dict):
            _check_keys(space, list(_OWNER), _SettingsTable.refused, _SettingsTable.unknown_hint)
        return space

    @field_validator("space")
    @classmethod
    def _not_empty(cls, space: dict[str, Any]) -> dict[str, Any]:
        if not space:
            raise _fail("no searched parameters (add a [space.NAME] table)")
        return space

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        fixed = self.fixed.model_dump(exclude_unset=True)
        reference = self.reference.model_dump(exclude_unset=True)
        self.space = {name: _searched(name, p, fixed) for name, p in self.space.items()}
        _check_reference(reference, fixed, self.space, enqueued=self.study.enqueue_reference)
        base = {**fixed, **{name: reference.get(name, _DEFAULTS[name]) for name in self.space}}
        _check_configs(fixed, base, self.space)
        return self

    def to_spec(self, source: Path) -> StudySpec:
        """The spec; relative paths resolve against the file's folder, so a study runs the
        same from any directory."""
        data = self.data

        def resolve(value: str | None) -> Path | None:
            return None if value is None else (source.parent / Path(value).expanduser()).absolute()

        return StudySpec(
            name=self.study.name, direction=self.study.direction, trials=self.study.trials,
            enqueue_reference=self.study.enqueue_reference, sampler=self.sampler.table(),
            pruner=self.pruner.table(), train_path=resolve(data.train),
            test_path=resolve(data.test), embeddings_path=resolve(data.embeddings),
            label_names=data.labels, synthetic=data.synthetic.model_dump(exclude_unset=True),
            file_format=data.file_format(), fixed=self.fixed.model_dump(exclude_unset=True),
            space=tuple(self.space.values()),
            reference=self.reference.model_dump(exclude_unset=True), source=source.absolute(),
        )


StudyFile.unknown_hint = f" (tables: {', '.join(f'[{t}]' for t in StudyFile.model_fields)})"


@dataclass(frozen=True, kw_only=True)
class StudySpec:
    """A loaded, validated study file.

    `sampler` and `pruner` hold the file's table as given (`name` plus that class's keyword
    arguments) so they can be logged; `make_sampler` and `make_pruner` build fresh objects.
    Paths are absolute (relative ones in the file resolve against the file's folder).
    `fixed` and `reference` hold config field values; `synthetic` the built-in corpus
    settings, empty when the file gives none or reads a train file; `file_format` how the
    data files are read. `label_names` are the class names in class-id order: the names of
    integer labels, or the class order of labels that are names.
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

    def make_sampler(self) -> optuna.samplers.BaseSampler:
        """A new sampler; samplers keep state (their random generator), so never share one."""
        return _build(SAMPLERS, self.sampler)

    def make_pruner(self) -> optuna.pruners.BasePruner:
        """A new pruner, as the [pruner] table describes."""
        return _build(PRUNERS, self.pruner)

    def reference_params(self) -> dict[str, Any]:
        """The reference trial: each searched parameter's [reference] value or config default.

        With `enqueue_reference` these are checked to lie inside the space when the file is
        loaded; without it a config default may lie outside the space.
        """
        return {p.name: self.reference.get(p.name, _DEFAULTS[p.name]) for p in self.space}


def _build(registry: Mapping[str, type], table: Mapping[str, Any]) -> Any:
    return registry[table["name"]](**{k: v for k, v in table.items() if k != "name"})


def _shipped_studies() -> dict[str, Path]:
    """The study files shipped with the package (studies/, installed as `search.studies`)."""
    try:
        folder: Any = importlib.resources.files("search.studies")
    except ModuleNotFoundError:
        # A source tree imported without an install that maps the package (PYTHONPATH, or an
        # editable install made before the mapping): the folder itself, beside search/.
        folder = Path(__file__).resolve().parent.parent / "studies"
    # Read in place, as files: a study's relative data paths resolve against its folder.
    return {Path(str(item)).stem: Path(str(item)) for item in folder.iterdir()
            if item.name.endswith(".toml")}


def builtin_study_path(name: str = "demo") -> Path:
    """The shipped study file `studies/NAME.toml`."""
    shipped = _shipped_studies()
    if not _NAME_RE.fullmatch(name) or name not in shipped:
        raise StudyFileError(
            f"no built-in study {name!r} (choose from {', '.join(sorted(shipped)) or 'none'})")
    return shipped[name]


def load_study_file(path: str | Path) -> StudySpec:
    """Read and validate a study file; every problem is a one-line `StudyFileError`."""
    path = Path(path)
    try:
        document = tomllib.loads(path.read_bytes().decode("utf-8"))
        return StudyFile.model_validate(document).to_spec(path)
    except FileNotFoundError:
        raise StudyFileError(f"{path}: no such study file") from None
    except UnicodeDecodeError:
        raise StudyFileError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise StudyFileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise StudyFileError(f"{path}: TOML syntax error: {_one_line(exc)}") from None
    except ValidationError as exc:
        problem = _describe(document, exc.errors(include_url=False)[0])
        raise StudyFileError(_one_line(f"{path}: {problem}")) from None


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
        if name in _FROM_DATA:
            raise KeyError(f"{name!r} comes from the data, not from the study settings")
        if name not in _OWNER:
            raise KeyError(f"unknown setting {name!r}")
        parts[_OWNER[name]][name] = value
    return parts


# ------------------------------------------------------------- pydantic errors in words

_EXPECTED = {"int_type": "an integer", "float_type": "a finite number", "bool_type": "a boolean",
             "finite_number": "a finite number", "string_type": "a string",
             "list_type": "an array", "tuple_type": "an array", "dict_type": "a table",
             "model_type": "a table", "model_attributes_type": "a table"}


def _one_line(value: object) -> str:
    return " ".join(str(value).splitlines()).strip()


def _type_name(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a float", str: "a string",
             list: "an array", dict: "a table"}
    return names.get(type(value), type(value).__name__)


def _message(error: ErrorDetails) -> str:
    """What went wrong, in the words the study-file messages use."""
    kind, value, ctx = error["type"], error["input"], error.get("ctx") or {}
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}, got {_type_name(value)} ({value!r})"
    if kind == "literal_error":  # ctx: "'a', 'b' or 'c'"
        return f"{value!r} is not one of {ctx['expected'].replace(' or ', ', ')}"
    if kind == "greater_than_equal":
        return f"must be at least {ctx['ge']}, got {value!r}"
    if kind == "union_tag_invalid":
        tags = ctx["expected_tags"].replace("'", "")
        return f"unknown type {ctx['tag']!r} (choose from {tags})"
    if kind == "union_tag_not_found":
        return "missing required key 'type'"
    return str(ctx.get("message") or ctx.get("error") or error["msg"])


def _where(document: Mapping[str, Any], loc: Sequence[Any]) -> tuple[str | None, str | None]:
    """('[space.lr]', 'low') for ('space', 'lr', 'float', 'low'): the TOML table (None: the
    file) and the key below it. Union tags ('float') and list indexes are left out."""
    tables: list[str] = []
    keys: list[str] = []
    node: Any = document
    for part in loc:
        if isinstance(part, int):
            continue
        if not keys and isinstance(node, dict) and part not in node and part == node.get("type"):
            continue
        child = node.get(part) if isinstance(node, dict) and not keys else None
        if not tables or isinstance(child, dict):  # top-level keys are tables
            tables.append(part)
            node = child
        else:
            keys.append(part)
    return (f"[{'.'.join(tables)}]" if tables else None), (" ".join(keys) or None)


def _describe(document: Mapping[str, Any], error: ErrorDetails) -> str:
    """One pydantic error as `[table] key: message` (or `unknown key 'k' in [table]`)."""
    ctx = error.get("ctx") or {}
    extra_loc = ("type",) if error["type"] == "union_tag_invalid" else ctx.get("loc", ())
    table, key = _where(document, (*error["loc"], *extra_loc))
    if error["type"] == "unknown_key":
        return f"unknown key '{ctx['key']}' in {table or 'the file'}{ctx['extra']}"
    if error["type"] == "missing":
        if key is None:
            return f"{table}: missing table"
        return f"{table}: missing required key '{key}'"
    return f"{table} {key}: {_message(error)}" if key else f"{table}: {_message(error)}"
