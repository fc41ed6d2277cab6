"""A study's sessions: open or continue it (data files, fingerprint, environment, the Optuna
study, its reference trial and MLflow parent run), then run its trials, alone or in workers."""

from __future__ import annotations

import functools
import importlib.metadata
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from han.batching import DataCache
from han.checkpoint import CheckpointError
from han.config import DataConfig, FileFormat, HANConfig, Word2VecConfig
from han.device import DeviceError, check_precision, release_host_memory, resolve_device
from han.files import WriteFailed, check_writable, content_hash, writing
from han.io import Corpus, DataError
from han.profile import DataProfile, describe
from han.starting_point import starting_point
from han.synthetic import SyntheticSpec, builtin_corpus
from han.train import DeviceOutOfMemoryError, EpochMetrics, Report
from han.vocab import DimensionMismatch
from search import records
from search.baseline import BaselineOutcome, ensure_baseline
from search.budget import Budget, StoppedBeforeAnEpoch, TrialEstimate
from search.datasets import training_input
from search.defaults import (
    DEFAULT_HEARTBEAT_S,
    DEFAULT_STORAGE,
    DEFAULT_TRACKING_URI,
    DEFAULT_WORK_DIR,
)
from search.diskspace import Shortage, footprint, shortages
from search.errors import SearchError
from search.export import register_best
from search.formatting import redact
from search.objective import SearchContext, objective
from search.records import DatasetRecord, Key, Outcome, StudyRecord, Tag, TrialRecord
from search.reports import log_study_plots
from search.storage import check_sqlite_target, open_storage, retry_stale_trial
from search.studyfile import name_for_file
from search.studyspec import DEFAULTS, CategoricalParam, StudySpec, split_settings
from search.summary import RunSummary, summarize
from search.tracking import (
    RunHandle,
    Tracker,
    TrackingError,
    artifact_folder,
    check_artifact_folder,
    runs_view_url,
)
from search.word2vec import (
    Word2VecData,
    Word2VecOutcome,
    check_cache_folder,
    ensure_word2vec,
    not_trained,
)
from search.workers import plan_workers, run_workers

# Study plots are redrawn every this many finished trials (and at the end): drawing them
# after every trial would cost more than a small trial.
PLOT_EVERY = 5
_VERSIONED = ("torch", "numpy", "optuna", "mlflow", "scikit-learn", "han-search")
# Asking git for the commit must never hold a study up.
GIT_TIMEOUT_S = 5


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
    # --word2vec/--no-word2vec; None: the study file's [data] word2vec (search.word2vec).
    word2vec: bool | None = None
    heartbeat_s: int = DEFAULT_HEARTBEAT_S
    # A worker's index: its sampler draws differ from the other workers'.
    sampler_seed_offset: int = 0
    # Whether the session ends by registering the study file's model: not in workers, whose
    # parent session does it once they are done.
    register: bool = True
    # Whether this process may train the study's baseline: workers started by --workers
    # leave it to their parent, which trains it before starting them.
    baseline: bool = True


class Progress(Protocol):
    def data_described(self, profile: DataProfile) -> None: ...
    def next_trial(self, index: int, total: int | None) -> None: ...
    def trial_started(self, trial: optuna.Trial, params: dict[str, Any]) -> None: ...
    def trial_estimated(self, trial: optuna.Trial, estimate: TrialEstimate) -> None: ...
    def epoch_done(self, trial: optuna.Trial, metrics: EpochMetrics) -> None: ...
    def reported(self, trial: optuna.Trial, report: Report) -> None: ...
    def trial_done(self, study: optuna.Study, trial: FrozenTrial) -> None: ...
    def baseline(self, outcome: BaselineOutcome) -> None: ...
    def word2vec(self, outcome: Word2VecOutcome) -> None: ...
    def disk_short(self, shortage: Shortage) -> None: ...


@dataclass(frozen=True)
class DataFiles:
    train: Path
    test: Path | None
    embeddings: Path | None
    builtin: bool


