"""Many workers on one study, as on a cluster: PostgreSQL for Optuna, an `mlflow server`.

Every scenario runs the real `han-search` command in subprocesses against a real MLflow
tracking server (HTTP, artifacts proxied by the server) and a real PostgreSQL database of its
own, then inspects the outcome through the Optuna and MLflow APIs:

* three workers share twelve trials: none lost or duplicated, one MLflow child run each,
  under one parent run, every checkpoint downloadable through the server;
* a worker killed with SIGKILL mid-trial: the next worker fails the silent trial and retries
  it from the dead worker's last finished epoch;
* SIGTERM / SIGINT: the worker stops at a batch boundary with 143 / 130, the trial is on
  record as stopped, and the same command continues the study; Ctrl-C (SIGINT to the process
  group) on `--workers 2` stops every worker the same way;
* MLflow unreachable at start: one line, exit 2, before any training, no Optuna database;
* a password in the storage URL never reaches the terminal or MLflow.

PostgreSQL is expected on 127.0.0.1:5432 (user postgres, trust auth; HAN_TEST_PG_HOST, _PORT
and _USER override); without it the tests that need it skip. Every process runs with one CPU
thread.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pytest
from mlflow import MlflowClient
from mlflow.entities import Run
from optuna.trial import FrozenTrial, TrialState

from han.checkpoint import load_checkpoint
from tests.conftest import easy_corpus
from tests.helpers import child_env, free_port, han_search_command, study_toml
from tests.helpers import mlflow_server as running_mlflow_server

PG_HOST = os.environ.get("HAN_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("HAN_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("HAN_TEST_PG_USER", "postgres")
# SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3, while the project's `postgres` extra
# installs psycopg2: name the driver (see test_bare_postgresql_url_opens_with_psycopg2).
PG_SCHEME = "postgresql+psycopg2"
PASSWORD = "s3cret"
# Generous: the CI machine may be shared; the scenarios themselves take seconds.
PROCESS_TIMEOUT_S = 300
SERVER_START_TIMEOUT_S = 90

# A trial of the load test: two epochs of a tiny model on a small corpus.
FAST_FIXED = {"epochs": 2, "batch_size": 16, "embed_dim": 8, "sent_hidden": 8, "seg_len": 16,
              "folds": 4, "min_count": 1, "patience": 2}
FAST_SPACE = {
    "word_hidden": {"type": "categorical", "choices": [8, 16]},
    "lr": {"type": "float", "low": 1e-3, "high": 5e-2, "log": True},
    "max_segments": {"type": "categorical", "choices": [2, 4]},
}
FAST_REFERENCE = {"word_hidden": 16, "lr": 2e-2, "max_segments": 4}
FAST_PRUNER = {"name": "median", "n_startup_trials": 2, "n_warmup_steps": 0}
FAST_DOCS = 96

# A trial of the fault scenarios: six epochs of about a second each, small batches so a
# stop request is seen within a fraction of a second, never pruned.
SLOW_FIXED = {"epochs": 6, "batch_size": 8, "embed_dim": 16, "word_hidden": 16,
              "sent_hidden": 16, "seg_len": 32, "max_segments": 4, "folds": 4,
              "min_count": 1, "patience": 6}
SLOW_SPACE = {"lr": {"type": "float", "low": 1e-2, "high": 3e-2, "log": True}}
SLOW_REFERENCE = {"lr": 2e-2}
NO_PRUNER = {"name": "none"}
SLOW_DOCS = 240


# ------------------------------------------------------------------------------ helpers


@dataclass
class Finished:
    code: int
    output: str  # stdout and stderr together
    stderr: str
    seconds: float


def han_search(*args: str | Path, cwd: Path, timeout: float = PROCESS_TIMEOUT_S,
               env: dict[str, str] | None = None) -> Finished:
    started = time.monotonic()
    done = subprocess.run([*han_search_command(), *map(str, args)], cwd=cwd,
                          env=env or child_env(), capture_output=True, text=True,
                          timeout=timeout, check=False)
    return Finished(code=done.returncode, output=done.stdout + done.stderr, stderr=done.stderr,
                    seconds=time.monotonic() - started)


@dataclass
class Background:
    """A `han-search` process whose output goes to a file (no pipe to fill up)."""

    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)


@contextlib.contextmanager
def han_search_background(*args: str | Path, cwd: Path, log: Path) -> Iterator[Background]:
    with log.open("wb") as sink:
        process = subprocess.Popen([*han_search_command(), *map(str, args)], cwd=cwd,
                                   env=child_env(), stdout=sink, stderr=subprocess.STDOUT)
    running = Background(process=process, log=log)
    try:
        yield running
    finally:
        running.stop()


def wait_for(what: str, check: Callable[[], Any], *, timeout: float = PROCESS_TIMEOUT_S,
             every: float = 0.25, alive: Background | None = None) -> Any:
    """Poll `check` until it returns something truthy; fail with `what` on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        if alive is not None and alive.process.poll() is not None:
            result = check()  # it may have finished between the two looks
            if result:
                return result
            pytest.fail(f"{what}: the worker exited with {alive.process.returncode} first:\n"
                        + alive.output()[-3000:])
        time.sleep(every)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")


