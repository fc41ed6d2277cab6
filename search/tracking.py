"""MLflow runs as context managers over explicit run ids, every request under one retry policy.

Nothing here touches MLflow's process-global active run, so trials in threads, processes or
on other machines never log into each other's runs. Requests that later steps depend on
(opening an experiment or a refit run, reading a run, downloading) raise TrackingError when
MLflow stays away; writes (metrics, tags, artifacts) are best effort: the trial goes on and
a warning says what was not logged.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time
import urllib.request
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import optuna
from mlflow import MlflowClient
from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, Run, RunTag
from mlflow.exceptions import MlflowException

# MLflow's own scoped switch of the process's tracking URI (it restores an unset URI as unset),
# for the few calls that read the process's URI instead of their client's.
from mlflow.tracking._tracking_service.utils import _use_tracking_uri

from han.errors import first_line
from han.files import WRITE_ONLY, WriteFailed, check_writable, folder_lock, refused_errno
from search import records
from search.defaults import DEFAULT_TRACKING_URI
from search.errors import TrackingError
from search.formatting import redact
from search.records import MAX_PARAM_LENGTH, DataContext, Role, RunState, Tag

log = logging.getLogger("han_search.tracking")
T = TypeVar("T")

CHECKPOINT_ARTIFACT = "checkpoint/best.pt"
HEALTH_TIMEOUT_S = 10
# MLflow 3.17's UI opens an experiment on the view its GenAI / Model training switch names (the
# URL's `workflowType`, else the browser's last choice, GenAI at first), whatever the
# experiment's kind tag says: a link that names the runs view opens them either way.
RUNS_VIEW = "#/experiments/{experiment_id}/runs?workflowType=machine_learning"
# Where `mlflow ui` serves a local store by default.
LOCAL_UI = "http://127.0.0.1:5000"
_OLDEST_FIRST = ["attributes.start_time ASC", "attributes.run_id ASC"]
OnEnd = Callable[[RunState, str], None]


def runs_view_url(tracking_uri: str, experiment_id: str) -> str:
    """The experiment's runs table in the MLflow UI: on the tracking server, or on the
    `mlflow ui` a local store is opened with."""
    base = tracking_uri if tracking_uri.startswith(("http://", "https://")) else LOCAL_UI
    return f"{redact(base).rstrip('/')}/{RUNS_VIEW.format(experiment_id=experiment_id)}"


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
    http_retries: int = 2
    http_timeout_s: int = 30

    def apply_http_settings(self) -> None:
        """Set MLflow's HTTP settings for this process; an explicit setting in the
        environment wins."""
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(self.http_retries))
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(self.http_timeout_s))
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


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

    def required(self, what: str, action: Callable[[], T]) -> T:
        down = time.monotonic() - self._failed_at < self.policy.outage_s
        attempts = 1 if down else self.policy.attempts
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
                    if transient:
                        self._failed_at = time.monotonic()
                    raise TrackingError(f"MLflow at {redact(self.tracking_uri)}: could not "
                                        f"{what} ({first_line(error, limit=160)})") from error
                time.sleep(self.policy.backoff_s * 2 ** (attempt - 1))
                attempt += 1
                continue
            self._failed_at = -math.inf
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

    def skipped(self, what: str, error: TrackingError) -> None:
        log.warning("%s; not logged", error)
        self.not_logged.append(what)


@dataclass(frozen=True, kw_only=True)
class DataInput:
    """A dataset a run used: a file (or part of one), named, with a content digest, a
    profile (documents, classes, ...) and what the run used it for."""

    name: str
    digest: str
    source: Path
    context: DataContext
    profile: Mapping[str, Any]

    def entity(self) -> DatasetInput:
        # Source as MLflow's own local-file datasets write it, so the UI shows the path.
        dataset = Dataset(name=self.name, digest=self.digest, source_type="local",
                          source=json.dumps({"uri": self.source.resolve().as_uri()}),
                          profile=json.dumps(dict(self.profile)))
        return DatasetInput(dataset, tags=[InputTag(Tag.DATA_CONTEXT, str(self.context))])


def param_batch(params: Mapping[str, Any]) -> list[Param]:
    """Params as MLflow takes them: strings, cut to the longest value it accepts."""
    return [Param(key, str(value)[:MAX_PARAM_LENGTH]) for key, value in params.items()]


class RunHandle:
    """One MLflow run by its id; every write is best effort. A run MLflow could not start
    (`run_id` None) takes the writes as no-ops."""

    def __init__(self, requests: Requests, run_id: str | None) -> None:
        self.requests = requests
        self.run_id = run_id
        # How the run ends when its block is left without an error (see `finish_as`).
        self.final: tuple[RunState, str | None] = (RunState.COMPLETE, None)

    @property
    def id(self) -> str:
        """The id of a run that was started (a required run always is)."""
        if self.run_id is None:
            raise TrackingError(f"MLflow at {redact(self.requests.tracking_uri)}: the run "
                                "was never started")
        return self.run_id

    def _write(self, what: str, action: Callable[[MlflowClient, str], object]) -> bool:
        run_id, client = self.run_id, self.requests.client
        if run_id is None:
            return False
        return self.requests.write(what, lambda: action(client, run_id))

    def log_metrics(self, metrics: Mapping[str, float], *, step: int) -> None:
        now = int(time.time() * 1000)
        batch = [Metric(key, float(value), now, step) for key, value in metrics.items()]
        self._write(f"log metrics of step {step}",
                    lambda client, run_id: client.log_batch(run_id, metrics=batch))

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        batch = [RunTag(key, str(value)) for key, value in tags.items()]
        self._write("set tags", lambda client, run_id: client.log_batch(run_id, tags=batch))

    def log_params(self, params: Mapping[str, Any]) -> None:
        if params:
            self._write("log params", lambda client, run_id: client.log_batch(
                run_id, params=param_batch(params)))

    def log_artifact(self, path: Path, *, artifact_path: str | None = None) -> bool:
        """Upload a file; False when it could not be (no run, or MLflow unreachable)."""
        return self._write(f"upload {path.name}", lambda client, run_id: client.log_artifact(
            run_id, str(path), artifact_path))

    def log_datasets(self, inputs: Sequence[DataInput]) -> None:
        """Dataset inputs of the run (the Dataset column and the run page list them)."""
        entities = [input_.entity() for input_ in inputs]
        self._write("log dataset inputs", lambda client, run_id: client.log_inputs(
            run_id, datasets=entities))

    def log_text(self, text: str, artifact_file: str) -> None:
        self._write(f"upload {artifact_file}",
                    lambda client, run_id: client.log_text(run_id, text, artifact_file))

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        self._write(f"upload {artifact_file}",
                    lambda client, run_id: client.log_figure(run_id, figure, artifact_file))

    def end(self, state: RunState, reason: str | None = None) -> None:
        """End the run with the status of `state`, tagged with the state and reason."""
        self.set_tags(records.end_tags(state, reason))
        self._write(f"end run {self.run_id}", lambda client, run_id: client.set_terminated(
            run_id, status=state.status))

    def finish_as(self, state: RunState, reason: str | None = None) -> None:
        """End as `state` (not complete) when the block is left without an error: a trial
        the budget stopped keeps its best epoch, yet did not run its course."""
        self.final = (state, reason)

    @contextmanager
    def ending(self, on_end: OnEnd | None = None) -> Iterator[RunHandle]:
        """End the run when the block is left: complete (or as `finish_as` said), or as the
        exception says (RunState.ended_by); `on_end` hears how a run that did not complete
        ended."""
        try:
            yield self
        except BaseException as error:
            state, reason = RunState.ended_by(error)
            try:
                if on_end is not None:
                    on_end(state, reason)
            finally:
                with suppress(WriteFailed):  # a full store: `error` tells the user, or did
                    self.end(state, reason)
            raise
        self.end(*self.final)


class Tracker:
    """One experiment per study: a parent run per study, a child run per trial, refit runs."""

    def __init__(self, *, tracking_uri: str = DEFAULT_TRACKING_URI,
                 policy: RetryPolicy | None = None) -> None:
        self.policy = policy or RetryPolicy()
        self.policy.apply_http_settings()
        self.requests = Requests(tracking_uri, self.policy)
        self.client = self.requests.client
        self.tracking_uri = tracking_uri
        self.not_logged = self.requests.not_logged
        self._experiments: dict[str, str] = {}

    def check_reachable(self) -> None:
        """Fail before any training when the tracking store cannot be reached.

        A server is asked for its health with a short timeout first: going through the
        client would wait out MLflow's own HTTP retries.
        """
        if self.tracking_uri.startswith(("http://", "https://")):
            _check_health(self.tracking_uri)
        self.requests.required("reach the tracking store",
                               lambda: self.client.search_experiments(max_results=1))

    def experiment_id(self, study_name: str) -> str:
        if study_name not in self._experiments:
            self._experiments[study_name] = self.requests.required(
                f"open experiment {study_name!r}",
                lambda: _experiment(self.client, study_name, self.tracking_uri))
        return self._experiments[study_name]

    @contextmanager
    def study_run(self, study_name: str, *, tags: Mapping[str, str],
                  params: Mapping[str, Any]) -> Iterator[RunHandle]:
        """The study's parent run for one session: found again and reopened when the study
        continues, else created. It ends FINISHED however the session ends, so the UI never
        shows a study as running when no process works on it."""
        experiment_id = self.experiment_id(study_name)
        run_id = self.requests.required("open the study's parent run", lambda: _parent_run(
            self.client, experiment_id, study_name, tags))
        run = self.run(run_id)
        # Tags said at creation are said again: a continued study may run other code.
        run.set_tags(tags)
        run.log_params(params)

        def end() -> None:
            self.requests.write("end the study's parent run", lambda: self.client.set_terminated(
                run_id, status=RunState.COMPLETE.status))

        try:
            yield run
        except BaseException:
            with suppress(WriteFailed):  # a full store: the error on its way says so
                end()
            raise
        end()

    def find_parent_run(self, study_name: str) -> str | None:
        """The study's parent run, or None when it has none (or MLflow could not say: see
        `not_logged`). Creates nothing and leaves the run's status alone."""

        def find() -> str | None:
            experiment = self.client.get_experiment_by_name(study_name)
            return None if experiment is None else _earliest_parent(
                self.client, experiment.experiment_id)

        try:
            return self.requests.required("find the study's parent run", find)
        except TrackingError as error:
            self.requests.skipped("find the study's parent run", error)
            return None

    def run(self, run_id: str | None) -> RunHandle:
        """A handle on an existing run (None: a run MLflow never had; writes do nothing)."""
        return RunHandle(self.requests, run_id)

    @contextmanager
    def child_run(self, *, experiment_id: str, name: str, tags: Mapping[str, str],
                  params: Mapping[str, Any] | None = None, resume: str | None = None,
                  required: bool = True, on_end: OnEnd | None = None) -> Iterator[RunHandle]:
        """A run for the length of the block, ended as RunHandle.ending says.

        With `resume` (an MLflow filter), the oldest run it matches is reopened instead of a
        new one. A required run that cannot be started raises TrackingError; a best-effort
        one (a trial's: training goes on without MLflow) logs nothing.
        """

        def open_run() -> str:
            found = [] if resume is None else self.client.search_runs(
                [experiment_id], resume, order_by=_OLDEST_FIRST, max_results=1)
            if found:
                self.client.update_run(found[0].info.run_id, status=RunState.RUNNING.status)
                return found[0].info.run_id
            run_id = self.client.create_run(experiment_id, run_name=name,
                                            tags=dict(tags)).info.run_id
            if params:
                self.client.log_batch(run_id, params=param_batch(params))
            return run_id

        try:
            run = self.run(self.requests.required(f"start run {name}", open_run))
        except TrackingError as error:
            if required:
                raise
            self.requests.skipped(f"start run {name}", error)
            run = self.run(None)
        with run.ending(on_end):
            yield run

    @contextmanager
    def trial_run(self, trial: optuna.Trial, *, study_name: str, parent_run_id: str,
                  params: Mapping[str, Any], tags: Mapping[str, str]) -> Iterator[RunHandle]:
        """The trial's child run; its id, and the reason it did not complete, go on the
        Optuna trial too."""
        with self.child_run(
                experiment_id=self.experiment_id(study_name), name=f"trial-{trial.number}",
                tags=records.run_tags(Role.TRIAL, study=study_name,
                                      parent_run_id=parent_run_id,
                                      trial_number=trial.number) | dict(tags),
                params=params, required=False,
                on_end=lambda _state, reason: records.set_reason(trial, reason)) as run:
            if run.run_id is not None:
                records.set_run_id(trial, run.run_id)
            yield run

    def find_runs(self, experiment_id: str, filter_string: str) -> list[Run]:
        """Runs matching an MLflow filter, oldest first; resuming relies on it, so required."""
        return list(self.requests.required("search runs", lambda: self.client.search_runs(
            [experiment_id], filter_string=filter_string, order_by=_OLDEST_FIRST,
            max_results=1000)))

    def get_run(self, run_id: str) -> Run:
        return self.requests.required(f"read run {run_id}", lambda: self.client.get_run(run_id))

    def download(self, run_id: str, artifact_path: str, destination: Path) -> Path:
        return Path(self.requests.required(
            f"download {artifact_path} of run {run_id}",
            lambda: self.client.download_artifacts(run_id, artifact_path, str(destination))))