def command_line_data(spec: StudySpec, options: RunOptions) -> bool:
    """Whether the run trains on a file given on the command line rather than the study
    file's data (its own train file, or the built-in corpus when it names none).

    The study file's `[data] labels`, `[data] test` and `[study] name` belong to its data:
    data from the command line names its classes itself, comes with its own test file (or
    none) and gets a study of its own (see `study_name`).
    """
    if options.train is None:
        return False
    return spec.train_path is None or options.train.resolve() != spec.train_path.resolve()


def study_name(spec: StudySpec, options: RunOptions, given: str | None = None) -> str:
    """The study a run works on: `--study` when given, else one named after the training
    file given on the command line (its stem), else the study file's name."""
    if given:
        return given
    if options.train is not None and command_line_data(spec, options):
        return name_for_file(options.train)
    return spec.name


def for_data(spec: StudySpec, options: RunOptions) -> StudySpec:
    """The spec with the class names and test file that apply to the run's data: the study
    file's `[data] labels` and `test` for its own data, none for a command-line file (its
    classes name themselves; its test file is `--test`)."""
    if command_line_data(spec, options):
        return replace(spec, label_names=None, test_path=None)
    return spec


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


def fingerprint(files: DataFiles, corpus: Corpus) -> DatasetRecord:
    """The training data as a study records it (`DatasetRecord`)."""
    return DatasetRecord(path=files.train.resolve(), sha256=content_hash(files.train),
                         size=files.train.stat().st_size, docs=corpus.num_docs,
                         classes=corpus.num_classes, file_format=corpus.file_format,
                         builtin=files.builtin)


def check_same_data(name: str, storage: optuna.storages.BaseStorage, dataset: DatasetRecord,
                    class_names: tuple[str, ...] | None) -> None:
    """Refuse, before anything is written, to add trials of other data to an existing study:
    other bytes, another file format, or other class names. A study created before datasets
    were recorded takes the data it is given (and records it)."""
    if name not in optuna.get_all_study_names(storage):
        return
    study = optuna.load_study(study_name=name, storage=storage)
    held = DatasetRecord.of(study)
    if held is None:
        return
    if not held.same_data(dataset):
        with_format = held.file_format != dataset.file_format
        fix = "pass --study NEW_NAME to start a new study on this data"
        tokens = held.file_format.tokens
        if held.sha256 == dataset.sha256 and replace(dataset.file_format,
                                                     tokens=tokens) == held.file_format:
            # The same file read with other tokens (given, or detected otherwise).
            fix = f"--tokens {tokens} reads it as the study does, or {fix}"
        raise SearchError(
            f"study {name!r} holds {held.describe(with_format=with_format)} but was given "
            f"{dataset.describe(with_format=with_format)}: a study keeps one dataset; {fix}")
    recorded = StudyRecord.of(study).class_names
    if recorded is not None and class_names is not None and recorded != class_names:
        raise SearchError(
            f"study {name!r} holds {held.name} with classes {_listed(recorded)} but the "
            f"classes are now {_listed(class_names)}: a study keeps one dataset; pass "
            "--study NEW_NAME to start a new study with these classes")


def _listed(names: tuple[str, ...], shown: int = 6) -> str:
    more = f", ... ({len(names)} in all)" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


@functools.cache
def code_tags() -> dict[str, str]:
    """The program and its version on every run, and the git commit and branch when
    han-search runs from a checkout (an editable install or PYTHONPATH), for MLflow's
    Source column."""
    try:
        version = importlib.metadata.version("han-search")
    except importlib.metadata.PackageNotFoundError:
        version = "(not installed)"
    root = Path(__file__).resolve().parent.parent
    commit = branch = None
    if (root / ".git").exists():  # a file in a git worktree, a folder in a clone
        commit = _git(root, "rev-parse", "HEAD")
        branch = _git(root, "rev-parse", "--abbrev-ref", "HEAD")
    return records.source_tags(program=f"han-search {version}", commit=commit,
                               branch=None if branch == "HEAD" else branch)


