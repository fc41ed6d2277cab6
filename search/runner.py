"""Running, inspecting and exporting studies: the plain functions behind the CLI."""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import platform
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from han.config import COMPETITION_FORMAT, FileFormat, HANConfig
from han.device import resolve_device
from han.errors import first_line
from han.files import written_atomically
from han.io import Corpus, load_corpus
from han.predict import Prediction, predict
from han.synthetic import SyntheticSpec, builtin_corpus
from han.train import DeviceOutOfMemoryError, EpochMetrics
from han.vocab import Vocabulary, load_embeddings
from search.objective import (
    LOCAL_CHECKPOINT_ATTR,
    REASON_ATTR,
    RETRIES_ATTR,
    RETRY_OF_ATTR,
    RUN_ID_ATTR,
    SearchContext,
    objective,
)
from search.reports import log_study_plots
from search.studyspec import StudySpec
from search.tracking import DEFAULT_TRACKING_URI, Tracker, redact

DEFAULT_STORAGE = "sqlite:///han-search.db"
DEFAULT_WORK_DIR = Path("han-search-work")
REFERENCE_ATTR = "reference"
TRAIN_PATH_ATTR = "train_path"
TEST_PATH_ATTR = "test_path"
# Class names in class-id order, for reports (absent when the classes have no names).
CLASS_NAMES_ATTR = "class_names"
# How the study's files are read (han.config.FileFormat as a dict).
FILE_FORMAT_ATTR = "file_format"
# Trial run tag: the word2vec file a trial's frozen embeddings came from.
EMBEDDINGS_TAG = "data.embeddings"
# Study plots are redrawn every this many finished trials (and at the end): drawing them
# after every trial would cost more than a small trial.
PLOT_EVERY = 5
DEFAULT_HEARTBEAT_S = 10
MAX_RETRIES = 2


class SearchError(ValueError):
    """A user-facing problem (missing study, no complete trial...): one line."""


class Progress(Protocol):
    def next_trial(self, index: int, total: int | None) -> None: ...
    def trial_started(self, trial: optuna.Trial, params: dict[str, Any]) -> None: ...
    def epoch_done(self, trial: optuna.Trial, metrics: EpochMetrics) -> None: ...
    def trial_done(self, study: optuna.Study, trial: FrozenTrial) -> None: ...


@dataclass(frozen=True)
class DataFiles:
    train: Path
    test: Path | None
    embeddings: Path | None
    builtin: bool


@dataclass
class RunSummary:
    study_name: str
    storage: str
    tracking_uri: str
    parent_run_id: str
    states: Counter[str] = field(default_factory=Counter)
    trials_this_run: int = 0
    best_value: float | None = None
    best_trial: int | None = None
    best_params: dict[str, Any] = field(default_factory=dict)
    reference_value: float | None = None
    seconds: float = 0.0
    not_logged: list[str] = field(default_factory=list)


def resolve_data(spec: StudySpec, *, train: Path | None, test: Path | None,
                 embeddings: Path | None) -> DataFiles:
    """Command-line files win over the study file's; no train file means the built-in corpus."""
    train = train or spec.train_path
    embeddings = embeddings or spec.embeddings_path
    if train is not None:
        return DataFiles(train=train, test=test or spec.test_path, embeddings=embeddings,
                         builtin=False)
    if spec.file_format != COMPETITION_FORMAT:
        raise SearchError("--sep, --text-col, --label-col and --tokens describe a data file: "
                          "give --train (the built-in corpus has the competition's format)")
    synthetic = SyntheticSpec(**spec.synthetic)
    generated_train, generated_test = builtin_corpus(synthetic)
    return DataFiles(train=generated_train, test=test or generated_test, embeddings=embeddings,
                     builtin=True)


def check_sqlite_target(url: str, *, what: str, must_exist: bool = False) -> None:
    """Refuse a SQLite URL whose file cannot be created (or, to read, does not exist) before
    anything else is written."""
    if not url.startswith("sqlite:///"):
        return
    database = Path(url.removeprefix("sqlite:///"))
    if must_exist and not database.is_file():
        raise SearchError(f"{what} {url}: no such database file")
    if not database.parent.is_dir():
        raise SearchError(f"{what} {url}: folder {database.parent} does not exist")