# --------------------------------------------------------------------------- PostgreSQL


def _pg_admin() -> Any:
    """An autocommit connection to the `postgres` database, or a skip saying why not."""
    psycopg2 = pytest.importorskip("psycopg2", reason="psycopg2 is needed for PostgreSQL")
    try:
        connection = psycopg2.connect(host=PG_HOST, port=PG_PORT, user=PG_USER,
                                      dbname="postgres", connect_timeout=3)
    except psycopg2.OperationalError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else "no answer"
        pytest.skip(f"PostgreSQL unreachable at {PG_HOST}:{PG_PORT} as {PG_USER}: {first}")
    connection.autocommit = True
    return connection


def pg_url(database: str, *, password: str | None = None, scheme: str = PG_SCHEME) -> str:
    user = f"{PG_USER}:{password}" if password else PG_USER
    return f"{scheme}://{user}@{PG_HOST}:{PG_PORT}/{database}"


@contextlib.contextmanager
def pg_database() -> Iterator[str]:
    """A fresh database of this test's own; its name, dropped afterwards."""
    admin = _pg_admin()
    name = f"han_test_{uuid.uuid4().hex[:8]}"
    try:
        with admin.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
        yield name
    finally:
        with admin.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                           "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.close()


@pytest.fixture
def pg_storage() -> Iterator[str]:
    with pg_database() as name:
        yield pg_url(name)


def test_bare_postgresql_url_opens_with_psycopg2(pg_storage: str) -> None:
    from search.stores.optuna_storage import open_storage

    bare = pg_storage.replace(f"{PG_SCHEME}://", "postgresql://", 1)
    storage = open_storage(bare)
    assert isinstance(storage, optuna.storages.RDBStorage)


# Opens both stores as `han-search run` does, in a process of its own.
OPEN_STORES = """
import sys
import optuna
from search.stores.optuna_storage import open_storage
from search.stores.tracking import Tracker
optuna.create_study(study_name="together", storage=open_storage(sys.argv[1]),
                    load_if_exists=True)
Tracker(tracking_uri=sys.argv[2]).client.search_experiments()
"""


