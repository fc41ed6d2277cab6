"""The study-file schema: pydantic models of studies/*.toml, validated into a `StudySpec`.

A study file names the sampler and pruner, the data, the settings held fixed and the space
searched. Setting names and types are the fields of `han.config` (HANConfig, DataConfig,
TrainConfig), so a file only overrides them; every default lives there, none here. The whole
file is checked when it loads, before any training, and each problem is one
`StudyFileError` line naming the file and the key, which the CLI prints as it is.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

from pydantic import (
    Field,
    TypeAdapter,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from han.config import DataConfig, FileFormat, HANConfig, TrainConfig
from han.synthetic import SyntheticSpec
from search.errors import StudyFileError
from search.records import MODEL_NAME_RE, MODEL_NAME_RULE
from search.studyfile.components import PrunerTable, SamplerTable
from search.studyfile.settings import (
    CHECK_EPOCH_DOCS,
    DEFAULTS,
    DOCUMENT_SETTINGS,
    FROM_DATA,
    SETTING_TYPES,
    in_documents,
    pydantic_fields,
    split_settings,
)
from search.studyfile.space import CategoricalParam, ParamSpec, same_choice
from search.studyfile.spec import StudySpec
from search.studyfile.validation import (
    STRICT,
    Table,
    check_keys,
    describe,
    fail,
    message,
    one_line,
)

_NAME_RE = re.compile(r"[A-Za-z0-9_.-]+")
_ADAPTERS = {name: TypeAdapter(hint, config=STRICT) for name, hint in SETTING_TYPES.items()}
_FORMAT_KEYS = tuple(f.name for f in dataclasses.fields(FileFormat))


def _as_setting(name: str, value: Any, *loc: str) -> Any:
    """`value` checked as the setting's type (an integer becomes a float for a float)."""
    try:
        return _ADAPTERS[name].validate_python(value)
    except ValidationError as exc:
        raise fail(message(exc.errors()[0]), *loc) from None


class _SettingsTable(Table):
    refused = dict.fromkeys(FROM_DATA, "comes from the data and cannot be set")
    unknown_hint = " (settings are the fields of HANConfig, DataConfig and TrainConfig)"


#: [fixed] and [reference]: any field of the three configs, typed as there.
_Settings = create_model("Settings", __base__=_SettingsTable,
                         **{name: (hint, None) for name, hint in SETTING_TYPES.items()})


class _StudyTable(Table):
    refused: ClassVar[dict[str, str]] = {
        "metric": "removed: a study always maximises or minimises dev_macro_f1, the metric the "
                  "trainer reports each epoch (delete this line)"}
    name: str
    direction: Literal["maximize", "minimize"] = "maximize"
    trials: int = Field(ge=1)
    enqueue_reference: bool = True
    # Defaults: StudySpec's (None: not given).
    baseline: bool | None = None
    reference_after: int | None = Field(default=None, ge=0)
    start_from_data: bool | None = None
    timeout: float | None = Field(default=None, gt=0)
    max_trial_share: float | None = Field(default=None, gt=0, le=1)
    pause_and_promote: bool | None = None
    shape_draws: bool | None = None

    @field_validator("name")
    @classmethod
    def _plain_name(cls, name: str) -> str:
        if not _NAME_RE.fullmatch(name):
            raise fail(f"{name!r} may only use letters, digits, '_', '.' and '-'")
        return name


class _SyntheticTable(Table):
    @model_validator(mode="after")
    def _valid(self) -> Self:
        try:
            SyntheticSpec(**self.model_dump(exclude_unset=True))
        except (TypeError, ValueError) as exc:
            raise fail(str(exc)) from None
        return self


#: [data.synthetic]: han.synthetic.SyntheticSpec's fields.
_Synthetic = create_model("Synthetic", __base__=_SyntheticTable, **pydantic_fields(SyntheticSpec))


