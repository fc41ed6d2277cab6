"""Study files: one TOML file describes one Optuna study of the HAN.

A study file names the sampler and pruner, the data, the settings held fixed and the space
searched. Parameter names are the field names of `han.config` (HANConfig, DataConfig,
TrainConfig), so a study file only *overrides* settings; every default lives in `han.config`
and is never restated here.

Everything is checked when the file is loaded, before any training starts: a typo found
after an hour of trials costs an hour. Each problem is a `StudyFileError` with one line that
names the file and the offending key, so the CLI can print it as it is.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import importlib.util
import inspect
import math
import re
import tomllib
import typing
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import optuna

from han.config import COMPETITION_FORMAT, DataConfig, FileFormat, HANConfig, TrainConfig

__all__ = [
    "METRICS",
    "ParamSpec",
    "StudyFileError",
    "StudySpec",
    "builtin_study_path",
    "load_study",
    "split_settings",
    "suggest",
]

#: Metrics a study can optimise; the trainer reports them per epoch for pruning.
METRICS = ("dev_macro_f1",)
DIRECTIONS = ("maximize", "minimize")
PARAM_TYPES = ("float", "int", "categorical")

SAMPLERS: dict[str, type[optuna.samplers.BaseSampler]] = {
    "gp": optuna.samplers.GPSampler,
    "qmc": optuna.samplers.QMCSampler,
    "random": optuna.samplers.RandomSampler,
    "tpe": optuna.samplers.TPESampler,
}
PRUNERS: dict[str, type[optuna.pruners.BasePruner]] = {
    "hyperband": optuna.pruners.HyperbandPruner,
    "median": optuna.pruners.MedianPruner,
    "none": optuna.pruners.NopPruner,
    "percentile": optuna.pruners.PercentilePruner,
    "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
}
# What a study file gets when it names no sampler or pruner: Optuna's own choice.
_DEFAULT_SAMPLER = "tpe"
_DEFAULT_PRUNER = "median"

_NAME_RE = re.compile(r"[A-Za-z0-9_.-]+")
_TOP_LEVEL = ("study", "sampler", "pruner", "data", "fixed", "space", "reference")
_STUDY_KEYS = ("name", "direction", "metric", "trials", "enqueue_reference")
_FORMAT_KEYS = tuple(field.name for field in dataclasses.fields(FileFormat))
_DATA_KEYS = ("train", "test", "embeddings", "labels", "synthetic", *_FORMAT_KEYS)
# Keys of han.synthetic.SyntheticSpec, used only while that module cannot be imported.
_SYNTHETIC_FALLBACK = ("n_train", "n_test", "length_scale", "seed")

_CONFIGS: tuple[type, ...] = (HANConfig, DataConfig, TrainConfig)
# HANConfig fields that come from the data, never from a study.
_FROM_DATA = ("vocab_size", "num_classes", "pretrained_embeddings")
_STUDIES_DIR = Path(__file__).resolve().parent.parent / "studies"


def _settings_table() -> tuple[dict[str, int], dict[str, Any], dict[str, Any]]:
    """Which config owns each settable name, its type and its default (from han.config)."""
    owner: dict[str, int] = {}
    types: dict[str, Any] = {}
    defaults: dict[str, Any] = {}
    for index, config_type in enumerate(_CONFIGS):
        hints = typing.get_type_hints(config_type)
        for field in dataclasses.fields(config_type):
            if field.name in _FROM_DATA:
                continue
            if field.name in owner:
                # split_settings routes by name alone, so names must be unique.
                raise RuntimeError(f"setting {field.name!r} is in two config classes")
            owner[field.name] = index
            types[field.name] = hints[field.name]
            defaults[field.name] = field.default
    return owner, types, defaults


_OWNER, _FIELD_TYPES, _DEFAULTS = _settings_table()


class StudyFileError(ValueError):
    """A study file is missing, unreadable or invalid; the message is one line."""


@dataclass(frozen=True, kw_only=True)
class ParamSpec:
    """One searched parameter; `name` is a config field name.

    Numeric parameters use `low`, `high`, `log` and `step` (None: Optuna's default step);
    categorical ones use `choices`.
    """

    name: str
    type: Literal["float", "int", "categorical"]
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple[Any, ...] | None = None

    def contains(self, value: Any) -> bool:
        """Whether Optuna would accept `value` for this parameter (as in an enqueued trial).

        Optuna stores an out-of-range enqueued value with only a warning, so the reference
        trial is checked here instead.
        """
        if self.type == "categorical":
            assert self.choices is not None
            return any(_same_choice(value, choice) for choice in self.choices)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if self.type == "int" and not isinstance(value, int):
            return False
        assert self.low is not None and self.high is not None
        if not self.low <= value <= self.high:
            return False
        if self.step is None:
            return True
        k = (value - self.low) / self.step
        return abs(k - round(k)) < 1e-8

    def describe(self) -> str:
        """The space in words, for messages and reports."""
        if self.type == "categorical":
            assert self.choices is not None
            return "one of " + ", ".join(repr(c) for c in self.choices)
        extra = " log" if self.log else ""
        if self.step is not None:
            extra += f" step {self.step}"
        return f"[{self.low}, {self.high}]{extra}"


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
    metric: str
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
    space: tuple[ParamSpec, ...]
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
    kwargs = {key: value for key, value in table.items() if key != "name"}
    return registry[table["name"]](**kwargs)


def builtin_study_path(name: str = "demo") -> Path:
    """The shipped study file `studies/NAME.toml`.

    The package is installed editable, so the studies folder sits next to `search/`.
    """
    available = sorted(p.stem for p in _STUDIES_DIR.glob("*.toml"))
    if not _NAME_RE.fullmatch(name) or name not in available:
        raise StudyFileError(
            f"no built-in study {name!r} (choose from {', '.join(available) or 'none'})"
        )
    return _STUDIES_DIR / f"{name}.toml"


def load_study(path: str | Path) -> StudySpec:
    """Read and validate a study file; every problem is a one-line `StudyFileError`."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise StudyFileError(f"{path}: no such study file") from None
    except UnicodeDecodeError:
        raise StudyFileError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise StudyFileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise StudyFileError(f"{path}: TOML syntax error: {_one_line(exc)}") from None
    return _Parser(path).parse(document)


def suggest(trial: optuna.trial.BaseTrial, space: Sequence[ParamSpec]) -> dict[str, Any]:
    """Ask the trial for a value of each searched parameter, in the space's order."""
    values: dict[str, Any] = {}
    for param in space:
        if param.type == "categorical":
            assert param.choices is not None
            values[param.name] = trial.suggest_categorical(param.name, list(param.choices))
            continue
        assert param.low is not None and param.high is not None
        # Only pass step when the file gives one, so Optuna's default stays Optuna's.
        step = {} if param.step is None else {"step": param.step}
        if param.type == "float":
            values[param.name] = trial.suggest_float(
                param.name, param.low, param.high, log=param.log, **step
            )
        else:
            values[param.name] = trial.suggest_int(
                param.name, int(param.low), int(param.high), log=param.log, **step
            )
    return values


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


# --------------------------------------------------------------------------- validation

_MISSING: Any = object()


def _one_line(value: object) -> str:
    return " ".join(str(value).splitlines()).strip()


def _same_choice(a: Any, b: Any) -> bool:
    # 1 == True in Python, but a study that lists [1, 2] does not accept `true`.
    return type(a) is type(b) and a == b


def _type_name(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a float", str: "a string",
             list: "an array", dict: "a table"}
    return names.get(type(value), type(value).__name__)


def _kind(hint: Any) -> str:
    """'int', 'float', 'bool', 'str', 'choice' (a Literal) or 'any' for a field's type."""
    if typing.get_origin(hint) is Literal:
        return "choice"
    if hint in (int, float, bool, str):
        return hint.__name__
    # Other types are left to the dataclass's own checks, which load_study runs.
    return "any"


def _field_kind(name: str) -> str:
    return _kind(_FIELD_TYPES[name])


def _coerce(hint: Any, value: Any) -> Any:
    """Check a value against a field's type; returns it (ints become floats for floats).

    Raises ValueError with a message that reads after 'KEY: '.
    """
    kind = _kind(hint)
    if kind == "choice":
        allowed = typing.get_args(hint)
        if not any(_same_choice(value, a) for a in allowed):
            raise ValueError(
                f"{value!r} is not one of {', '.join(repr(a) for a in allowed)}"
            )
        return value
    if kind == "any":
        return value
    if kind == "float" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    expected = {"int": int, "float": float, "str": str, "bool": bool}[kind]
    if type(value) is not expected:
        wanted = {"int": "an integer", "float": "a number", "str": "a string",
                  "bool": "a boolean"}[kind]
        raise ValueError(f"expected {wanted}, got {_type_name(value)} ({value!r})")
    if kind == "float" and not math.isfinite(value):
        raise ValueError(f"must be finite, got {value!r}")
    return value


def _coerce_setting(name: str, value: Any) -> Any:
    return _coerce(_FIELD_TYPES[name], value)


def _annotation_types(annotation: Any) -> tuple[type, ...] | None:
    """TOML-expressible types of a constructor argument; None when unannotated.

    Optuna annotates with strings ('int | None') or classes (int); arguments that take
    callables or objects come back empty, since a TOML file cannot give them.
    """
    if annotation is inspect.Parameter.empty:
        return None
    text = annotation if isinstance(annotation, str) else getattr(
        annotation, "__name__", str(annotation)
    )
    scalars = {"int": int, "float": float, "bool": bool, "str": str}
    return tuple(scalars[t] for t in (t.strip() for t in text.split("|")) if t in scalars)


def _matches(value: Any, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool):
        return bool in types
    if isinstance(value, int):
        return int in types or float in types
    return any(type(value) is t for t in types)


def _component_args(cls: type) -> dict[str, inspect.Parameter]:
    """Keyword arguments of a sampler or pruner class that a study file may give."""
    params = inspect.signature(cls.__init__).parameters
    return {
        name: p for name, p in params.items()
        if name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }


def _check_hyperband(**kwargs: Any) -> None:
    """HyperbandPruner only checks its arguments at the first prune, deep into a study.

    Its brackets are SuccessiveHalvingPruners, which check min_resource and
    reduction_factor when built, so build one now.
    """
    args = inspect.signature(optuna.pruners.HyperbandPruner.__init__).parameters
    values = {name: kwargs.get(name, args[name].default)
              for name in ("min_resource", "max_resource", "reduction_factor", "bootstrap_count")}
    optuna.pruners.SuccessiveHalvingPruner(
        min_resource=values["min_resource"], reduction_factor=values["reduction_factor"],
        bootstrap_count=values["bootstrap_count"],
    )
    max_resource = values["max_resource"]
    if isinstance(max_resource, int) and max_resource < values["min_resource"]:
        raise ValueError(f"max_resource ({max_resource}) < min_resource "
                         f"({values['min_resource']})")


def _synthetic_spec() -> type | None:
    """han.synthetic.SyntheticSpec, or None while that module is not there."""
    if importlib.util.find_spec("han.synthetic") is None:
        return None
    spec_type = getattr(importlib.import_module("han.synthetic"), "SyntheticSpec", None)
    return spec_type if dataclasses.is_dataclass(spec_type) else None


class _Parser:
    """Turns a parsed TOML document into a StudySpec, raising on the first problem."""

    def __init__(self, path: Path) -> None:
        self.path = path

    # ---- errors and small readers

    def error(self, where: str, message: str) -> StudyFileError:
        return StudyFileError(f"{self.path}: {where}: {_one_line(message)}")

    def check_keys(self, table: Mapping[str, Any], allowed: Sequence[str], where: str,
                   hint: str = "") -> None:
        for key in table:
            if key not in allowed:
                close = difflib.get_close_matches(key, list(allowed), n=1)
                if close:
                    extra = f" (did you mean '{close[0]}'?)"
                elif hint or not allowed:
                    extra = hint
                else:
                    extra = f" (known keys: {', '.join(allowed)})"
                raise StudyFileError(
                    _one_line(f"{self.path}: unknown key '{key}' in {where}{extra}")
                )

    def table(self, parent: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
        value = parent.get(key, {})
        if not isinstance(value, dict):
            raise self.error(where, f"must be a table, got {_type_name(value)}")
        return value

    def get(self, table: Mapping[str, Any], key: str, where: str, kind: type,
            default: Any = _MISSING) -> Any:
        """table[key] checked to be of `kind` (float accepts integers, int refuses booleans)."""
        if key not in table:
            if default is _MISSING:
                raise self.error(where, f"missing required key '{key}'")
            return default
        value = table[key]
        if kind is float:
            ok = _matches(value, (float,)) and math.isfinite(value)
        else:
            ok = type(value) is kind
        if not ok:
            wanted = {str: "a string", int: "an integer", bool: "a boolean",
                      float: "a finite number"}[kind]
            raise self.error(f"{where} {key}",
                             f"expected {wanted}, got {_type_name(value)} ({value!r})")
        return value

    # ---- sections

    def parse(self, document: dict[str, Any]) -> StudySpec:
        self.check_keys(document, _TOP_LEVEL, "the file",
                        f" (tables: {', '.join(f'[{t}]' for t in _TOP_LEVEL)})")
        if "study" not in document:
            raise self.error("[study]", "missing table (it needs at least name and trials)")
        study = self.parse_study(self.table(document, "study", "[study]"))
        sampler = self.parse_component(self.table(document, "sampler", "[sampler]"),
                                       "[sampler]", "sampler", SAMPLERS, _DEFAULT_SAMPLER)
        pruner = self.parse_component(self.table(document, "pruner", "[pruner]"),
                                      "[pruner]", "pruner", PRUNERS, _DEFAULT_PRUNER)
        data = self.parse_data(self.table(document, "data", "[data]"))
        fixed = self.parse_fixed(self.table(document, "fixed", "[fixed]"))
        space = self.parse_space(self.table(document, "space", "[space]"), fixed)
        reference = self.parse_reference(self.table(document, "reference", "[reference]"),
                                         fixed, space)
        spec = StudySpec(
            **study, sampler=sampler, pruner=pruner, **data, fixed=fixed, space=space,
            reference=reference, source=self.path.absolute(),
        )
        self.check_reference_in_space(spec)
        self.check_configs(spec)
        return spec

    def parse_study(self, table: dict[str, Any]) -> dict[str, Any]:
        self.check_keys(table, _STUDY_KEYS, "[study]")
        name = self.get(table, "name", "[study]", str)
        if not _NAME_RE.fullmatch(name):
            raise self.error("[study] name",
                             f"{name!r} may only use letters, digits, '_', '.' and '-'")
        direction = self.get(table, "direction", "[study]", str, "maximize")
        if direction not in DIRECTIONS:
            raise self.error("[study] direction",
                             f"{direction!r} is not one of {', '.join(DIRECTIONS)}")
        metric = self.get(table, "metric", "[study]", str, METRICS[0])
        if metric not in METRICS:
            raise self.error("[study] metric",
                             f"unknown metric {metric!r} (choose from {', '.join(METRICS)})")
        trials = self.get(table, "trials", "[study]", int)
        if trials < 1:
            raise self.error("[study] trials", f"must be at least 1, got {trials}")
        enqueue = self.get(table, "enqueue_reference", "[study]", bool, True)
        return {"name": name, "direction": direction, "metric": metric, "trials": trials,
                "enqueue_reference": enqueue}

    def parse_component(self, table: dict[str, Any], where: str, kind: str,
                        registry: Mapping[str, type], default: str) -> dict[str, Any]:
        name = self.get(table, "name", where, str, default)
        if name not in registry:
            raise self.error(f"{where} name", f"unknown {kind} {name!r} "
                                              f"(choose from {', '.join(sorted(registry))})")
        cls = registry[name]
        args = _component_args(cls)
        kwargs = {key: value for key, value in table.items() if key != "name"}
        takes = ", ".join(args) or "no arguments"
        self.check_keys(kwargs, list(args), where, f" ({cls.__name__} takes: {takes})")
        for key, value in kwargs.items():
            types = _annotation_types(args[key].annotation)
            if types == ():
                raise self.error(f"{where} {key}",
                                 f"{cls.__name__}'s {key} cannot be given in a study file")
            if isinstance(value, dict | list) or (types and not _matches(value, types)):
                wanted = " or ".join(t.__name__ for t in types) if types else "a scalar"
                raise self.error(f"{where} {key}",
                                 f"expected {wanted}, got {_type_name(value)} ({value!r})")
        for arg_name, arg in args.items():
            if arg.default is inspect.Parameter.empty and arg_name not in kwargs:
                raise self.error(where, f"missing required key '{arg_name}' for {kind} {name!r}")
        try:
            # Building it once checks values the signature cannot (e.g. reduction_factor).
            # Its warnings (experimental, deprecated) come when the study builds the real one.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cls(**kwargs)
                if cls is optuna.pruners.HyperbandPruner:
                    _check_hyperband(**kwargs)
        except (TypeError, ValueError) as exc:
            raise self.error(where, f"{cls.__name__}: {exc}") from None
        return {"name": name, **kwargs}

    def parse_data(self, table: dict[str, Any]) -> dict[str, Any]:
        self.check_keys(table, _DATA_KEYS, "[data]")
        paths: dict[str, Path | None] = {}
        for key in ("train", "test", "embeddings"):
            value = self.get(table, key, "[data]", str, None)
            if value is not None and not value.strip():
                raise self.error(f"[data] {key}", "empty path")
            # Relative to the study file, so a study runs the same from any directory.
            paths[key] = (
                None if value is None
                else (self.path.parent / Path(value).expanduser()).absolute()
            )
        if paths["test"] is not None and paths["train"] is None:
            raise self.error("[data] test", "a test file needs a train file (set [data] train)")

        labels = table.get("labels")
        label_names: tuple[str, ...] | None = None
        if labels is not None:
            if not isinstance(labels, list) or not labels:
                raise self.error("[data] labels", "expected a non-empty array of strings")
            for label in labels:
                if not isinstance(label, str) or not label.strip():
                    raise self.error("[data] labels",
                                     f"expected non-empty strings, got {label!r}")
            if len(set(labels)) != len(labels):
                dupes = sorted({label for label in labels if labels.count(label) > 1})
                raise self.error("[data] labels", f"repeated names: {', '.join(dupes)}")
            label_names = tuple(labels)

        synthetic = self.table(table, "synthetic", "[data.synthetic]")
        if synthetic and paths["train"] is not None:
            raise self.error("[data.synthetic]",
                             "settings of the built-in corpus, unused when [data] train is set")
        synthetic = self.parse_synthetic(synthetic)
        file_format = self.parse_file_format(table)
        if file_format != COMPETITION_FORMAT and paths["train"] is None:
            given = next(key for key in _FORMAT_KEYS if key in table)
            raise self.error(f"[data] {given}", "describes a data file, but there is no "
                                                "[data] train (the built-in corpus has the "
                                                "competition's format)")
        return {"train_path": paths["train"], "test_path": paths["test"],
                "embeddings_path": paths["embeddings"], "label_names": label_names,
                "synthetic": synthetic, "file_format": file_format}

    def parse_file_format(self, table: dict[str, Any]) -> FileFormat:
        """[data] sep, text_col, label_col and tokens, checked as han.config.FileFormat."""
        hints = typing.get_type_hints(FileFormat)
        given: dict[str, Any] = {}
        for key in _FORMAT_KEYS:
            if key in table:
                try:
                    given[key] = _coerce(hints[key], table[key])
                except ValueError as exc:
                    raise self.error(f"[data] {key}", str(exc)) from None
        try:
            return FileFormat(**given)
        except ValueError as exc:
            raise self.error("[data]", str(exc)) from None

    def parse_synthetic(self, table: dict[str, Any]) -> dict[str, Any]:
        """Checked against han.synthetic.SyntheticSpec (its fields, types and own checks)."""
        spec_type = _synthetic_spec()
        if spec_type is None:
            self.check_keys(table, _SYNTHETIC_FALLBACK, "[data.synthetic]")
            hints: dict[str, Any] = {}
        else:
            self.check_keys(table, [f.name for f in dataclasses.fields(spec_type)],
                            "[data.synthetic]")
            hints = typing.get_type_hints(spec_type)
        synthetic: dict[str, Any] = {}
        for key, value in table.items():
            try:
                if key in hints:
                    synthetic[key] = _coerce(hints[key], value)
                elif isinstance(value, bool | int | float) and math.isfinite(value):
                    synthetic[key] = value
                else:
                    raise ValueError(f"expected a number, got {_type_name(value)} ({value!r})")
            except ValueError as exc:
                raise self.error(f"[data.synthetic] {key}", str(exc)) from None
        if spec_type is not None:
            try:
                spec_type(**synthetic)
            except (TypeError, ValueError) as exc:
                raise self.error("[data.synthetic]", str(exc)) from None
        return synthetic

    def check_setting_name(self, name: str, where: str) -> None:
        if name in _FROM_DATA:
            raise self.error(f"{where} {name}", "comes from the data and cannot be set")
        self.check_keys({name: None}, list(_OWNER), where,
                        " (settings are the fields of HANConfig, DataConfig and TrainConfig)")

    def parse_fixed(self, table: dict[str, Any]) -> dict[str, Any]:
        fixed: dict[str, Any] = {}
        for name, value in table.items():
            self.check_setting_name(name, "[fixed]")
            try:
                fixed[name] = _coerce_setting(name, value)
            except ValueError as exc:
                raise self.error(f"[fixed] {name}", str(exc)) from None
        return fixed

    def parse_space(self, table: dict[str, Any],
                    fixed: Mapping[str, Any]) -> tuple[ParamSpec, ...]:
        if not table:
            raise self.error("[space]", "no searched parameters (add a [space.NAME] table)")
        space = []
        for name, param in table.items():
            self.check_setting_name(name, "[space]")
            where = f"[space.{name}]"
            if not isinstance(param, dict):
                raise self.error(where, f"must be a table with a type, got {_type_name(param)}")
            if name in fixed:
                raise self.error(where, f"{name} is also in [fixed]; a setting is either "
                                        "fixed or searched")
            space.append(self.parse_param(name, param, where))
        return tuple(space)

    def parse_param(self, name: str, table: dict[str, Any], where: str) -> ParamSpec:
        kind = self.get(table, "type", where, str)
        if kind not in PARAM_TYPES:
            raise self.error(f"{where} type",
                             f"unknown type {kind!r} (choose from {', '.join(PARAM_TYPES)})")
        field_kind = _field_kind(name)

        if kind == "categorical":
            self.check_keys(table, ("type", "choices"), where)
            if "choices" not in table:
                raise self.error(where, "missing required key 'choices'")
            choices = table["choices"]
            if not isinstance(choices, list):
                raise self.error(f"{where} choices",
                                 f"expected an array, got {_type_name(choices)}")
            if not choices:
                raise self.error(where, "empty choices")
            coerced = []
            for choice in choices:
                try:
                    coerced.append(_coerce_setting(name, choice))
                except ValueError as exc:
                    raise self.error(f"{where} choices", str(exc)) from None
            for i, choice in enumerate(coerced):
                if any(_same_choice(choice, other) for other in coerced[:i]):
                    raise self.error(f"{where} choices", f"{choice!r} is listed twice")
            return ParamSpec(name=name, type="categorical", choices=tuple(coerced))

        self.check_keys(table, ("type", "low", "high", "log", "step"), where)
        if field_kind not in ("int", "float"):
            raise self.error(f"{where} type", f"{name} is not numeric; use type = \"categorical\"")
        if field_kind != kind:
            raise self.error(f"{where} type", f"{name} is {'an' if field_kind == 'int' else 'a'} "
                                              f"{field_kind} setting; use type = \"{field_kind}\" "
                                              "or \"categorical\"")
        number = int if kind == "int" else float
        low = self.get(table, "low", where, number)
        high = self.get(table, "high", where, number)
        log = self.get(table, "log", where, bool, False)
        step = self.get(table, "step", where, number, None)
        if number is float:
            low, high = float(low), float(high)
            step = None if step is None else float(step)
        if low > high:
            raise self.error(where, f"low ({low}) > high ({high})")
        if log and (low <= 0 if kind == "float" else low < 1):
            bound = "> 0" if kind == "float" else ">= 1"
            raise self.error(f"{where} low", f"a log scale needs low {bound}, got {low}")
        if step is not None:
            if step <= 0:
                raise self.error(f"{where} step", f"must be positive, got {step}")
            if log and (kind == "float" or step != 1):
                raise self.error(f"{where} step", "a log scale cannot have a step")
            k = (high - low) / step
            if abs(k - round(k)) > 1e-8:
                raise self.error(f"{where} step",
                                 f"high - low ({high - low}) is not a multiple of step ({step})")
        return ParamSpec(name=name, type=kind, low=low, high=high, log=log, step=step)

    def parse_reference(self, table: dict[str, Any], fixed: Mapping[str, Any],
                        space: Sequence[ParamSpec]) -> dict[str, Any]:
        searched = {p.name: p for p in space}
        reference: dict[str, Any] = {}
        for name, value in table.items():
            self.check_setting_name(name, "[reference]")
            if name in fixed:
                raise self.error(f"[reference] {name}", f"{name} is fixed in [fixed]; the "
                                                        "reference gives searched settings only")
            if name not in searched:
                raise self.error(f"[reference] {name}", f"{name} is not searched "
                                                        f"(no [space.{name}])")
            try:
                value = _coerce_setting(name, value)
            except ValueError as exc:
                raise self.error(f"[reference] {name}", str(exc)) from None
            param = searched[name]
            if not param.contains(value):
                raise self.error(f"[reference] {name}",
                                 f"{value!r} is outside [space.{name}] ({param.describe()})")
            reference[name] = value
        return reference

    def check_reference_in_space(self, spec: StudySpec) -> None:
        """Optuna needs an enqueued trial inside the space; it only warns otherwise."""
        if not spec.enqueue_reference:
            return
        for param in spec.space:
            if param.name in spec.reference:
                continue
            default = _DEFAULTS[param.name]
            if not param.contains(default):
                raise self.error(
                    f"[space.{param.name}]",
                    f"the reference trial's {param.name} (config default {default!r}) is "
                    f"outside {param.describe()}; widen the space, set [reference] "
                    f"{param.name}, or set enqueue_reference = false",
                )

    def check_configs(self, spec: StudySpec) -> None:
        """Build the configs once per edge of the space, so values the training core
        rejects (dropout 1.0, folds 1...) fail now rather than in a trial."""
        self.try_configs("[fixed]", dict(spec.fixed))
        base = {**spec.fixed, **spec.reference_params()}
        self.try_configs("[reference]", base)
        for param in spec.space:
            if param.type == "categorical":
                assert param.choices is not None
                edges = [("choices", c) for c in param.choices]
            else:
                edges = [("low", param.low), ("high", param.high)]
            for key, value in edges:
                self.try_configs(f"[space.{param.name}] {key}", {**base, param.name: value})

    def try_configs(self, where: str, settings: dict[str, Any]) -> None:
        model, data, train = split_settings(settings)
        try:
            HANConfig(vocab_size=1, num_classes=2, **model)
            DataConfig(**data)
            TrainConfig(**train)
        except (TypeError, ValueError) as exc:
            raise self.error(where, str(exc)) from None
