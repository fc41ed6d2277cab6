"""A study's sessions: open or continue it (data files, fingerprint, environment, the Optuna
study, its reference trial and MLflow parent run), then run its trials, alone or in workers."""

from __future__ import annotations

import hashlib
import importlib.metadata
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from han.batching import DataCache
from han.config import COMPETITION_FORMAT, FileFormat, HANConfig
from han.device import resolve_device
from han.io import Corpus
from han.synthetic import SyntheticSpec, builtin_corpus
from han.train import DeviceOutOfMemoryError, EpochMetrics
from search import records
from search.baseline import BaselineOutcome, ensure_baseline
from search.errors import SearchError
from search.objective import SearchContext, objective
from search.records import Key, StudyRecord, Tag
from search.reports import log_study_plots
from search.storage import (
    DEFAULT_HEARTBEAT_S,
    DEFAULT_STORAGE,
    check_sqlite_target,
    open_storage,
)
from search.studyspec import StudySpec
from search.summary import RunSummary, summarize
from search.tracking import DEFAULT_TRACKING_URI, RunHandle, Tracker, redact
from search.workers import plan_workers, run_workers

DEFAULT_WORK_DIR = Path("han-search-work")
# Study plots are redrawn every this many finished trials (and at the end): drawing them
# after every trial would cost more than a small trial.
PLOT_EVERY = 5
_VERSIONED = ("torch", "numpy", "optuna", "mlflow", "scikit-learn", "han-search")


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    """Where a session's stores, device and data are: built once from the command line and
    passed on, to every worker too. None: the study file's choice (data), or none (seed)."""

    storage: str = DEFAULT_STORAGE
    tracking_uri: str = DEFAULT_TRACKING_URI
    device: str = "auto"
    seed: int | None = None
    train: Path | None = None
    test: Path | None = None
    embeddings: Path | None = None
    heartbeat_s: int = DEFAULT_HEARTBEAT_S
    # A worker's index: its sampler draws differ from the other workers'.
    sampler_seed_offset: int = 0
    # Whether this process may train the study's baseline: workers started by --workers
    # leave it to their parent, which trains it before starting them.
    baseline: bool = True


class Progress(Protocol):
    def next_trial(self, index: int, total: int | None) -> None: ...
    def trial_started(self, trial: optuna.Trial, params: dict[str, Any]) -> None: ...
    def epoch_done(self, trial: optuna.Trial, metrics: EpochMetrics) -> None: ...
    def trial_done(self, study: optuna.Study, trial: FrozenTrial) -> None: ...
    def baseline(self, outcome: BaselineOutcome) -> None: ...


@dataclass(frozen=True)
class DataFiles:
    train: Path
    test: Path | None
    embeddings: Path | None
    builtin: bool


def resolve_data(spec: StudySpec, options: RunOptions) -> DataFiles:
    """Command-line files win over the study file's; no train file means the built-in corpus."""
    train = options.train or spec.train_path
    embeddings = options.embeddings or spec.embeddings_path
    if train is not None:
        return DataFiles(train=train, test=options.test or spec.test_path,
                         embeddings=embeddings, builtin=False)
    if spec.file_format != COMPETITION_FORMAT:
        raise SearchError("--sep, --text-col, --label-col and --tokens describe a data file: "
                          "give --train (the built-in corpus has the competition's format)")
    generated_train, generated_test = builtin_corpus(SyntheticSpec(**spec.synthetic))
    return DataFiles(train=generated_train, test=options.test or generated_test,
                     embeddings=embeddings, builtin=True)


def fingerprint(path: Path, corpus: Corpus) -> dict[str, str]:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return records.fingerprint_tags(path=path, size=path.stat().st_size,
                                    sha256=digest.hexdigest()[:16], docs=corpus.num_docs,
                                    classes=corpus.num_classes)


def environment_tags(device: str) -> dict[str, str]:
    versions = {}
    for package in _VERSIONED:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    gpu = (torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda")
           else None)
    return records.environment_tags(device, versions, gpu)


def _load_or_create_study(spec: StudySpec, storage: optuna.storages.BaseStorage,
                          seed_offset: int) -> tuple[optuna.Study, bool]:
    existing = set(optuna.get_all_study_names(storage))
    created = spec.name not in existing
    seed = spec.sampler.get("seed")
    if seed is not None and (seed_offset or not created):
        # Neither a continued study nor a second worker may replay the draws of another
        # session: shift the sampler's seed by the trials on record and the worker index.
        done = 0 if created else len(
            optuna.load_study(study_name=spec.name, storage=storage).trials)
        spec = replace(spec, sampler=spec.sampler | {"seed": seed + done + 7919 * seed_offset})
    study = optuna.create_study(storage=storage, study_name=spec.name,
                                sampler=spec.make_sampler(), pruner=spec.make_pruner(),
                                direction=spec.direction, load_if_exists=True)
    return study, created


