"""What a loaded study file gives the search: `StudySpec`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import optuna

from han.config import DataConfig, FileFormat
from search.defaults import MAX_TRIAL_SHARE
from search.studyfile.components import PRUNERS, SAMPLERS, build
from search.studyfile.settings import DEFAULTS, DOCUMENT_SETTINGS, PRUNER_STEPS, in_documents
from search.studyfile.space import CategoricalParam, FloatParam, IntParam


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
    # first trial (cached per dataset: search.session.word2vec) and give its vectors to every trial.
    word2vec: bool = True
    # With enqueue_reference: the reference trial runs after this many trials of the study
    # (0: first), so that a pruner past its startup trials can stop it like any other; a
    # session that would end first runs it last, so every study has it on record.
    reference_after: int = 0
    # A new study's first trial is han.starting_point's settings for its data (searched
    # ones only, brought inside the space), before the reference.
    start_from_data: bool = False
    # Seconds a run may take when the command line gives no --timeout (None: no limit).
    timeout: float | None = None
    # The most of the time budget one trial may take (its share).
    max_trial_share: float = MAX_TRIAL_SHARE
    # Under a timeout: a trial whose share is spent while it leads and improves pauses, and
    # resumes when the time left is better spent on it than on new draws
    # (search.session.promotion).
    pause_and_promote: bool = True
    # Under a timeout: the sampler draws only configurations whose epoch, as the session's
    # cost model predicts it, fits a trial's share, and whose learning rate does not decay
    # away within the first epoch (search.session.draws).
    shape_draws: bool = True

    def make_sampler(self) -> optuna.samplers.BaseSampler:
        """A new sampler; samplers keep state (their random generator), so never share one."""
        return build(SAMPLERS, self.sampler)

    def make_pruner(self) -> optuna.pruners.BasePruner:
        """A new pruner, as the [pruner] table describes (`in_documents` first, when it
        counts steps in epochs)."""
        return build(PRUNERS, self.pruner)

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

    def segment_shapes(self, reference: DataConfig) -> list[tuple[str, int, int]]:
        """(label, seg_len, max_segments) of the reference configuration (its split
        `reference`) and of the smallest and largest segment shapes the space allows."""
        seg_len, max_segments = self.setting_range("seg_len"), self.setting_range("max_segments")
        return [("reference", reference.seg_len, reference.max_segments),
                ("smallest", seg_len[0], max_segments[0]),
                ("largest", seg_len[1], max_segments[1])]
