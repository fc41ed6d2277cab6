"""The settings a study file may give (the fields of han.config's HANConfig, DataConfig and
TrainConfig, their types and defaults, read from there), counts written in epochs turned
into documents, and settings routed to the config each belongs to."""

from __future__ import annotations

import dataclasses
import re
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from han.config import DataConfig, HANConfig, TrainConfig

CONFIGS: tuple[type, ...] = (HANConfig, DataConfig, TrainConfig)
#: Settings counted in training documents, which a study file may write as epochs instead
#: ("0.25 epochs"): the run turns them into documents of its data's training folds.
DOCUMENT_SETTINGS = ("report_every",)
#: Pruner arguments counted in steps. A step is a training document seen (search.session.trial
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