def _check_health(tracking_uri: str) -> None:
    """Ask a server for its health with a short timeout: going through the client would
    wait out MLflow's own HTTP retries."""
    url = tracking_uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=HEALTH_TIMEOUT_S) as response:
            response.read()
    except (OSError, ValueError) as error:
        raise TrackingError(f"MLflow at {redact(tracking_uri)}: not reachable "
                            f"({first_line(error, limit=160)})") from error


def _experiment(client: MlflowClient, study_name: str, tracking_uri: str) -> str:
    """The study's experiment id, the experiment created when it has none. Either way it
    carries the experiment tags (an experiment made by an older han-search, or by hand, gets
    the ones it lacks), so the UI opens it on its runs."""
    tags = records.experiment_tags(study_name)
    experiment = client.get_experiment_by_name(study_name)
    if experiment is None:
        try:
            return client.create_experiment(study_name, artifact_location=_artifact_root(
                tracking_uri), tags=tags)
        except MlflowException:
            # Another worker created it between our lookup and create.
            experiment = client.get_experiment_by_name(study_name)
            if experiment is None:
                raise
    for key, value in tags.items():
        # A kind chosen in the UI, or a primary metric set by hand, is the user's: kept.
        if key not in experiment.tags:
            client.set_experiment_tag(experiment.experiment_id, key, value)
    return experiment.experiment_id


