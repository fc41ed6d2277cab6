"""What a study records about itself, on the Optuna study: its data files and format, its
dataset's fingerprint, its baseline, its word2vec vectors and its pruner's first rung.

No other module spells a record key: they read and write through the accessors here (and in
search.records.trial and search.records.tags), so a key is renamed in one place and every
reader of a study agrees on what it holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import optuna

from han.config import COMPETITION_FORMAT, FileFormat
from search.errors import SearchError
from search.records.tags import fingerprint_tags
from search.version import RECORDS_SCHEMA, han_search_version

_TRAIN_PATH = "train_path"
_TEST_PATH = "test_path"
# Class names in class-id order, for reports (absent when the classes have no names).
_CLASS_NAMES = "class_names"
# How the study's files are read (han.config.FileFormat as a dict).
_FILE_FORMAT = "file_format"


@dataclass(frozen=True, kw_only=True)
class StudyRecord:
    """What a study holds about its data, written when a run opens it."""

    train_path: Path | None = None
    test_path: Path | None = None
    file_format: FileFormat = COMPETITION_FORMAT
    class_names: tuple[str, ...] | None = None

    @classmethod
    def of(cls, study: optuna.Study) -> StudyRecord:
        """The study's record; studies run before a key was recorded get its default (the
        competition's file format, no class names)."""
        attrs = study.user_attrs
        return cls(train_path=_path(attrs.get(_TRAIN_PATH)),
                   test_path=_path(attrs.get(_TEST_PATH)),
                   file_format=replace(COMPETITION_FORMAT, **attrs.get(_FILE_FORMAT, {})),
                   class_names=_names(attrs.get(_CLASS_NAMES)))

    def write(self, study: optuna.Study) -> None:
        """Set every known field on the study (fields that are None are left alone)."""
        if self.train_path is not None:
            study.set_user_attr(_TRAIN_PATH, str(self.train_path.resolve()))
        if self.test_path is not None:
            study.set_user_attr(_TEST_PATH, str(self.test_path.resolve()))
        study.set_user_attr(_FILE_FORMAT, asdict(self.file_format))
        if self.class_names is not None:
            study.set_user_attr(_CLASS_NAMES, list(self.class_names))


# The training data the study was created with (DatasetRecord as a dict).
_DATASET = "dataset"
# How much of the content hash is shown (`studies`, `show`, messages) and kept in tags.
SHORT_HASH = 12
_TAG_HASH = 16


@dataclass(frozen=True, kw_only=True)
class DatasetRecord:
    """A study's training data: what makes two datasets the same (the SHA-256 of the file's
    bytes and the format it is read with, never the path) and what describes it.

    `path` is where the data was last read: the same bytes under another path are the same
    dataset, and the record follows the file to where it is now. `builtin`: the generated
    corpus of a study file that names no training file.
    """

    path: Path
    sha256: str
    size: int
    docs: int
    classes: int
    file_format: FileFormat = COMPETITION_FORMAT
    builtin: bool = False

    @property
    def short_hash(self) -> str:
        return self.sha256[:SHORT_HASH]

    @property
    def name(self) -> str:
        """The data's name for people: its file name, or "built-in corpus"."""
        return "built-in corpus" if self.builtin else self.path.name

    def same_data(self, other: DatasetRecord) -> bool:
        return self.sha256 == other.sha256 and self.file_format == other.file_format

    def describe(self, *, with_format: bool = False) -> str:
        """One phrase: `train.tsv (240 docs, 4 classes, sha256 0123456789ab)`."""
        read_as = ""
        if with_format:
            read_as = ", read with " + " ".join(
                f"{key} {value!r}" for key, value in asdict(self.file_format).items())
        return (f"{self.name} ({self.docs} docs, {self.classes} classes, sha256 "
                f"{self.short_hash}{read_as})")

    def tags(self) -> dict[str, str]:
        """The fingerprint on a trial's MLflow run: `data.path`, `data.sha256` (a prefix)..."""
        return fingerprint_tags(path=self.path, size=self.size, sha256=self.sha256[:_TAG_HASH],
                                docs=self.docs, classes=self.classes)

    @classmethod
    def of(cls, study: optuna.Study | optuna.study.StudySummary) -> DatasetRecord | None:
        """The study's dataset; None for a study created before datasets were recorded."""
        value = study.user_attrs.get(_DATASET)
        if not isinstance(value, dict):
            return None
        return cls(path=Path(value["path"]), sha256=str(value["sha256"]),
                   size=int(value["size"]), docs=int(value["docs"]),
                   classes=int(value["classes"]),
                   file_format=replace(COMPETITION_FORMAT, **value.get("file_format", {})),
                   builtin=bool(value.get("builtin", False)))

    def write(self, study: optuna.Study) -> None:
        study.set_user_attr(_DATASET, asdict(self) | {"path": str(self.path.resolve())})