def test_processes_opening_new_stores_together_all_open_them(pg_storage: str,
                                                             tmp_path: Path) -> None:
    # Workers started at once on new stores each create the tables: Optuna's in a new
    # PostgreSQL database, MLflow's (through its schema migrations) in a new SQLite file.
    # Before the retry and the lock, one in three of such processes failed on PostgreSQL and
    # seven in nine on MLflow's SQLite file, with a traceback.
    tracking_uri = f"sqlite:///{tmp_path}/mlflow.db"
    processes = [subprocess.Popen([sys.executable, "-c", OPEN_STORES, pg_storage, tracking_uri],
                                  env=child_env(), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(3)]
    errors = [process.communicate(timeout=PROCESS_TIMEOUT_S)[1] for process in processes]
    assert [process.returncode for process in processes] == [0, 0, 0], \
        "\n".join(error[-600:] for error in errors)


# ------------------------------------------------------------------------- MLflow server


@dataclass
class MlflowServer:
    uri: str
    root: Path

    @property
    def client(self) -> MlflowClient:
        return MlflowClient(tracking_uri=self.uri)

    def experiment_id(self, name: str) -> str | None:
        experiment = self.client.get_experiment_by_name(name)
        return experiment.experiment_id if experiment is not None else None

    def runs(self, study: str, role: str = "trial") -> list[Run]:
        experiment_id = self.experiment_id(study)
        if experiment_id is None:
            return []
        return self.client.search_runs([experiment_id],
                                       filter_string=f"tags.`han.role` = '{role}'",
                                       max_results=1000)

    def trial_run(self, study: str, number: int) -> Run | None:
        found = [r for r in self.runs(study) if r.data.tags.get("trial_number") == str(number)]
        return found[0] if len(found) == 1 else None

    def epochs_logged(self, run_id: str) -> int:
        return len(self.client.get_metric_history(run_id, "dev_macro_f1"))


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """`mlflow server` on a free loopback port: SQLite runs, artifacts proxied to a folder."""
    if shutil.which("mlflow") is None:
        pytest.skip("the mlflow command is not on PATH")
    root = tmp_path_factory.mktemp("mlflow-server")
    with running_mlflow_server(root, start_timeout=SERVER_START_TIMEOUT_S) as uri:
        yield MlflowServer(uri=uri, root=root)


# ------------------------------------------------------------- three workers, twelve trials

SWARM_WORKERS = 3
SWARM_TRIALS = 12
SWARM_STUDY = "swarm"


@dataclass
class Swarm:
    root: Path
    storage: str  # without the password (trust auth accepts both)
    server: MlflowServer
    result: Finished

    def trials(self) -> list[FrozenTrial]:
        return optuna.load_study(study_name=SWARM_STUDY, storage=self.storage).trials


@pytest.fixture(scope="module")
def swarm(tmp_path_factory: pytest.TempPathFactory, mlflow_server: MlflowServer
          ) -> Iterator[Swarm]:
    """One `han-search run --workers 3 --trials 12`, with a password in the storage URL."""
    root = tmp_path_factory.mktemp("swarm")
    train = easy_corpus(root / "train.tsv", docs=FAST_DOCS)
    config = study_toml(root / "study.toml", name=SWARM_STUDY, train=train,
                        trials=SWARM_TRIALS, fixed=FAST_FIXED, space=FAST_SPACE,
                        pruner=FAST_PRUNER, reference=FAST_REFERENCE)
    with pg_database() as database:
        result = han_search(
            "run", "--config", config, "--workers", SWARM_WORKERS, "--trials", SWARM_TRIALS,
            "--threads", 1, "--device", "cpu",
            "--storage", pg_url(database, password=PASSWORD),
            "--tracking-uri", mlflow_server.uri, "--work-dir", root / "work", cwd=root)
        yield Swarm(root=root, storage=pg_url(database), server=mlflow_server, result=result)


def test_workers_share_trials_without_loss_or_duplicates(swarm: Swarm) -> None:
    assert swarm.result.code == 0, swarm.result.output
    trials = swarm.trials()
    assert sorted(t.number for t in trials) == list(range(SWARM_TRIALS)), swarm.result.output
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials), \
        [(t.number, t.state.name, t.user_attrs.get("reason")) for t in trials]
    # Only the parent enqueued the reference trial, exactly once.
    assert [t.number for t in trials if t.user_attrs.get("reference")] == [0]
    assert trials[0].params == FAST_REFERENCE
    run_ids = [t.user_attrs.get("mlflow_run_id") for t in trials]
    assert None not in run_ids
    assert len(set(run_ids)) == SWARM_TRIALS
    # Every worker took a share of the trials (the split is 4/4/4).
    for index in range(SWARM_WORKERS):
        assert swarm.result.output.count(f"[w{index}] [trial ") >= 1, swarm.result.output
    assert "12 trials in" in swarm.result.output  # the parent's summary


