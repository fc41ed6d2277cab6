"""MLflow, reached only through explicit run ids.

Nothing here touches MLflow's process-global active run, so trials in threads, processes or
on other machines never log into each other's runs. Every write is retried with backoff;
when the server stays away, the trial goes on and a warning says what was not logged.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, Run, RunTag
from mlflow.exceptions import MlflowException

from han.errors import first_line

log = logging.getLogger("han_search.tracking")
T = TypeVar("T")

ROLE_TAG = "han.role"
STUDY_TAG = "han.study"
STATE_TAG = "state"
PARENT_TAG = "mlflow.parentRunId"
RUN_NAME_TAG = "mlflow.runName"
CHECKPOINT_ARTIFACT = "checkpoint/best.pt"
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
HEALTH_TIMEOUT_S = 10
# After a write failed for good, later writes get one try each for this long.
OUTAGE_GRACE_S = 60.0
# MLflow rejects longer param values.
_MAX_PARAM_LENGTH = 6000


class TrackingError(RuntimeError):
    """MLflow cannot be reached or refused a request; one line for the user."""


def redact(url: str) -> str:
    """The URL with any password replaced, for logs, tags and the terminal."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}"
    if parts.port:
        netloc += f":{parts.port}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def _artifact_root(tracking_uri: str) -> str | None:
    """Artifacts of a SQLite-backed store go beside the database file, not into the cwd."""
    if tracking_uri.startswith("sqlite:///"):
        database = Path(tracking_uri.removeprefix("sqlite:///")).resolve()
        return (database.parent / "mlruns").as_uri()
    return None


