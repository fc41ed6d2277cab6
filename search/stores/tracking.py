"""MLflow runs as context managers over explicit run ids, every request under one retry policy.

Nothing here touches MLflow's process-global active run, so trials in threads, processes or
on other machines never log into each other's runs. Requests that later steps depend on
(opening an experiment or a refit run, reading a run, downloading) raise TrackingError when
MLflow stays away; writes (metrics, tags, artifacts) are best effort: the trial goes on and
a warning says what was not logged.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import optuna
from mlflow import MlflowClient
from mlflow.entities import Dataset, DatasetInput, InputTag, Param, Run
from mlflow.exceptions import MlflowException

from han.errors import WriteFailed, first_line
from search import records
from search.defaults import DEFAULT_TRACKING_URI
from search.errors import TrackingError
from search.formatting import redact
from search.records import MAX_PARAM_LENGTH, DataContext, Role, RunState, Tag
from search.stores.journal import Entry
from search.stores.mlflow_requests import (
    Requests,
    RetryPolicy,
    artifact_folder,
    health_error,
)

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


@contextmanager
def _as_file(artifact_file: str) -> Iterator[Path]:
    """A temporary file named as the artifact's last part (MLflow names it so)."""
    with tempfile.TemporaryDirectory(prefix="han-artifact-") as folder:
        yield Path(folder) / PurePosixPath(artifact_file).name


def _folder_of(artifact_file: str) -> str | None:
    parent = str(PurePosixPath(artifact_file).parent)
    return None if parent == "." else parent


class RunHandle:
    """One MLflow run by its id; every write is best effort. A run MLflow could not start
    (`run_id` None) takes the writes as no-ops."""

    def __init__(self, requests: Requests, run_id: str | None) -> None:
        self.requests = requests
        self.run_id = run_id
        # How the run ends when its block is left (see `finish_as`); None: complete when
        # left without an error, else as the error says.
        self.final: tuple[RunState, str | None] | None = None

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

    def _send(self, what: str, entry: Entry, *, file: Path | None = None) -> bool:
        if self.run_id is None:
            return False
        return self.requests.send(what, {"run_id": self.run_id} | entry, file=file)

    def log_metrics(self, metrics: Mapping[str, float], *, step: int) -> None:
        now = int(time.time() * 1000)
        self._send(f"log metrics of step {step}", {"op": "log_batch", "metrics": [
            {"key": key, "value": float(value), "timestamp": now, "step": step}
            for key, value in metrics.items()]})

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self._send("set tags", {"op": "log_batch", "tags": [
            {"key": key, "value": str(value)} for key, value in tags.items()]})

    def log_params(self, params: Mapping[str, Any]) -> None:
        if params:
            self._send("log params", {"op": "log_batch", "params": [
                {"key": param.key, "value": param.value} for param in param_batch(params)]})

    def log_artifact(self, path: Path, *, artifact_path: str | None = None) -> bool:
        """Upload a file; False when it was not (no run, or MLflow unreachable: then it
        waits in the journal when the store is a server)."""
        return self._send(f"upload {path.name}", {"op": "log_artifact", "path": str(path),
                                                  "artifact_path": artifact_path}, file=path)

    def delete_artifacts(self, artifact_path: str) -> None:
        """Remove a folder of the run's artifacts (MLflow's client has no call for it: its
        artifact repository does, for local folders and for a server's proxied store)."""
        self._send(f"remove {artifact_path}", {"op": "delete_artifacts",
                                               "artifact_path": artifact_path})

    def log_datasets(self, inputs: Sequence[DataInput]) -> None:
        """Dataset inputs of the run (the Dataset column and the run page list them)."""
        entities = [input_.entity() for input_ in inputs]
        self._write("log dataset inputs", lambda client, run_id: client.log_inputs(
            run_id, datasets=entities))

    def log_text(self, text: str, artifact_file: str) -> None:
        with _as_file(artifact_file) as path:
            path.write_text(text, encoding="utf-8")
            self.log_artifact(path, artifact_path=_folder_of(artifact_file))

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        with _as_file(artifact_file) as path:
            figure.savefig(path)
            self.log_artifact(path, artifact_path=_folder_of(artifact_file))

    def end(self, state: RunState, reason: str | None = None) -> None:
        """End the run with the status of `state`, tagged with the state and reason."""
        self.set_tags(records.end_tags(state, reason))
        self.terminate(state)

    def terminate(self, state: RunState) -> None:
        """End the run with the status of `state` and no tags (a study's parent run); kept
        in the journal, as every write, while the server is away."""
        self._send(f"end run {self.run_id}", {"op": "set_terminated", "status": state.status,
                                              "end_time": int(time.time() * 1000)})

    def finish_as(self, state: RunState, reason: str | None = None) -> None:
        """End as `state` when the block is left, whether by an error or not: the caller has
        decided how the run ended (a trial's ending, search.session.outcome)."""
        self.final = (state, reason)

    @contextmanager
    def ending(self, on_end: OnEnd | None = None) -> Iterator[RunHandle]:
        """End the run when the block is left: as `finish_as` said; else complete, or as an
        exception says (RunState.ended_by), which `on_end` hears too."""
        try:
            yield self
        except BaseException as error:
            decided = self.final
            state, reason = decided or RunState.ended_by(error)
            try:
                if on_end is not None and decided is None:
                    on_end(state, reason)
            finally:
                with suppress(WriteFailed):  # a full store: `error` tells the user, or did
                    self.end(state, reason)
            raise
        self.end(*(self.final or (RunState.COMPLETE, None)))


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
            run.terminate(RunState.COMPLETE)

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
                  reopen: str | None = None, required: bool = True,
                  on_end: OnEnd | None = None) -> Iterator[RunHandle]:
        """A run for the length of the block, ended as RunHandle.ending says.

        With `resume` (an MLflow filter), the oldest run it matches is reopened instead of a
        new one; with `reopen`, the run of that id. A required run that cannot be started
        raises TrackingError; a best-effort one (a trial's: training goes on without MLflow)
        logs nothing.
        """

        def open_run() -> str:
            if reopen is not None:
                self.client.update_run(reopen, status=RunState.RUNNING.status)
                self.client.set_tag(reopen, Tag.STATE, RunState.RUNNING)
                return reopen
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
            start = self.requests.required if required else self.requests.patient
            run = self.run(start(f"start run {name}", open_run))
        except TrackingError as error:
            if required:
                raise
            self.requests.skipped(f"start run {name}", error)
            run = self.run(None)
        with run.ending(on_end):
            yield run

    @contextmanager
    def trial_run(self, trial: optuna.Trial, *, study_name: str, parent_run_id: str,
                  params: Mapping[str, Any], tags: Mapping[str, str],
                  reopen: str | None = None) -> Iterator[RunHandle]:
        """The trial's child run (best effort: training goes on without MLflow); its id, and
        the reason an exception ended it, go on the Optuna trial too. (A trial whose training
        stopped says how it ended itself: search.session.outcome.) With `reopen`, that run
        instead of a new one: a promoted trial goes on in its paused trial's run."""
        with self.child_run(
                experiment_id=self.experiment_id(study_name), name=f"trial-{trial.number}",
                tags=records.run_tags(Role.TRIAL, study=study_name,
                                      parent_run_id=parent_run_id,
                                      trial_number=trial.number) | dict(tags),
                params=params, reopen=reopen, required=False,
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
    error = health_error(tracking_uri, timeout=HEALTH_TIMEOUT_S)
    if error is not None:
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


def _artifact_root(tracking_uri: str) -> str | None:
    folder = artifact_folder(tracking_uri)
    return None if folder is None else folder.as_uri()