def test_one_mlflow_child_run_per_trial_under_one_parent(swarm: Swarm) -> None:
    parents = swarm.server.runs(SWARM_STUDY, role="study")
    assert len(parents) == 1, [p.info.run_id for p in parents]
    parent_id = parents[0].info.run_id
    children = swarm.server.runs(SWARM_STUDY, role="trial")
    assert len(children) == SWARM_TRIALS
    assert {r.data.tags.get("mlflow.parentRunId") for r in children} == {parent_id}
    # The parent process trained the baseline before starting its workers; no worker did.
    baselines = swarm.server.runs(SWARM_STUDY, role="baseline")
    assert [r.data.tags.get("mlflow.parentRunId") for r in baselines] == [parent_id]
    assert swarm.result.output.count("baseline  dev F1 ") == 1, swarm.result.output
    # So did it train the word2vec vectors, which every worker's trials took from it.
    (word2vec,) = swarm.server.runs(SWARM_STUDY, role="word2vec")
    assert word2vec.data.tags.get("mlflow.parentRunId") == parent_id
    vectors = word2vec.data.tags["data.embeddings"]
    assert {r.data.tags.get("data.embeddings") for r in children} == {vectors}
    assert swarm.result.output.count(" vectors from 96 documents in ") == 1, swarm.result.output
    by_number = {int(r.data.tags["trial_number"]): r for r in children}
    assert sorted(by_number) == list(range(SWARM_TRIALS))
    for trial in swarm.trials():
        run = by_number[trial.number]
        assert run.info.run_id == trial.user_attrs["mlflow_run_id"]
        expected = ("FINISHED", "complete") if trial.state == TrialState.COMPLETE else (
            "KILLED", "pruned")
        assert (run.info.status, run.data.tags.get("state")) == expected, trial.number
        assert len(run.data.params) > 0


def test_every_complete_checkpoint_downloads_through_the_server(swarm: Swarm) -> None:
    client = swarm.server.client
    complete = [t for t in swarm.trials() if t.state == TrialState.COMPLETE]
    assert complete  # the reference trial learns the easy corpus
    for trial in complete:
        destination = swarm.root / "downloads" / str(trial.number)
        destination.mkdir(parents=True)
        local = client.download_artifacts(trial.user_attrs["mlflow_run_id"],
                                          "checkpoint/best.pt", str(destination))
        loaded = load_checkpoint(local)
        assert loaded.model_config.num_classes == 4
        assert loaded.extra["dev_macro_f1"] == pytest.approx(trial.value)
    # Through the server's artifact proxy: nothing was written into the client's folders.
    assert not (swarm.root / "mlruns").exists()
    assert not (swarm.root / "mlartifacts").exists()


def test_storage_password_never_reaches_terminal_or_mlflow(swarm: Swarm) -> None:
    assert swarm.result.code == 0, swarm.result.output
    assert PASSWORD not in swarm.result.output
    assert "postgres:***@" in swarm.result.output  # the redacted URL is what is shown
    runs = swarm.server.runs(SWARM_STUDY, "study") + swarm.server.runs(SWARM_STUDY, "trial")
    assert len(runs) == SWARM_TRIALS + 1
    for run in runs:
        for key, value in [*run.data.params.items(), *run.data.tags.items()]:
            assert PASSWORD not in key and PASSWORD not in value, (run.info.run_id, key)
    assert any(run.data.tags.get("storage", "").startswith(f"{PG_SCHEME}://postgres:***@")
               for run in runs)
    experiment = swarm.server.client.get_experiment_by_name(SWARM_STUDY)
    assert experiment is not None
    assert all(PASSWORD not in value for value in experiment.tags.values())