@dataclass
class PreparedStudy:
    """A study ready for trials: inputs checked, the Optuna study found or created."""

    spec: StudySpec
    options: RunOptions
    files: DataFiles
    corpus: Corpus
    tracker: Tracker
    study: optuna.Study
    run_tags: dict[str, str]
    device: str
    cache: DataCache

    def parent_run(self) -> AbstractContextManager[RunHandle]:
        """The study's MLflow parent run for this session (a context manager)."""
        storage = redact(self.options.storage)
        return self.tracker.study_run(
            self.spec.name, tags={Tag.STORAGE: storage},
            params={Key.STUDY_FILE: self.spec.source, Key.SAMPLER: self.spec.sampler,
                    Key.PRUNER: self.spec.pruner, Key.DIRECTION: self.spec.direction})


def load_data(spec: StudySpec, options: RunOptions,
              cache: DataCache) -> tuple[DataFiles, Corpus]:
    """Read every data file the study will need, so a bad one fails before anything is
    created: the training file, the test file, the word2vec file. `cache` keeps the training
    file and word2vec parses for the trials."""
    files = resolve_data(spec, options)
    file_format = spec.file_format
    corpus = cache.load_corpus(files.train, labelled=True, file_format=file_format,
                               label_order=spec.label_names)
    if files.test is not None:
        cache.load_corpus(files.test, labelled=False, file_format=file_format)
    if files.embeddings is not None:
        cache.word2vec(files.embeddings, dim=spec.fixed.get("embed_dim", HANConfig.embed_dim),
                       tokens=file_format.tokens)
    if spec.label_names is not None and len(spec.label_names) < corpus.num_classes:
        raise SearchError(f"{spec.source}: [data] labels: {len(spec.label_names)} names for "
                          f"{corpus.num_classes} classes in {files.train}")
    return files, corpus


def open_stores(options: RunOptions) -> tuple[Tracker, optuna.storages.BaseStorage]:
    """Nothing is created until both stores are known to work: a remote tracking server is
    asked first, SQLite targets only checked, then the Optuna storage opened."""
    check_sqlite_target(options.storage, what="storage")
    check_sqlite_target(options.tracking_uri, what="tracking URI")
    tracker = Tracker(tracking_uri=options.tracking_uri)
    if not options.tracking_uri.startswith("sqlite:"):
        tracker.check_reachable()
    storage = open_storage(options.storage, heartbeat_s=options.heartbeat_s, tracker=tracker)
    tracker.check_reachable()
    return tracker, storage


def prepare_study(spec: StudySpec, options: RunOptions) -> PreparedStudy:
    """Check every input, then open or create the study (with its reference trial).

    All checks come first, so bad input leaves no study, run or database file behind.
    """
    if options.seed is not None:
        spec = replace(spec, sampler=spec.sampler | {"seed": options.seed})
    device = str(resolve_device(options.device))
    cache = DataCache()
    files, corpus = load_data(spec, options, cache)
    tracker, storage = open_stores(options)
    study, created = _load_or_create_study(spec, storage, options.sampler_seed_offset)
    if created and spec.enqueue_reference:
        # skip_if_exists: two workers starting the same new study enqueue it once.
        study.enqueue_trial(spec.reference_params(), user_attrs=records.reference_attrs(),
                            skip_if_exists=True)
    StudyRecord(train_path=files.train, test_path=files.test, file_format=spec.file_format,
                class_names=corpus.label_values or spec.label_names).write(study)
    run_tags = environment_tags(device) | fingerprint(files.train, corpus) | {
        Tag.STORAGE: redact(options.storage), Tag.STUDY_FILE: str(spec.source)
    } | records.data_tags(asdict(spec.file_format))
    if files.embeddings is not None:
        run_tags[Tag.EMBEDDINGS] = str(files.embeddings.resolve())
    return PreparedStudy(spec=spec, options=options, files=files, corpus=corpus,
                         tracker=tracker, study=study, run_tags=run_tags, device=device,
                         cache=cache)


