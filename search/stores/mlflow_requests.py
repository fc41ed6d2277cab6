"""Requests to an MLflow store under one retry policy: required ones return their value or
raise TrackingError, best-effort writes warn and are listed; where a SQLite store keeps its
artifacts, and the one-line error of a write its filesystem refused."""

from __future__ import annotations

import logging
import math
import os
import tempfile
import time
import urllib.request
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from han.errors import WriteFailed, first_line
from han.files import WRITE_ONLY, check_writable, folder_lock, refused_errno
from search.errors import TrackingError
from search.formatting import redact
from search.stores.journal import Entry, Journal, send_entry

log = logging.getLogger("han_search.tracking")
T = TypeVar("T")
# A probe of a server that was away: a refused connection answers at once, a dead host
# within this.
PROBE_TIMEOUT_S = 3.0


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """How hard a request to MLflow is tried, ours and MLflow's own HTTP client's alike.

    A request gets `attempts` tries, `backoff_s` apart and doubling. After one failed for
    good, later requests get a single try each for `outage_s`: while the server is down,
    each epoch's logging costs one failed request, not a full round of backoff. MLflow's
    HTTP client would retry 7 times with exponential backoff (minutes per request when a
    server is down); `http_retries` and `http_timeout_s` hold it to seconds.
    """

    attempts: int = 5
    backoff_s: float = 0.5
    outage_s: float = 60.0
    # While writes wait in the journal, the server is asked again at most this often.
    probe_s: float = 10.0
    # A trial's run that cannot be started waits this long for the server before the trial
    # trains without one: its writes can only wait in the journal for a run that exists.
    run_start_patience_s: float = 180.0
    http_retries: int = 2
    http_timeout_s: int = 30

    def apply_http_settings(self) -> None:
        """Set MLflow's HTTP settings for this process; an explicit setting in the
        environment wins."""
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(self.http_retries))
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(self.http_timeout_s))
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        # MLflow prints two links to stdout each time a run ends on a server, between the
        # trial lines; the summary gives the study's link once.
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")


def _store_creation_lock(tracking_uri: str) -> AbstractContextManager[None]:
    """Opening a SQLite store creates and migrates its schema; two processes doing it to one
    new file at once race through the migrations and the loser fails (two `han-search run`
    started together on a fresh folder). The first to hold the folder does it alone."""
    if not tracking_uri.startswith("sqlite:///"):
        return nullcontext()
    return folder_lock(Path(tracking_uri.removeprefix("sqlite:///")).parent)


