"""Checkpoints that stand alone: weights, the configs that built them and the vocabulary.

They hold only tensors and plain values, so `torch.load(weights_only=True)` reads them and a
tampered file cannot run code; they load on a CPU-only machine whatever trained them.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from han.config import COMPETITION_FORMAT, DataConfig, FileFormat, HANConfig
from han.errors import CheckpointError, first_line
from han.files import written_file
from han.model import HAN
from han.vocab import Vocabulary

FORMAT_VERSION = 1


@dataclass(frozen=True)
class LoadedModel:
    model: HAN
    model_config: HANConfig
    data_config: DataConfig
    vocab: Vocabulary
    label_names: tuple[str, ...] | None
    extra: dict[str, Any]
    # How to read a file for this model, and the original label of each class id when
    # the training labels were names (None: class ids are the labels).
    file_format: FileFormat = COMPETITION_FORMAT
    label_values: tuple[str, ...] | None = None


def save_checkpoint(path: Path, *, model: HAN, model_config: HANConfig, data_config: DataConfig,
                    vocab: Vocabulary, label_names: tuple[str, ...] | None = None,
                    file_format: FileFormat = COMPETITION_FORMAT,
                    label_values: tuple[str, ...] | None = None,
                    extra: dict[str, Any] | None = None) -> None:
    """Write atomically, so a crash mid-write never leaves a truncated best checkpoint, into
    a folder that exists (see han.files.written_atomically: a trial's, made when it began)."""
    with written_file(path, what="the checkpoint", new_folders=False) as handle:
        torch.save({
            "format": FORMAT_VERSION,
            "model_config": asdict(model_config),
            "data_config": asdict(data_config),
            "vocab": torch.from_numpy(vocab.raw_ids),
            "vocab_words": list(vocab.words) if vocab.words is not None else None,
            "file_format": asdict(file_format),
            "label_values": list(label_values) if label_values is not None else None,
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "label_names": list(label_names) if label_names is not None else None,
            "extra": dict(extra or {}),
        }, handle)


def load_checkpoint(path: str | os.PathLike[str]) -> LoadedModel:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "no such checkpoint file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for foreign or tampered files
        raise CheckpointError(path, "not a loadable han-search checkpoint "
                              f"({first_line(error, limit=160)})") from error
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_VERSION:
        raise CheckpointError(path, "not a han-search checkpoint (format "
                              f"{payload.get('format') if isinstance(payload, dict) else '?'})")
    try:
        return _loaded(payload)
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as error:
        # A payload of the right format whose parts do not fit: keys missing, weights of
        # another shape.
        raise CheckpointError(path, "damaged han-search checkpoint "
                              f"({type(error).__name__}: {first_line(error, limit=160)})"
                              ) from error


def _loaded(payload: dict[str, Any]) -> LoadedModel:
    model_config = HANConfig(**payload["model_config"])
    model = HAN(model_config)
    model.load_state_dict(payload["state_dict"])
    model.eval()
    names = payload["label_names"]
    # Checkpoints written before files other than the competition's were supported lack
    # the last three keys: they are competition-format models.
    words = payload.get("vocab_words")
    values = payload.get("label_values")
    return LoadedModel(
        model=model,
        model_config=model_config,
        data_config=DataConfig(**payload["data_config"]),
        vocab=Vocabulary(raw_ids=payload["vocab"].numpy(),
                         words=tuple(words) if words is not None else None),
        label_names=tuple(names) if names is not None else None,
        extra=payload["extra"],
        # A checkpoint from before formats were kept read the competition's files.
        file_format=replace(COMPETITION_FORMAT, **payload.get("file_format", {})),
        label_values=tuple(values) if values is not None else None,
    )