def _earliest_parent(client: MlflowClient, experiment_id: str) -> str | None:
    found = client.search_runs([experiment_id], records.role_filter(Role.STUDY),
                               order_by=_OLDEST_FIRST, max_results=1)
    return found[0].info.run_id if found else None


def _parent_run(client: MlflowClient, experiment_id: str, study_name: str,
                tags: Mapping[str, str]) -> str:
    """The study's parent run, created when it has none, marked RUNNING."""
    run_id = _earliest_parent(client, experiment_id)
    if run_id is None:
        mine = client.create_run(experiment_id, run_name=f"study:{study_name}",
                                 tags=records.run_tags(Role.STUDY, study=study_name) | dict(tags))
        # Workers on other machines may have raced us: all settle on the earliest.
        run_id = _earliest_parent(client, experiment_id) or mine.info.run_id
        if run_id != mine.info.run_id:
            client.delete_run(mine.info.run_id)
    if client.get_run(run_id).info.status != RunState.RUNNING.status:
        client.update_run(run_id, status=RunState.RUNNING.status)
    return run_id


def artifact_folder(tracking_uri: str) -> Path | None:
    """Artifacts of a SQLite-backed store go beside the database file, not into the cwd."""
    if tracking_uri.startswith("sqlite:///"):
        database = Path(tracking_uri.removeprefix("sqlite:///")).resolve()
        return database.parent / "mlruns"
    return None


