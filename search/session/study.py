"""A study opened for a session: its stores opened (checked before anything is written), the
data it holds checked against the run's, the Optuna study found or created with its first
trials queued, and its MLflow parent run."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace

import optuna
from optuna.trial import TrialState

from han.profile import DataProfile, describe
from han.starting_point import starting_point
from search import records
from search.errors import SearchError
from search.formatting import redact
from search.records import DatasetRecord, Key, StudyRecord, Tag, TrialRecord, VersionRecord
from search.setup.options import RunOptions
from search.setup.provenance import code_tags
from search.setup.resolve import ResolvedRun, resolve
from search.stores.mlflow_requests import check_artifact_folder
from search.stores.optuna_storage import check_sqlite_target, open_storage
from search.stores.tracking import RunHandle, Tracker, runs_view_url
from search.studyfile import StudySpec


@dataclass(frozen=True)
class OpenStudy:
    """A study ready for trials: the resolved run, its stores, the Optuna study found or
    created, and the data block (what the training file holds at the reference split)."""

    resolved: ResolvedRun
    tracker: Tracker
    study: optuna.Study
    profile: DataProfile

    def runs_view(self) -> str:
        """The study's runs table in the MLflow UI."""
        return runs_view_url(self.resolved.options.tracking_uri,
                             self.tracker.experiment_id(self.resolved.name))

    def parent_run(self) -> AbstractContextManager[RunHandle]:
        """The study's MLflow parent run for this session (a context manager)."""
        spec = self.resolved.spec
        return self.tracker.study_run(
            spec.name, tags={Tag.STORAGE: redact(self.resolved.options.storage)} | code_tags(),
            params={Key.STUDY_FILE: spec.source, Key.SAMPLER: spec.sampler,
                    Key.PRUNER: spec.pruner, Key.DIRECTION: spec.direction})


def prepare_study(spec: StudySpec, options: RunOptions) -> OpenStudy:
    """Check every input, then open or create the study (with its first trials).

    All checks come first, so bad input leaves no study, run or database file behind.
    """
    return open_study(resolve(spec, options))


def open_study(resolved: ResolvedRun) -> OpenStudy:
    """The resolved run's stores and study: opened, checked against its data, created with
    its first trials when new, its record brought up to date."""
    spec, dataset = resolved.spec, resolved.dataset
    tracker, storage = open_stores(resolved.options, lambda storage: check_same_data(
        spec.name, storage, dataset, resolved.class_names))
    study, created = _load_or_create_study(spec, storage, resolved.options.sampler_seed_offset)
    reference = resolved.reference_data
    profile = describe(resolved.corpus, reference, spec.segment_shapes(reference),
                       class_names=spec.label_names, cache=resolved.cache,
                       tokens_detected=spec.file_format.tokens == "auto")
    if created:
        enqueue_first_trials(study, spec, profile, train_docs=resolved.epoch_docs)
    VersionRecord.write_current(study)
    StudyRecord(train_path=resolved.files.train, test_path=resolved.files.test,
                file_format=resolved.corpus.file_format,
                class_names=resolved.class_names).write(study)
    dataset.write(study)
    return OpenStudy(resolved=resolved, tracker=tracker, study=study, profile=profile)


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
    storage = open_storage(options.storage, heartbeat_s=options.heartbeat_s, tracker=tracker,
                           patience_s=options.storage_patience_s)
    for check in before_tracking:
        check(storage)
    tracker.check_reachable()
    # Writes an earlier run kept while the server was away go first, in their order.
    tracker.requests.flush()
    return tracker, storage


def check_same_data(name: str, storage: optuna.storages.BaseStorage, dataset: DatasetRecord,
                    class_names: tuple[str, ...] | None) -> None:
    """Refuse, before anything is written, to add trials to a study a newer han-search
    wrote, or trials of other data to an existing study: other bytes, another file format,
    or other class names. A study created before datasets
    were recorded takes the data it is given (and records it)."""
    if name not in optuna.get_all_study_names(storage):
        return
    study = optuna.load_study(study_name=name, storage=storage)
    VersionRecord.of(study).check(name)
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