def _git(root: Path, *args: str) -> str | None:
    """One line of git's output in `root`; None without git or outside a repository."""
    try:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True,
                              text=True, timeout=GIT_TIMEOUT_S, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


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
    dataset: DatasetRecord
    # The data block: what the training file holds at the reference configuration's split.
    profile: DataProfile

    def runs_view(self) -> str:
        """The study's runs table in the MLflow UI."""
        return runs_view_url(self.options.tracking_uri,
                             self.tracker.experiment_id(self.spec.name))

    def parent_run(self) -> AbstractContextManager[RunHandle]:
        """The study's MLflow parent run for this session (a context manager)."""
        storage = redact(self.options.storage)
        return self.tracker.study_run(
            self.spec.name, tags={Tag.STORAGE: storage} | code_tags(),
            params={Key.STUDY_FILE: self.spec.source, Key.SAMPLER: self.spec.sampler,
                    Key.PRUNER: self.spec.pruner, Key.DIRECTION: self.spec.direction})


def load_data(spec: StudySpec, options: RunOptions,
              cache: DataCache) -> tuple[DataFiles, Corpus]:
    """Read every data file the study will need (`spec` as `for_data` gives it), so a bad
    one fails before anything is created: the training file, the test file, the word2vec
    file. `cache` keeps the training file and word2vec parses for the trials. The test and
    word2vec files are read as the training file was (its tokens resolved, if detected)."""
    files = resolve_data(spec, options)
    corpus = cache.load_corpus(files.train, labelled=True, file_format=spec.file_format,
                               label_order=spec.label_names)
    file_format = corpus.file_format
    if files.test is not None:
        cache.load_corpus(files.test, labelled=False, file_format=file_format)
    if files.embeddings is not None:
        try:
            cache.word2vec(files.embeddings, dim=spec.fixed.get("embed_dim", HANConfig.embed_dim),
                           tokens=file_format.tokens)
        except DimensionMismatch as mismatch:
            # `han-search embeddings` writes 100 dimensions, the demo's model has 64.
            raise SearchError(f"{mismatch}; train vectors of {mismatch.dim} (han-search "
                              f"embeddings --dim {mismatch.dim}) or set embed_dim = "
                              f"{mismatch.file_dim} in the study file's [fixed]") from None
    if spec.label_names is not None and len(spec.label_names) < corpus.num_classes:
        raise SearchError(f"{spec.source}: [data] labels: {len(spec.label_names)} names for "
                          f"{corpus.num_classes} classes in {files.train}")
    return files, corpus


def open_stores(options: RunOptions, *before_tracking: Callable[[optuna.storages.BaseStorage],
                                                                 None]
                ) -> tuple[Tracker, optuna.storages.BaseStorage]:
    """Nothing is created until both stores are known to work: a remote tracking server is
    asked first, SQLite targets only checked, then the Optuna storage opened and handed to
    `before_tracking` (checks of the study), and MLflow's store touched last."""
    check_sqlite_target(options.storage, what="storage")
    check_sqlite_target(options.tracking_uri, what="tracking URI")
    check_artifact_folder(options.tracking_uri)
    tracker = Tracker(tracking_uri=options.tracking_uri)
    if not options.tracking_uri.startswith("sqlite:"):
        tracker.check_reachable()
    storage = open_storage(options.storage, heartbeat_s=options.heartbeat_s, tracker=tracker)
    for check in before_tracking:
        check(storage)
    tracker.check_reachable()
    return tracker, storage


def check_precisions(spec: StudySpec, device: torch.device) -> None:
    """Every arithmetic the study trains in, fixed or searched, checked on `device`: bf16
    where it cannot run is refused before anything is written, not in each trial."""
    searched = next((param for param in spec.space if param.name == "precision"), None)
    precisions = (searched.choices if isinstance(searched, CategoricalParam)
                  else [spec.fixed.get("precision", DEFAULTS["precision"])])
    for precision in precisions:
        try:
            check_precision(device, precision)
        except DeviceError as error:
            raise DeviceError(f"{spec.source}: {error}") from None


