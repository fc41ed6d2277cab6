"""The command line's options and the study file, resolved once into a `ResolvedRun`.

Every value a later step needs that depends on both (the study's name, its data files, the
class names and test file of its data, the seed, the device, the embedding size, the
documents per epoch, the reference configuration's split, the dataset's fingerprint, the
tags of every run) is worked out here, once, after every input has been read and checked:
bad input fails before anything is created.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from han.batching import DataCache
from han.config import DataConfig, FileFormat, HANConfig, TrainConfig
from han.device import check_precision, resolve_device
from han.errors import DeviceError, DimensionMismatch
from han.files import content_hash
from han.io import Corpus
from han.synthetic import SyntheticSpec, builtin_corpus
from search import records
from search.errors import SearchError
from search.formatting import redact
from search.records import DatasetRecord, Tag
from search.setup.options import DataFiles, RunOptions
from search.setup.provenance import code_tags, environment_tags
from search.studyfile import StudySpec, name_for_file
from search.studyfile.settings import split_settings
from search.studyfile.space import CategoricalParam


def command_line_data(spec: StudySpec, options: RunOptions) -> bool:
    """Whether the run trains on a file given on the command line rather than the study
    file's data (its own train file, or the built-in corpus when it names none).

    The study file's `[data] labels`, `[data] test` and `[study] name` belong to its data:
    data from the command line names its classes itself, comes with its own test file (or
    none) and gets a study of its own (see `with_overrides`).
    """
    if options.train is None:
        return False
    return spec.train_path is None or options.train.resolve() != spec.train_path.resolve()


def for_data(spec: StudySpec, options: RunOptions) -> StudySpec:
    """The spec with the class names and test file that apply to the run's data: the study
    file's `[data] labels` and `test` for its own data, none for a command-line file (its
    classes name themselves; its test file is `--test`)."""
    if command_line_data(spec, options):
        return replace(spec, label_names=None, test_path=None)
    return spec


def override_format(base: FileFormat, **options: str | None) -> FileFormat:
    """`base` with the options that are not None; a bad value is a one-line SearchError."""
    given = {key: value for key, value in options.items() if value is not None}
    try:
        return replace(base, **given) if given else base
    except ValueError as error:
        raise SearchError(str(error)) from None


def with_overrides(spec: StudySpec, options: RunOptions, *, name: str | None = None,
                   **file_format: str | None) -> StudySpec:
    """The study file as this command line runs it: its file format with the command line's
    options (None: the file's), the class names and test file of the run's data
    (`for_data`), and its name: `name` (--study) when given, else the training file's stem
    for a file given on the command line, else the study file's."""
    own = not command_line_data(spec, options)
    spec = replace(spec, file_format=override_format(spec.file_format, **file_format))
    if not own:
        spec = replace(spec, label_names=None, test_path=None)
    if name:
        return replace(spec, name=name)
    if options.train is not None and not own:
        return replace(spec, name=name_for_file(options.train))
    return spec


def reference_split(spec: StudySpec) -> DataConfig:
    """The split of the study's reference configuration (its fixed settings, and for a
    searched split setting the reference value): the one the data block, the baseline and
    the documents per epoch are measured on."""
    return DataConfig(**split_settings({**spec.fixed, **spec.reference_params()})[1])


def check_precisions(spec: StudySpec, device: torch.device) -> None:
    """Every arithmetic the study trains in, fixed or searched, checked on `device`: bf16
    where it cannot run is refused before anything is written, not in each trial."""
    searched = next((param for param in spec.space if param.name == "precision"), None)
    precisions = (searched.choices if isinstance(searched, CategoricalParam)
                  else [spec.fixed.get("precision", TrainConfig.precision)])
    for precision in precisions:
        try:
            check_precision(device, precision)
        except DeviceError as error:
            raise DeviceError(f"{spec.source}: {error}") from None


@dataclass(frozen=True, kw_only=True)
class ResolvedRun:
    """A run's options and study file resolved once; every later step takes it.

    `spec` is the study file as this run reads it: its sampler seeded by --seed and every
    count written in epochs in training documents. `files.embeddings` are the trials'
    vectors (given, or trained by the session: see `with_vectors`). `seed` is --seed, every
    trial's training seed too (None: the study file's). `epoch_docs` are the training
    documents of an epoch at `reference_data`, the reference configuration's split.
    """

    spec: StudySpec
    options: RunOptions
    files: DataFiles
    corpus: Corpus
    # Parsed and encoded data shared by the process's trials (one vocabulary per split).
    cache: DataCache = field(compare=False)
    device: str
    seed: int | None
    embed_dim: int
    epoch_docs: int
    reference_data: DataConfig
    dataset: DatasetRecord
    class_names: tuple[str, ...] | None
    # The tags every run of this process carries (see `run_tags`).
    tags: Mapping[str, str]

    @property
    def name(self) -> str:
        return self.spec.name

    def with_vectors(self, path: Path) -> ResolvedRun:
        """The run with word2vec vectors the session trained (or found cached) for its
        trials, read into the cache as a given file is."""
        self.cache.word2vec(path, dim=self.embed_dim, tokens=self.corpus.file_format.tokens)
        files = replace(self.files, embeddings=path)
        return replace(self, files=files, tags=run_tags(
            self.spec, self.options, device=self.device, dataset=self.dataset,
            corpus=self.corpus, embeddings=path))


def run_tags(spec: StudySpec, options: RunOptions, *, device: str, dataset: DatasetRecord,
             corpus: Corpus, embeddings: Path | None) -> dict[str, str]:
    """The tags of every run a session starts: where it runs, the code, the dataset's
    fingerprint and format, the storage, the study file and the trials' vectors."""
    tags = environment_tags(device) | code_tags() | dataset.tags() | {
        Tag.STORAGE: redact(options.storage), Tag.STUDY_FILE: str(spec.source)
    } | records.data_tags(asdict(corpus.file_format))
    if embeddings is not None:
        tags[Tag.EMBEDDINGS] = str(embeddings.resolve())
    return tags


def resolve(spec: StudySpec, options: RunOptions) -> ResolvedRun:
    """Read and check every input of a run of `spec` (as `with_overrides` gives it), then
    work out what every later step takes. Nothing is written."""
    if options.seed is not None:
        spec = replace(spec, sampler=spec.sampler | {"seed": options.seed})
    device = resolve_device(options.device)
    check_precisions(spec, device)
    cache = DataCache()
    files, corpus = load_data(spec, options, cache, embed_dim=embedding_size(spec))
    resolved = resolved_run(spec, options, files=files, corpus=corpus, cache=cache,
                            dataset=fingerprint(files.train, corpus, builtin=files.builtin),
                            device=str(device))
    check_learnable(files.train, corpus, resolved.epoch_docs)
    return resolved


def resolved_run(spec: StudySpec, options: RunOptions, *, files: DataFiles, corpus: Corpus,
                 cache: DataCache, dataset: DatasetRecord, device: str) -> ResolvedRun:
    """The ResolvedRun of `spec` (as read: counts in epochs are turned into documents here)
    on data already read and checked, fingerprinted as `dataset`, trained on `device` (as
    resolved); what `resolve` and the refit (resolving a study from its records) share."""
    reference_data = reference_split(spec)
    epoch_docs = epoch_documents(corpus, reference_data, cache)
    spec = spec.in_documents(epoch_docs)
    return ResolvedRun(
        spec=spec, options=options, files=files, corpus=corpus, cache=cache, device=device,
        seed=options.seed, embed_dim=embedding_size(spec), epoch_docs=epoch_docs,
        reference_data=reference_data, dataset=dataset,
        class_names=corpus.label_values or spec.label_names,
        tags=run_tags(spec, options, device=device, dataset=dataset, corpus=corpus,
                      embeddings=files.embeddings))


def embedding_size(spec: StudySpec) -> int:
    """The embedding size of the study's trials (and of word2vec vectors for them): the
    study file's fixed `embed_dim`, else the model's default."""
    return int(spec.fixed.get("embed_dim", HANConfig.embed_dim))


def resolve_data(spec: StudySpec, options: RunOptions) -> DataFiles:
    """Command-line files win over the study file's; no train file means the built-in corpus."""
    train = options.train or spec.train_path
    embeddings = options.embeddings or spec.embeddings_path
    if train is not None:
        return DataFiles(train=train, test=options.test or spec.test_path,
                         embeddings=embeddings, builtin=False)
    if not spec.file_format.fits_competition():
        raise SearchError("--sep, --text-col, --label-col and --tokens describe a data file: "
                          "give --train (the built-in corpus has the competition's format)")
    generated_train, generated_test = builtin_corpus(SyntheticSpec(**spec.synthetic))
    return DataFiles(train=generated_train, test=options.test or generated_test,
                     embeddings=embeddings, builtin=True)


def load_data(spec: StudySpec, options: RunOptions, cache: DataCache, *,
              embed_dim: int) -> tuple[DataFiles, Corpus]:
    """Read every data file the study will need, so a bad one fails before anything is
    created: the training file, the test file, the word2vec file. `cache` keeps the
    training file and word2vec parses for the trials. The test and word2vec files are read
    as the training file was (its tokens resolved, if detected)."""
    files = resolve_data(spec, options)
    corpus = cache.load_corpus(files.train, labelled=True, file_format=spec.file_format,
                               label_order=spec.label_names)
    file_format = corpus.file_format
    if files.test is not None:
        cache.load_corpus(files.test, labelled=False, file_format=file_format)
    if files.embeddings is not None:
        try:
            cache.word2vec(files.embeddings, dim=embed_dim, tokens=file_format.tokens)
        except DimensionMismatch as mismatch:
            # `han-search embeddings` writes 100 dimensions, the demo's model has 64.
            raise SearchError(f"{mismatch}; train vectors of {mismatch.dim} (han-search "
                              f"embeddings --dim {mismatch.dim}) or set embed_dim = "
                              f"{mismatch.file_dim} in the study file's [fixed]") from None
    if spec.label_names is not None and len(spec.label_names) < corpus.num_classes:
        raise SearchError(f"{spec.source}: [data] labels: {len(spec.label_names)} names for "
                          f"{corpus.num_classes} classes in {files.train}")
    return files, corpus


def epoch_documents(corpus: Corpus, split: DataConfig, cache: DataCache) -> int:
    """Training documents per epoch at `split` (the reference's): the unit that turns a
    study file's epochs into documents. The cache keeps the split's vocabulary for the data
    block and the reference trial."""
    fold_of, _, _ = cache.fold_vocabulary(corpus, split)
    return int((fold_of != split.dev_fold).sum())


def check_learnable(train: Path, corpus: Corpus, train_docs: int) -> None:
    """Refuse data that a classifier cannot learn from or be scored on: every trial would
    run, and score nothing."""
    assert corpus.labels is not None
    if np.unique(corpus.labels).size < 2:
        raise SearchError(f"{train}: all {corpus.num_docs} documents have the same label; a "
                          "classifier needs two classes or more")
    if not 0 < train_docs < corpus.num_docs:
        raise SearchError(f"{train}: {corpus.num_docs} documents are too few for the study's "
                          "folds: its dev fold or its training folds would be empty")


def fingerprint(train: Path, corpus: Corpus, *, builtin: bool) -> DatasetRecord:
    """The training file `train`, read as `corpus`, as a study records it (`DatasetRecord`;
    `builtin`: the built-in corpus's file)."""
    return DatasetRecord(path=train.resolve(), sha256=content_hash(train),
                         size=train.stat().st_size, docs=corpus.num_docs,
                         classes=corpus.num_classes, file_format=corpus.file_format,
                         builtin=builtin)