class _DataTable(Table):
    train: str | None = None
    test: str | None = None
    embeddings: str | None = None
    labels: tuple[str, ...] | None = None
    # Default: StudySpec's (None: not given).
    word2vec: bool | None = None
    synthetic: _Synthetic = Field(default_factory=_Synthetic)

    @field_validator("train", "test", "embeddings")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise fail("empty path")
        return value

    @field_validator("labels", mode="before")
    @classmethod
    def _class_names(cls, labels: Any) -> tuple[str, ...]:
        if not isinstance(labels, list) or not labels:
            raise fail("expected a non-empty array of strings")
        for label in labels:
            if not isinstance(label, str) or not label.strip():
                raise fail(f"expected non-empty strings, got {label!r}")
        if repeated := sorted({label for label in labels if labels.count(label) > 1}):
            raise fail(f"repeated names: {', '.join(repeated)}")
        return tuple(labels)

    def file_format(self) -> FileFormat:
        """[data] sep, text_col, label_col and tokens as han.config.FileFormat."""
        try:
            return FileFormat(**self.model_dump(include=set(_FORMAT_KEYS), exclude_unset=True))
        except ValueError as exc:
            raise fail(str(exc)) from None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.test is not None and self.train is None:
            raise fail("a test file needs a train file (set [data] train)", "test")
        if self.synthetic.model_fields_set and self.train is not None:
            raise fail("settings of the built-in corpus, unused when [data] train is set",
                       "synthetic")
        if not self.file_format().fits_competition() and self.train is None:
            given = next(key for key in _FORMAT_KEYS if key in self.model_fields_set)
            raise fail("describes a data file, but there is no [data] train (the built-in "
                       "corpus has the competition's format)", given)
        return self


class _ExportTable(Table):
    #: Register the best trial's model under this name at the end of every `run`.
    registered_model: str | None = None

    @field_validator("registered_model")
    @classmethod
    def _model_name(cls, name: str | None) -> str | None:
        if name is not None and not MODEL_NAME_RE.fullmatch(name):
            raise fail(f"{name!r}: a model name is {MODEL_NAME_RULE}")
        return name


#: [data]: the files, class names, built-in corpus and han.config.FileFormat's fields.
_Data = create_model("Data", __base__=_DataTable, **pydantic_fields(FileFormat))


def _searched(name: str, param: Any, fixed: Mapping[str, Any]) -> Any:
    """[space.NAME] checked against the setting NAME: its type, choices typed as it is."""
    if name in fixed:
        raise fail(f"{name} is also in [fixed]; a setting is either fixed or searched",
                   "space", name)
    hint = SETTING_TYPES[name]
    if isinstance(param, CategoricalParam):
        choices = [_as_setting(name, c, "space", name, "choices") for c in param.choices]
        for i, choice in enumerate(choices):
            if any(same_choice(choice, other) for other in choices[:i]):
                raise fail(f"{choice!r} is listed twice", "space", name, "choices")
        return param.model_copy(update={"choices": choices}).named(name)
    if hint not in (int, float):
        raise fail(f'{name} is not numeric; use type = "categorical"', "space", name, "type")
    if hint.__name__ != param.type:
        raise fail(f"{name} is {'an' if hint is int else 'a'} {hint.__name__} setting; use "
                   f'type = "{hint.__name__}" or "categorical"', "space", name, "type")
    return param.named(name)


def _check_reference(reference: Mapping[str, Any], fixed: Mapping[str, Any],
                     space: Mapping[str, Any], *, enqueued: bool) -> None:
    """[reference] gives searched settings inside the space; with `enqueued`, so must every
    config default it leaves (Optuna only warns about an enqueued trial outside it)."""
    for name, value in reference.items():
        if name in fixed:
            raise fail(f"{name} is fixed in [fixed]; the reference gives searched settings "
                       "only", "reference", name)
        if name not in space:
            raise fail(f"{name} is not searched (no [space.{name}])", "reference", name)
        if not space[name].contains(value):
            raise fail(f"{value!r} is outside [space.{name}] ({space[name].describe()})",
                       "reference", name)
    for name, param in space.items():
        if enqueued and name not in reference and not param.contains(DEFAULTS[name]):
            raise fail(f"the reference trial's {name} (config default {DEFAULTS[name]!r}) is "
                       f"outside {param.describe()}; widen the space, set [reference] {name}, "
                       "or set enqueue_reference = false", "space", name)


