"""The best model in the MLflow Model Registry: its checkpoints logged as a pyfunc model from
code (`search/pyfunc_model.py`, no pickle), registered under a name, aliased `champion`."""

from __future__ import annotations

import importlib.metadata
import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

import han
from han.files import written_atomically
from han.io import read_texts
from han.predict import TextClassifier
from search.errors import SearchError
from search.export import pyfunc_model
from search.records import MODEL_NAME_RE, MODEL_NAME_RULE
from search.stores.mlflow_models import (
    CodeModel,
    RegisteredVersion,
    log_code_model,
    register_version,
)
from search.stores.tracking import Tracker

# The alias the newest registered version gets: `models:/NAME@champion` is always the
# model export-best registered last.
CHAMPION = "champion"
# The logged model's name within its run.
MODEL_NAME = "han-classifier"
# Rows of the input example stored with the model (and shown in the UI).
EXAMPLE_ROWS = 3
# What the model's code needs besides han/ itself, which travels in the model as code.
_REQUIREMENTS = ("torch", "numpy", "pandas", "scikit-learn")


@dataclass(frozen=True, kw_only=True)
class Champion:
    """What gets registered: one checkpoint, or a refit's fold checkpoints and weights."""

    run_id: str
    checkpoints: Sequence[Path]
    weights: Sequence[float] | None = None


def check_name(name: str) -> str:
    """A registered model name, checked before any work (one-line error)."""
    if not MODEL_NAME_RE.fullmatch(name):
        raise SearchError(f"--register {name!r}: a model name is {MODEL_NAME_RULE}")
    return name


def register(tracker: Tracker, champion: Champion, *, name: str,
             example_file: Path) -> RegisteredVersion:
    """Log the champion as an MLflow Model on its run, register it under `name` and move
    the `champion` alias onto the new version.

    The input example is the first rows of `example_file` (raw text, read as the model's
    training file was); the output example is the model's labels of them, computed here by
    the same code the model runs, so the signature says what `predict` returns.
    """
    weights = list(champion.weights or [1.0] * len(champion.checkpoints))
    classifier = TextClassifier(champion.checkpoints, weights, device="cpu")
    file_format = classifier.file_format
    texts = read_texts(example_file, file_format=file_format, limit=EXAMPLE_ROWS)
    artifacts = {f"model-{i}": Path(path) for i, path in enumerate(champion.checkpoints)}
    with tempfile.TemporaryDirectory(prefix="han-model-") as scratch:
        ensemble = Path(scratch) / "ensemble.json"
        with written_atomically(ensemble, what="the ensemble's weights") as temporary:
            temporary.write_text(json.dumps({pyfunc_model.CHECKPOINTS: list(artifacts),
                                             pyfunc_model.WEIGHTS: weights}), encoding="utf-8")
        model = CodeModel(
            name=MODEL_NAME, code=Path(pyfunc_model.__file__),
            code_paths=(Path(han.__file__).parent,),
            artifacts=artifacts | {pyfunc_model.ENSEMBLE: ensemble},
            input_example=pd.DataFrame({file_format.text_col: texts}),
            output_example=classifier.predict(texts).submission(),
            pip_requirements=requirements())
        model_id = log_code_model(tracker, champion.run_id, model)
    return register_version(tracker, name=name, model_id=model_id, run_id=champion.run_id,
                            alias=CHAMPION)


def requirements() -> tuple[str, ...]:
    """Pinned requirements of the model's code, at this environment's versions (a local
    build tag such as torch's `+cpu` dropped: the loading machine picks its own build)."""
    pinned = []
    for package in _REQUIREMENTS:
        version = importlib.metadata.version(package).split("+")[0]
        pinned.append(f"{package}=={version}")
    return tuple(pinned)