def _with_available_postgres_driver(url: str) -> str:
    """SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3; the `postgres` extra installs
    psycopg2, so use it when psycopg 3 is absent."""
    if not url.startswith("postgresql://"):
        return url
    if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2"):
        return "postgresql+psycopg2://" + url.removeprefix("postgresql://")
    return url


def open_storage(url: str, *, heartbeat_s: int | None = None,
                 tracker: Tracker | None = None) -> optuna.storages.BaseStorage:
    """An RDB storage; SQLite waits for locks instead of failing at once.

    With `heartbeat_s`, running trials send heartbeats; one silent for three intervals (its
    worker died) is failed by the next worker to start a trial, its MLflow run is ended
    FAILED, and the trial is retried with the same parameters.
    """
    url = _with_available_postgres_driver(url)
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite:"):
        engine_kwargs = {"connect_args": {"timeout": 60}}
    heartbeat: dict[str, Any] = {}
    if heartbeat_s:

        def on_stale(study: optuna.Study, trial: FrozenTrial) -> None:
            if tracker is not None:
                tracker.finish(trial.user_attrs.get(RUN_ID_ATTR), status="FAILED",
                               state="failed", reason="worker stopped sending heartbeats")
            retry_stale_trial(study, trial)

        heartbeat = {"heartbeat_interval": heartbeat_s, "grace_period": 3 * heartbeat_s,
                     "heartbeat_stale_trial_callback": on_stale}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **heartbeat)
    except Exception as error:  # SQLAlchemy raises many types for a bad URL or server
        raise SearchError(f"storage {redact(url)}: cannot open "
                          f"({first_line(error, limit=200)})") from error


def retry_stale_trial(study: optuna.Study, trial: FrozenTrial) -> None:
    """Enqueue the trial again with the same parameters, pointing at the original."""
    retries = int(trial.user_attrs.get(RETRIES_ATTR, 0)) + 1
    if retries > MAX_RETRIES:
        return
    origin = trial.user_attrs.get(RETRY_OF_ATTR, trial.number)
    study.add_trial(optuna.create_trial(
        state=TrialState.WAITING, params=trial.params, distributions=trial.distributions,
        user_attrs={**trial.user_attrs, RETRY_OF_ATTR: origin, RETRIES_ATTR: retries}))


def fingerprint(path: Path, corpus: Corpus) -> dict[str, str]:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return {
        "data.path": str(path.resolve()),
        "data.bytes": str(path.stat().st_size),
        "data.sha256": digest.hexdigest()[:16],
        "data.docs": str(corpus.num_docs),
        "data.classes": str(corpus.num_classes),
    }