def _in_documents(fixed: dict[str, Any]) -> dict[str, Any]:
    """[fixed] with its counts in epochs as documents of a stand-in epoch, to be checked."""
    converted = dict(fixed)
    for name in DOCUMENT_SETTINGS:
        if name in fixed:
            try:
                converted[name] = in_documents(fixed[name], CHECK_EPOCH_DOCS)
            except ValueError as exc:
                raise fail(str(exc), "fixed", name) from None
    return converted


def _check_configs(fixed: dict[str, Any], base: dict[str, Any], space: Mapping[str, Any]) -> None:
    """Build the configs at each edge of the space, so values the training core rejects
    (dropout 1.0, folds 1...) fail now rather than in a trial."""
    fixed, base = _in_documents(fixed), _in_documents(base)
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
            raise fail(str(exc), *loc) from None


class StudyFile(Table):
    """A whole study file; `to_spec` gives what the search reads."""

    study: _StudyTable
    sampler: SamplerTable = Field(default_factory=SamplerTable)
    pruner: PrunerTable = Field(default_factory=PrunerTable)
    data: _Data = Field(default_factory=_Data)
    fixed: _Settings = Field(default_factory=_Settings)
    space: dict[str, ParamSpec] = Field(default_factory=dict, validate_default=True)
    reference: _Settings = Field(default_factory=_Settings)
    export: _ExportTable = Field(default_factory=_ExportTable)

    @field_validator("space", mode="before")
    @classmethod
    def _setting_names(cls, space: Any) -> Any:
        if isinstance(space, dict):
            check_keys(space, list(SETTING_TYPES), _SettingsTable.refused,
                       _SettingsTable.unknown_hint)
        return space

    @field_validator("space")
    @classmethod
    def _not_empty(cls, space: dict[str, Any]) -> dict[str, Any]:
        if not space:
            raise fail("no searched parameters (add a [space.NAME] table)")
        return space

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        fixed = self.fixed.model_dump(exclude_unset=True)
        reference = self.reference.model_dump(exclude_unset=True)
        self.space = {name: _searched(name, p, fixed) for name, p in self.space.items()}
        _check_reference(reference, fixed, self.space, enqueued=self.study.enqueue_reference)
        base = {**fixed, **{name: reference.get(name, DEFAULTS[name]) for name in self.space}}
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
            register=self.export.registered_model,
            **self.study.model_dump(include={"baseline", "reference_after", "start_from_data",
                                             "timeout", "max_trial_share",
                                             "pause_and_promote", "shape_draws"},
                                    exclude_unset=True),
            **data.model_dump(include={"word2vec"}, exclude_unset=True),
        )


StudyFile.unknown_hint = f" (tables: {', '.join(f'[{t}]' for t in StudyFile.model_fields)})"


# Compression suffixes the loader reads through: `news.csv.gz` names the study `news`.
_COMPRESSED = (".gz", ".zip")
# The name of a study whose training file's name has no letter or digit left.
_FALLBACK_NAME = "data"


def name_for_file(path: Path) -> str:
    """A study name for a training file: its stem (`data/news.csv.gz` -> `news`), every run
    of characters a study name cannot hold replaced by '-'."""
    name = path.name
    for suffix in _COMPRESSED:
        name = name.removesuffix(suffix)
    stem = Path(name).stem or name
    plain = re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip("-.")
    return plain or _FALLBACK_NAME


def _shipped_studies() -> dict[str, Path]:
    """The study files shipped with the package (studies/, installed as `search.studies`)."""
    try:
        folder: Any = importlib.resources.files("search.studies")
    except ModuleNotFoundError:
        # A source tree (PYTHONPATH, or an editable install: setuptools' editable finder
        # cannot place a data-only package kept outside its parent): studies/ beside search/.
        folder = Path(__file__).resolve().parents[2] / "studies"
    if not folder.is_dir():
        return {}
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
        raise StudyFileError(f"{path}: TOML syntax error: {one_line(exc)}") from None
    except ValidationError as exc:
        problem = describe(document, exc.errors(include_url=False)[0])
        raise StudyFileError(one_line(f"{path}: {problem}")) from None