def prepare_study(spec: StudySpec, options: RunOptions) -> PreparedStudy:
    """Check every input, then open or create the study (with its reference trial).

    All checks come first, so bad input leaves no study, run or database file behind.
    """
    if options.seed is not None:
        spec = replace(spec, sampler=spec.sampler | {"seed": options.seed})
    spec = for_data(spec, options)
    torch_device = resolve_device(options.device)
    check_precisions(spec, torch_device)
    device = str(torch_device)
    cache = DataCache()
    files, corpus = load_data(spec, options, cache)
    train_docs = epoch_documents(spec, corpus, cache)
    check_learnable(files.train, corpus, train_docs)
    spec = spec.in_documents(train_docs)
    dataset = fingerprint(files, corpus)
    class_names = corpus.label_values or spec.label_names
    tracker, storage = open_stores(options, lambda storage: check_same_data(
        spec.name, storage, dataset, class_names))
    study, created = _load_or_create_study(spec, storage, options.sampler_seed_offset)
    profile = describe_data(spec, corpus, cache)
    if created:
        enqueue_first_trials(study, spec, profile, train_docs=train_docs)
    StudyRecord(train_path=files.train, test_path=files.test, file_format=corpus.file_format,
                class_names=class_names).write(study)
    dataset.write(study)
    run_tags = environment_tags(device) | code_tags() | dataset.tags() | {
        Tag.STORAGE: redact(options.storage), Tag.STUDY_FILE: str(spec.source)
    } | records.data_tags(asdict(corpus.file_format))
    if files.embeddings is not None:
        run_tags[Tag.EMBEDDINGS] = str(files.embeddings.resolve())
    return PreparedStudy(spec=spec, options=options, files=files, corpus=corpus,
                         tracker=tracker, study=study, run_tags=run_tags, device=device,
                         cache=cache, dataset=dataset, profile=profile)


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


def epoch_documents(spec: StudySpec, corpus: Corpus, cache: DataCache) -> int:
    """Training documents per epoch at the study's split (the reference's, should the folds
    be searched): the unit that turns a study file's epochs into documents. The split is
    the one the data block and the reference trial use, so the cache computes it once."""
    _, data_kwargs, _ = split_settings({**spec.fixed, **spec.reference_params()})
    config = DataConfig(**data_kwargs)
    fold_of, _, _ = cache.fold_vocabulary(corpus, config)
    return int((fold_of != config.dev_fold).sum())


def enqueue_first_trials(study: optuna.Study, spec: StudySpec, profile: DataProfile, *,
                         train_docs: int) -> None:
    """A new study's first trials: the settings derived from its data (han.starting_point),
    then the reference configuration when it runs first."""
    if spec.start_from_data:
        params = spec.within_space(starting_point(profile, train_docs=train_docs))
        study.enqueue_trial(params, user_attrs=records.from_data_attrs(), skip_if_exists=True)
    if spec.enqueue_reference and spec.reference_after == 0:
        enqueue_reference(study, spec)


def enqueue_reference(study: optuna.Study, spec: StudySpec) -> None:
    """The reference configuration as the study's next trial."""
    # skip_if_exists: two workers queueing it at once queue it once.
    study.enqueue_trial(spec.reference_params(), user_attrs=records.reference_attrs(),
                        skip_if_exists=True)


def reference_due(study: optuna.Study, spec: StudySpec, *, done: int,
                  total: int | None) -> bool:
    """Whether a study with `reference_after` should queue its reference trial now, `done`
    of this session's `total` trials in: once that many trials are on record, or before the
    session's last trial, so that no study goes without it."""
    if not spec.enqueue_reference or spec.reference_after == 0:
        return False
    trials = study.get_trials(deepcopy=False)
    if any(TrialRecord.of(trial).reference for trial in trials):
        return False
    waiting = sum(trial.state == TrialState.WAITING for trial in trials)
    started = len(trials) - waiting
    # The session's last place, unless trials already queued (the one derived from the
    # data) take every place left: then the next session runs it.
    last_place = total is not None and total - 1 <= done + waiting < total
    return started >= spec.reference_after or last_place


def session_trials(spec: StudySpec, *, trials: int | None, timeout: float | None
                   ) -> int | None:
    """The trials a session trains: `--trials` when given; else, under `--timeout`, as many
    as the time holds (None); else the study file's count. A user who gives only a time
    means to spend it: with the study file's 50 trials a 40-minute run on a fast machine
    ended 7 minutes early."""
    if trials is not None:
        return trials
    return None if timeout is not None else spec.trials


