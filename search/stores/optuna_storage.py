"""Optuna storages: opening them (SQLite and PostgreSQL), heartbeats, and retrying the
trials of workers that died."""

from __future__ import annotations

import functools
import importlib.util
import logging
import math
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError, ProgrammingError

from han.errors import UnwritablePath, WriteFailed, first_line
from han.files import check_writable, refused_errno
from search import records
from search.errors import SearchError, StorageLost
from search.formatting import redact
from search.records import RunState, TrialRecord

if TYPE_CHECKING:
    from search.stores.tracking import Tracker

log = logging.getLogger("han_search.storage")
# A storage that stopped answering is asked again after this long, doubling up to the most.
PATIENCE_FIRST_WAIT_S = 0.5
PATIENCE_MAX_WAIT_S = 10.0
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
    """Optuna's RDB storage, patient with a database that stops answering for a while (a
    restart, a failover): each call is tried again with backoff for `patience_s`, from the
    first failure on; past it, StorageLost, and later calls fail at once until one succeeds.
    Heartbeats stop quietly while the filesystem refuses them or the database is away: sent
    from a thread of their own, they would print a traceback, and the trial's next write
    meets the same trouble and says it in one line."""

    patience_s: float = 0.0
    _down_since: float | None = None
    _back_at: float = -math.inf

    def record_heartbeat(self, trial_id: int) -> None:
        try:
            super().record_heartbeat(trial_id)
        except (optuna.exceptions.StorageInternalError, OperationalError,
                InterfaceError) as error:
            if refused_errno(error, os_errors=()) is None and not _connection_lost(error):
                raise

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        # Every worker's heartbeats stopped while the database was away: until they have had
        # time to beat again, a silent trial may be alive.
        grace = self.grace_period or 0
        if time.monotonic() - self._back_at < grace + (self.heartbeat_interval or 0):
            return []
        return super()._get_stale_trial_ids(study_id)


def _connection_lost(error: BaseException) -> bool:
    """Whether `error` (or the database error Optuna wrapped in it) says the connection to
    the database was lost or refused, not that a request was wrong."""
    cause = error.__cause__ if isinstance(error, optuna.exceptions.StorageInternalError) \
        else error
    return isinstance(cause, OperationalError | InterfaceError) or bool(
        getattr(cause, "connection_invalidated", False))


def _patient(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def call(self: _RDBStorage, *args: Any, **kwargs: Any) -> Any:
        wait = PATIENCE_FIRST_WAIT_S
        while True:
            try:
                result = method(self, *args, **kwargs)
            except (optuna.exceptions.StorageInternalError, OperationalError,
                    InterfaceError) as error:
                if not _connection_lost(error) or self.patience_s <= 0:
                    raise
                now = time.monotonic()
                if self._down_since is None:
                    self._down_since = now
                    log.warning("storage %s: connection lost (%s); trying again for up to "
                                "%.0fs", redact(self.url), first_line(error.__cause__ or error,
                                                                      limit=120),
                                self.patience_s)
                left = self._down_since + self.patience_s - now
                if left <= 0:
                    raise StorageLost(
                        f"storage {redact(self.url)}: no answer for "
                        f"{now - self._down_since:.0f}s (--storage-patience "
                        f"{self.patience_s:g}); the trial running here is retried by the next "
                        "run") from error
                time.sleep(min(wait, left))
                wait = min(2 * wait, PATIENCE_MAX_WAIT_S)
                continue
            if self._down_since is not None:
                self._back_at = time.monotonic()
                log.warning("storage %s: answering again after %.0fs", redact(self.url),
                            self._back_at - self._down_since)
                self._down_since = None
            return result

    return call


# Every call of Optuna's storage interface that reaches the database, and the private ones
# that Optuna's cache in front of an RDB storage (what optuna.load_study makes of it) calls.
for _name in (*(n for n in dir(optuna.storages.BaseStorage) if not n.startswith("_")
                and n != "remove_session"),
              "_get_stale_trial_ids", "_create_new_trial", "_get_best_trial_id",
              "_get_trials", "_set_trial_param"):
    setattr(_RDBStorage, _name, _patient(getattr(_RDBStorage, _name)))


def open_storage(url: str, *, heartbeat_s: int | None = None,
                 tracker: Tracker | None = None,
                 patience_s: float = 0.0) -> optuna.storages.BaseStorage:
    """An RDB storage; SQLite waits for locks instead of failing at once; a server that
    stops answering is waited for `patience_s` (0: not at all).

    With `heartbeat_s`, running trials send heartbeats; one silent for three intervals (its
    worker died) is failed by the next worker to start a trial, its MLflow run is ended
    FAILED, and the trial is retried with the same parameters.
    """
    url = _with_available_postgres_driver(url)
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite:"):
        engine_kwargs = {"connect_args": {"timeout": 60}}
    else:  # a connection the server dropped (it restarted) is replaced, not used
        engine_kwargs = {"pool_pre_ping": True}
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
                storage = _RDBStorage(url, engine_kwargs=engine_kwargs, **heartbeat)
            # A SQLite file does not restart: its errors (read-only, full, locked past the
            # timeout) are answers, reported at once.
            storage.patience_s = 0.0 if url.startswith("sqlite:") else patience_s
            return storage
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


def retry_stale_trial(study: optuna.Study, trial: FrozenTrial, *,
                      counted: bool = True) -> None:
    """Enqueue the trial again with the same parameters, pointing at the original; at most
    MAX_RETRIES times unless the retry is not `counted` (the user stopped the trial)."""
    if counted and TrialRecord.of(trial).retries >= MAX_RETRIES:
        return
    study.add_trial(optuna.create_trial(
        state=TrialState.WAITING, params=trial.params, distributions=trial.distributions,
        user_attrs=records.retry_attrs(trial)))


def fail_dead_trials(study: optuna.Study, dead: Callable[[FrozenTrial], bool]) -> None:
    """Before a session draws: RUNNING trials whose worker is known `dead`, and those whose
    heartbeats stopped, failed with their retries queued, so that the retries run before
    any trial this session queues (Optuna takes waiting trials oldest first)."""
    storage = study._storage
    # Storages with heartbeats (RDB, gRPC) name the callback that queues a stale trial's
    # retry; Optuna does not export their base class, so ask for the method (renamed in
    # Optuna 4.9; the old name warns).
    get_callback = getattr(storage, "get_heartbeat_stale_trial_callback",
                           getattr(storage, "get_failed_trial_callback", None))
    on_stale = get_callback() if get_callback is not None else None
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not dead(trial):
            continue
        try:
            failed = storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:  # another worker was first
            continue
        if failed:
            (on_stale or retry_stale_trial)(study, storage.get_trial(trial._trial_id))
    if on_stale is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)


def open_study(name: str, storage: str) -> optuna.Study:
    """An existing study (was runner.load_study); an unknown name or missing SQLite file is
    a one-line SearchError that creates nothing."""
    check_sqlite_target(storage, what="storage", must_exist=True)
    optuna_storage = open_storage(storage)
    names = optuna.get_all_study_names(optuna_storage)
    if name not in names:
        known = ", ".join(sorted(names)) or "none"
        raise SearchError(f"no study named {name!r} in {redact(storage)} (studies: {known})")
    study = optuna.load_study(study_name=name, storage=optuna_storage)
    records.VersionRecord.of(study).check(name)
    return study
