"""A disk that fills, a folder that turns read-only or is removed (issue 26): one line and exit
2, the trial on record as failed with that reason, nothing half-written, the stores open.

Faults are injected at the one write path of each file (the file object of the checkpoint,
`os.replace` of an atomic write, MLflow's artifact copy, SQLite's own page limit or
read-only switch); a folder removed under a run is real. As root, where a tmpfs can be
mounted, one run fills a real one.
"""

from __future__ import annotations

import errno
import io
import os
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
import pytest
import torch
from mlflow import MlflowClient
from mlflow.entities import Run
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import event
from sqlalchemy.pool import Pool
from typer.testing import Result

import han.files
from han.checkpoint import save_checkpoint
from han.config import DataConfig, HANConfig
from han.errors import WriteFailed
from han.files import folder_made, mount_point, refused_errno, written_atomically, written_file
from han.model import HAN
from han.vocab import Vocabulary
from search.cli.console import ConsoleProgress
from search.records import Role, TrialRecord, role_filter
from search.session.diskspace import footprint
from search.stores.optuna_storage import open_storage
from search.studyfile import load_study_file
from tests.conftest import easy_corpus
from tests.test_cli import assert_user_error, invoke
from tests.test_search import STRONG, study_toml, unlabelled_test_file

ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
EROFS = OSError(errno.EROFS, os.strerror(errno.EROFS))


pytestmark = pytest.mark.usefixtures("isolated_cwd")


@dataclass
class Stores:
    """A small study's files: its study file, Optuna and MLflow SQLite stores, work dir."""

    root: Path

    @property
    def storage(self) -> str:
        return f"sqlite:///{self.root}/optuna.db"

    @property
    def tracking_uri(self) -> str:
        return f"sqlite:///{self.root}/mlflow.db"

    def run(self, *extra: str | Path, work_dir: Path | None = None) -> Result:
        return invoke("run", "--config", self.root / "study.toml", "--trials", "1",
                      "--storage", self.storage, "--tracking-uri", self.tracking_uri,
                      "--device", "cpu", "--work-dir", work_dir or self.root / "work", *extra)

    def trials(self) -> list[FrozenTrial]:
        """The study's trials, which also shows that its store still opens."""
        return optuna.load_study(study_name="full", storage=self.storage).trials

    def trial_run(self, number: int) -> Run:
        """The MLflow run of a trial, which also shows that MLflow's store still opens."""
        client = MlflowClient(tracking_uri=self.tracking_uri)
        experiment = client.get_experiment_by_name("full")
        assert experiment is not None
        (run,) = client.search_runs([experiment.experiment_id],
                                    role_filter(Role.TRIAL, trial_number=number))
        return run


def stores(root: Path) -> Stores:
    easy_corpus(root / "train.tsv")
    unlabelled_test_file(root / "test.tsv")
    study_toml(root / "study.toml", name="full", train="train.tsv", test="test.tsv",
               trials=4, reference=STRONG)
    return Stores(root=root)


def assert_failed_on_record(at: Stores, number: int, reason: str) -> None:
    """Trial `number` failed with `reason` in Optuna and MLflow, and is queued again."""
    trials = at.trials()
    assert trials[number].state == TrialState.FAIL
    assert TrialRecord.of(trials[number]).reason == reason
    run = at.trial_run(number)
    assert run.info.status == "FAILED"
    assert run.data.tags["reason"] == reason
    retries = [t for t in trials if TrialRecord.of(t).retry_of == number]
    assert [t.state for t in retries] == [TrialState.WAITING]


def no_temporaries(folder: Path) -> None:
    assert not [path for path in folder.rglob(".*.tmp")]


# ---------------------------------------------------------------------- fault injection


class _FullFile(io.FileIO):
    """A file on a disk that fills after `room` bytes: the write past it fails, half done."""

    room = 1000

    def write(self, data: Any) -> int:
        if self.tell() + len(data) > self.room:
            super().write(bytes(data)[: max(self.room - self.tell(), 0)])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return super().write(data)