# --------------------------------------------------------------------------- fault tests


@dataclass
class SlowStudy:
    root: Path
    config: Path
    name: str
    storage: str
    server: MlflowServer

    def args(self, *extra: str | int) -> list[str | Path]:
        return ["run", "--config", self.config, "--storage", self.storage, "--tracking-uri",
                self.server.uri, "--work-dir", self.root / "work", "--threads", 1,
                "--device", "cpu", *map(str, extra)]

    def trials(self) -> list[FrozenTrial]:
        return optuna.load_study(study_name=self.name, storage=self.storage).trials

    def wait_for_epoch(self, worker: Background, number: int = 0, epochs: int = 1) -> str:
        """The MLflow run of trial `number` once it has logged `epochs` epochs."""

        def logged() -> str | None:
            run = self.server.trial_run(self.name, number)
            if run is not None and self.server.epochs_logged(run.info.run_id) >= epochs:
                return run.info.run_id
            return None

        return wait_for(f"epoch {epochs} of trial {number}", logged, alive=worker)


def slow_study(root: Path, name: str, storage: str, server: MlflowServer) -> SlowStudy:
    train = easy_corpus(root / "train.tsv", docs=SLOW_DOCS)
    config = study_toml(root / "study.toml", name=name, train=train, trials=1,
                        fixed=SLOW_FIXED, space=SLOW_SPACE, pruner=NO_PRUNER,
                        reference=SLOW_REFERENCE)
    return SlowStudy(root=root, config=config, name=name, storage=storage, server=server)


HEARTBEAT_S = 1
GRACE_S = 3 * HEARTBEAT_S


