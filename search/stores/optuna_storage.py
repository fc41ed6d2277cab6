"""Optuna storages: opening them (SQLite and PostgreSQL), heartbeats, and retrying the
trials of workers that died."""

from __future__ import annotations

import importlib.util
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.exc import IntegrityError, ProgrammingError

from han.errors import UnwritablePath, WriteFailed, first_line
from han.files import check_writable, refused_errno
from search import records
from search.errors import SearchError
from search.formatting import redact
from search.records import RunState, TrialRecord

if TYPE_CHECKING:
    from search.stores.tracking import Tracker

# A trial whose worker died is retried at most this many times.
MAX_RETRIES = 2
# Tries to open a storage whose tables another process is creating at the same moment.
CREATE_ATTEMPTS = 5


def check_sqlite_target(url: str, *, what: str, must_exist: bool = False) -> None:
    """Refuse a SQLite URL whose file cannot be created (or, to read, does not exist) before
    anything else is written."""
    if not url.startswith("sqlite:///"):
        return
    database = Path(url.removeprefix("sqlite:///"))
    if must_exist and not database.is_file():
        raise SearchError(f"{what} {url}: no such database file")
    if not database.parent.exists():
        raise SearchError(f"{what} {url}: folder {database.parent} does not exist")
    if must_exist:
        return  # read only: a database in a read-only folder is fine
    try:
        check_writable(database)
    except UnwritablePath as error:
        raise SearchError(f"{what} {url}: {error}") from None


def sqlite_file_missing(url: str) -> bool:
    """A SQLite URL whose database file does not exist (opening it would create it)."""
    return url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file()


def _with_available_postgres_driver(url: str) -> str:
    """SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3; the `postgres` extra installs
    psycopg2, so use it when psycopg 3 is absent."""
    if not url.startswith("postgresql://"):
        return url
    if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2"):
        return "postgresql+psycopg2://" + url.removeprefix("postgresql://")
    return url


class _RDBStorage(optuna.storages.RDBStorage):
    """Optuna's RDB storage, whose heartbeats stop quietly while the filesystem refuses
    them: sent from a thread of their own, they would print a traceback, and the trial's
    next write meets the same refusal and says it in one line."""

    def record_heartbeat(self, trial_id: int) -> None:
        try:
            super().record_heartbeat(trial_id)
        except optuna.exceptions.StorageInternalError as error:
            if refused_errno(error, os_errors=()) is None:
                raise


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
                tracker.run(TrialRecord.of(trial).run_id).end(
                    RunState.FAILED, "worker stopped sending heartbeats")
            retry_stale_trial(study, trial)

        heartbeat = {"heartbeat_interval": heartbeat_s, "grace_period": 3 * heartbeat_s,
                     "heartbeat_stale_trial_callback": on_stale}
    attempt = 1
    while True:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return _RDBStorage(url, engine_kwargs=engine_kwargs, **heartbeat)
        except (IntegrityError, ProgrammingError) as error:
            # Workers started together on a new PostgreSQL database all create its tables;
            # the losers fail on a duplicate, and find the tables made when they try again.
            if attempt == CREATE_ATTEMPTS:
                raise _cannot_open(url, error) from error
            time.sleep(0.5 * attempt)
            attempt += 1
        except Exception as error:  # SQLAlchemy raises many types for a bad URL or server
            raise refused_write(error, url) or _cannot_open(url, error) from error


def _cannot_open(url: str, error: Exception) -> SearchError:
    return SearchError(f"storage {redact(url)}: cannot open ({first_line(error, limit=200)})")


def refused_write(error: BaseException, url: str) -> WriteFailed | None:
    """A write to the SQLite storage at `url` that the filesystem refused (a full disk, a
    read-only or removed folder: han.files.refused_errno), naming its file; None else.
    SQLite says so in its own codes: an OSError met in the block is not the storage's."""
    code = refused_errno(error, os_errors=())
    if code is None or not url.startswith("sqlite:///"):
        return None
    return WriteFailed(target=url.removeprefix("sqlite:///"), what="the Optuna study",
                       code=code)


@contextmanager
def storage_writes(url: str) -> Iterator[None]:
    """A block that writes the storage at `url`: a write its filesystem refused ends it as
    WriteFailed, also where Optuna's own bookkeeping then broke (a trial it could not
    record as failed ends `optimize` in an AssertionError raised while handling that)."""
    try:
        yield
    except WriteFailed:
        raise
    except Exception as error:
        refused = refused_write(error, url) or (
            refused_write(error.__context__, url) if error.__context__ is not None else None)
        if refused is None:
            raise
        raise refused from error


def retry_stale_trial(study: optuna.Study, trial: FrozenTrial) -> None:
    """Enqueue the trial again with the same parameters, pointing at the original."""
    if TrialRecord.of(trial).retries >= MAX_RETRIES:
        return
    study.add_trial(optuna.create_trial(
        state=TrialState.WAITING, params=trial.params, distributions=trial.distributions,
        user_attrs=records.retry_attrs(trial)))


def open_study(name: str, storage: str) -> optuna.Study:
    """An existing study (was runner.load_study); an unknown name or missing SQLite file is
    a one-line SearchError that creates nothing."""
    check_sqlite_target(storage, what="storage", must_exist=True)
    optuna_storage = open_storage(storage)
    names = optuna.get_all_study_names(optuna_storage)
    if name not in names:
        known = ", ".join(sorted(names)) or "none"
        raise SearchError(f"no study named {name!r} in {redact(storage)} (studies: {known})")
    return optuna.load_study(study_name=name, storage=optuna_storage)