def _database(tracking_uri: str) -> Path | None:
    return (Path(tracking_uri.removeprefix("sqlite:///")) if tracking_uri.startswith("sqlite:///")
            else None)


def _artifact_root(tracking_uri: str) -> str | None:
    folder = artifact_folder(tracking_uri)
    return None if folder is None else folder.as_uri()


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


# -- models -----------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class CodeModel:
    """A pyfunc model logged from code: the file MLflow runs to build it, the packages it
    ships as code, its artifacts, an example of its input and output."""

    name: str
    code: Path
    code_paths: tuple[Path, ...]
    artifacts: Mapping[str, Path]
    input_example: Any
    output_example: Any
    pip_requirements: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class RegisteredVersion:
    name: str
    version: str
    alias: str
    model_id: str
    run_id: str

    @property
    def uri(self) -> str:
        """What `mlflow.pyfunc.load_model` takes: the version by its alias."""
        return f"models:/{self.name}@{self.alias}"


def log_code_model(tracker: Tracker, run_id: str, model: CodeModel) -> str:
    """Log `model` as an MLflow Model of `run_id` (in the run's experiment); its id.

    MLflow's `log_model` files a model under the process's active experiment and reads the
    process's tracking URI: the model is created here in the run's experiment and handed
    over by id, and the URI is this tracker's for the length of the call only.
    """
    # Imported here: the model flavours cost seconds, and only exporting needs them.
    import mlflow.pyfunc
    from mlflow.models import Model, infer_signature

    def log() -> str:
        experiment_id = tracker.client.get_run(run_id).info.experiment_id
        logged = tracker.client.create_logged_model(experiment_id, name=model.name,
                                                    source_run_id=run_id)
        with warnings.catch_warnings():
            # MLflow warns that integer columns cannot hold missing values: the output's
            # labels never are missing, and the input is text.
            warnings.simplefilter("ignore", UserWarning)
            signature = infer_signature(model.input_example, model.output_example)
        with _use_tracking_uri(tracker.tracking_uri):
            Model.log(
                artifact_path=None, name=model.name, flavor=mlflow.pyfunc, run_id=run_id,
                model_id=logged.model_id, python_model=str(model.code),
                code_paths=[str(path) for path in model.code_paths],
                artifacts={key: str(path) for key, path in model.artifacts.items()},
                signature=signature,
                input_example=model.input_example,
                pip_requirements=list(model.pip_requirements))
        return logged.model_id

    return tracker.requests.required(f"log the model of run {run_id}", log)


def register_version(tracker: Tracker, *, name: str, model_id: str, run_id: str,
                     alias: str) -> RegisteredVersion:
    """A new version of the registered model `name` (created when new) from the logged
    model, with `alias` moved onto it."""
    client = tracker.client

    def register() -> RegisteredVersion:
        try:
            client.create_registered_model(name)
        except MlflowException as error:
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        version = client.create_model_version(name, source=f"models:/{model_id}",
                                              run_id=run_id, model_id=model_id)
        client.set_registered_model_alias(name, alias, version.version)
        return RegisteredVersion(name=name, version=str(version.version), alias=alias,
                                 model_id=model_id, run_id=run_id)

    def register_here() -> RegisteredVersion:
        # A SQL store looks the logged model up through the process's tracking URI (an
        # MLflow TODO), not the client's.
        with _use_tracking_uri(tracker.tracking_uri):
            return register()

    return tracker.requests.required(f"register model {name!r}", register_here)
