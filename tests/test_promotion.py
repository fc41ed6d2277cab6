"""Pausing and promoting on a real study: a trial whose share is spent while it leads and
improves pauses (complete, its state kept, its MLflow run scheduled); when the time left is
better spent on it, a promoted trial resumes it from that state, in the same MLflow run, its
metric steps continuing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
from mlflow import MlflowClient
from optuna.trial import TrialState

from search.records import Outcome, Tag, TrialRecord
from search.session.budget import Budget
from search.session.run import run_study
from search.setup.options import RunOptions
from search.studyfile import load_study_file
from tests.conftest import easy_corpus
from tests.test_search import STRONG, Recorder, study_toml


class Clock:
    """Seconds that pass only when the test says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_paused_trial_resumes_in_its_run_with_its_steps_continuing(tmp_path: Path) -> None:
    easy_corpus(tmp_path / "train.tsv", docs=120)
    path = study_toml(tmp_path / "study.toml", name="promoted", train="train.tsv", trials=2,
                      reference=STRONG)
    path.write_text(path.read_text(encoding="utf-8").replace("epochs = 3", "epochs = 6"),
                    encoding="utf-8")
    options = RunOptions(storage=f"sqlite:///{tmp_path}/optuna.db",
                         tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", device="cpu")
    clock = Clock()

    class Time(Recorder):
        def epoch_done(self, trial: optuna.Trial, metrics: Any) -> None:
            super().epoch_done(trial, metrics)
            if trial.number == 0 and metrics.epoch == 2:
                clock.now = 250.0  # past the trial's 200 s share: it stops at this report

        def trial_done(self, study: optuna.Study, trial: Any) -> None:
            super().trial_done(study, trial)
            if trial.number == 0:
                clock.now = 700.0  # the last third of the budget: promote it

    summary = run_study(load_study_file(path), options, trials=2, work_dir=tmp_path / "work",
                        progress=Time(), budget=Budget(1000, clock=clock))
    paused, promoted = optuna.load_study(study_name="promoted", storage=options.storage).trials
    first, second = TrialRecord.of(paused), TrialRecord.of(promoted)
    assert paused.state == TrialState.COMPLETE and first.outcome is Outcome.PAUSED
    assert first.epochs_done == 2 and (first.reason or "").startswith("paused: another epoch")
    assert promoted.state == TrialState.COMPLETE and second.promoted_from == 0
    assert promoted.params == paused.params
    assert promoted.value is not None and paused.value is not None
    assert promoted.value >= paused.value
    # One MLflow run for both: the promoted trial went on in the paused trial's run.
    assert second.run_id == first.run_id and first.run_id is not None
    client = MlflowClient(tracking_uri=options.tracking_uri)
    run = client.get_run(first.run_id)
    steps = [m.step for m in sorted(client.get_metric_history(run.info.run_id, "dev_macro_f1"),
                                    key=lambda m: m.step)]
    assert steps == list(range(1, second.epochs_done + 1)) and len(steps) > 2
    assert run.data.tags[Tag.RESUMED_FROM_EPOCH] == "2"
    assert run.data.tags[Tag.PROMOTED_TRIAL] == "1"
    assert run.data.tags[Tag.STATE] == "complete" and run.info.status == "FINISHED"
    # Its training state went with it once the promoted trial ended complete.
    assert not (tmp_path / "work" / "promoted" / "trial-0").exists()
    (row,) = summary.promotions
    assert (row.paused, row.promoted) == (0, 1) and row.gain is not None and row.gain >= 0