def describe_data(spec: StudySpec, corpus: Corpus, cache: DataCache) -> DataProfile:
    """The data block of a run: the training file, the reference configuration's split and
    vocabulary (kept in the cache for the trials), and what the study's segment shapes
    keep of the text."""
    _, data_kwargs, _ = split_settings({**spec.fixed, **spec.reference_params()})
    return describe(corpus, DataConfig(**data_kwargs), spec.segment_shapes(),
                    class_names=spec.label_names, cache=cache,
                    tokens_detected=spec.file_format.tokens == "auto")


def run_study(spec: StudySpec, options: RunOptions, *, trials: int | None = None,
              timeout: float | None = None, work_dir: Path = DEFAULT_WORK_DIR,
              progress: Progress | None = None,
              should_stop: Callable[[], bool] | None = None,
              budget: Budget | None = None) -> RunSummary:
    """Run `trials` more trials of the study within `budget` (default: `timeout` seconds
    from now; see search.budget). `trials` None: as many as the budget holds when it has a
    timeout, else the study file's count."""
    started = time.perf_counter()
    check_work_dir(spec, options, work_dir)
    budget = budget or Budget(timeout)
    prepared = prepare_study(spec, options)
    total = session_trials(spec, trials=trials, timeout=budget.timeout)
    _describe_and_make_work_dir(prepared, progress, work_dir=work_dir,
                                trials=total or spec.trials)
    with prepared.parent_run() as parent:
        parent.log_datasets([training_input(prepared.dataset)])
        _before_trials(prepared, parent.id, work_dir, progress)
        session = _Session(
            prepared=prepared, parent=parent, total=total, budget=budget, progress=progress,
            should_stop=should_stop,
            context=_search_context(prepared, parent_run_id=parent.id, work_dir=work_dir,
                                    progress=progress, should_stop=should_stop,
                                    budget=budget))
        session.optimize()
    summary = summarize(prepared.study, storage=options.storage, tracker=prepared.tracker,
                        tracking_uri=options.tracking_uri, parent_run_id=parent.id)
    summary.trials_this_run = session.started
    summary.ended_early = session.ended_early
    summary.not_logged = prepared.tracker.not_logged
    summary.runs_view = prepared.runs_view()
    register_champion(prepared.spec, options, summary)
    summary.seconds = time.perf_counter() - started
    return summary


@dataclass(kw_only=True)
class _Session:
    """The trials of one `run_study` session: what they share, and the counts that decide
    when the session ends. Optuna calls `run_trial` for each trial and `after_trial` once it
    has ended."""

    prepared: PreparedStudy
    parent: RunHandle
    context: SearchContext
    total: int | None
    budget: Budget
    progress: Progress | None
    should_stop: Callable[[], bool] | None
    # Trials started this session, and those of them the budget did not skip: what `total`
    # counts (a skipped trial costs a few batches, not a trial's work).
    started: int = 0
    trained: int = 0
    skipped_in_a_row: int = 0
    # Why the session ended before its timeout or trial count (None: it did not).
    ended_early: str | None = None

    def optimize(self) -> None:
        """The session's trials, the reference queued first when it is due."""
        study, spec = self.prepared.study, self.prepared.spec
        if reference_due(study, spec, done=0, total=self.total):
            enqueue_reference(study, spec)
        with _parent_refreshed(self.parent, study):
            # Out of memory is a property of the trial's settings, not of the study: the
            # trial fails with its shape in the reason and the study goes on; so does a
            # trial the budget stopped before its first epoch ended (the run then ends).
            # Under a timeout, skipped trials do not count: the run goes on to the timeout
            # or to `total` trained trials (after_trial stops it), whichever comes first.
            study.optimize(self.run_trial,
                           n_trials=self.total if self.budget.timeout is None else None,
                           timeout=self.budget.left(), callbacks=[self.after_trial],
                           catch=(DeviceOutOfMemoryError, StoppedBeforeAnEpoch))

    def run_trial(self, trial: optuna.Trial) -> float:
        self.started += 1
        if self.progress is not None:
            self.progress.next_trial(self.started, self.total)
        return objective(trial, self.context)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        release_host_memory()
        if reference_due(study, self.prepared.spec, done=self.started, total=self.total):
            enqueue_reference(study, self.prepared.spec)
        if self.progress is not None:
            self.progress.trial_done(study, trial)
        log_history(self.parent, study, trial)
        if trial.state == TrialState.FAIL and TrialRecord.of(trial).outcome is not None:
            # Stopped by the budget before an epoch ended: the next run trains it (the
            # reference configuration stays on record that way).
            retry_stale_trial(study, trial)
        if self.started % PLOT_EVERY == 0:
            _refresh_parent(self.parent, study)
        if self._ends_after(trial):
            study.stop()

    def _ends_after(self, trial: FrozenTrial) -> bool:
        """Count the trial; whether the session ends with it."""
        if TrialRecord.of(trial).outcome is Outcome.SKIPPED:
            self.skipped_in_a_row += 1
        else:
            self.trained += 1
            self.skipped_in_a_row = 0
        reason = self.budget.ends_after_skips(self.skipped_in_a_row)
        if reason is not None:
            self.ended_early = self.ended_early or reason
            return True
        # A stop asked for while the trial was ending (its last report, its upload) ends
        # the run here; the next trial would only start to be interrupted.
        stop_asked = self.should_stop is not None and self.should_stop()
        return stop_asked or self.budget.expired() or (
            self.total is not None and self.trained >= self.total)