def test_killed_worker_trial_resumes_on_another_machine(
        tmp_path: Path, pg_storage: str, mlflow_server: MlflowServer) -> None:
    """Two work dirs stand for two machines sharing the study and the server: the worker on
    the first is killed after epoch 2; a worker on the second, whose work dir never saw the
    trial, retries it from the state the first left on the server, and ends where the same
    trial run without interruption ends."""
    study = slow_study(tmp_path, "killed", pg_storage, mlflow_server)
    args = study.args("--trials", 1, "--heartbeat", HEARTBEAT_S)
    with han_search_background(*args, cwd=tmp_path, log=tmp_path / "first.log") as first:
        killed_run = study.wait_for_epoch(first, epochs=2)
        os.kill(first.process.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        assert first.process.wait(timeout=30) == -signal.SIGKILL
    # The dead trial is still RUNNING: nobody has noticed yet.
    assert [t.state for t in study.trials()] == [TrialState.RUNNING]
    epochs_done = mlflow_server.epochs_logged(killed_run)
    assert 2 <= epochs_done < SLOW_FIXED["epochs"]
    [dead] = study.trials()
    # The state of every finished epoch reached the server before the next began.
    assert dead.user_attrs["state_epochs"] >= epochs_done - 1

    # Let the heartbeat go stale for longer than the grace period (the second machine
    # cannot see that the first's process is gone).
    time.sleep(max(0.0, killed_at + GRACE_S + 1.5 - time.monotonic()))
    other_machine = tmp_path / "machine-b"
    second = han_search(*[other_machine / "work" if arg == tmp_path / "work" else arg
                          for arg in args], cwd=tmp_path)
    assert second.code == 0, second.output

    trials = study.trials()
    assert [(t.number, t.state) for t in trials] == [(0, TrialState.FAIL),
                                                     (1, TrialState.COMPLETE)], second.output
    dead, retry = trials
    assert retry.user_attrs["retry_of"] == 0
    assert retry.user_attrs["retries"] == 1
    assert retry.params == dead.params == SLOW_REFERENCE
    assert retry.user_attrs["mlflow_run_id"] != killed_run

    client = mlflow_server.client
    dead_run = client.get_run(killed_run)
    assert dead_run.info.status == "FAILED"
    assert dead_run.data.tags["state"] == "failed"
    assert "heartbeat" in dead_run.data.tags.get("reason", "")
    retry_run = client.get_run(retry.user_attrs["mlflow_run_id"])
    assert retry_run.info.status == "FINISHED"
    assert retry_run.data.tags["state"] == "complete"
    assert retry_run.data.tags["trial_number"] == "1"
    resumed_from = int(retry_run.data.tags["resumed_from_epoch"])
    # The files reach the server before the trial records their epoch: a kill in between
    # leaves the record one epoch behind the state the retry finds.
    assert 1 <= dead.user_attrs["state_epochs"] <= resumed_from <= epochs_done
    assert retry_run.data.tags["retry_of_trial"] == "0"
    # The retry logged only the epochs it trained.
    steps = sorted(m.step for m in client.get_metric_history(retry_run.info.run_id,
                                                             "dev_macro_f1"))
    assert steps == list(range(resumed_from + 1, SLOW_FIXED["epochs"] + 1))
    local = client.download_artifacts(retry_run.info.run_id, "checkpoint/best.pt",
                                      str(tmp_path))
    assert load_checkpoint(local).extra["dev_macro_f1"] == pytest.approx(retry.value)
    # The finished retry removed its shared state; the first machine's folder is its own.
    assert not client.list_artifacts(retry_run.info.run_id, "training-state")
    assert not (other_machine / "work" / "killed" / "trial-0").exists()

    # The same trial, never interrupted, on a study of its own: the same result.
    (tmp_path / "calm").mkdir()
    calm = slow_study(tmp_path / "calm", "calm", pg_storage, mlflow_server)
    finished = han_search(*calm.args("--trials", 1), cwd=tmp_path)
    assert finished.code == 0, finished.output
    [uninterrupted] = calm.trials()
    assert uninterrupted.params == retry.params
    assert retry.value == pytest.approx(uninterrupted.value, abs=1e-6)


def test_killed_trial_runs_first_in_the_next_run_on_its_machine(
        tmp_path: Path, pg_storage: str, mlflow_server: MlflowServer) -> None:
    """kill -9 after epoch 2 and the same command at once: on the same machine the dead
    worker is seen at once (its process is gone), and its retry runs before the reference
    trial that the second run queues."""
    train = easy_corpus(tmp_path / "train.tsv", docs=SLOW_DOCS)
    config = study_toml(tmp_path / "study.toml", name="first", train=train, trials=1,
                        fixed=SLOW_FIXED, space=SLOW_SPACE, pruner=NO_PRUNER,
                        reference=SLOW_REFERENCE, reference_after=1)
    study = SlowStudy(root=tmp_path, config=config, name="first", storage=pg_storage,
                      server=mlflow_server)
    # Two trials asked for: with one, the first run's only place would be the reference's
    # (a session's last place goes to it), and trial 0 would be the reference itself.
    with han_search_background(*study.args("--trials", 2), cwd=tmp_path,
                               log=tmp_path / "first.log") as first:
        study.wait_for_epoch(first, epochs=2)
        os.kill(first.process.pid, signal.SIGKILL)
        assert first.process.wait(timeout=30) == -signal.SIGKILL
    [killed] = study.trials()
    assert not killed.user_attrs.get("reference")
    again = han_search(*study.args("--trials", 1), cwd=tmp_path)
    assert again.code == 0, again.output
    trials = study.trials()
    assert [(t.number, t.state) for t in trials] == [
        (0, TrialState.FAIL), (1, TrialState.COMPLETE), (2, TrialState.WAITING)], again.output
    retry, reference = trials[1], trials[2]
    assert retry.user_attrs["retry_of"] == 0 and retry.params == killed.params
    assert reference.user_attrs.get("reference") is True
    run = mlflow_server.client.get_run(retry.user_attrs["mlflow_run_id"])
    assert int(run.data.tags["resumed_from_epoch"]) == killed.user_attrs["epochs_done"] >= 2


def stop_worker(worker: Background, signum: int) -> tuple[int, float]:
    """Send `signum`; the exit code and the seconds it took to exit."""
    worker.process.send_signal(signum)
    sent = time.monotonic()
    try:
        code = worker.process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{signal.Signals(signum).name}: still running after 60s:\n"
                    + worker.output()[-3000:])
    return code, time.monotonic() - sent


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)],
                         ids=["SIGTERM", "SIGINT"])