# The study's linear baseline (han.baseline), trained once before its first trial.
_BASELINE = "baseline"


@dataclass(frozen=True, kw_only=True)
class BaselineRecord:
    """The study's linear baseline: how it scored on the trials' dev fold, what it cost, what
    it was and its MLflow run."""

    dev_macro_f1: float
    dev_accuracy: float
    seconds: float
    features: int
    model: str
    run_id: str | None = None

    @classmethod
    def of(cls, study: optuna.Study) -> BaselineRecord | None:
        """The study's baseline; None when it has none (turned off, or never trained)."""
        value = study.user_attrs.get(_BASELINE)
        if not isinstance(value, dict):
            return None
        return cls(dev_macro_f1=float(value["dev_macro_f1"]),
                   dev_accuracy=float(value["dev_accuracy"]), seconds=float(value["seconds"]),
                   features=int(value["features"]), model=str(value["model"]),
                   run_id=value.get("run_id"))

    def write(self, study: optuna.Study) -> None:
        study.set_user_attr(_BASELINE, asdict(self))


# The word2vec vectors a run trained (or found cached) for the study's trials.
_WORD2VEC = "word2vec"


@dataclass(frozen=True, kw_only=True)
class Word2VecRecord:
    """The word2vec vectors file of the study's trials, its cache key, and the MLflow run
    `word2vec` that logged it (so a later session that reuses the file logs no second run)."""

    key: str
    path: Path
    run_id: str | None = None

    @classmethod
    def of(cls, study: optuna.Study) -> Word2VecRecord | None:
        value = study.user_attrs.get(_WORD2VEC)
        if not isinstance(value, dict):
            return None
        return cls(key=str(value["key"]), path=Path(value["path"]), run_id=value.get("run_id"))

    def write(self, study: optuna.Study) -> None:
        study.set_user_attr(_WORD2VEC, asdict(self) | {"path": str(self.path.resolve())})


# The study's first rung: where learning first showed in its first trials (search.pruners).
_FIRST_RUNG = "first_rung"


def first_rung(study: optuna.Study) -> dict[str, Any] | None:
    value = study.user_attrs.get(_FIRST_RUNG)
    return value if isinstance(value, dict) else None


def set_first_rung(study: optuna.Study, rung: Mapping[str, Any]) -> None:
    study.set_user_attr(_FIRST_RUNG, dict(rung))


def _path(value: Any) -> Path | None:
    return None if value in (None, "") else Path(value)



def _names(value: Any) -> tuple[str, ...] | None:
    return None if value is None else tuple(str(name) for name in value)


# The han-search that last wrote the study, and the schema of its records (search.version).
_WRITTEN_BY = "han_search_version"
_SCHEMA = "records_schema"


@dataclass(frozen=True, kw_only=True)
class VersionRecord:
    """Which han-search last wrote a study; a study from before versions were recorded has
    neither (schema 0)."""

    version: str | None = None
    schema: int = 0

    @classmethod
    def of(cls, study: optuna.Study) -> VersionRecord:
        attrs = study.user_attrs
        return cls(version=attrs.get(_WRITTEN_BY), schema=int(attrs.get(_SCHEMA, 0)))

    def check(self, name: str) -> None:
        """Refuse a study whose records are newer than this han-search reads; an older one
        is continued (every record it lacks is read with its default)."""
        if self.schema <= RECORDS_SCHEMA:
            return
        raise SearchError(
            f"study {name!r} was written by han-search {self.version} (records schema "
            f"{self.schema}); this is han-search {han_search_version()} (schema "
            f"{RECORDS_SCHEMA}), which cannot read it: upgrade han-search to "
            f"{self.version} or newer, or pass --study NEW_NAME for a new study")

    @staticmethod
    def write_current(study: optuna.Study) -> None:
        """Mark the study as written by this han-search."""
        study.set_user_attr(_WRITTEN_BY, han_search_version())
        study.set_user_attr(_SCHEMA, RECORDS_SCHEMA)
