"""A study written by an older han-search opens and continues with today's code: the same
study, its trials appended, its MLflow runs under the same parent run (the stores of
tests/fixtures/study-1208ec0, written by the code before search/ was laid out by concept)."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from search.records import Role, Tag, TrialRecord, VersionRecord
from search.version import RECORDS_SCHEMA, han_search_version
from tests.test_cli import invoke

FIXTURE = Path(__file__).parent / "fixtures" / "study-1208ec0"
# Where the fixture's stores were written: their absolute paths start here.
WRITTEN_IN = "/tmp/oldstudy"
STUDY = "old"


def relocated(destination: Path) -> Path:
    """A copy of the fixture at `destination`, every absolute path in its two SQLite stores
    (data files, artifact locations, the study file) rewritten to the copy's."""
    shutil.copytree(FIXTURE, destination)
    for database in ("optuna.db", "mlflow.db"):
        connection = sqlite3.connect(destination / database)
        with connection:
            tables = [row[0] for row in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")]
            for table in tables:
                for column in connection.execute(f"PRAGMA table_info('{table}')").fetchall():
                    if "CHAR" in column[2].upper() or column[2].upper() in ("TEXT", ""):
                        connection.execute(
                            f'UPDATE "{table}" SET "{column[1]}" = '
                            f'replace("{column[1]}", ?, ?)', (WRITTEN_IN, str(destination)))
        connection.close()
    return destination


@pytest.fixture
def old(tmp_path: Path) -> Path:
    return relocated(tmp_path / "old")


def stores(root: Path) -> list[str]:
    return ["--storage", f"sqlite:///{root}/optuna.db",
            "--tracking-uri", f"sqlite:///{root}/mlflow.db"]


def test_a_study_of_the_previous_release_continues(old: Path) -> None:
    storage = f"sqlite:///{old}/optuna.db"
    before = optuna.load_study(study_name=STUDY, storage=storage).trials
    assert [t.state for t in before] == [TrialState.COMPLETE, TrialState.PRUNED]
    client = MlflowClient(tracking_uri=f"sqlite:///{old}/mlflow.db")
    parent = TrialRecord.of(before[0]).run_id
    assert parent is not None
    parent_id = client.get_run(parent).data.tags[Tag.PARENT]

    result = invoke("run", "--config", old / "study.toml", "--trials", "2", *stores(old),
                    "--device", "cpu", "--work-dir", old / "work")
    assert result.exit_code == 0, result.output

    after = optuna.load_study(study_name=STUDY, storage=storage).trials
    assert len(after) == 4 and [t.number for t in after] == [0, 1, 2, 3]
    # The old trials are as they were.
    assert [(t.state, t.value, t.params) for t in after[:2]] == [
        (t.state, t.value, t.params) for t in before]
    experiment = client.get_experiment_by_name(STUDY)
    assert experiment is not None
    parents = client.search_runs([experiment.experiment_id],
                                 f"tags.`{Tag.ROLE}` = '{Role.STUDY}'")
    assert [run.info.run_id for run in parents] == [parent_id]
    for trial in after[2:]:
        run_id = TrialRecord.of(trial).run_id
        assert run_id is not None
        assert client.get_run(run_id).data.tags[Tag.PARENT] == parent_id
    # Written before versions were recorded (schema 0); now marked as this han-search's.
    written = VersionRecord.of(optuna.load_study(study_name=STUDY, storage=storage))
    assert written == VersionRecord(version=han_search_version(), schema=RECORDS_SCHEMA)


def test_a_study_of_a_newer_han_search_is_refused_in_one_line(old: Path) -> None:
    storage = f"sqlite:///{old}/optuna.db"
    study = optuna.load_study(study_name=STUDY, storage=storage)
    study.set_user_attr("han_search_version", "9.0.0")
    study.set_user_attr("records_schema", RECORDS_SCHEMA + 1)
    trials_before = len(study.trials)
    expected = (f"error: study 'old' was written by han-search 9.0.0 (records schema "
                f"{RECORDS_SCHEMA + 1}); this is han-search {han_search_version()}")
    ran = invoke("run", "--config", old / "study.toml", "--trials", "1", *stores(old),
                 "--device", "cpu", "--work-dir", old / "work")
    shown = invoke("show", "--study", STUDY, "--storage", storage)
    for result in (ran, shown):
        assert result.exit_code == 2, result.output
        [line] = result.stderr.strip().splitlines()  # `run` names the study first, on stdout
        assert line.startswith(expected) and "upgrade han-search to 9.0.0" in line
    assert len(optuna.load_study(study_name=STUDY, storage=storage).trials) == trials_before


def test_its_best_trial_still_exports_and_shows(old: Path) -> None:
    shown = invoke("show", "--study", STUDY, "--storage", f"sqlite:///{old}/optuna.db")
    assert shown.exit_code == 0, shown.output
    assert "best dev F1 0.6591 (trial 0)" in shown.stdout
    out = old / "submission.csv"
    exported = invoke("export-best", "--study", STUDY, *stores(old), "--device", "cpu",
                      "--out", out)
    assert exported.exit_code == 0, exported.output
    assert len(out.read_text().splitlines()) == 41  # a header and the 40 test documents