@pytest.fixture
def full_files(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """Files han.files opens for writing whose name has `part` land on a disk that fills."""

    def fill(part: str) -> None:
        def opened(path: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
            if part in Path(path).name and "w" in mode:
                return _FullFile(path, "w")
            return open(path, mode, *args, **kwargs)

        monkeypatch.setattr(han.files, "open", opened, raising=False)

    return fill


@pytest.fixture
def refused_replace(monkeypatch: pytest.MonkeyPatch) -> Callable[[str, OSError], None]:
    """`os.replace` onto a file named `name` fails with `error` (the folder turned
    read-only, the disk filled...)."""

    def refuse(name: str, error: OSError) -> None:
        real = os.replace

        def replace(source: Any, target: Any, *args: Any, **kwargs: Any) -> None:
            if Path(target).name == name:
                raise error
            real(source, target, *args, **kwargs)

        monkeypatch.setattr(os, "replace", replace)

    return refuse


@pytest.fixture
def after_first_epoch(monkeypatch: pytest.MonkeyPatch) -> Callable[[Callable[[], None]], None]:
    """Do something to the disk once, after the first epoch a run prints."""

    def then(action: Callable[[], None]) -> None:
        printed = ConsoleProgress.epoch_done
        done: list[bool] = []

        def epoch_done(self: ConsoleProgress, trial: optuna.Trial, metrics: Any) -> None:
            printed(self, trial, metrics)
            if not done:
                done.append(True)
                action()

        monkeypatch.setattr(ConsoleProgress, "epoch_done", epoch_done)

    return then


@dataclass
class SqliteLimit:
    """SQLite itself refusing writes to one database file, on every connection taken from
    a pool while `mode` is set: "full" (no page beyond those it has) or "read-only"."""

    database: Path
    mode: str | None = None

    def checkout(self, connection: sqlite3.Connection, *_: Any) -> None:
        if not isinstance(connection, sqlite3.Connection):
            return
        if Path(connection.execute("PRAGMA database_list").fetchone()[2]) != self.database:
            return
        pages = connection.execute("PRAGMA page_count").fetchone()[0]
        connection.execute(f"PRAGMA max_page_count = {pages if self.mode == 'full' else 2**30}")
        connection.execute(f"PRAGMA query_only = {int(self.mode == 'read-only')}")


@pytest.fixture
def sqlite_limit() -> Iterator[Callable[[Path], SqliteLimit]]:
    made: list[SqliteLimit] = []

    def limit(database: Path) -> SqliteLimit:
        made.append(SqliteLimit(database=database))
        event.listen(Pool, "checkout", made[-1].checkout)
        return made[-1]

    yield limit
    for each in made:
        event.remove(Pool, "checkout", each.checkout)


# ---------------------------------------------------------------------- the one write path


def test_a_refusal_names_what_the_problem_and_the_file(tmp_path: Path) -> None:
    target = tmp_path / "work" / "demo" / "trial-3" / "best.pt"
    mount = mount_point(tmp_path)
    cases = {
        errno.ENOSPC: f"no space left on {mount}",
        errno.EDQUOT: f"disk quota exceeded on {mount}",
        errno.EROFS: f"{target.parent} is read-only",
        errno.EACCES: f"{target.parent} is not writable",
        errno.ENOENT: f"{tmp_path / 'work'} was removed",
    }
    for code, problem in cases.items():
        failed = WriteFailed(target=target, what="the checkpoint", code=code).of("trial 3")
        assert str(failed) == f"cannot write the checkpoint of trial 3: {problem} ({target})"
    (tmp_path / "work").mkdir()
    assert str(WriteFailed(target=tmp_path / "work" / "x", what=None, code=errno.ENOENT)) == (
        f"cannot write {tmp_path / 'work' / 'x'}: {tmp_path / 'work' / 'x'} was removed")


def test_refusals_are_found_in_the_errors_that_wrap_them(tmp_path: Path) -> None:
    # A real SQLITE_FULL: a database held to the pages it has.
    connection = sqlite3.connect(tmp_path / "small.db")
    connection.execute("CREATE TABLE t (x BLOB)")
    connection.execute("PRAGMA max_page_count = 2")
    with pytest.raises(sqlite3.OperationalError) as full:
        connection.execute("INSERT INTO t VALUES (?)", (b"\0" * 100_000,))
    try:
        raise RuntimeError("the store's own error") from full.value
    except RuntimeError as wrapped:
        assert refused_errno(wrapped) == errno.ENOSPC
    assert refused_errno(ENOSPC) == errno.ENOSPC
    assert refused_errno(FileNotFoundError(errno.ENOENT, "gone")) == errno.ENOENT
    # A read may miss a file: a block that reads counts only what a write alone meets.
    assert refused_errno(FileNotFoundError(errno.ENOENT, "gone"),
                         os_errors=han.files.WRITE_ONLY) is None
    assert refused_errno(OSError(errno.EIO, "I/O error")) is None
    assert refused_errno(RuntimeError("unexpected pos 60928 vs 60816")) is None


def test_a_torch_save_that_meets_a_full_disk_says_so(tmp_path: Path,
                                                     full_files: Callable[[str], None]) -> None:
    """torch.save reports the write it could not finish as `unexpected pos`; the atomic write
    finds the OSError under it, and leaves the checkpoint before it in place."""
    target = tmp_path / "best.pt"
    target.write_bytes(b"the good checkpoint")
    full_files(".best.pt.")
    with pytest.raises(WriteFailed) as failed, written_file(target, what="the checkpoint") as out:
        torch.save({"weights": torch.zeros(10_000)}, out)
    assert str(failed.value) == (f"cannot write the checkpoint: no space left on "
                                 f"{mount_point(tmp_path)} ({target})")
    assert target.read_bytes() == b"the good checkpoint"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt"]


def test_written_atomically_turns_a_refused_replace_into_one_line(
        tmp_path: Path, refused_replace: Callable[[str, OSError], None]) -> None:
    target = tmp_path / "out.csv"
    refused_replace("out.csv", EROFS)
    with pytest.raises(WriteFailed, match=f"cannot write the submission: {tmp_path} is "
                                          "read-only"), \
            written_atomically(target, what="the submission") as temporary:
        temporary.write_text("label\n1\n")
    assert list(tmp_path.iterdir()) == []


def test_a_folder_removed_under_the_process_is_not_made_again(tmp_path: Path) -> None:
    work = tmp_path / "work"
    with pytest.raises(WriteFailed, match=f"{work} was removed"):
        folder_made(work / "demo" / "trial-4", under=work, what="the checkpoint")
    with pytest.raises(WriteFailed, match=f"{work} was removed"), \
            written_file(work / "demo" / "trial-4" / "best.pt", new_folders=False) as out:
        out.write(b"weights")
    assert list(tmp_path.iterdir()) == []
    work.mkdir()
    assert folder_made(work / "demo" / "trial-4", under=work).is_dir()


# ---------------------------------------------------------------------- runs


def test_a_full_disk_under_the_work_dir_fails_the_trial_in_one_line(
        tmp_path: Path, full_files: Callable[[str], None],
        monkeypatch: pytest.MonkeyPatch) -> None:
    at = stores(tmp_path)
    full_files(".best.pt.")
    result = at.run()
    checkpoint = tmp_path / "work" / "full" / "trial-0" / "best.pt"
    reason = f"cannot write the checkpoint: no space left on {mount_point(tmp_path)} ({checkpoint})"
    assert_user_error(result, reason.replace("checkpoint:", "checkpoint of trial 0:"))
    assert_failed_on_record(at, 0, reason)
    assert not checkpoint.exists()
    no_temporaries(tmp_path)
    # The next run, on another disk, trains the failed trial's settings again.
    monkeypatch.delattr(han.files, "open")  # room again
    again = at.run(work_dir=tmp_path / "elsewhere")
    assert again.exit_code == 0, again.output
    trials = at.trials()
    assert trials[1].state == TrialState.COMPLETE and trials[1].params == trials[0].params
    assert f"reference      {trials[1].value:.4f} (trial 1" in again.stdout


def test_a_work_dir_turned_read_only_fails_the_trial_in_one_line(
        tmp_path: Path, refused_replace: Callable[[str, OSError], None]) -> None:
    at = stores(tmp_path)
    refused_replace("last_state.pt", EROFS)
    result = at.run()
    state = tmp_path / "work" / "full" / "trial-0" / "last_state.pt"
    reason = f"cannot write the training state: {state.parent} is read-only ({state})"
    assert_user_error(result, reason.replace("state:", "state of trial 0:"))
    assert_failed_on_record(at, 0, reason)
    no_temporaries(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder")
def test_a_work_dir_made_read_only_during_a_run(
        tmp_path: Path, after_first_epoch: Callable[[Callable[[], None]], None]) -> None:
    at = stores(tmp_path)
    trial_dir = tmp_path / "work" / "full" / "trial-0"
    after_first_epoch(lambda: trial_dir.chmod(0o500))
    try:
        result = at.run()
    finally:
        trial_dir.chmod(0o700)
    assert_user_error(result, "of trial 0: ", f"{trial_dir} is not writable")
    assert at.trials()[0].state == TrialState.FAIL


def test_a_work_dir_removed_during_a_run(
        tmp_path: Path, after_first_epoch: Callable[[Callable[[], None]], None]) -> None:
    """Made again, the folder would hold the trial where nobody looks (a disk that went
    away leaves its mount point behind, on another disk)."""
    at = stores(tmp_path)
    work = tmp_path / "work"
    after_first_epoch(lambda: shutil.rmtree(work))
    result = at.run()
    assert_user_error(result, "cannot write the ", " of trial 0: ", f"{work} was removed")
    assert not work.exists()
    reason = TrialRecord.of(at.trials()[0]).reason
    assert reason is not None and f"{work} was removed" in reason
    assert at.trial_run(0).info.status == "FAILED"


def test_a_full_mlflow_artifact_store_fails_the_trial_and_keeps_its_checkpoint(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = stores(tmp_path)
    copy = shutil.copyfileobj

    def copied(source: Any, destination: Any, *args: Any, **kwargs: Any) -> None:
        if Path(getattr(source, "name", "")).name == "best.pt":  # MLflow copying it in
            destination.write(source.read(1000))
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        copy(source, destination, *args, **kwargs)

    monkeypatch.setattr(shutil, "copyfileobj", copied)
    result = at.run()
    reason = (f"cannot write the MLflow run: no space left on {mount_point(tmp_path)} "
              f"({tmp_path / 'mlruns'})")
    assert_user_error(result, reason.replace("run:", "run of trial 0:"))
    assert_failed_on_record(at, 0, reason)
    # Trained and not uploaded: kept where the retry resumes from.
    assert (tmp_path / "work" / "full" / "trial-0" / "best.pt").is_file()
    assert not list((tmp_path / "mlruns").rglob("best.pt"))
    no_temporaries(tmp_path / "mlruns")


def test_a_full_mlflow_database_fails_the_trial_in_one_line(
        tmp_path: Path, sqlite_limit: Callable[[Path], SqliteLimit]) -> None:
    at = stores(tmp_path)
    assert at.run().exit_code == 0
    limit = sqlite_limit(tmp_path / "mlflow.db")
    limit.mode = "full"
    result = at.run()
    assert_user_error(result, "cannot write the MLflow run of trial 1: no space left on "
                      f"{mount_point(tmp_path)} ({tmp_path / 'mlflow.db'})")
    trials = at.trials()
    assert trials[1].state == TrialState.FAIL
    assert "cannot write the MLflow run: no space left" in (TrialRecord.of(trials[1]).reason
                                                            or "")
    limit.mode = None
    assert at.trial_run(0).info.status == "FINISHED"  # the store opens, its runs as they were


def test_an_optuna_store_turned_read_only_during_a_run(
        tmp_path: Path, sqlite_limit: Callable[[Path], SqliteLimit],
        after_first_epoch: Callable[[Callable[[], None]], None]) -> None:
    """Optuna cannot record the trial as failed in a store it cannot write: the trial stays
    running until the next run finds it silent, fails it and trains it again."""
    at = stores(tmp_path)
    limit = sqlite_limit(tmp_path / "optuna.db")
    after_first_epoch(lambda: setattr(limit, "mode", "read-only"))
    result = at.run("--heartbeat", "1")
    assert_user_error(result, f"cannot write the Optuna study: {tmp_path} is read-only "
                      f"({tmp_path / 'optuna.db'})")
    limit.mode = None
    assert [t.state for t in at.trials()] == [TrialState.RUNNING]
    time.sleep(3.5)  # three heartbeats missed: the next run fails it and trains it again
    again = at.run("--heartbeat", "1", work_dir=tmp_path / "elsewhere")
    assert again.exit_code == 0, again.output
    trials = at.trials()
    assert trials[0].state == TrialState.FAIL
    assert TrialRecord.of(trials[1]).retry_of == 0


def test_heartbeats_stop_quietly_while_the_store_refuses_them(
        tmp_path: Path, sqlite_limit: Callable[[Path], SqliteLimit]) -> None:
    """They are sent from a thread of their own, which would print a traceback; the trial's
    own next write says what happened."""
    storage = open_storage(f"sqlite:///{tmp_path}/optuna.db", heartbeat_s=1)
    with pytest.warns(UserWarning, match="Heartbeat"):  # outside optimize, as a test is
        trial = optuna.create_study(storage=storage, study_name="s").ask()
    sqlite_limit(tmp_path / "optuna.db").mode = "read-only"
    storage.record_heartbeat(trial._trial_id)
    with pytest.raises(optuna.exceptions.StorageInternalError):
        trial.set_user_attr("reason", "anything")


def test_a_full_disk_under_export_best_out_keeps_the_last_submission(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = stores(tmp_path)
    assert at.run().exit_code == 0
    out = tmp_path / "out" / "submission.csv"
    out.parent.mkdir()
    out.write_text("label\nthe last good one\n")
    to_csv = pd.DataFrame.to_csv

    def half_written(frame: pd.DataFrame, path: Any, **kwargs: Any) -> None:
        Path(path).write_text(frame.to_string()[:100])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(pd.DataFrame, "to_csv", half_written)
    result = invoke("export-best", "--study", "full", "--storage", at.storage,
                    "--tracking-uri", at.tracking_uri, "--device", "cpu", "--out", out)
    assert_user_error(result, f"cannot write the submission: no space left on "
                      f"{mount_point(tmp_path)} ({out})")
    assert out.read_text() == "label\nthe last good one\n"
    assert sorted(p.name for p in out.parent.iterdir()) == ["submission.csv"]
    monkeypatch.setattr(pd.DataFrame, "to_csv", to_csv)
    assert at.trials()[0].state == TrialState.COMPLETE


def test_a_read_only_report_folder(tmp_path: Path,
                                   refused_replace: Callable[[str, OSError], None]) -> None:
    at = stores(tmp_path)
    assert at.run().exit_code == 0
    refused_replace("full-report.html", EROFS)
    result = invoke("report", "--study", "full", "--storage", at.storage, "--tracking-uri",
                    at.tracking_uri, "--out", tmp_path / "pages")
    page = tmp_path / "pages" / "full-report.html"
    assert_user_error(result, f"cannot write the report: {page.parent} is read-only ({page})")
    assert list(page.parent.iterdir()) == []


# ---------------------------------------------------------------------- the preflight


def test_the_data_block_warns_when_the_disk_cannot_hold_the_study(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = stores(tmp_path)
    statvfs = os.statvfs

    def little_room(path: Any) -> Any:
        status = statvfs(path)
        fields = list(status)
        fields[4] = 10  # f_bavail: 10 blocks
        return os.statvfs_result(fields)

    monkeypatch.setattr(os, "statvfs", little_room)
    result = at.run()
    assert result.exit_code == 0, result.output
    block = result.stdout.split("baseline  ")[0].replace("\n           ", " ")
    line = next(line for line in block.splitlines() if line.startswith("disk "))
    mount = mount_point(tmp_path)
    assert line.startswith(f"disk       warning: {mount} has ")
    assert " free, but the run may write " in line
    assert f"in --work-dir {tmp_path / 'work'}" in line
    assert "1 trial x " in line and f"in MLflow's artifacts {tmp_path / 'mlruns'}" in line


def test_the_estimated_checkpoint_is_near_the_real_one(tmp_path: Path) -> None:
    spec = load_study_file(study_toml(tmp_path / "study.toml", name="x"))
    vocabulary, classes = 5000, 14
    trial = footprint(spec, vocabulary=vocabulary, classes=classes, dev_docs=100,
                      pretrained=False)
    # The space's largest model (word_hidden 16, sent_hidden 16), as a trial saves it.
    config = HANConfig(vocab_size=vocabulary + 2, num_classes=classes, embed_dim=16,
                       word_hidden=16, sent_hidden=16)
    save_checkpoint(tmp_path / "best.pt", model=HAN(config), model_config=config,
                    data_config=DataConfig(),
                    vocab=Vocabulary(raw_ids=np.arange(vocabulary, dtype=np.int64)))
    real = (tmp_path / "best.pt").stat().st_size
    assert 0.9 * real < trial.checkpoint < 1.25 * real


# ---------------------------------------------------------------------- a real full disk


@pytest.fixture
def full_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MB tmpfs holding a 900 KB file, as a user found it (root only)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        (mount / "filler").write_bytes(b"\0" * 900 * 1024)
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_run_on_a_real_full_tmpfs(tmp_path: Path, full_tmpfs: Path) -> None:
    at = stores(tmp_path)
    result = at.run(work_dir=full_tmpfs / "work")
    assert_user_error(result, "cannot write the ", " of trial 0: no space left on "
                      f"{full_tmpfs} ({full_tmpfs / 'work' / 'full' / 'trial-0'}")
    assert "disk       warning: " in result.stdout
    trials = at.trials()
    assert trials[0].state == TrialState.FAIL
    assert "no space left on" in (TrialRecord.of(trials[0]).reason or "")
    assert not list(full_tmpfs.rglob("*.tmp")) and not list(full_tmpfs.rglob("*.pt"))
    again = at.run(work_dir=tmp_path / "elsewhere")
    assert again.exit_code == 0, again.output
