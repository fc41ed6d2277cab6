"""The run's budget: the data block, per-trial estimates, skipping what cannot fit, stopping
at --timeout with the best epoch kept (and at a user's stop between trials), and an ETA
within the time left. Clocks are fakes, so nothing here depends on the machine's speed;
speed and memory figures are bench/budget.py's."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from han import cost
from han.batching import DataCache, segment
from han.config import DataConfig
from han.cost import EpochEstimate
from han.io import load_corpus
from han.profile import describe
from han.stopping import Stop, StopReason
from search.cli.console import data_block
from search.errors import TrialSkipped
from search.records import Outcome, TrialRecord
from search.session.budget import MAX_SKIPS_IN_A_ROW, Budget, eta_seconds
from search.session.run import run_study
from search.session.study import session_trials
from search.setup.options import RunOptions
from search.studyfile import load_study_file
from tests.conftest import easy_corpus, write_tsv
from tests.test_search import STRONG, Recorder, study_toml

# A reading of FakeClock under Budget(1000): a microsecond left, less than any epoch of the
# tests' tiny corpora, yet not the timeout itself (that stops a trial, not skips it).
NO_TIME_LEFT = 1000 - 1e-6


class FakeClock:
    """Seconds that pass only when a test says so; `expire_after_epoch` makes --timeout
    pass right after the first epoch's report (from the second reading on)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.armed_reads: int | None = None

    def __call__(self) -> float:
        if self.armed_reads is not None:
            self.armed_reads += 1
            if self.armed_reads > 1:
                return 1e6
        return self.now


# ------------------------------------------------------------------------- the data block