class Tracker:
    """One experiment per study; a parent run per study and a child run per trial."""

    def __init__(self, *, tracking_uri: str = DEFAULT_TRACKING_URI, retries: int = 4,
                 backoff_s: float = 0.5) -> None:
        self.tracking_uri = tracking_uri
        self.client = MlflowClient(tracking_uri=tracking_uri)
        self.retries = retries
        self.backoff_s = backoff_s
        self.not_logged: list[str] = []
        self._experiments: dict[str, str] = {}
        self._failed_at = -math.inf

    # -- plumbing ---------------------------------------------------------------------

    def _call(self, what: str, action: Callable[[], T], *, required: bool = False) -> T | None:
        """Run one MLflow request, retrying; a required one raises, others warn and skip.

        After a request has failed for good, the next ones get a single try for a while:
        while the server is down, each epoch's logging costs one failed request, not a
        full round of backoff.
        """
        delay = self.backoff_s
        down = time.monotonic() - self._failed_at < OUTAGE_GRACE_S
        retries = 0 if down else self.retries
        for attempt in range(retries + 1):
            try:
                result = action()
                self._failed_at = -math.inf
                return result
            except (MlflowException, OSError, ConnectionError) as error:
                if attempt == retries or not _transient(error):
                    if _transient(error):
                        self._failed_at = time.monotonic()
                    message = (f"MLflow at {redact(self.tracking_uri)}: could not {what} "
                               f"({first_line(error, limit=160)})")
                    if required:
                        raise TrackingError(message) from error
                    log.warning("%s; not logged", message)
                    self.not_logged.append(what)
                    return None
                time.sleep(delay)
                delay *= 2
        return None  # unreachable

    def check_reachable(self) -> None:
        """Fail before any training when the tracking store cannot be reached.

        A server is asked for its health with a short timeout first: going through the
        client would wait out MLflow's own HTTP retries, minutes for a closed port.
        """
        if self.tracking_uri.startswith(("http://", "https://")):
            url = self.tracking_uri.rstrip("/") + "/health"
            try:
                with urllib.request.urlopen(url, timeout=HEALTH_TIMEOUT_S) as response:
                    response.read()
            except (OSError, ValueError) as error:
                raise TrackingError(f"MLflow at {redact(self.tracking_uri)}: not reachable "
                                    f"({first_line(error, limit=160)})") from error
        self._call("reach the tracking store", lambda: self.client.search_experiments(
            max_results=1), required=True)

    # -- runs -------------------------------------------------------------------------

    def experiment_id(self, study_name: str) -> str:
        if study_name in self._experiments:
            return self._experiments[study_name]

        def find_or_create() -> str:
            experiment = self.client.get_experiment_by_name(study_name)
            if experiment is not None:
                return experiment.experiment_id
            try:
                return self.client.create_experiment(
                    study_name, artifact_location=_artifact_root(self.tracking_uri),
                    tags={STUDY_TAG: study_name})
            except MlflowException:
                # Another worker created it between our lookup and create.
                experiment = self.client.get_experiment_by_name(study_name)
                if experiment is None:
                    raise
                return experiment.experiment_id

        result = self._call(f"open experiment {study_name!r}", find_or_create, required=True)
        assert result is not None
        self._experiments[study_name] = result
        return result

    def _earliest_parent(self, experiment_id: str) -> str | None:
        found = self.client.search_runs(
            [experiment_id], filter_string=f"tags.`{ROLE_TAG}` = 'study'",
            order_by=["attributes.start_time ASC", "attributes.run_id ASC"], max_results=1)
        return found[0].info.run_id if found else None

    def parent_run(self, study_name: str, *, tags: Mapping[str, str] | None = None) -> str:
        """The study's parent run: found again when the study continues, else created."""
        experiment_id = self.experiment_id(study_name)

        def find_or_create() -> str:
            run_id = self._earliest_parent(experiment_id)
            if run_id is None:
                mine = self.client.create_run(
                    experiment_id, run_name=f"study:{study_name}",
                    tags={ROLE_TAG: "study", STUDY_TAG: study_name, **(tags or {})})
                # Workers on other machines may have raced us: all settle on the earliest.
                run_id = self._earliest_parent(experiment_id) or mine.info.run_id
                if run_id != mine.info.run_id:
                    self.client.delete_run(mine.info.run_id)
            if self.client.get_run(run_id).info.status != "RUNNING":
                self.client.update_run(run_id, status="RUNNING")
            return run_id

        result = self._call("open the study's parent run", find_or_create, required=True)
        assert result is not None
        return result

    def find_parent_run(self, study_name: str) -> str | None:
        """The study's parent run, or None when it has none (or MLflow could not say: see
        `not_logged`). Creates nothing, not even the experiment, and leaves the run's
        status alone."""

        def find() -> str | None:
            experiment = self.client.get_experiment_by_name(study_name)
            return None if experiment is None else self._earliest_parent(
                experiment.experiment_id)

        return self._call("find the study's parent run", find)

    def start_trial(self, *, study_name: str, parent_run_id: str, trial_number: int,
                    params: Mapping[str, Any], tags: Mapping[str, str]) -> str | None:
        experiment_id = self.experiment_id(study_name)

        def create() -> str:
            run = self.client.create_run(
                experiment_id, run_name=f"trial-{trial_number}",
                tags={PARENT_TAG: parent_run_id, ROLE_TAG: "trial", STUDY_TAG: study_name,
                      "trial_number": str(trial_number), STATE_TAG: "running", **tags})
            self.client.log_batch(run.info.run_id, params=[
                Param(key, str(value)[:_MAX_PARAM_LENGTH]) for key, value in params.items()])
            return run.info.run_id

        return self._call(f"start the run of trial {trial_number}", create)

    def log_metrics(self, run_id: str | None, metrics: Mapping[str, float], *,
                    step: int) -> None:
        if run_id is None:
            return
        now = int(time.time() * 1000)
        batch = [Metric(key, float(value), now, step) for key, value in metrics.items()]
        self._call(f"log metrics of step {step}",
                   lambda: self.client.log_batch(run_id, metrics=batch))

    def set_tags(self, run_id: str | None, tags: Mapping[str, Any]) -> None:
        if run_id is None:
            return
        batch = [RunTag(key, str(value)) for key, value in tags.items()]
        self._call("set tags", lambda: self.client.log_batch(run_id, tags=batch))

    def log_params(self, run_id: str | None, params: Mapping[str, Any]) -> None:
        if run_id is None or not params:
            return
        batch = [Param(key, str(value)[:_MAX_PARAM_LENGTH]) for key, value in params.items()]
        self._call("log params", lambda: self.client.log_batch(run_id, params=batch))

    def log_artifact(self, run_id: str | None, path: Path, *,
                     artifact_path: str | None = None) -> bool:
        """Upload a file; False when it could not be (no run, or MLflow unreachable)."""
        if run_id is None:
            return False
        done = self._call(f"upload {path.name}",
                          lambda: self.client.log_artifact(run_id, str(path), artifact_path)
                          or True)
        return bool(done)

    def log_text(self, run_id: str | None, text: str, artifact_file: str) -> None:
        if run_id is None:
            return
        self._call(f"upload {artifact_file}",
                   lambda: self.client.log_text(run_id, text, artifact_file))

    def log_figure(self, run_id: str | None, figure: Any, artifact_file: str) -> None:
        if run_id is None:
            return
        self._call(f"upload {artifact_file}",
                   lambda: self.client.log_figure(run_id, figure, artifact_file))

    def finish(self, run_id: str | None, *, status: str, state: str,
               reason: str | None = None) -> None:
        """End a run as FINISHED, KILLED or FAILED, with the trial's state as a tag."""
        if run_id is None:
            return
        tags = {STATE_TAG: state} | ({"reason": reason[:5000]} if reason else {})
        self.set_tags(run_id, tags)
        self._call(f"end run {run_id}",
                   lambda: self.client.set_terminated(run_id, status=status))

    def end_parent(self, run_id: str) -> None:
        self._call("end the study's parent run",
                   lambda: self.client.set_terminated(run_id, status="FINISHED"))

    def start_run(self, *, experiment_id: str, run_name: str, tags: Mapping[str, str],
                  params: Mapping[str, Any] | None = None) -> str:
        """A run that later steps depend on (a refit and its folds): failing is an error."""

        def create() -> str:
            run = self.client.create_run(experiment_id, run_name=run_name, tags=dict(tags))
            if params:
                self.client.log_batch(run.info.run_id, params=[
                    Param(key, str(value)[:_MAX_PARAM_LENGTH])
                    for key, value in params.items()])
            return run.info.run_id

        result = self._call(f"start run {run_name}", create, required=True)
        assert result is not None
        return result

    def find_runs(self, experiment_id: str, filter_string: str) -> list[Run]:
        """Runs matching an MLflow filter, oldest first; resuming relies on it, so required."""
        result = self._call("search runs", lambda: self.client.search_runs(
            [experiment_id], filter_string=filter_string,
            order_by=["attributes.start_time ASC", "attributes.run_id ASC"],
            max_results=1000), required=True)
        return list(result or [])

    def get_run(self, run_id: str) -> Run:
        result = self._call(f"read run {run_id}", lambda: self.client.get_run(run_id),
                            required=True)
        assert result is not None
        return result

    def reopen(self, run_id: str) -> None:
        """Mark a run RUNNING again while work is added to it (a resumed refit)."""
        self._call(f"reopen run {run_id}",
                   lambda: self.client.update_run(run_id, status="RUNNING"))

    def download_artifact(self, run_id: str, artifact_path: str, destination: Path) -> Path:
        local = self._call(
            f"download {artifact_path} of run {run_id}",
            lambda: self.client.download_artifacts(run_id, artifact_path, str(destination)),
            required=True)
        assert local is not None
        return Path(local)

    def download_checkpoint(self, run_id: str, destination: Path) -> Path:
        local = self._call(
            f"download the checkpoint of run {run_id}",
            lambda: self.client.download_artifacts(run_id, CHECKPOINT_ARTIFACT,
                                                   str(destination)),
            required=True)
        assert local is not None
        return Path(local)


# Requests that would fail the same way again; everything else (connection refused, server
# errors, timeouts) is retried.
_PERMANENT_ERRORS = {"INVALID_PARAMETER_VALUE", "RESOURCE_ALREADY_EXISTS", "BAD_REQUEST",
                     "RESOURCE_DOES_NOT_EXIST", "INVALID_STATE", "PERMISSION_DENIED"}


def _transient(error: BaseException) -> bool:
    return getattr(error, "error_code", None) not in _PERMANENT_ERRORS


def temporary_directory(prefix: str) -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix=prefix, dir=os.environ.get("TMPDIR"))