class Requests:
    """Requests to one MLflow store under a RetryPolicy: required ones return their value or
    raise TrackingError; best-effort writes warn, are listed in `not_logged` and say False."""

    def __init__(self, tracking_uri: str, policy: RetryPolicy) -> None:
        self.tracking_uri = tracking_uri
        with _store_creation_lock(tracking_uri):
            self.client = MlflowClient(tracking_uri=tracking_uri)
        self.policy = policy
        self.not_logged: list[str] = []
        self._failed_at = -math.inf
        # Writes kept while the server is away (None: a local store), how many this process
        # kept and how many it sent later.
        self.journal = Journal.for_server(tracking_uri)
        self.delayed = 0
        self.replayed = 0
        # Whether the last request failed because the server could not be reached.
        self.away = False

    def required(self, what: str, action: Callable[[], T], *, retried: bool = True) -> T:
        """`action`'s result, tried again with backoff unless not `retried` or the server
        failed for good lately; TrackingError when it cannot be made."""
        down = time.monotonic() - self._failed_at < self.policy.outage_s
        attempts = self.policy.attempts if retried and not down else 1
        attempt = 1
        while True:
            try:
                result = action()
            except (MlflowException, OSError, ConnectionError) as error:
                refused = self.refused(error)
                if refused is not None:  # the same again until the user acts
                    raise refused from error
                transient = _transient(error)
                if not transient or attempt >= attempts:
                    self.away = transient
                    if transient:
                        self._failed_at = time.monotonic()
                    raise TrackingError(f"MLflow at {redact(self.tracking_uri)}: could not "
                                        f"{what} ({first_line(error, limit=160)})") from error
                time.sleep(self.policy.backoff_s * 2 ** (attempt - 1))
                attempt += 1
                continue
            self._failed_at = -math.inf
            self.away = False
            return result

    def refused(self, error: BaseException) -> WriteFailed | None:
        """A write of this (local) store that the filesystem refused (han.files.refused_errno),
        naming the file: SQLite's, or the artifact MLflow was copying (into the artifact
        folder, or its temporary copy). Requests read too: a missing file is no refusal."""
        code = refused_errno(error, os_errors=WRITE_ONLY)
        if code is None:
            return None
        filename = getattr(error, "filename", None)
        target = (Path(filename) if filename
                  else artifact_folder(self.tracking_uri) if isinstance(error, OSError)
                  else _database(self.tracking_uri))
        return WriteFailed(target=target or tempfile.gettempdir(), what="the MLflow run",
                           code=code)

    def write(self, what: str, action: Callable[[], object]) -> bool:
        try:
            self.required(what, action)
        except TrackingError as error:
            self.skipped(what, error)
            return False
        return True

    def patient(self, what: str, action: Callable[[], T]) -> T:
        """`required`, asked again every `probe_s` while the server is away (a server, not a
        local store), for up to `run_start_patience_s`."""
        deadline = time.monotonic() + self.policy.run_start_patience_s
        while True:
            try:
                return self.required(what, action)
            except TrackingError:
                if (self.journal is None or not self.away
                        or time.monotonic() + self.policy.probe_s > deadline):
                    raise
                log.warning("MLflow at %s is away; waiting to %s", redact(self.tracking_uri),
                            what)
                time.sleep(self.policy.probe_s)

    def send(self, what: str, entry: Entry, *, file: Path | None = None) -> bool:
        """A write that waits for the server when it is away: made now (after the writes
        kept before it), else kept in the journal, in order; True when made now."""
        if self.journal is None:
            return self.write(what, lambda: send_entry(self.client, entry, self.tracking_uri))
        away = time.monotonic() - self._failed_at < self.policy.probe_s
        if self.journal.pending() and not away and health_error(
                self.tracking_uri, timeout=PROBE_TIMEOUT_S) is not None:
            # Still away: asked with one quick request, not through MLflow's retries and
            # their backoff, which training would wait out every probe.
            self._failed_at, self.away, away = time.monotonic(), True, True
        if not (away and self.journal.pending()):
            try:
                self.flush()
                # One try: a write that fails waits in the journal, in order, instead of
                # holding training through a round of backoff.
                self.required(what, lambda: send_entry(self.client, entry, self.tracking_uri),
                              retried=False)
                return True
            except TrackingError as error:
                if not self.away:  # refused for another reason: waiting will not help
                    self.skipped(what, error)
                    return False
        self.journal.append(entry, file=file)
        self.delayed += 1
        return False

    def flush(self) -> int:
        """Send what the journal keeps, in order; raises TrackingError while the server
        stays away. Returns how many were sent."""
        if self.journal is None:
            return 0
        sent = self.journal.replay(lambda entry: self.required(
            "send the writes kept while it was away",
            lambda: send_entry(self.client, entry, self.tracking_uri)))
        self.replayed += sent
        return sent

    def skipped(self, what: str, error: TrackingError) -> None:
        log.warning("%s; not logged", error)
        self.not_logged.append(what)


def health_error(tracking_uri: str, *, timeout: float) -> Exception | None:
    """Why a server does not answer its health check within `timeout` (None: it does);
    one request, none of MLflow's retries."""
    try:
        with urllib.request.urlopen(tracking_uri.rstrip("/") + "/health",
                                    timeout=timeout) as response:
            response.read()
    except (OSError, ValueError) as error:
        return error
    return None


def artifact_folder(tracking_uri: str) -> Path | None:
    """Artifacts of a SQLite-backed store go beside the database file, not into the cwd."""
    if tracking_uri.startswith("sqlite:///"):
        database = Path(tracking_uri.removeprefix("sqlite:///")).resolve()
        return database.parent / "mlruns"
    return None


def _database(tracking_uri: str) -> Path | None:
    return (Path(tracking_uri.removeprefix("sqlite:///")) if tracking_uri.startswith("sqlite:///")
            else None)


def check_artifact_folder(tracking_uri: str) -> None:
    """Refuse, before any work, a SQLite-backed store whose artifact folder (`mlruns/` beside
    the database) could not be written; other stores keep their artifacts elsewhere."""
    folder = artifact_folder(tracking_uri)
    if folder is not None:
        check_writable(folder, folder=True)


# Requests that would fail the same way again; everything else (connection refused, server
# errors, timeouts) is retried.
_PERMANENT_ERRORS = {"INVALID_PARAMETER_VALUE", "RESOURCE_ALREADY_EXISTS", "BAD_REQUEST",
                     "RESOURCE_DOES_NOT_EXIST", "INVALID_STATE", "PERMISSION_DENIED"}


def _transient(error: BaseException) -> bool:
    return getattr(error, "error_code", None) not in _PERMANENT_ERRORS
