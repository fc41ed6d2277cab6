"""A PostgreSQL server that restarts under a running study: the workers wait for it
(--storage-patience) and go on, no trial lost, duplicated or left RUNNING; one that stays
away past the patience stops the worker with one line naming the storage and exit 2, and
the next run retries its trial.

The server is one the test starts itself in a temporary folder, with the installed server
binaries (initdb, pg_ctl; as the `postgres` user where the tests run as root, which initdb
refuses), so that restarting it disturbs nothing else.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tests.conftest import easy_corpus
from tests.helpers import free_port, study_toml
from tests.test_distributed import (
    FAST_DOCS,
    FAST_FIXED,
    FAST_PRUNER,
    FAST_REFERENCE,
    FAST_SPACE,
    NO_PRUNER,
    SLOW_DOCS,
    SLOW_FIXED,
    SLOW_REFERENCE,
    SLOW_SPACE,
    han_search,
    han_search_background,
    wait_for,
)

pytestmark = pytest.mark.slow


def _binaries() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:  # often a link (/usr/local/bin) to the folder that holds createdb too
        return Path(found).resolve().parent
    installed = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(installed[-1]).parent if installed else None


@dataclass
class Server:
    """A PostgreSQL server of the test's own: its data folder, port and binaries."""

    data: Path
    port: int
    bin: Path

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/study"

    def ctl(self, *args: str) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.data}"
        command = [str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options, "-w",
                   "-l", str(self.data / "server.log"), *args]
        _as_postgres(command)

    def trials(self, name: str) -> list[optuna.trial.FrozenTrial]:
        """The study's trials; none before the run has created it."""
        try:
            return optuna.load_study(study_name=name, storage=self.url).trials
        except KeyError:
            return []


def _as_postgres(command: list[str]) -> None:
    if os.geteuid() == 0:
        command = ["runuser", "-u", "postgres", "--", *command]
    subprocess.run(command, check=True, capture_output=True, timeout=120)


def missing_binaries() -> str | None:
    """Why this machine cannot start a PostgreSQL server of its own (None: it can)."""
    binaries = _binaries()
    if binaries is None or not (binaries / "initdb").exists():
        return "PostgreSQL's server binaries (initdb, pg_ctl) are not installed"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser to start PostgreSQL as postgres"
    return None


@pytest.fixture
def server() -> Iterator[Server]:
    reason = missing_binaries()
    if reason is not None:
        pytest.skip(reason)
    with own_postgresql() as found:
        yield found


@contextmanager
def own_postgresql() -> Iterator[Server]:
    """A new PostgreSQL server in a temporary folder on a free port, with an empty database
    `study`; stopped and removed when the block ends (also used by bench/reliability.py).
    The folder is made directly in the temporary directory: the `postgres` user could not
    reach one inside pytest's (its parent is private to root)."""
    binaries = _binaries()
    assert binaries is not None, missing_binaries()
    folder = Path(tempfile.mkdtemp(prefix="han-search-pg-"))
    data = folder / "data"
    data.mkdir()
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
        shutil.chown(data, "postgres")
    _as_postgres([str(binaries / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"])
    found = Server(data=data, port=free_port(), bin=binaries)
    found.ctl("start")
    _as_postgres([str(binaries / "createdb"), "-h", "127.0.0.1", "-p", str(found.port), "-U",
                  "postgres", "study"])
    try:
        yield found
    finally:
        found.ctl("stop", "-m", "immediate")
        shutil.rmtree(folder, ignore_errors=True)


def _study(root: Path, name: str, *, slow: bool) -> Path:
    train = easy_corpus(root / "train.tsv", docs=SLOW_DOCS if slow else FAST_DOCS)
    if slow:
        return study_toml(root / "study.toml", name=name, train=train, trials=1,
                          fixed=SLOW_FIXED, space=SLOW_SPACE, pruner=NO_PRUNER,
                          reference=SLOW_REFERENCE)
    return study_toml(root / "study.toml", name=name, train=train, trials=6,
                      fixed=FAST_FIXED, space=FAST_SPACE, pruner=FAST_PRUNER,
                      reference=FAST_REFERENCE)


def _args(root: Path, config: Path, server: Server, *extra: str | int) -> list[str | Path]:
    return ["run", "--config", config, "--storage", server.url, "--tracking-uri",
            f"sqlite:///{root}/mlflow.db", "--work-dir", root / "work", "--threads", 1,
            "--device", "cpu", *map(str, extra)]


def test_a_restart_under_two_workers_loses_and_repeats_nothing(tmp_path: Path,
                                                                server: Server) -> None:
    config = _study(tmp_path, "restarted", slow=False)
    args = _args(tmp_path, config, server, "--workers", 2, "--trials", 8)
    with han_search_background(*args, cwd=tmp_path, log=tmp_path / "run.log") as run:
        wait_for("a finished trial", lambda: any(
            t.state.is_finished() for t in server.trials("restarted")), alive=run)
        server.ctl("restart", "-m", "fast")  # drops every connection
        code = run.process.wait(timeout=600)
    output = run.output()
    assert code == 0, output[-3000:]
    assert "connection lost" in output and "answering again" in output
    trials = server.trials("restarted")
    states = [t.state for t in trials]
    assert len(trials) == 8, states
    assert all(state in (TrialState.COMPLETE, TrialState.PRUNED) for state in states), states
    # No trial ran twice: each has its own parameters or is the one reference.
    assert len({t.number for t in trials}) == 8


def test_a_storage_away_past_the_patience_stops_in_one_line_then_resumes(
        tmp_path: Path, server: Server) -> None:
    config = _study(tmp_path, "away", slow=True)
    args = _args(tmp_path, config, server, "--trials", 1, "--storage-patience", 3)
    with han_search_background(*args, cwd=tmp_path, log=tmp_path / "run.log") as run:
        wait_for("epoch 2", lambda: "epoch 2/" in run.output(), alive=run)
        server.ctl("stop", "-m", "fast")
        started = time.monotonic()
        code = run.process.wait(timeout=120)
        waited = time.monotonic() - started
    output = run.output()
    assert code == 2, output[-3000:]
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, output[-3000:]
    assert f"127.0.0.1:{server.port}/study: no answer for" in errors[0]
    assert "Traceback" not in output
    assert waited < 60
    server.ctl("start")
    [stopped] = server.trials("away")
    assert stopped.state == TrialState.RUNNING  # nobody could write otherwise
    again = han_search(*args, cwd=tmp_path)
    assert again.code == 0, again.output
    trials = server.trials("away")
    assert [(t.number, t.state) for t in trials] == [(0, TrialState.FAIL),
                                                     (1, TrialState.COMPLETE)]
    assert trials[1].user_attrs["retry_of"] == 0