def _describe_and_make_work_dir(prepared: PreparedStudy, progress: Progress | None, *,
                                work_dir: Path, trials: int) -> None:
    """The data block, told when the disk cannot hold the `trials` asked for; the work dir
    made (a trial finding it gone then knows it was removed, see han.files.folder_made)."""
    if progress is not None:
        progress.data_described(prepared.profile)
        for shortage in disk_shortages(prepared, work_dir=work_dir, trials=trials):
            progress.disk_short(shortage)
    with writing(work_dir, what="--work-dir"):
        work_dir.mkdir(parents=True, exist_ok=True)


def disk_shortages(prepared: PreparedStudy, *, work_dir: Path, trials: int) -> list[Shortage]:
    """The filesystems that cannot hold `trials` of the study's largest model (see
    search.diskspace): --work-dir's and MLflow's local artifacts'."""
    spec, corpus = prepared.spec, prepared.corpus
    dev_docs = corpus.num_docs - epoch_documents(spec, corpus, prepared.cache)
    trial = footprint(spec, vocabulary=prepared.profile.vocabulary, classes=corpus.num_classes,
                      dev_docs=dev_docs, pretrained=prepared.files.embeddings is not None)
    return shortages(trial=trial, trials=trials, work_dir=work_dir,
                     artifacts=artifact_folder(prepared.options.tracking_uri))


def _search_context(prepared: PreparedStudy, *, parent_run_id: str, work_dir: Path,
                    progress: Progress | None, should_stop: Callable[[], bool] | None,
                    budget: Budget) -> SearchContext:
    """What every trial of this session shares."""
    return SearchContext(
        spec=prepared.spec, corpus=prepared.corpus, tracker=prepared.tracker,
        parent_run_id=parent_run_id, work_dir=work_dir, device=prepared.device,
        seed=prepared.options.seed, embeddings=prepared.files.embeddings,
        run_tags=prepared.run_tags, should_stop=should_stop, cache=prepared.cache,
        budget=budget, dataset=prepared.dataset,
        on_start=progress.trial_started if progress else None,
        on_epoch=progress.epoch_done if progress else None,
        on_report=progress.reported if progress else None,
        on_estimate=progress.trial_estimated if progress else None)