def environment_tags(device: str) -> dict[str, str]:
    tags = {"device": device, "python": platform.python_version(), "host": platform.node()}
    for package in ("torch", "numpy", "optuna", "mlflow", "scikit-learn", "han-search"):
        try:
            tags[f"version.{package}"] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    if device.startswith("cuda"):
        tags["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return tags


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
    """A study ready for trials: inputs checked, study and parent run found or created."""

    spec: StudySpec
    files: DataFiles
    corpus: Corpus
    tracker: Tracker
    study: optuna.Study
    parent_run_id: str
    run_tags: dict[str, str]
    device: str


def prepare_study(
    spec: StudySpec,
    *,
    storage: str = DEFAULT_STORAGE,
    tracking_uri: str = DEFAULT_TRACKING_URI,
    device: str = "auto",
    seed: int | None = None,
    train: Path | None = None,
    test: Path | None = None,
    embeddings: Path | None = None,
    heartbeat_s: int = DEFAULT_HEARTBEAT_S,
    sampler_seed_offset: int = 0,
) -> PreparedStudy:
    """Check every input, then open or create the study and its MLflow parent run.

    All checks come first, so bad input leaves no study, run or database file behind.
    """
    if seed is not None:
        spec = replace(spec, sampler=spec.sampler | {"seed": seed})
    device_name = str(resolve_device(device))
    files = resolve_data(spec, train=train, test=test, embeddings=embeddings)
    file_format = spec.file_format
    corpus = load_corpus(files.train, labelled=True, file_format=file_format,
                         label_order=spec.label_names)
    if files.test is not None:
        # Fail now, not at export time.
        load_corpus(files.test, labelled=False, file_format=file_format)
    if files.embeddings is not None:
        embed_dim = spec.fixed.get("embed_dim", HANConfig.embed_dim)
        load_embeddings(files.embeddings, Vocabulary(raw_ids=np.zeros(0, np.int64)),
                        dim=embed_dim, tokens=file_format.tokens)
    if spec.label_names is not None and len(spec.label_names) < corpus.num_classes:
        raise SearchError(f"{spec.source}: [data] labels: {len(spec.label_names)} names for "
                          f"{corpus.num_classes} classes in {files.train}")
    class_names = corpus.label_values or spec.label_names
    # Nothing is created until both stores are known to work: a remote tracking server is
    # asked first, SQLite targets only checked, then the Optuna storage opened.
    check_sqlite_target(storage, what="storage")
    check_sqlite_target(tracking_uri, what="tracking URI")
    tracker = Tracker(tracking_uri=tracking_uri)
    if not tracking_uri.startswith("sqlite:"):
        tracker.check_reachable()
    optuna_storage = open_storage(storage, heartbeat_s=heartbeat_s, tracker=tracker)
    tracker.check_reachable()

    study, created = _load_or_create_study(spec, optuna_storage, sampler_seed_offset)
    if created and spec.enqueue_reference:
        # skip_if_exists: two workers starting the same new study enqueue it once.
        study.enqueue_trial(spec.reference_params(), user_attrs={REFERENCE_ATTR: True},
                            skip_if_exists=True)
    study.set_user_attr(TRAIN_PATH_ATTR, str(files.train.resolve()))
    if files.test is not None:
        study.set_user_attr(TEST_PATH_ATTR, str(files.test.resolve()))
    study.set_user_attr(FILE_FORMAT_ATTR, asdict(file_format))
    if class_names is not None:
        study.set_user_attr(CLASS_NAMES_ATTR, list(class_names))

    run_tags = environment_tags(device_name) | fingerprint(files.train, corpus) | {
        "storage": redact(storage), "study_file": str(spec.source)} | {
        f"data.{key}": value for key, value in asdict(file_format).items()}
    if files.embeddings is not None:
        run_tags[EMBEDDINGS_TAG] = str(files.embeddings.resolve())
    parent_run_id = tracker.parent_run(spec.name, tags={"storage": redact(storage)})
    tracker.log_params(parent_run_id, {"study_file": spec.source, "sampler": spec.sampler,
                                       "pruner": spec.pruner, "direction": spec.direction})
    return PreparedStudy(spec=spec, files=files, corpus=corpus, tracker=tracker, study=study,
                         parent_run_id=parent_run_id, run_tags=run_tags, device=device_name)


def run_study(
    spec: StudySpec,
    *,
    trials: int | None = None,
    timeout: float | None = None,
    storage: str = DEFAULT_STORAGE,
    tracking_uri: str = DEFAULT_TRACKING_URI,
    device: str = "auto",
    seed: int | None = None,
    train: Path | None = None,
    test: Path | None = None,
    embeddings: Path | None = None,
    work_dir: Path = DEFAULT_WORK_DIR,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
    heartbeat_s: int = DEFAULT_HEARTBEAT_S,
    sampler_seed_offset: int = 0,
) -> RunSummary:
    """Run `trials` more trials of the study (the study file's count when None)."""
    started = time.perf_counter()
    prepared = prepare_study(spec, storage=storage, tracking_uri=tracking_uri, device=device,
                             seed=seed, train=train, test=test, embeddings=embeddings,
                             heartbeat_s=heartbeat_s, sampler_seed_offset=sampler_seed_offset)
    tracker, study, parent_run_id = prepared.tracker, prepared.study, prepared.parent_run_id
    ctx = SearchContext(
        spec=prepared.spec, corpus=prepared.corpus, tracker=tracker,
        parent_run_id=parent_run_id, work_dir=work_dir, device=prepared.device,
        seed=seed, embeddings=prepared.files.embeddings,
        run_tags=prepared.run_tags, should_stop=should_stop,
        on_start=progress.trial_started if progress else None,
        on_epoch=progress.epoch_done if progress else None,
    )
    total = trials if trials is not None else spec.trials
    counter = {"index": 0}

    def run_trial(trial: optuna.Trial) -> float:
        counter["index"] += 1
        if progress is not None:
            progress.next_trial(counter["index"], total)
        return objective(trial, ctx)

    def after_trial(study: optuna.Study, trial: FrozenTrial) -> None:
        if progress is not None:
            progress.trial_done(study, trial)
        if counter["index"] % PLOT_EVERY == 0:
            _refresh_parent(tracker, parent_run_id, study)

    try:
        # Out of memory is a property of the trial's settings, not of the study: the trial
        # fails with its shape in the reason and the study goes on.
        study.optimize(run_trial, n_trials=total, timeout=timeout, callbacks=[after_trial],
                       catch=(DeviceOutOfMemoryError,))
    finally:
        _refresh_parent(tracker, parent_run_id, study)
        # Ended between sessions (a continued study or another worker reopens it), so the
        # UI never shows a study as running when no process works on it.
        tracker.end_parent(parent_run_id)
    summary = summarize(study, storage=storage, tracking_uri=tracking_uri,
                        parent_run_id=parent_run_id)
    summary.trials_this_run = counter["index"]
    summary.seconds = time.perf_counter() - started
    summary.not_logged = tracker.not_logged
    return summary


def _refresh_parent(tracker: Tracker, run_id: str, study: optuna.Study) -> None:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if complete:
        best = study.best_trial
        # Tags, not params: MLflow params are write-once and the best changes.
        tracker.set_tags(run_id, {f"best.{k}": v for k, v in best.params.items()}
                         | {"best.trial": best.number, "best.value": best.value})
        tracker.log_metrics(run_id, {"best_dev_macro_f1": best.value or 0.0,
                                     "trials_complete": len(complete)},
                            step=len(study.trials))
    log_study_plots(tracker, run_id, study)


def summarize(study: optuna.Study, *, storage: str, tracking_uri: str,
              parent_run_id: str = "") -> RunSummary:
    trials = study.get_trials(deepcopy=False)
    summary = RunSummary(study_name=study.study_name, storage=redact(storage),
                         tracking_uri=redact(tracking_uri), parent_run_id=parent_run_id,
                         states=Counter(t.state.name.lower() for t in trials))
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if complete:
        best = study.best_trial
        summary.best_value, summary.best_trial, summary.best_params = (
            best.value, best.number, dict(best.params))
    reference = [t for t in complete if t.user_attrs.get(REFERENCE_ATTR)]
    if reference:
        summary.reference_value = reference[0].value
    return summary


def load_study(name: str, storage: str) -> optuna.Study:
    check_sqlite_target(storage, what="storage", must_exist=True)
    optuna_storage = open_storage(storage)
    names = optuna.get_all_study_names(optuna_storage)
    if name not in names:
        known = ", ".join(sorted(names)) or "none"
        raise SearchError(f"no study named {name!r} in {redact(storage)} (studies: {known})")
    return optuna.load_study(study_name=name, storage=optuna_storage)


def best_trial_run(study: optuna.Study) -> tuple[FrozenTrial, str]:
    """The best complete trial and its MLflow run id, or a one-line error."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise SearchError(f"study {study.study_name!r} has no complete trial yet; "
                          "run more trials")
    best = study.best_trial
    run_id = best.user_attrs.get(RUN_ID_ATTR)
    if run_id is None:
        raise SearchError(f"trial {best.number} of study {study.study_name!r} has no "
                          "MLflow run")
    return best, run_id


def _kept_checkpoint(study: optuna.Study) -> Path | None:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return None
    kept = study.best_trial.user_attrs.get(LOCAL_CHECKPOINT_ATTR)
    return Path(kept) if kept and Path(kept).is_file() else None


def study_file_format(study: optuna.Study) -> FileFormat:
    """How the study's files are read (studies run before this was recorded: the
    competition's format)."""
    return FileFormat(**study.user_attrs.get(FILE_FORMAT_ATTR, {}))


def resolve_test_path(study: optuna.Study, test: Path | None) -> Path:
    """The given test file, else the study's; read now so a bad one fails before any work."""
    test_path = test or (Path(study.user_attrs[TEST_PATH_ATTR])
                         if TEST_PATH_ATTR in study.user_attrs else None)
    if test_path is None:
        raise SearchError("no test file: pass --test FILE")
    load_corpus(test_path, labelled=False, file_format=study_file_format(study))
    return test_path


def write_submission(out: Path, prediction: Prediction) -> None:
    """The prediction's label column in file order, written atomically."""
    with written_atomically(out) as temporary:
        prediction.submission().to_csv(temporary, index=False)


@dataclass(frozen=True)
class ExportResult:
    out: Path
    rows: int
    trial: int
    value: float
    run_id: str | None
    label_counts: dict[int, int]
    notes: tuple[str, ...]


def export_best(*, study_name: str, storage: str = DEFAULT_STORAGE,
                tracking_uri: str = DEFAULT_TRACKING_URI, test: Path | None = None,
                out: Path = Path("submission.csv"), device: str = "auto") -> ExportResult:
    """Predict the test file with the best complete trial's checkpoint; write `label` CSV."""
    study = load_study(study_name, storage)
    kept = _kept_checkpoint(study)
    if kept is not None:
        # MLflow was down when the best trial ended: its checkpoint stayed on this disk.
        best, run_id = study.best_trial, study.best_trial.user_attrs.get(RUN_ID_ATTR)
    else:
        best, run_id = best_trial_run(study)
    test_path = resolve_test_path(study, test)
    tracker = Tracker(tracking_uri=tracking_uri)
    with tempfile.TemporaryDirectory(prefix="han-export-") as scratch:
        checkpoint = kept or tracker.download_checkpoint(run_id, Path(scratch))
        prediction = predict(checkpoint, test_path, device=device)
    write_submission(out, prediction)
    tracker.log_artifact(run_id, out, artifact_path="predictions")
    counts = np.bincount(prediction.labels)
    return ExportResult(out=out, rows=len(prediction.labels), trial=best.number,
                        value=float(best.value or 0.0), run_id=run_id,
                        label_counts={i: int(c) for i, c in enumerate(counts) if c},
                        notes=prediction.notes)


@dataclass(frozen=True)
class StudyRow:
    name: str
    states: dict[str, int]
    best_value: float | None
    best_trial: int | None


def list_studies(storage: str = DEFAULT_STORAGE) -> list[StudyRow]:
    if storage.startswith("sqlite:///") and not Path(storage.removeprefix("sqlite:///")).is_file():
        return []  # listing must not create the database it looks into
    optuna_storage = open_storage(storage)
    rows = []
    for name in sorted(optuna.get_all_study_names(optuna_storage)):
        summary = summarize(optuna.load_study(study_name=name, storage=optuna_storage),
                            storage=storage, tracking_uri="")
        rows.append(StudyRow(name=name, states=dict(summary.states),
                             best_value=summary.best_value, best_trial=summary.best_trial))
    return rows


@dataclass(frozen=True)
class TrialRow:
    number: int
    state: str
    value: float | None
    epochs: int
    params: dict[str, Any]
    run_id: str | None
    reason: str | None


def trial_row(trial: FrozenTrial) -> TrialRow:
    return TrialRow(number=trial.number, state=trial.state.name.lower(), value=trial.value,
                    epochs=len(trial.intermediate_values), params=dict(trial.params),
                    run_id=trial.user_attrs.get(RUN_ID_ATTR),
                    reason=trial.user_attrs.get(REASON_ATTR))


def top_trials(study: optuna.Study, *, limit: int = 10) -> list[TrialRow]:
    trials = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    trials.sort(key=lambda t: t.value or 0.0, reverse=study.direction.name == "MAXIMIZE")
    return [trial_row(t) for t in trials[:limit]]


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
