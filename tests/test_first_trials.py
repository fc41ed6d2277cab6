"""How a search starts and what it stops: the first trial derived from the data, trials that
are not learning, and trials pruned on evidence with the comparison on record (real Optuna
and MLflow SQLite stores, tiny corpora)."""

from __future__ import annotations

import re
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from han.dev_reports import EpochMetrics
from han.profile import DataProfile
from han.starting_point import MAX_KEPT, starting_point
from search.records import TrialRecord
from search.session.learning import MIN_UPDATES_JUDGED, stop_if_not_learning
from search.session.run import run_study
from search.setup.options import RunOptions
from search.studyfile import load_study_file
from tests.conftest import easy_corpus
from tests.test_search import SLOW, STRONG, WEAK, study_toml


def _profile(*, documents: int, p90: int, classes: int = 4) -> DataProfile:
    return DataProfile(documents=documents, tokens=documents * p90 // 2,
                       class_counts=(documents // classes,) * classes, class_names=None,
                       length_percentiles=(p90 // 3, p90, 2 * p90), distinct=1000,
                       vocabulary=800, min_count=2, coverage=(), token_mode="ids",
                       tokens_detected=True)


def test_the_starting_point_follows_the_data() -> None:
    short_and_few = starting_point(_profile(documents=1600, p90=180), train_docs=1280)
    long_and_many = starting_point(_profile(documents=200_000, p90=1800), train_docs=180_000)
    # Segments cover the 90th-percentile document, up to MAX_KEPT tokens.
    assert (short_and_few["seg_len"], short_and_few["max_segments"]) == (32, 8)
    assert long_and_many["seg_len"] * long_and_many["max_segments"] == MAX_KEPT
    # Few documents: smaller batches (more steps an epoch) and small encoders.
    assert short_and_few["batch_size"] == 16 and long_and_many["batch_size"] == 32
    assert short_and_few["word_hidden"] == 64 and long_and_many["word_hidden"] == 128
    # The learning rate decays once an epoch: the decay counts optimiser steps.
    assert short_and_few["decay_steps"] == 1280 // 16
    assert long_and_many["decay_steps"] == 180_000 // 32


def test_a_study_starts_from_the_data_then_the_reference(tmp_path: Path) -> None:
    easy_corpus(tmp_path / "train.tsv")
    spec = load_study_file(study_toml(tmp_path / "study.toml", name="fresh", train="train.tsv",
                                      trials=2, reference=STRONG,
                                      extra_study="start_from_data = true"))
    options = RunOptions(storage=f"sqlite:///{tmp_path}/optuna.db",
                         tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", device="cpu")
    run_study(spec, options, work_dir=tmp_path / "work")
    first, second = optuna.load_study(study_name="fresh", storage=options.storage).trials
    assert TrialRecord.of(first).from_data and not TrialRecord.of(first).reference
    assert TrialRecord.of(second).reference and second.params == STRONG
    # The derived settings, brought inside this small space: seg_len 16 x 8 tokens covers
    # the corpus's 90th-percentile document (under 120 tokens) -> the nearest choices.
    derived = starting_point(_profile(documents=240, p90=120), train_docs=180)
    assert first.params == spec.within_space(derived)
    assert first.params["lr"] == derived["lr"]
    assert first.params["seg_len"] == 16 and first.params["max_segments"] == 4


def test_within_space_takes_the_nearest_value_the_space_holds(tmp_path: Path) -> None:
    spec = load_study_file(study_toml(tmp_path / "study.toml", name="near", train="t.tsv"))
    assert spec.within_space({"word_hidden": 12, "lr": 0.5, "seg_len": 100}) == {
        "word_hidden": 16, "sent_hidden": 16, "lr": 3e-2, "seg_len": 32, "max_segments": 4}


def _options(tmp_path: Path) -> RunOptions:
    return RunOptions(storage=f"sqlite:///{tmp_path}/optuna.db",
                      tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", device="cpu")


def test_a_trial_that_is_not_learning_stops_after_its_first_epoch(tmp_path: Path) -> None:
    easy_corpus(tmp_path / "train.tsv")
    path = study_toml(tmp_path / "study.toml", name="stuck", train="train.tsv", trials=1,
                      reference=WEAK)
    # Batches of 2: 90 updates an epoch, enough to judge (MIN_UPDATES_JUDGED).
    path.write_text(path.read_text().replace("batch_size = 16", "batch_size = 2"))
    spec = load_study_file(path)
    run_study(spec, _options(tmp_path), work_dir=tmp_path / "work")
    (trial,) = optuna.load_study(study_name="stuck", storage=_options(tmp_path).storage).trials
    assert trial.state == TrialState.PRUNED
    assert len(trial.intermediate_values) == 1  # its first epoch's report, then no more
    reason = TrialRecord.of(trial).reason
    assert re.match(r"not learning: dev loss 1\.\d+ after epoch 1, a uniform guess's is "
                    r"ln 4 = 1\.386 \(dev F1 0\.\d+, a guess's 0\.2500\)", reason), reason


def test_a_trial_is_not_judged_before_it_has_made_enough_updates() -> None:
    stuck = EpochMetrics(epoch=1, train_loss=1.39, train_macro_f1=0.25, dev_macro_f1=0.1,
                         dev_macro_precision=0.1, dev_macro_recall=0.25, dev_accuracy=0.25,
                         lr=1e-3, epoch_seconds=1.0, train_docs_per_s=100.0, dev_loss=1.386,
                         dev_macro_f1_noise=0.05)
    assert stop_if_not_learning(stuck, classes=4, updates=MIN_UPDATES_JUDGED - 1) is None
    stop = stop_if_not_learning(stuck, classes=4, updates=MIN_UPDATES_JUDGED)
    assert stop is not None and stop.message.startswith("not learning")


@pytest.mark.slow
def test_a_trial_pruned_on_evidence_has_its_comparison_on_record(tmp_path: Path) -> None:
    easy_corpus(tmp_path / "train.tsv")
    pruner = ('name = "evidence"\nmin_resource = "1 epoch"\nreduction_factor = 3\n'
              "min_reports = 2")
    path = study_toml(tmp_path / "study.toml", name="evident", train="train.tsv", trials=3)
    path.write_text(path.read_text().replace(
        'name = "median"\nn_startup_trials = 1\nn_warmup_steps = 0', pruner))
    spec = load_study_file(path)
    options = _options(tmp_path)
    study = optuna.create_study(study_name="evident", storage=options.storage,
                                direction="maximize")
    for params in (STRONG, STRONG | {"seg_len": 16}, SLOW):
        study.enqueue_trial(params)
    run_study(spec, options, work_dir=tmp_path / "work")
    trials = optuna.load_study(study_name="evident", storage=options.storage).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2 + [TrialState.PRUNED]
    record = TrialRecord.of(trials[2])
    comparison = record.pruned_by
    assert comparison is not None and comparison["pruned"] is True
    assert comparison["value"] < comparison["bar"] - comparison["margin"]
    assert comparison["bar"] == max(t.intermediate_values[comparison["step"]]
                                    for t in trials[:2])
    assert "below the bar" in record.reason
    tags = MlflowClient(tracking_uri=options.tracking_uri).get_run(record.run_id).data.tags
    assert float(tags["pruned_by.value"]) == pytest.approx(comparison["value"])
    assert float(tags["pruned_by.bar"]) == pytest.approx(comparison["bar"])
    assert float(tags["pruned_by.noise"]) == pytest.approx(comparison["noise"])