def test_signal_stops_at_batch_boundary_and_study_continues(
        tmp_path: Path, pg_storage: str, mlflow_server: MlflowServer, signum: int,
        code: int) -> None:
    name = f"stopped-{signal.Signals(signum).name.lower()}"
    study = slow_study(tmp_path, name, pg_storage, mlflow_server)
    args = study.args("--trials", 1)
    with han_search_background(*args, cwd=tmp_path, log=tmp_path / "first.log") as first:
        run_id = study.wait_for_epoch(first, epochs=2)
        exit_code, stop_seconds = stop_worker(first, signum)
    output = first.output()
    assert exit_code == code, output
    assert stop_seconds < 15, f"took {stop_seconds:.1f}s to stop"
    assert f"{signal.Signals(signum).name}: stopping at the next batch boundary" in output
    assert "KeyboardInterrupt" not in output

    trial = study.trials()[0]
    assert trial.state == TrialState.FAIL
    assert "stopped at epoch" in trial.user_attrs["reason"]
    run = mlflow_server.client.get_run(run_id)
    assert run.info.status == "KILLED"
    assert run.data.tags["state"] == "interrupted"
    assert "stopped at epoch" in run.data.tags["reason"]
    # The stopped trial waits to be taken up again.
    assert [t.state for t in study.trials()] == [TrialState.FAIL, TrialState.WAITING]
    if signum != signal.SIGINT:
        return  # continuing works the same after either signal; once is enough

    again = han_search(*args, cwd=tmp_path)
    assert again.code == 0, again.output
    trials = study.trials()
    assert [(t.number, t.state) for t in trials] == [(0, TrialState.FAIL),
                                                     (1, TrialState.COMPLETE)]
    # The next run resumed it from its last finished epoch, before any other trial.
    retry = trials[1]
    assert retry.user_attrs["retry_of"] == 0
    retry_run = mlflow_server.client.get_run(retry.user_attrs["mlflow_run_id"])
    assert int(retry_run.data.tags["resumed_from_epoch"]) == trial.user_attrs["epochs_done"]
    assert len(mlflow_server.runs(name, role="study")) == 1
    assert len(mlflow_server.runs(name, role="trial")) == 2


