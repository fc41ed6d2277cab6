"""The study-file reference page (docs/study-file-reference.md), rendered from the schema.

Keys, types and defaults are read from the pydantic models of search.studyfile (its
schema, settings, space and components), and through them from han.config, han.synthetic and
Optuna's signatures, so the page cannot drift from what a study file accepts; only each
key's meaning and unit is written here. A key of the schema without a description stops the
render, and tests/test_docs.py fails when the committed page differs from a fresh one.

    python -m search.studyfile.reference            # rewrite docs/study-file-reference.md
    python -m search.studyfile.reference --check    # exit 1 when the page is stale
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import sys
import types
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from han.config import DataConfig, FileFormat, HANConfig, TrainConfig
from han.synthetic import SyntheticSpec
from search.studyfile.components import PRUNERS, SAMPLERS, signature_arguments
from search.studyfile.schema import StudyFile
from search.studyfile.settings import DEFAULTS, DOCUMENT_SETTINGS, PRUNER_STEPS, SETTING_TYPES
from search.studyfile.space import CategoricalParam, FloatParam, IntParam
from search.studyfile.spec import StudySpec

PAGE = Path(__file__).resolve().parents[2] / "docs" / "study-file-reference.md"

_EPOCHS = 'or `"N epochs"` of the training folds'

#: What each key means, with its unit; the keys themselves come from the schema.
STUDY = {
    "name": "The study's name: the Optuna study, the MLflow experiment, and `--study NAME` "
            "of the other commands. Letters, digits, `_`, `.` and `-`.",
    "direction": "Whether trials maximise or minimise dev macro-F1, the metric every trial "
                 "reports.",
    "trials": "Trials per `han-search run`, unless `--trials` or `--timeout` says otherwise.",
    "enqueue_reference": "Run the reference configuration (the defaults below, or "
                         "`[reference]`) once in every study.",
    "baseline": "Train the linear baseline (TF-IDF + SGDClassifier) once per study, before "
                "its first trial.",
    "reference_after": "Trials of the study before the reference trial runs (0: first), so "
                       "a pruner past its startup trials can stop it like any other.",
    "start_from_data": "A new study's first trial takes settings derived from the data "
                       "(`han/starting_point.py`), brought inside the space.",
    "timeout": "Seconds a `han-search run` may take when the command line gives no "
               "`--timeout`.",
    "max_trial_share": "The most of the time budget one trial may take, as a share of it.",
    "pause_and_promote": "Under a time budget, a trial whose share is spent while it leads "
                         "and improves pauses, and resumes later when the time left is "
                         "better spent on it than on new draws ([Time budget]"
                         "(time-budget.md)).",
    "shape_draws": "Under a time budget, the sampler draws only what a trial's share "
                   "affords (as the cost model predicts an epoch) and no learning rate that "
                   "decays away in the first epoch.",
}
DATA = {
    "train": "The training file, relative to the study file. Not given: the built-in corpus.",
    "test": "The test file `export-best` predicts (needs `train`).",
    "embeddings": "Word vectors of your own, text format (first line `count dim`, `dim` = "
                  "`embed_dim`), instead of word2vec trained by the run.",
    "labels": "Class names in class-id order, used in reports; with names as labels, the "
              "order of the class ids (a label outside the list is an error).",
    "word2vec": "Train word2vec on the training and test texts before the first trial and "
                "give every trial its vectors, frozen.",
    "synthetic": "The built-in corpus's size and seed: the table `[data.synthetic]` below.",
    "sep": "Column delimiter, one character; `'\\t'` or `tab` spell a tab.",
    "text_col": "The text column.",
    "label_col": "The label column.",
    "tokens": "What a token is: `ids` (space-separated integers), `words` (whitespace-"
              "separated), `chars` (every non-space character), `auto`: told from the "
              "training file.",
}
SYNTHETIC = {
    "n_train": "Training documents generated.",
    "n_test": "Test documents generated.",
    "length_scale": "Factor on every document's length (at least 2 tokens after it).",
    "seed": "Seed of the generated corpus.",
    "test_labels": "Also write the test documents' labels, to score predictions.",
}
SETTINGS = {
    "embed_dim": "Dimensions of the trainable token embeddings (and of word2vec's vectors).",
    "word_hidden": "Units of each direction of the word encoder's recurrent layers.",
    "word_layers": "Recurrent layers of the word encoder.",
    "sent_hidden": "Units of each direction of the segment encoder's recurrent layers.",
    "sent_layers": "Recurrent layers of the segment encoder.",
    "dropout": "Dropout fraction, in [0, 1).",
    "cell": "The recurrent cell: `lstm` (the reference notebook) or `gru` (Yang et al.'s HAN).",
    "seg_len": "Tokens per segment.",
    "max_segments": "Segments kept per document (a longer one keeps its first and last).",
    "min_count": "Occurrences in the training folds a token needs to enter the vocabulary.",
    "folds": "Stratified folds of the training file; one of them is dev.",
    "dev_fold": "Which fold is dev, from 0.",
    "split_seed": "Seed of the fold split (and of the dev sample reports score).",
    "epochs": "Epochs per trial at most: early stopping or the trial's share of `--timeout` "
              "may end it first.",
    "batch_size": "Training documents per batch.",
    "lr": "Adam's learning rate.",
    "lr_decay": "Factor on the learning rate every `decay_steps`, in (0, 1].",
    "decay_steps": "Optimiser steps (batches) between two learning-rate decays.",
    "clip": "Largest gradient norm (clipped above it).",
    "class_weight": "Each class's weight in the loss: `none`, `sqrt` (square root of inverse "
                    "frequency) or `inverse` frequency.",
    "patience": "Epochs without a better dev macro-F1 before early stopping.",
    "seed": "Seed of the model's initialisation and the batch order.",
    "device": "`auto` (the first CUDA device when there is one, else the CPU), `cpu`, `cuda` "
              "or `cuda:N`.",
    "precision": "Training arithmetic: `auto` (bf16 autocast where it was measured faster: "
                 "CPUs with native bf16, GPUs at batches of 256 and more), `fp32` or `bf16`.",
    "eval_batch_size": "Documents per evaluation batch.",
    "max_batch_tokens": "Padded tokens (segments x width) above which a CPU batch trains in "
                        "chunks of documents, gradients summed: the same step, less memory.",
    "report_every": f"Training documents between two reports to the pruner, {_EPOCHS}. "
                    "Not set: one report, at each epoch's end.",
    "report_dev_docs": "Dev documents a report inside an epoch scores (a fixed stratified "
                       "sample). Not set: enough for a macro-F1 noise of about 0.02, at "
                       "least 500, at most the dev fold.",
}
SPACE = {
    "type": "`float`, `int` or `categorical`; a numeric setting's own type, or "
            "`categorical` for any setting.",
    "low": "Smallest value.",
    "high": "Largest value.",
    "log": "Draw on a log scale (`low` above 0; at least 1 for `int`).",
    "step": "Values `low + k x step` only; not with `log` (except 1 for `int`). Not set: "
            "continuous, or every integer.",
    "choices": "The values, each of the setting's type.",
}
EXPORT = {
    "registered_model": "Every `run` ends by registering the best trial's model under this "
                        "name, alias `champion` (as `export-best --register NAME`).",
}
COMPONENT = {"name": "Which {kind}: one of {names}; its arguments follow as keys of the same "
                     "table."}
#: Units of the samplers' and pruners' arguments, by name; what each means is its class's
#: documentation (Optuna's, or search/pruners.py for `evidence` and `field_percentile`).
ARGUMENT_UNITS = {
    "n_startup_trials": "trials", "n_min_trials": "trials", "min_reports": "reports",
    "percentile": "percent of the field kept (25.0: the top quarter goes on)",
    "reduction_factor": "factor between two rungs",
    "noise_multiple": "times the noise of the difference between two reports",
    "n_ei_candidates": "candidates", "bootstrap_count": "trials",
    "min_early_stopping_rate": "rungs",
    **dict.fromkeys(PRUNER_STEPS, f"training documents, {_EPOCHS}"),
}
# Where Optuna documents each class it exports (the samplers' and pruners' modules are private).
_OPTUNA_DOCS = {"sampler": "https://optuna.readthedocs.io/en/stable/reference/samplers/generated/",
                "pruner": "https://optuna.readthedocs.io/en/stable/reference/generated/"}
_OWNERS = {name: config.__name__ for config in (HANConfig, DataConfig, TrainConfig)
           for name in (f.name for f in dataclasses.fields(config))}


def _type(hint: Any) -> str:
    """A type as a study file writes it."""
    if hint is type(None):
        return ""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        return " \\| ".join(f'`"{a}"`' for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(t for t in (_type(a) for a in args) if t)
    if origin is tuple or origin is list:
        return f"array of {_type(args[0])}s"
    names = {bool: "boolean", int: "integer", float: "number", str: "string"}
    return names.get(hint, getattr(hint, "__name__", str(hint)))


def _value(value: Any) -> str:
    """A default as TOML writes it; `not set` for None."""
    if value is None or value is PydanticUndefined:
        return "not set"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str):
        return f'`"{value}"`' if value != "\t" else '`"\\t"`'
    return f"`{value!r}`"


def _row(key: str, hint: str, default: str, meaning: str) -> str:
    return f"| `{key}` | {hint} | {default} | {meaning} |"


_HEADER = ["| key | type | default | meaning and unit |", "|---|---|---|---|"]


def _described(table: str, descriptions: Mapping[str, str], key: str) -> str:
    if key not in descriptions:
        raise KeyError(f"search/studyfile/reference.py: no description of [{table}] {key}; add one")
    return descriptions[key]


def _model_rows(table: str, model: type[BaseModel], descriptions: Mapping[str, str],
                defaults: Mapping[str, Any]) -> Iterator[str]:
    """One row per field of a table's model; a default of None (not given) is the one
    `defaults` holds (StudySpec's, FileFormat's...) when it holds one."""
    for key, field in model.model_fields.items():
        if field.is_required():
            default = "required"
        elif field.default_factory is not None:
            default = "see below"
        else:
            value = field.get_default()
            default = _value(defaults.get(key) if value is None else value)
        hint = "table" if field.default_factory is not None else _type(field.annotation)
        yield _row(key, hint, default, _described(table, descriptions, key))


def _dataclass_defaults(*classes: type) -> dict[str, Any]:
    return {f.name: f.default for c in classes for f in dataclasses.fields(c)
            if f.default is not dataclasses.MISSING}


def _component(kind: str, registry: Mapping[str, type], default: str) -> list[str]:
    names = ", ".join(f"`{n}`" for n in sorted(registry))
    lines = [*_HEADER, _row("name", "string", _value(default),
                            COMPONENT["name"].format(kind=kind, names=names)), ""]
    for name, target in sorted(registry.items()):
        arguments = signature_arguments(target)
        if target.__module__.startswith("optuna."):
            public = f"optuna.{kind}s.{target.__name__}"
            where = f"[`{public}`]({_OPTUNA_DOCS[kind]}{public}.html)"
        else:
            # Ours are named as their package exports them (search.pruners).
            where = f"`{target.__module__.rsplit('.', 1)[0]}.{target.__name__}`"
        settable = {k: v for k, v in arguments.items() if v[0] is not None}
        fixed = [k for k, v in arguments.items() if v[0] is None]
        lines += [f"### {kind} `{name}`", ""]
        if not settable:
            lines += [f"{where}, which takes no arguments.", ""]
            continue
        lines.append(f"{where}; keys are its keyword arguments, with its defaults.")
        lines += ["", "| key | type | default | unit |", "|---|---|---|---|"]
        for key, (hint, param) in settable.items():
            default = "required" if param.default is inspect.Parameter.empty \
                else _value(param.default)
            lines.append(f"| `{key}` | {_type(hint)} | {default} | "
                         f"{ARGUMENT_UNITS.get(key, '')} |")
        if fixed:
            lines += ["", "Not settable in a study file (a callable or an object): "
                      + ", ".join(f"`{k}`" for k in fixed) + "."]
        lines.append("")
    return lines


def _settings() -> list[str]:
    lines = ["| key | type | default | config | meaning and unit |", "|---|---|---|---|---|"]
    for key, hint in SETTING_TYPES.items():
        shown = 'integer or `"N epochs"`' if key in DOCUMENT_SETTINGS else _type(hint)
        lines.append(f"| `{key}` | {shown} | {_value(DEFAULTS[key])} | {_OWNERS[key]} | "
                     f"{_described('fixed', SETTINGS, key)} |")
    return lines


def _space() -> list[str]:
    keys: dict[str, list[str]] = {}
    for model in (FloatParam, IntParam, CategoricalParam):
        for key in model.model_fields:
            keys.setdefault(key, []).append(model.model_fields["type"].annotation
                                            .__args__[0])
    lines = ["| key | for `type` | default | meaning and unit |", "|---|---|---|---|"]
    for key, kinds in keys.items():
        fields = [m.model_fields[key] for m in (FloatParam, IntParam, CategoricalParam)
                  if key in m.model_fields]
        default = "required" if fields[0].is_required() else _value(fields[0].default)
        lines.append(f"| `{key}` | {', '.join(f'`{k}`' for k in kinds)} | {default} | "
                     f"{_described('space.NAME', SPACE, key)} |")
    return lines


def render() -> str:
    """The whole page, as committed in docs/."""
    spec = _dataclass_defaults(StudySpec, FileFormat)
    tables = StudyFile.model_fields
    study, data, export = (tables[t].annotation for t in ("study", "data", "export"))
    refused = "; ".join(f"`{k}`: {why}" for k, why in study.refused.items())
    lines = [
        "<!-- Generated by `python -m search.studyfile.reference` from the schema in "
        "search/studyfile/: edit that package, not this page. -->",
        "",
        "# Study file reference",
        "",
        "Every key a study file may hold, its type and default, generated from the schema "
        "(`search/studyfile/`) so that it cannot drift from what `han-search` accepts; "
        "[Study files](study-files.md) shows them at work. A file is checked whole before "
        "anything runs: an unknown key, a value of the wrong type or out of range stops it "
        "with one line naming the file and the key. Relative paths resolve against the "
        "study file's folder. Tables: "
        + ", ".join(f"`[{t}]`" for t in tables) + ".",
        "",
        "## [study]", "", *_HEADER, *_model_rows("study", study, STUDY, spec), "",
        f"Refused, with a message: {refused}.", "",
        "## [sampler]", "", *_component("sampler", SAMPLERS, "tpe"),
        "## [pruner]", "",
        "A step is a training document seen: the trainer reports on that grid (see "
        "[Pruning](pruning.md)), so pruner keys counting steps take documents, or epochs "
        "of the study's data written as a string.", "",
        *_component("pruner", PRUNERS, "median"),
        "## [data]", "",
        "Not given: the built-in corpus (`[data.synthetic]`). The four format keys (`sep`, "
        "`text_col`, `label_col`, `tokens`) are those of `--sep`, `--text-col`, "
        "`--label-col` and `--tokens` (see [Your own data](your-data.md)).", "",
        *_HEADER, *_model_rows("data", data, DATA, spec), "",
        "### [data.synthetic]", "",
        "The built-in corpus (`han.synthetic.SyntheticSpec`), only without `train`.", "",
        *_HEADER, *_model_rows("data.synthetic", data.model_fields["synthetic"].annotation,
                               SYNTHETIC, _dataclass_defaults(SyntheticSpec)), "",
        "## [fixed] and [reference]", "",
        "The training settings, the fields of `han.config`'s `HANConfig`, `DataConfig` and "
        "`TrainConfig`, where every default lives (the reference notebook's configuration). "
        "`[fixed]` holds settings for every trial; `[reference]` gives searched settings "
        "of the reference trial, which otherwise takes the defaults. A setting is either "
        "fixed or searched.", "",
        *_settings(), "",
        "## [space.NAME]", "",
        "One table per searched setting, `NAME` one of the settings above.", "",
        *_space(), "",
        "## [export]", "", *_HEADER,
        *_model_rows("export", export, EXPORT, {}), "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 when the committed page differs from the schema's")
    args = parser.parse_args(argv)
    page = render()
    if args.check:
        current = PAGE.read_text(encoding="utf-8") if PAGE.is_file() else ""
        if current != page:
            print(f"{PAGE} is stale: python -m search.studyfile.reference", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(page, encoding="utf-8")
    print(f"wrote {PAGE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