def run_with_workers(spec: StudySpec, options: RunOptions, *, workers: int,
                     trials: int | None, threads: int | None,
                     worker_args: Callable[[RunOptions, float | None], list[str]],
                     budget: Budget | None = None, work_dir: Path = DEFAULT_WORK_DIR,
                     progress: Progress | None = None,
                     per_gpu: int = 1) -> tuple[RunSummary, int]:
    """Split `trials` exactly among `workers` processes on this machine, each a `han-search
    run` with the command line `worker_args(options, timeout)`: this process's options with
    its word2vec vectors, and what is left of `budget` when they start (see `session_trials`);
    returns the summary and the first failing worker's exit code."""
    started = time.perf_counter()
    budget = budget or Budget(None)
    check_work_dir(spec, options, work_dir)
    # The study, its reference trial and parent run are created once, before the workers
    # race for them.
    prepared = prepare_study(spec, options)
    # The enqueued reference trial waits to be run: it counts as this run's.
    before = len(prepared.study.get_trials(
        deepcopy=False, states=tuple(s for s in TrialState if s != TrialState.WAITING)))
    plans = plan_workers(workers=workers, device=options.device,
                         trials=session_trials(spec, trials=trials, timeout=budget.timeout),
                         threads=threads, per_gpu=per_gpu)
    with prepared.parent_run() as parent:
        _before_trials(prepared, parent.id, work_dir, progress)
        # Every worker takes this process's vectors, or none: no worker trains its own.
        given = replace(options, embeddings=prepared.files.embeddings, word2vec=False)
        left = budget.left()
        # URLs travel in the environment: they may hold passwords, which `ps` would show.
        code = run_workers(plans, worker_args(given, None if left is None else max(1.0, left)),
                           env={"HAN_SEARCH_STORAGE": options.storage,
                                "MLFLOW_TRACKING_URI": options.tracking_uri})
    summary = summarize(prepared.study, storage=options.storage, tracker=prepared.tracker,
                        tracking_uri=options.tracking_uri, parent_run_id=parent.id)
    summary.trials_this_run = len(prepared.study.get_trials(deepcopy=False)) - before
    summary.runs_view = prepared.runs_view()
    register_champion(prepared.spec, options, summary)
    summary.seconds = time.perf_counter() - started
    return summary, code


def check_work_dir(spec: StudySpec, options: RunOptions, work_dir: Path) -> None:
    """Refuse, before anything is created, a work folder (and, when this session may train
    word2vec, its cache of vectors) that could not be written."""
    check_writable(work_dir, folder=True)
    if not_trained(spec, flag=options.word2vec,
                   embeddings=options.embeddings or spec.embeddings_path) is None:
        check_cache_folder(work_dir)


def _before_trials(prepared: PreparedStudy, parent_run_id: str, work_dir: Path,
                   progress: Progress | None) -> None:
    """What the trials need first, in this order: their word2vec vectors, then the study's
    baseline."""
    _word2vec(prepared, parent_run_id, work_dir, progress.word2vec if progress else None)
    _baseline(prepared, parent_run_id, progress.baseline if progress else None)


def _word2vec(prepared: PreparedStudy, parent_run_id: str, work_dir: Path,
              show: Callable[[Word2VecOutcome], None] | None) -> None:
    """The trials' vectors: the given file, or none (word2vec off), or trained now on the
    data (found in the cache when trained before), which the trials then take exactly as
    they take `--embeddings FILE`."""
    spec = prepared.spec
    outcome = not_trained(spec, flag=prepared.options.word2vec,
                          embeddings=prepared.files.embeddings)
    if outcome is None:
        config = Word2VecConfig(dim=spec.fixed.get("embed_dim", HANConfig.embed_dim))
        outcome = ensure_word2vec(
            _word2vec_data(prepared), config, work_dir=work_dir, study=prepared.study,
            tracker=prepared.tracker, parent_run_id=parent_run_id, tags=prepared.run_tags,
            threads=torch.get_num_threads())
        if outcome.path is not None:
            prepared.files = replace(prepared.files, embeddings=outcome.path)
            prepared.run_tags[Tag.EMBEDDINGS] = str(outcome.path.resolve())
            # Parsed once here for every trial, as load_data parses a given file.
            prepared.cache.word2vec(outcome.path, dim=config.dim,
                                    tokens=prepared.corpus.file_format.tokens)
    if show is not None:
        show(outcome)