def test_data_block_numbers_on_a_tiny_file(tmp_path: Path) -> None:
    # Ten documents of 10, 20, ... 100 tokens; class 0 has 6, class 1 has 4. Token 7 is in
    # every document, token 1000+i in document i only.
    rows = []
    for i in range(10):
        length = 10 * (i + 1)
        tokens = [7] * (length - 1) + [1000 + i]
        rows.append((0 if i < 6 else 1, " ".join(map(str, tokens))))
    corpus = load_corpus(write_tsv(tmp_path / "tiny.tsv", rows), labelled=True)
    config = DataConfig(folds=2, min_count=2)
    profile = describe(corpus, config, [("reference", 16, 2), ("smallest", 8, 1),
                                        ("largest", 64, 2)], cache=DataCache())
    assert profile.documents == 10 and profile.tokens == 550
    assert profile.class_counts == (6, 4)
    assert profile.length_percentiles == (50, 90, 100)
    assert profile.distinct == 11
    assert profile.vocabulary == 1  # only token 7 is seen twice in the training fold
    kept = {c.label: c for c in profile.coverage}
    # 8 x 1: every document keeps its first 8 tokens.
    assert kept["smallest"].kept == pytest.approx(80 / 550)
    assert kept["smallest"].docs_cut == 1.0
    # 64 x 2 keeps everything; 16 x 2 keeps a longer document's first segment and its last,
    # which holds what is left after the last full 16 (the segments are cut from the start).
    assert kept["largest"].kept == 1.0 and kept["largest"].docs_cut == 0.0
    lengths = [10 * (i + 1) for i in range(10)]
    expected = sum(n if n <= 32 else 16 + (n - 16 * ((n - 1) // 16)) for n in lengths)
    assert kept["reference"].kept == pytest.approx(expected / 550)
    assert segment(corpus.tokens, corpus.offsets, seg_len=16,
                   max_segments=2).seg_length.sum() == expected
    block = data_block(profile)
    text = " ".join(block.split())
    assert "10 (550 tokens), 2 classes: 0 6, 1 4" in text
    assert "p50 50, p90 90, p99 100" in text
    assert "smallest 8x1 14.5% (100% of documents cut)" in text
    assert block.splitlines()[1] == "tokens     ids (as given)"
    assert len(block.splitlines()) >= 5
    detected = replace(profile, tokens_detected=True)
    assert "\ntokens     ids (detected from the file; --tokens to choose)\n" in data_block(detected)


# ------------------------------------------------------------------------- ETA and admission


def test_eta_never_exceeds_the_time_left() -> None:
    assert eta_seconds(elapsed=600, done=1, total=50, left=2000) == 2000
    assert eta_seconds(elapsed=60, done=6, total=10, left=2000) == 40
    assert eta_seconds(elapsed=60, done=6, total=10, left=None) == 40
    assert eta_seconds(elapsed=60, done=0, total=10, left=300) == 300
    assert eta_seconds(elapsed=60, done=0, total=None, left=None) is None
    clock = FakeClock()
    budget = Budget(2400, clock=clock)
    for now in (0, 100, 1000, 2399, 2500):
        clock.now = now
        eta = budget.eta(elapsed=now + 1, done=1, total=50)
        assert eta is not None and eta <= max(2400 - now, 0)


def test_a_trial_runs_the_epochs_that_fit_and_is_refused_when_none_does() -> None:
    clock = FakeClock()
    budget = Budget(2400, clock=clock)
    epoch = EpochEstimate(train_seconds=80, eval_seconds=20, timed_batches=3,
                          timed_seconds=2.0)
    assert budget.admit(epoch, 3).seconds == 300  # all 3 fit the 480 s cap
    capped = budget.admit(epoch, 10)  # the cap (a fifth of 2400 s) holds 4 epochs
    assert (capped.epochs, capped.planned, capped.seconds) == (4, 10, 400)
    assert capped.describe() == "estimated 6m40s (4 of 10 x 1m40s per epoch), 40m00s left"
    clock.now = 2150  # 250 s left: 2 epochs fit
    late = budget.admit(epoch, 5)
    assert (late.epochs, late.seconds) == (2, 200)
    assert late.describe().startswith("estimated 3m20s (2 of 5 x 1m40s per epoch)")
    clock.now = 2310  # 90 s left: not one epoch
    with pytest.raises(TrialSkipped, match=r"estimated 1m40s per epoch > 1m30s left"):
        budget.admit(epoch, 1)
    with pytest.raises(TrialSkipped, match=r"per epoch > 2m00s per trial \(5% of"):
        Budget(2400, clock=FakeClock(), share=0.05).admit(
            EpochEstimate(train_seconds=200, eval_seconds=0, timed_batches=3,
                          timed_seconds=1.0), 5)
    unlimited = Budget(None).admit(epoch, 100)
    assert unlimited.left is None and unlimited.epochs == 100


def test_the_time_left_is_compared_with_the_cheapest_epoch_estimated() -> None:
    clock = FakeClock()
    budget = Budget(2400, clock=clock)
    assert not budget.below_cheapest()  # nothing estimated yet
    for train_seconds in (400, 100, 300):
        epoch = EpochEstimate(train_seconds=train_seconds, eval_seconds=0, timed_batches=3,
                              timed_seconds=1.0)
        budget.admit(epoch, 5)
    assert budget.cheapest == 100  # an epoch, not the 500 s of the trial's five
    clock.now = 2250  # 150 s left: one 100 s epoch still fits
    assert not budget.below_cheapest()
    clock.now = 2350  # 50 s left
    assert budget.below_cheapest()


def test_a_trial_stops_at_the_report_before_an_epoch_that_would_not_fit() -> None:
    clock = FakeClock()
    budget = Budget(2400, clock=clock)  # a trial's cap: 480 s
    clock.now = 300  # a trial started at 0, epochs of 100 s: a 4th would end at 400
    assert budget.stop_at_report(0, 100) is None
    clock.now = 400  # a 5th would end at 500, past the cap
    assert budget.stop_at_report(0, 100) == Stop(
        StopReason.BUDGET_SHARE,
        "budget: another epoch (1m40s) would pass the trial's 8m00s cap (20% of --timeout)")
    clock.now = 2350  # a trial started at 2100: its cap holds another epoch, the timeout not
    assert budget.stop_at_report(2100, 100) == Stop(
        StopReason.TIMEOUT, "budget: another epoch (1m40s) would end past --timeout (50s left)")
    assert Budget(None).stop_at_report(0, 1e9) is None


# ------------------------------------------------------------------------- in a real study


def _study(tmp_path: Path, name: str) -> tuple[Any, RunOptions]:
    # The budget's own stops and skips, without pausing a leading trial or shaping draws
    # (tests/test_promotion.py tries those).
    easy_corpus(tmp_path / "train.tsv", docs=120)
    spec = load_study_file(study_toml(tmp_path / f"{name}.toml", name=name, train="train.tsv",
                                      trials=1, reference=STRONG,
                                      extra_study="pause_and_promote = false\n"
                                                  "shape_draws = false"))
    options = RunOptions(storage=f"sqlite:///{tmp_path}/optuna.db",
                         tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", device="cpu")
    return spec, options


def test_a_trial_running_at_the_timeout_stops_with_its_best_epoch(tmp_path: Path) -> None:
    spec, options = _study(tmp_path, "stop")
    clock = FakeClock()
    progress = Recorder()

    class ExpireAfterFirstEpoch(Recorder):
        def epoch_done(self, trial: optuna.Trial, metrics: Any) -> None:
            progress.epoch_done(trial, metrics)
            if metrics.epoch == 1:
                clock.armed_reads = 0  # the report's reading sees time left, the next batch none

    summary = run_study(spec, options, work_dir=tmp_path / "work",
                        progress=ExpireAfterFirstEpoch(), budget=Budget(1000, clock=clock))
    trial = optuna.load_study(study_name="stop", storage=options.storage).trials[0]
    record = TrialRecord.of(trial)
    assert trial.state == TrialState.COMPLETE and record.outcome is Outcome.STOPPED
    # One report, at the end of epoch 1: step = its training documents.
    assert list(trial.intermediate_values) == [record.epoch_docs]
    assert trial.value == trial.intermediate_values[record.epoch_docs]
    assert record.reason == ("stopped at --timeout (stopped at epoch 2, batch 0); best epoch 1 "
                             "kept")
    assert summary.states == {"stopped": 1} and summary.best_value == trial.value
    client = MlflowClient(options.tracking_uri)
    run = client.get_run(record.run_id)
    assert run.data.tags["state"] == "stopped" and run.info.status == "FINISHED"
    assert run.data.tags["best_epoch"] == "1"
    assert [f.path for f in client.list_artifacts(record.run_id, "checkpoint")] == [
        "checkpoint/best.pt"]
    assert np.isclose(run.data.metrics["best_dev_macro_f1"], trial.value)


def test_a_stop_asked_for_as_a_trial_ends_starts_no_other(tmp_path: Path) -> None:
    # SIGTERM during a trial's last report: the trial ends as it would have, and no next
    # trial starts only to be interrupted (a failed trial with no work in it).
    spec, options = _study(tmp_path, "signal")
    asked: list[bool] = []

    class StopAsTheFirstTrialEnds(Recorder):
        def trial_done(self, study: optuna.Study, trial: Any) -> None:
            asked.append(True)

    run_study(spec, options, trials=3, work_dir=tmp_path / "work",
              progress=StopAsTheFirstTrialEnds(), should_stop=lambda: bool(asked))
    trials = optuna.load_study(study_name="signal", storage=options.storage).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE]


# ------------------------------------------------------------------------- the reference's place


def _reference_study(tmp_path: Path, name: str, *, after: int, trials: int) -> Any:
    easy_corpus(tmp_path / "train.tsv", docs=120)
    path = study_toml(tmp_path / f"{name}.toml", name=name, train="train.tsv", trials=trials,
                      reference=STRONG, extra_study=f"reference_after = {after}")
    return load_study_file(path), RunOptions(storage=f"sqlite:///{tmp_path}/optuna.db",
                                             tracking_uri=f"sqlite:///{tmp_path}/mlflow.db",
                                             device="cpu")


def test_the_reference_runs_after_the_pruners_startup_trials(tmp_path: Path) -> None:
    spec, options = _reference_study(tmp_path, "late", after=2, trials=4)
    assert spec.reference_after == 2
    run_study(spec, options, work_dir=tmp_path / "work")
    trials = optuna.load_study(study_name="late", storage=options.storage).trials
    assert [TrialRecord.of(t).reference for t in trials] == [False, False, True, False]
    assert trials[2].params == STRONG
    # Once on record, a later session does not queue it again.
    run_study(spec, options, trials=2, work_dir=tmp_path / "work")
    trials = optuna.load_study(study_name="late", storage=options.storage).trials
    assert sum(TrialRecord.of(t).reference for t in trials) == 1


def test_a_session_too_short_to_reach_the_reference_runs_it_last(tmp_path: Path) -> None:
    spec, options = _reference_study(tmp_path, "short", after=5, trials=2)
    run_study(spec, options, work_dir=tmp_path / "work")
    trials = optuna.load_study(study_name="short", storage=options.storage).trials
    assert [TrialRecord.of(t).reference for t in trials] == [False, True]
    (tmp_path / "one").mkdir()
    spec, options = _reference_study(tmp_path / "one", "one", after=5, trials=1)
    run_study(spec, options, work_dir=tmp_path / "one" / "work")
    trials = optuna.load_study(study_name="one", storage=options.storage).trials
    assert [TrialRecord.of(t).reference for t in trials] == [True]


def test_skipped_trials_do_not_count_against_the_trial_count(tmp_path: Path) -> None:
    spec, options = _study(tmp_path, "recount")
    clock = FakeClock()

    class FirstTrialMeetsNoTime(Recorder):
        def next_trial(self, index: int, total: int | None) -> None:
            # No time left for the first trial (the run itself started with the whole budget).
            clock.now = NO_TIME_LEFT if index == 1 else 0.0

    summary = run_study(spec, options, trials=1, work_dir=tmp_path / "work",
                        progress=FirstTrialMeetsNoTime(), budget=Budget(1000, clock=clock))
    trials = optuna.load_study(study_name="recount", storage=options.storage).trials
    # The second trial trained (complete, or pruned if its draw learned nothing).
    states = [TrialRecord.of(t).state_name(t) for t in trials]
    assert states[0] == "skipped" and len(states) == 2 and states[1] != "skipped"
    assert summary.trials_this_run == 2


def test_trials_that_cannot_fit_one_epoch_are_skipped_and_end_the_run(tmp_path: Path) -> None:
    spec, options = _study(tmp_path, "storm")
    clock = FakeClock()

    class NoTimeLeft(Recorder):
        # The run starts with the whole budget (Optuna's own timeout, in real seconds, is
        # then long: only the skips can end the run); every trial meets no time left.
        def next_trial(self, index: int, total: int | None) -> None:
            super().next_trial(index, total)
            clock.now = NO_TIME_LEFT

    progress = NoTimeLeft()
    summary = run_study(spec, options, trials=50, work_dir=tmp_path / "work",
                        progress=progress, budget=Budget(1000, clock=clock))
    trials = optuna.load_study(study_name="storm", storage=options.storage).trials
    assert len(trials) == MAX_SKIPS_IN_A_ROW
    assert summary.states == {"skipped": MAX_SKIPS_IN_A_ROW}
    assert summary.ended_early is not None
    assert summary.ended_early.startswith(f"the last {MAX_SKIPS_IN_A_ROW} trials drawn were "
                                          "skipped, and the 0s of --timeout left are less "
                                          "than the cheapest epoch estimated")
    record = TrialRecord.of(trials[0])
    assert trials[0].state == TrialState.PRUNED and record.outcome is Outcome.SKIPPED
    assert record.reason is not None and record.reason.startswith("skipped: estimated ")
    assert record.reason.endswith(" per epoch > 0s left")
    assert ("data", 120) in progress.events and ("estimate", 0) not in progress.events
    run = MlflowClient(options.tracking_uri).get_run(record.run_id)
    assert run.data.tags["state"] == "skipped" and run.info.status == "KILLED"


def test_a_timeout_alone_trains_past_the_study_files_trial_count(tmp_path: Path) -> None:
    # The study file says 1 trial; `--timeout` without `--trials` means "spend the time".
    spec, options = _study(tmp_path, "spend")
    assert spec.trials == 1
    clock = FakeClock()

    class TimeRunsOutAtTheFourthTrial(Recorder):
        def next_trial(self, index: int, total: int | None) -> None:
            assert total is None
            clock.now = NO_TIME_LEFT if index >= 4 else 0.0

    summary = run_study(spec, options, work_dir=tmp_path / "work",
                        progress=TimeRunsOutAtTheFourthTrial(),
                        budget=Budget(1000, clock=clock))
    trials = optuna.load_study(study_name="spend", storage=options.storage).trials
    trained = [t for t in trials if TrialRecord.of(t).outcome is not Outcome.SKIPPED]
    assert len(trained) == 3 and summary.ended_early is not None


def test_session_trials_follow_the_command_line(tmp_path: Path) -> None:
    spec = load_study_file(study_toml(tmp_path / "count.toml", name="count",
                                      train="train.tsv", trials=7))
    assert session_trials(spec, trials=3, timeout=None) == 3
    assert session_trials(spec, trials=3, timeout=60.0) == 3
    assert session_trials(spec, trials=None, timeout=None) == 7
    assert session_trials(spec, trials=None, timeout=60.0) is None


def test_the_estimate_times_batches_for_at_least_probe_seconds(monkeypatch) -> None:
    now = [0.0]
    monkeypatch.setattr(cost.time, "perf_counter", lambda: now[0])
    estimates: list[EpochEstimate] = []
    probe = cost.Probe(np.full(100, 1000), 0, estimates.append)
    probe.begin()
    for index in range(100):
        now[0] += 0.125  # PROBE_BATCHES such batches are far from PROBE_SECONDS
        probe.batch_done(index)
        if estimates:
            break
    timed = estimates[0].timed_batches
    assert timed > cost.PROBE_BATCHES and estimates[0].timed_seconds >= cost.PROBE_SECONDS
    assert estimates[0].train_seconds == pytest.approx(0.125 * 100)