def worker_pids(pid: int) -> list[int]:
    """The `han-search run --worker-index` processes whose parent is `pid` (Linux /proc).
    Other children (the word2vec process, multiprocessing's resource tracker) are not
    workers."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            # The command name in parentheses may hold spaces: split after it.
            fields = stat.read_text().rsplit(")", 1)[1].split()
            command = (stat.parent / "cmdline").read_bytes().split(b"\0")
            if int(fields[1]) == pid and b"--worker-index" in command:
                children.append(int(stat.parent.name))
    return children


def test_ctrl_c_stops_every_worker_at_a_batch_boundary(
        tmp_path: Path, pg_storage: str, mlflow_server: MlflowServer) -> None:
    study = slow_study(tmp_path, "ctrl-c", pg_storage, mlflow_server)
    log = tmp_path / "workers.log"
    with log.open("wb") as sink:
        # A terminal sends Ctrl-C to its foreground process group: the parent, and the
        # workers if they are in it.
        process = subprocess.Popen(
            [*han_search_command(), *map(str, study.args("--workers", 2, "--trials", 4))],
            cwd=tmp_path, env=child_env(), stdout=sink, stderr=subprocess.STDOUT,
            start_new_session=True)
    parent = Background(process=process, log=log)
    workers: list[int] = []
    try:
        workers = wait_for("two workers", lambda: len(worker_pids(process.pid)) >= 2 and
                           worker_pids(process.pid), alive=parent)
        # Whether the double delivery bites depends on timing (signals that arrive before
        # Python runs the handler coalesce), so check its cause too.
        shared = [pid for pid in workers if os.getpgid(pid) == os.getpgid(process.pid)]
        assert not shared, f"workers {shared} would get Ctrl-C twice (terminal and parent)"
        wait_for("a first epoch", lambda: "epoch 1/" in parent.output(), alive=parent)
        os.killpg(process.pid, signal.SIGINT)
        code = process.wait(timeout=60)
    finally:
        for pid in [process.pid, *workers]:  # workers may be in groups of their own
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        parent.stop()
    output = parent.output()
    assert code == 130, output
    everything = study.trials()
    trials = [t for t in everything if t.state != TrialState.WAITING]
    assert trials and all(t.state == TrialState.FAIL for t in trials)
    # Each stopped trial's work waits to be taken up again by the next run. A worker still
    # starting when the stop came may have drawn the first worker's retry and stopped it at
    # its first batch: that retry's own retry still points at the trial it continues.
    retries = [t.user_attrs.get("retry_of") for t in everything if t.state == TrialState.WAITING]
    origins = {t.number if t.user_attrs.get("retry_of") is None else t.user_attrs["retry_of"]
               for t in trials}
    reasons = {t.number: t.user_attrs.get("reason") for t in trials}
    assert sorted(retries) == sorted(origins), (reasons, output[-3000:])
    assert "KeyboardInterrupt" not in output, output[-3000:]
    for trial in trials:
        assert "stopped at epoch" in trial.user_attrs.get("reason", ""), trial.number
        run = mlflow_server.client.get_run(trial.user_attrs["mlflow_run_id"])
        assert (run.info.status, run.data.tags["state"]) == ("KILLED", "interrupted")


# ------------------------------------------------------------------------ MLflow down


def test_unreachable_mlflow_fails_fast_without_leaving_a_database(tmp_path: Path) -> None:
    train = easy_corpus(tmp_path / "train.tsv", docs=FAST_DOCS)
    config = study_toml(tmp_path / "study.toml", name="unreachable", train=train, trials=1,
                        fixed=FAST_FIXED, space=FAST_SPACE, pruner=NO_PRUNER)
    database = tmp_path / "optuna.db"
    uri = f"http://127.0.0.1:{free_port()}"  # bound once, now closed
    # MLflow's HTTP client retries a refused connection 7 times with exponential backoff
    # (minutes), and the tracker retries that 4 more times; one retry each keeps this short.
    # See test_unreachable_mlflow_is_reported_fast_with_default_retries.
    result = han_search(
        "run", "--config", config, "--storage", f"sqlite:///{database}", "--tracking-uri",
        uri, "--work-dir", tmp_path / "work", "--threads", 1, "--device", "cpu",
        cwd=tmp_path, timeout=120,
        env=child_env(MLFLOW_HTTP_REQUEST_MAX_RETRIES="0",
                      MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR="0"))
    assert result.code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert uri in lines[0]
    assert "Traceback" not in result.output
    assert " start " not in result.output and "epoch" not in result.output
    assert not database.exists()
    assert not (tmp_path / "work").exists()


UNREACHABLE_BUDGET_S = 15


def test_unreachable_mlflow_is_reported_fast_with_default_retries() -> None:
    env = {k: v for k, v in child_env().items() if not k.startswith("MLFLOW_HTTP_")}
    uri = f"http://127.0.0.1:{free_port()}"
    check = ("from search.stores.tracking import Tracker\n"
             f"Tracker(tracking_uri={uri!r}).check_reachable()")
    try:
        done = subprocess.run([sys.executable, "-c", check], env=env, capture_output=True,
                              text=True, timeout=UNREACHABLE_BUDGET_S, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail(f"no answer within {UNREACHABLE_BUDGET_S}s")
    assert "TrackingError" in done.stderr