def run_study(spec: StudySpec, options: RunOptions, *, trials: int | None = None,
              timeout: float | None = None, work_dir: Path = DEFAULT_WORK_DIR,
              progress: Progress | None = None,
              should_stop: Callable[[], bool] | None = None) -> RunSummary:
    """Run `trials` more trials of the study (the study file's count when None)."""
    started = time.perf_counter()
    prepared = prepare_study(spec, options)
    total = trials if trials is not None else spec.trials
    counter = {"index": 0}
    with prepared.parent_run() as parent:
        _baseline(prepared, parent.id, progress.baseline if progress else None)
        ctx = SearchContext(
            spec=prepared.spec, corpus=prepared.corpus, tracker=prepared.tracker,
            parent_run_id=parent.id, work_dir=work_dir, device=prepared.device,
            seed=options.seed, embeddings=prepared.files.embeddings,
            run_tags=prepared.run_tags, should_stop=should_stop, cache=prepared.cache,
            on_start=progress.trial_started if progress else None,
            on_epoch=progress.epoch_done if progress else None)

        def run_trial(trial: optuna.Trial) -> float:
            counter["index"] += 1
            if progress is not None:
                progress.next_trial(counter["index"], total)
            return objective(trial, ctx)

        def after_trial(study: optuna.Study, trial: FrozenTrial) -> None:
            if progress is not None:
                progress.trial_done(study, trial)
            if counter["index"] % PLOT_EVERY == 0:
                _refresh_parent(parent, study)

        try:
            # Out of memory is a property of the trial's settings, not of the study: the
            # trial fails with its shape in the reason and the study goes on.
            prepared.study.optimize(run_trial, n_trials=total, timeout=timeout,
                                    callbacks=[after_trial], catch=(DeviceOutOfMemoryError,))
        finally:
            _refresh_parent(parent, prepared.study)
    summary = summarize(prepared.study, storage=options.storage,
                        tracking_uri=options.tracking_uri, parent_run_id=parent.id)
    summary.trials_this_run = counter["index"]
    summary.seconds = time.perf_counter() - started
    summary.not_logged = prepared.tracker.not_logged
    return summary


def run_with_workers(spec: StudySpec, options: RunOptions, *, workers: int,
                     trials: int | None, threads: int | None, worker_args: list[str],
                     on_baseline: Callable[[BaselineOutcome], None] | None = None,
                     ) -> tuple[RunSummary, int]:
    """Split `trials` exactly among `workers` processes on this machine, each a `han-search
    run` with `worker_args`; returns the summary and the first failing worker's exit code."""
    started = time.perf_counter()
    # The study, its reference trial and parent run are created once, before the workers
    # race for them.
    prepared = prepare_study(spec, options)
    # The enqueued reference trial waits to be run: it counts as this run's.
    before = len(prepared.study.get_trials(
        deepcopy=False, states=tuple(s for s in TrialState if s != TrialState.WAITING)))
    plans = plan_workers(workers=workers, trials=trials or spec.trials, device=options.device,
                         threads=threads)
    with prepared.parent_run() as parent:
        _baseline(prepared, parent.id, on_baseline)
        # URLs travel in the environment: they may hold passwords, which `ps` would show.
        code = run_workers(plans, worker_args, env={
            "HAN_SEARCH_STORAGE": options.storage, "MLFLOW_TRACKING_URI": options.tracking_uri})
    summary = summarize(prepared.study, storage=options.storage,
                        tracking_uri=options.tracking_uri, parent_run_id=parent.id)
    summary.seconds = time.perf_counter() - started
    summary.trials_this_run = len(prepared.study.get_trials(deepcopy=False)) - before
    return summary, code


def _baseline(prepared: PreparedStudy, parent_run_id: str,
              show: Callable[[BaselineOutcome], None] | None) -> None:
    """The study's baseline, trained before its first trial by one process: this one,
    unless it is a worker of a --workers run."""
    if not prepared.options.baseline:
        return
    outcome = ensure_baseline(prepared.spec, prepared.corpus, prepared.study,
                              tracker=prepared.tracker, parent_run_id=parent_run_id,
                              tags=prepared.run_tags, threads=torch.get_num_threads())
    if show is not None:
        show(outcome)


def _refresh_parent(parent: RunHandle, study: optuna.Study) -> None:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if complete:
        best = study.best_trial
        parent.set_tags(records.best_tags(best))
        parent.log_metrics({Key.BEST_DEV_F1: best.value or 0.0,
                            Key.TRIALS_COMPLETE: len(complete)}, step=len(study.trials))
    log_study_plots(parent, study)


def override_format(base: FileFormat, **options: str | None) -> FileFormat:
    """`base` with the options that are not None; a bad value is a one-line SearchError."""
    given = {key: value for key, value in options.items() if value is not None}
    try:
        return replace(base, **given) if given else base
    except ValueError as error:
        raise SearchError(str(error)) from None


def with_overrides(spec: StudySpec, *, name: str | None = None,
                   **file_format: str | None) -> StudySpec:
    """The study with the command line's name and file-format options (None: the file's)."""
    spec = replace(spec, file_format=override_format(spec.file_format, **file_format))
    return replace(spec, name=name) if name else spec
