#!/usr/bin/env python3
"""Reliability of a shared study at a chosen scale: load and fault scenarios, one table.

Runs the real `han-search run` command against a throw-away `mlflow server` (SQLite runs,
artifacts proxied by the server) and an Optuna storage of each scenario's own (a SQLite file,
or a fresh PostgreSQL database dropped afterwards), then counts what Optuna and MLflow hold:

  load         `--workers W --trials T` (a password in a PostgreSQL URL, checked redacted)
  sigkill      W single workers sharing T trials with --heartbeat 1; one is SIGKILLed after
               the second epoch of its trial; a recovery worker on another work dir (another
               machine) then runs one more trial: the retry, from the state on the server
  sigterm      `--workers W --trials T`, SIGTERM to the parent after the first epoch; then
               the same command again, which resumes the stopped trials first
  ctrl-c       as sigterm, but SIGINT to the whole process group, as a terminal's Ctrl-C
  mlflow-away  `--workers W --trials T` against a server of its own, killed (its process
               group) after the first epoch and started again 30 s later
  pg-restart   `--workers W --trials T` on a PostgreSQL server of its own (initdb, pg_ctl),
               restarted (`pg_ctl restart -m fast`) after the first finished trial
  unreachable  `run` against a closed MLflow port: exit code, seconds, no database left

`missing` counts MLflow records a trial should have and does not: a run, an epoch's
metrics (its epochs_done against the steps of dev_macro_f1 on its runs), a complete
trial's readable checkpoint.

Usage:  python bench/reliability.py --workers 3 --trials 12 --storage-kind postgresql
Every process runs with one CPU thread. Needs the `mlflow` command; PostgreSQL on
127.0.0.1:5432 (trust auth) for --storage-kind postgresql.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo's tests/ helpers
from tests.conftest import easy_corpus
from tests.helpers import (
    child_env,
    free_port,
    han_search_command,
    mlflow_server,
    study_toml,
)

SCENARIOS = ("load", "sigkill", "sigterm", "ctrl-c", "mlflow-away", "pg-restart",
             "unreachable")
OUTAGE_S = 30
PASSWORD = "s3cret"
PG_SCHEME = "postgresql+psycopg2"  # SQLAlchemy 2.1 maps bare postgresql:// to psycopg 3

LOAD_FIXED = {"epochs": 2, "batch_size": 16, "embed_dim": 8, "sent_hidden": 8, "seg_len": 16,
              "folds": 4, "min_count": 1, "patience": 2}
LOAD_SPACE = {
    "word_hidden": {"type": "categorical", "choices": [8, 16]},
    "lr": {"type": "float", "low": 1e-3, "high": 5e-2, "log": True},
    "max_segments": {"type": "categorical", "choices": [2, 4]},
}
LOAD_REFERENCE = {"word_hidden": 16, "lr": 2e-2, "max_segments": 4}
LOAD_PRUNER = {"name": "median", "n_startup_trials": 2, "n_warmup_steps": 0}
# Fault scenarios: epochs long enough (about a second) to be caught mid-trial.
FAULT_FIXED = {"epochs": 4, "batch_size": 8, "embed_dim": 16, "word_hidden": 16,
               "sent_hidden": 16, "seg_len": 32, "max_segments": 4, "folds": 4,
               "min_count": 1, "patience": 4}
FAULT_SPACE = {"lr": {"type": "float", "low": 1e-2, "high": 3e-2, "log": True}}
FAULT_REFERENCE = {"lr": 2e-2}


# ------------------------------------------------------------------------------ helpers


def wait_for(what: str, check: Callable[[], Any], *, timeout: float,
             process: subprocess.Popen[bytes] | None = None, every: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        if process is not None and process.poll() is not None:
            return check()
        time.sleep(every)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


@dataclass
class Proc:
    process: subprocess.Popen[bytes]
    log: Path
    started: float = field(default_factory=time.monotonic)

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout=timeout)


class Processes:
    """Every process started, so that all are gone when the bench ends, however it ends."""

    def __init__(self) -> None:
        self.started: list[Proc] = []

    def start(self, args: list[str | Path | int], *, cwd: Path, log: Path,
              env: dict[str, str] | None = None, new_session: bool = False) -> Proc:
        with log.open("wb") as sink:
            process = subprocess.Popen([*han_search_command(), *map(str, args)], cwd=cwd,
                                       env=env or child_env(), stdout=sink,
                                       stderr=subprocess.STDOUT,
                                       start_new_session=new_session)
        proc = Proc(process=process, log=log)
        self.started.append(proc)
        return proc

    def run(self, args: list[str | Path | int], *, cwd: Path, log: Path, timeout: float,
            env: dict[str, str] | None = None) -> tuple[int, float, str]:
        proc = self.start(args, cwd=cwd, log=log, env=env)
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.process.kill()
            code = proc.wait(30)
        return code, time.monotonic() - proc.started, proc.output()

    def stop_all(self) -> None:
        for proc in self.started:
            if proc.process.poll() is None:
                proc.process.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.process.wait(timeout=30)


# ----------------------------------------------------------------- MLflow and PostgreSQL


class Databases:
    """Optuna storages of the scenarios: SQLite files, or PostgreSQL databases dropped later."""

    def __init__(self, kind: str, root: Path, *, host: str, port: int, user: str) -> None:
        self.kind, self.root, self.host, self.port, self.user = kind, root, host, port, user
        self.created: list[str] = []
        self._admin: Any = None
        if kind == "postgresql":
            import psycopg2

            self._admin = psycopg2.connect(host=host, port=port, user=user,
                                           dbname="postgres", connect_timeout=5)
            self._admin.autocommit = True

    def new(self, scenario: str, *, password: str | None = None) -> str:
        if self.kind == "sqlite":
            return f"sqlite:///{self.root}/{scenario}.db"
        name = f"han_bench_{uuid.uuid4().hex[:8]}"
        with self._admin.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
        self.created.append(name)
        user = f"{self.user}:{password}" if password else self.user
        return f"{PG_SCHEME}://{user}@{self.host}:{self.port}/{name}"

    def drop_all(self) -> None:
        if self._admin is None:
            return
        with self._admin.cursor() as cursor:
            for name in self.created:
                cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                               "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
                cursor.execute(f'DROP DATABASE IF EXISTS "{name}"')
        self._admin.close()


# ------------------------------------------------------------------------------ counting


@dataclass
class Row:
    scenario: str
    workers: int
    requested: str
    complete: int = 0
    pruned: int = 0
    failed: int = 0
    retried: int = 0
    runs: str = "-"
    checkpoints: str = "-"
    lost: int = 0
    duplicated: int = 0
    missing: int = 0
    resumed: str = "-"
    exit_codes: str = "-"
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


def count(row: Row, *, study_name: str, storage: str, tracking_uri: str, scratch: Path,
          expected_trials: int | None) -> None:
    """Fill the row from what Optuna and MLflow hold for the study."""
    import optuna
    from mlflow import MlflowClient
    from optuna.trial import TrialState

    from han.checkpoint import load_checkpoint
    from search.records import Role, RunState, Tag, TrialRecord
    from search.stores.tracking import CHECKPOINT_ARTIFACT

    trials = optuna.load_study(study_name=study_name, storage=storage).trials
    kept = {t.number: TrialRecord.of(t) for t in trials}
    states = Counter(t.state for t in trials)
    row.complete, row.pruned = states[TrialState.COMPLETE], states[TrialState.PRUNED]
    row.failed = states[TrialState.FAIL]
    row.retried = sum(1 for record in kept.values() if record.retry_of is not None)
    unfinished = states[TrialState.RUNNING] + states[TrialState.WAITING]
    if unfinished:
        row.notes.append(f"{unfinished} trials left running/waiting")
    retried_numbers = {r.retry_of for r in kept.values() if r.retry_of is not None}
    row.lost = unfinished
    if expected_trials is not None and len(trials) < expected_trials:
        row.lost += expected_trials - len(trials)
        row.notes.append(f"{len(trials)} of {expected_trials} trials on record")
    numbers = [t.number for t in trials]
    run_ids = [kept[t.number].run_id for t in trials]
    row.duplicated = (len(numbers) - len(set(numbers))) + (
        len([r for r in run_ids if r]) - len({r for r in run_ids if r}))
    missing_run = sum(1 for r in run_ids if not r)
    if missing_run:
        row.lost += missing_run
        row.notes.append(f"{missing_run} trials without an MLflow run")

    client = MlflowClient(tracking_uri=tracking_uri)
    experiment = client.get_experiment_by_name(study_name)
    if experiment is None:
        row.runs = "0"
        return
    runs = client.search_runs([experiment.experiment_id], max_results=5000)
    children = [r for r in runs if r.data.tags.get(Tag.ROLE) == Role.TRIAL]
    parents = [r for r in runs if r.data.tags.get(Tag.ROLE) == Role.STUDY]
    row.runs = f"{len(children)} (+{len(parents)} parent)"
    tagged = Counter(r.data.tags.get(Tag.TRIAL_NUMBER) for r in children)
    row.duplicated += sum(n - 1 for n in tagged.values() if n > 1) + max(0, len(parents) - 1)
    parent_ids = {r.data.tags.get(Tag.PARENT) for r in children}
    if len(parent_ids) > 1:
        row.notes.append(f"children under {len(parent_ids)} parents")
    # A trial failed for its silent worker and never retried is lost work (one stopped on
    # request or failed by an error is not).
    reasons = {r.info.run_id: r.data.tags.get(Tag.REASON, "") for r in children}
    dropped = [t for t in trials if t.state == TrialState.FAIL
               and t.number not in retried_numbers
               and "heartbeat" in reasons.get(kept[t.number].run_id or "", "")]
    if dropped:
        row.lost += len(dropped)
        row.notes.append(f"{len(dropped)} dead workers' trials not retried")
    stuck = [r for r in children if r.info.status == RunState.RUNNING.status]
    known = {kept[t.number].run_id: t for t in trials}
    # A run left RUNNING whose trial is over: the worker died before ending it.
    stuck_over = [r for r in stuck if r.info.run_id in known
                  and known[r.info.run_id].state != TrialState.RUNNING]
    if stuck_over:
        row.notes.append(f"{len(stuck_over)} MLflow runs left RUNNING")
    # Every epoch a trial finished has its metrics on one of its attempts' runs.
    steps: dict[int, set[int]] = {}
    for trial in trials:
        run_id = kept[trial.number].run_id
        origin = kept[trial.number].origin
        origin = trial.number if origin is None else origin
        if run_id:
            steps.setdefault(origin, set()).update(
                m.step for m in client.get_metric_history(run_id, "dev_macro_f1"))
    for trial in trials:
        if trial.state == TrialState.COMPLETE and kept[trial.number].origin is None:
            done = kept[trial.number].epochs_done
            row.missing += len(set(range(1, done + 1)) - steps.get(trial.number, set()))
    row.missing += missing_run
    readable = 0
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    for trial in complete:
        destination = scratch / "downloads" / f"{study_name}-{trial.number}"
        destination.mkdir(parents=True, exist_ok=True)
        try:
            local = client.download_artifacts(kept[trial.number].run_id,
                                              CHECKPOINT_ARTIFACT, str(destination))
            load_checkpoint(local)
            readable += 1
        except Exception as error:  # any failure means "not readable"; say which
            row.notes.append(f"trial {trial.number} checkpoint: {type(error).__name__}")
            row.missing += 1
    row.checkpoints = f"{readable}/{len(complete)}"
    resumed = [client.get_run(kept[t.number].run_id).data.tags.get(Tag.RESUMED_FROM_EPOCH)
               for t in trials if kept[t.number].origin is not None and kept[t.number].run_id
               and t.state.is_finished()]
    row.resumed = ",".join(str(r) for r in resumed) or "-"


def password_leaks(output: str, *, tracking_uri: str, study_name: str) -> list[str]:
    from mlflow import MlflowClient

    leaks = ["terminal"] if PASSWORD in output else []
    client = MlflowClient(tracking_uri=tracking_uri)
    experiment = client.get_experiment_by_name(study_name)
    if experiment is not None:
        for run in client.search_runs([experiment.experiment_id], max_results=5000):
            values = [*run.data.params.items(), *run.data.tags.items()]
            if any(PASSWORD in k or PASSWORD in v for k, v in values):
                leaks.append(f"run {run.info.run_id[:8]}")
    return leaks


# ----------------------------------------------------------------------------- scenarios


@dataclass
class Bench:
    args: argparse.Namespace
    root: Path
    tracking_uri: str
    databases: Databases
    processes: Processes

    def config(self, name: str, *, load: bool) -> Path:
        folder = self.root / name
        folder.mkdir(exist_ok=True)
        if load:
            train = easy_corpus(folder / "train.tsv", docs=96)
            return study_toml(folder / "study.toml", name=name, train=train,
                              trials=self.args.trials, fixed=LOAD_FIXED, space=LOAD_SPACE,
                              pruner=LOAD_PRUNER, reference=LOAD_REFERENCE)
        train = easy_corpus(folder / "train.tsv", docs=200)
        return study_toml(folder / "study.toml", name=name, train=train,
                          trials=self.args.trials, fixed=FAULT_FIXED, space=FAULT_SPACE,
                          pruner={"name": "none"}, reference=FAULT_REFERENCE)

    def run_args(self, config: Path, storage: str, *extra: Any, work: str = "work",
                 tracking_uri: str | None = None) -> list[Any]:
        return ["run", "--config", config, "--storage", storage, "--tracking-uri",
                tracking_uri or self.tracking_uri, "--work-dir", config.parent / work,
                "--threads", 1, "--device", "cpu", *extra]

    def count(self, row: Row, name: str, storage: str, expected: int | None,
              tracking_uri: str | None = None) -> Row:
        count(row, study_name=name, storage=storage,
              tracking_uri=tracking_uri or self.tracking_uri, scratch=self.root,
              expected_trials=expected)
        return row

    # -- load ------------------------------------------------------------------------

    def load(self) -> Row:
        workers, trials = self.args.workers, self.args.trials
        config = self.config("load", load=True)
        password = PASSWORD if self.databases.kind == "postgresql" else None
        storage = self.databases.new("load", password=password)
        code, seconds, output = self.processes.run(
            self.run_args(config, storage, "--workers", workers, "--trials", trials),
            cwd=config.parent, log=config.parent / "run.log", timeout=self.args.timeout)
        row = Row("load", workers, str(trials), exit_codes=str(code), seconds=seconds)
        self.count(row, "load", storage, trials)
        if password:
            leaks = password_leaks(output, tracking_uri=self.tracking_uri, study_name="load")
            row.notes.append(f"password leaked: {', '.join(leaks)}" if leaks
                             else "password redacted")
        return row

    # -- sigkill ---------------------------------------------------------------------

    def sigkill(self) -> Row:
        workers, trials = self.args.workers, self.args.trials
        config = self.config("sigkill", load=False)
        storage = self.databases.new("sigkill")
        started = time.monotonic()
        # Worker 0 runs one trial and is killed in it; the others share the rest.
        shares = [1] + [(trials - 1) // max(1, workers - 1)
                        + (1 if i < (trials - 1) % max(1, workers - 1) else 0)
                        for i in range(workers - 1)]
        shares = [s for s in shares if s > 0]
        heartbeat = ("--heartbeat", 1)
        procs = []
        for index, share in enumerate(shares):
            procs.append(self.processes.start(
                self.run_args(config, storage, "--trials", share, *heartbeat),
                cwd=config.parent, log=config.parent / f"worker{index}.log"))
            if index == 0:
                # The reference trial (#0) goes to worker 0: start the others after it.
                wait_for("worker 0's trial", lambda: "] start " in procs[0].output(),
                         timeout=self.args.timeout, process=procs[0].process)
        victim = procs[0]
        match = wait_for("worker 0's trial number",
                         lambda: re.search(r"\[trial (\d+)\] start", victim.output()),
                         timeout=self.args.timeout, process=victim.process)
        number = int(match.group(1))
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=self.tracking_uri)

        def first_epoch() -> bool:
            experiment = client.get_experiment_by_name("sigkill")
            if experiment is None:
                return False
            found = client.search_runs(
                [experiment.experiment_id],
                filter_string=f"tags.trial_number = '{number}' and tags.`han.role` = 'trial'")
            return bool(found) and len(client.get_metric_history(found[0].info.run_id,
                                                                 "dev_macro_f1")) >= 2

        wait_for("a second epoch", first_epoch, timeout=self.args.timeout,
                 process=victim.process)
        note = []
        if victim.process.poll() is None:
            os.kill(victim.process.pid, signal.SIGKILL)
            killed_at = time.monotonic()
        else:
            note.append("victim finished before the kill")
            killed_at = time.monotonic()
        codes = [victim.wait(30)]
        for proc in procs[1:]:
            codes.append(proc.wait(self.args.timeout))
        time.sleep(max(0.0, killed_at + 4.5 - time.monotonic()))  # past 3 heartbeats
        # The recovery worker's work dir never saw the trial: another machine's.
        code, _, _ = self.processes.run(
            self.run_args(config, storage, "--trials", 1, *heartbeat, work="machine-b"),
            cwd=config.parent, log=config.parent / "recovery.log", timeout=self.args.timeout)
        codes.append(code)
        row = Row("sigkill", len(shares), f"{trials}+1", seconds=time.monotonic() - started,
                  exit_codes=",".join(map(str, codes)), notes=note)
        self.count(row, "sigkill", storage, trials + 1)
        return row

    # -- sigterm and ctrl-c ----------------------------------------------------------

    def stop(self, name: str, signum: int, *, group: bool) -> Row:
        workers, trials = self.args.workers, self.args.trials
        config = self.config(name, load=False)
        storage = self.databases.new(name)
        args = self.run_args(config, storage, "--workers", workers, "--trials", trials)
        started = time.monotonic()
        parent = self.processes.start(args, cwd=config.parent,
                                      log=config.parent / "first.log", new_session=group)
        wait_for("a first epoch", lambda: "epoch 1/" in parent.output(),
                 timeout=self.args.timeout, process=parent.process)
        sent = time.monotonic()
        if group:
            os.killpg(parent.process.pid, signum)
        else:
            parent.process.send_signal(signum)
        first = parent.wait(self.args.timeout)
        stop_s = time.monotonic() - sent
        import optuna

        # The stopped trials wait to be resumed: the second run takes them among its trials.
        before = sum(t.state != optuna.trial.TrialState.WAITING
                     for t in optuna.load_study(study_name=name, storage=storage).trials)
        again, _, _ = self.processes.run(args, cwd=config.parent,
                                         log=config.parent / "again.log",
                                         timeout=self.args.timeout)
        after = len(optuna.load_study(study_name=name, storage=storage).trials)
        row = Row(name, workers, f"{trials}+{trials}", exit_codes=f"{first},{again}",
                  seconds=time.monotonic() - started,
                  notes=[f"stopped in {stop_s:.1f}s", f"{before} trials when stopped"])
        self.count(row, name, storage, None)
        if after - before < trials:
            row.lost += trials - (after - before)
            row.notes.append(f"the second run added {after - before} of {trials} trials")
        if "KeyboardInterrupt" in parent.output():
            row.notes.append("KeyboardInterrupt in a worker")
        return row

    # -- mlflow-away -----------------------------------------------------------------

    def mlflow_away(self) -> Row:
        workers, trials = self.args.workers, self.args.trials
        config = self.config("mlflow-away", load=False)
        storage = self.databases.new("mlflow-away")
        server_root = config.parent / "server"
        server_root.mkdir()
        port = free_port()
        started = time.monotonic()
        with mlflow_server(server_root, port=port) as uri:
            args = self.run_args(config, storage, "--workers", workers, "--trials", trials,
                                 tracking_uri=uri)
            run = self.processes.start(args, cwd=config.parent, log=config.parent / "run.log")
            wait_for("a first epoch", lambda: "epoch 1/" in run.output(),
                     timeout=self.args.timeout, process=run.process)
        away = time.monotonic()
        time.sleep(max(0.0, away + OUTAGE_S - time.monotonic()))
        with mlflow_server(server_root, port=port) as uri:
            code = run.wait(self.args.timeout)
            output = run.output()
            row = Row("mlflow-away", workers, str(trials), exit_codes=str(code),
                      seconds=time.monotonic() - started)
            self.count(row, "mlflow-away", storage, trials, tracking_uri=uri)
        kept = [line for line in output.splitlines() if line.startswith("MLflow writes")]
        row.notes.append(f"server away {OUTAGE_S}s; " + (kept[0] if kept else
                                                          "no MLflow writes line"))
        return row

    # -- pg-restart ------------------------------------------------------------------

    def pg_restart(self) -> Row:
        from tests.test_storage_restart import own_postgresql

        workers, trials = self.args.workers, self.args.trials
        config = self.config("pg-restart", load=True)
        started = time.monotonic()
        with own_postgresql() as server:
            storage = server.url
            run = self.processes.start(
                self.run_args(config, storage, "--workers", workers, "--trials", trials),
                cwd=config.parent, log=config.parent / "run.log")
            import optuna

            def finished() -> bool:
                with contextlib.suppress(Exception):  # tables not made yet
                    return any(t.state.is_finished() for t in optuna.load_study(
                        study_name="pg-restart", storage=storage).trials)
                return False

            wait_for("a finished trial", finished, timeout=self.args.timeout,
                     process=run.process)
            restarted = time.monotonic()
            server.ctl("restart", "-m", "fast")
            down_s = time.monotonic() - restarted
            code = run.wait(self.args.timeout)
            row = Row("pg-restart", workers, str(trials), exit_codes=str(code),
                      seconds=time.monotonic() - started)
            self.count(row, "pg-restart", storage, trials)
        row.notes.append(f"restart took {down_s:.1f}s")
        return row

    # -- unreachable -----------------------------------------------------------------

    def unreachable(self) -> Row:
        config = self.config("unreachable", load=True)
        database = config.parent / "optuna.db"
        uri = f"http://127.0.0.1:{free_port()}"
        env = child_env() if self.args.default_http_retries else child_env(
            MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR="0")
        args = ["run", "--config", config, "--storage", f"sqlite:///{database}",
                "--tracking-uri", uri, "--threads", 1, "--device", "cpu"]
        code, seconds, output = self.processes.run(args, cwd=config.parent,
                                                   log=config.parent / "run.log",
                                                   timeout=self.args.timeout, env=env)
        errors = [line for line in output.splitlines() if line.startswith("error: ")]
        notes = [f"{len(errors)} error line(s)" + (", names the URI" if errors
                                                     and uri in errors[0] else ""),
                 "database left behind" if database.exists() else "no database left",
                 "MLflow HTTP retries: " + ("default" if self.args.default_http_retries
                                            else "0")]
        return Row("unreachable", 1, "1", exit_codes=str(code), seconds=seconds, runs="0",
                   notes=notes)


# --------------------------------------------------------------------------------- table


def print_table(rows: list[Row], *, kind: str) -> None:
    header = ("scenario", "workers", "requested", "complete", "pruned", "failed", "retried",
              "resumed from epoch", "MLflow runs", "ckpt ok", "lost", "dup", "missing",
              "exit", "seconds")
    cells = [header] + [(r.scenario, str(r.workers), r.requested, str(r.complete),
                         str(r.pruned), str(r.failed), str(r.retried), r.resumed, r.runs,
                         r.checkpoints, str(r.lost), str(r.duplicated), str(r.missing),
                         r.exit_codes, f"{r.seconds:.0f}") for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    print(f"\nstorage: {kind}")
    for index, row in enumerate(cells):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
        if index == 0:
            print("  ".join("-" * width for width in widths))
    print()
    for row in rows:
        if row.notes:
            print(f"{row.scenario}: " + "; ".join(row.notes))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--storage-kind", choices=("sqlite", "postgresql"),
                        default="postgresql")
    parser.add_argument("--scenarios", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    parser.add_argument("--timeout", type=float, default=900,
                        help="Seconds any one han-search process may take.")
    parser.add_argument("--default-http-retries", action="store_true",
                        help="unreachable: keep MLflow's own HTTP retries (takes ~20 min).")
    parser.add_argument("--pg-host", default="127.0.0.1")
    parser.add_argument("--pg-port", type=int, default=5432)
    parser.add_argument("--pg-user", default="postgres")
    parser.add_argument("--keep", action="store_true", help="Keep the scratch folder.")
    args = parser.parse_args(argv)
    if args.workers < 1 or args.trials < args.workers:
        parser.error("need --workers >= 1 and --trials >= --workers")

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    root = Path(tempfile.mkdtemp(prefix="han-reliability-"))
    processes = Processes()
    databases = Databases(args.storage_kind, root, host=args.pg_host, port=args.pg_port,
                          user=args.pg_user)
    rows: list[Row] = []
    try:
        with mlflow_server(root) as uri:
            bench = Bench(args=args, root=root, tracking_uri=uri, databases=databases,
                          processes=processes)
            runners: dict[str, Callable[[], Row]] = {
                "load": bench.load,
                "sigkill": bench.sigkill,
                "sigterm": lambda: bench.stop("sigterm", signal.SIGTERM, group=False),
                "ctrl-c": lambda: bench.stop("ctrl-c", signal.SIGINT, group=True),
                "mlflow-away": bench.mlflow_away,
                "pg-restart": bench.pg_restart,
                "unreachable": bench.unreachable,
            }
            for scenario in args.scenarios:
                print(f"running {scenario} ...", flush=True)
                try:
                    rows.append(runners[scenario]())
                except Exception as error:  # one broken scenario must not hide the others
                    rows.append(Row(scenario, args.workers, "?",
                                    notes=[f"{type(error).__name__}: {error}"]))
                finally:
                    processes.stop_all()
    finally:
        processes.stop_all()
        databases.drop_all()
        if args.keep:
            print(f"scratch kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    print_table(rows, kind=args.storage_kind)
    return 0


if __name__ == "__main__":
    sys.exit(main())