def _word2vec_data(prepared: PreparedStudy) -> Word2VecData:
    """The texts word2vec learns from: the training file's and the test file's (load_data
    has read both into the cache)."""
    # The training file's format with its tokens resolved (detected or given).
    files, read_as = prepared.files, prepared.corpus.file_format
    corpora = [prepared.corpus]
    if files.test is not None:
        corpora.append(prepared.cache.load_corpus(files.test, labelled=False,
                                                  file_format=read_as))
    return Word2VecData(train_sha256=prepared.dataset.sha256,
                        test_sha256=None if files.test is None else content_hash(files.test),
                        file_format=read_as, corpora=corpora)


def _baseline(prepared: PreparedStudy, parent_run_id: str,
              show: Callable[[BaselineOutcome], None] | None) -> None:
    """The study's baseline, trained before its first trial by one process: this one,
    unless it is a worker of a --workers run."""
    if not prepared.options.baseline:
        return
    outcome = ensure_baseline(prepared.spec, prepared.corpus, prepared.study,
                              tracker=prepared.tracker, parent_run_id=parent_run_id,
                              tags=prepared.run_tags, threads=torch.get_num_threads())
    # Its sparse matrices are gone once it is scored; the trials need the memory.
    release_host_memory()
    if show is not None:
        show(outcome)


@contextmanager
def _parent_refreshed(parent: RunHandle, study: optuna.Study) -> Iterator[None]:
    """The parent run's best trial and plots brought up to date when the block ends, however
    it ends; not when a store refused a write (the error on its way says so)."""
    try:
        yield
    except BaseException:
        with suppress(WriteFailed):
            _refresh_parent(parent, study)
        raise
    _refresh_parent(parent, study)


def _refresh_parent(parent: RunHandle, study: optuna.Study) -> None:
    if study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        parent.set_tags(records.best_tags(study.best_trial))
    log_study_plots(parent, study)


def log_history(parent: RunHandle, study: optuna.Study, trial: FrozenTrial) -> None:
    """The study's history on its parent run as metrics, one step per finished trial (step =
    its number), so MLflow's charts of the parent run are the optimization history, live:
    the trial's dev F1 (complete trials), the best so far, trials by state."""
    states = Counter(t.state for t in study.get_trials(deepcopy=False))
    metrics = {Key.TRIALS_COMPLETE: states[TrialState.COMPLETE],
               Key.TRIALS_PRUNED: states[TrialState.PRUNED],
               Key.TRIALS_FAILED: states[TrialState.FAIL]}
    if trial.state == TrialState.COMPLETE and trial.value is not None:
        metrics[Key.TRIAL_DEV_F1] = trial.value
    if states[TrialState.COMPLETE]:
        metrics[Key.BEST_DEV_F1] = study.best_value
    parent.log_metrics(metrics, step=trial.number)


def register_champion(spec: StudySpec, options: RunOptions, summary: RunSummary) -> None:
    """With `[export] registered_model`, register the best trial's model at the end of a
    session (not of each worker: the session that started them does it once). A failure is
    a warning in the summary: the trials are done and on record either way."""
    if spec.register is None or not options.register:
        return
    if summary.best_trial is None:
        summary.register_warning = f"no complete trial yet: {spec.register} not registered"
        return
    try:
        summary.registered = register_best(study_name=spec.name, name=spec.register,
                                           storage=options.storage,
                                           tracking_uri=options.tracking_uri)
    except (SearchError, TrackingError, DataError, CheckpointError) as error:
        summary.register_warning = f"{spec.register} not registered: {error}"


def override_format(base: FileFormat, **options: str | None) -> FileFormat:
    """`base` with the options that are not None; a bad value is a one-line SearchError."""
    given = {key: value for key, value in options.items() if value is not None}
    try:
        return replace(base, **given) if given else base
    except ValueError as error:
        raise SearchError(str(error)) from None


def with_overrides(spec: StudySpec, options: RunOptions, *, name: str | None = None,
                   **file_format: str | None) -> StudySpec:
    """The study with the command line's file-format options (None: the file's) and its name:
    `name` (--study) when given, else as `study_name` derives it from the data."""
    spec = replace(spec, file_format=override_format(spec.file_format, **file_format))
    return replace(spec, name=study_name(spec, options, name))
