"""Reports inside an epoch: the grid of training documents seen, the dev sample, pruning
inside the first epoch, counts in epochs in study files, and a searched batch size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from han.batching import prepare, stratified_sample
from han.config import TrainConfig
from han.dev_reports import Report, ReportGrid
from han.io import read_corpus
from han.stopping import Stop, StopReason
from han.train import train
from search.errors import StudyFileError
from search.records import TrialRecord
from search.session.run import run_study
from search.setup.options import RunOptions
from search.studyfile import load_study_file
from tests.conftest import easy_corpus
from tests.test_search import STRONG, WEAK, study_toml
from tests.test_train import DATA, small_model


@pytest.fixture(scope="module")
def easy(tmp_path_factory):
    path = easy_corpus(tmp_path_factory.mktemp("easy") / "train.tsv")
    return prepare(read_corpus(path, labelled=True), DATA)


def _reports(split, tmp_path: Path, **overrides) -> tuple[list[Report], object]:
    seen: list[Report] = []
    config = TrainConfig(**({"epochs": 2, "lr": 1e-2, "patience": 5} | overrides))
    return seen, train_with(split, tmp_path, config, seen.append)


def train_with(split, tmp_path: Path, config: TrainConfig, on_report):
    return train(split, model_config=small_model(split), data_config=DATA, train_config=config,
                 checkpoint_dir=tmp_path, on_report=on_report)


def test_grid_points_are_shared_whatever_the_batch_size() -> None:
    grid = ReportGrid(50, 180)
    assert [grid.epoch_end(e) for e in (1, 2)] == [150, 350]
    # A batch that crosses a point reports there; the epoch's own end point waits for it.
    assert grid.crossed(40, 56, epoch=1) == 50
    assert grid.crossed(50, 60, epoch=1) is None  # 50 was reported already
    assert grid.crossed(90, 130, epoch=1) == 100
    assert grid.crossed(140, 160, epoch=1) is None  # 150 is epoch 1's end point
    assert grid.crossed(10, 120, epoch=1) == 100  # several at once: the highest
    assert ReportGrid(None, 180).epoch_end(3) == 540


def test_reports_fall_on_the_grid_several_times_per_epoch(easy, tmp_path: Path) -> None:
    epoch_docs = len(easy.train_docs)
    assert epoch_docs == 180
    by_batch = {}
    for batch_size in (8, 24):
        reports, result = _reports(easy, tmp_path / str(batch_size), batch_size=batch_size,
                                   report_every=50, report_dev_docs=30)
        by_batch[batch_size] = reports
        steps = [r.step for r in reports]
        assert steps == [50, 100, 150, 200, 250, 300, 350]
        assert all(r.docs_seen >= r.step for r in reports)
        ends = [r for r in reports if r.end_of_epoch]
        assert [(r.epoch, r.step) for r in ends] == [(1, 150), (2, 350)]
        # The epoch ends score the whole dev fold: the epoch's own dev F1.
        assert [r.dev_macro_f1 for r in ends] == [m.dev_macro_f1 for m in result.history]
        assert {r.dev_docs for r in ends} == {len(easy.dev_docs)}
        assert {r.dev_docs for r in reports if not r.end_of_epoch} == {30}
    assert [r.step for r in by_batch[8]] == [r.step for r in by_batch[24]]


def test_reports_change_nothing_in_training(easy, tmp_path: Path) -> None:
    _, plain = _reports(easy, tmp_path / "plain", batch_size=8)
    _, reported = _reports(easy, tmp_path / "reported", batch_size=8, report_every=40)
    assert [m.train_loss for m in plain.history] == [m.train_loss for m in reported.history]
    assert plain.best_dev_f1 == reported.best_dev_f1


def test_without_report_every_one_report_per_epoch_at_its_documents(easy,
                                                                    tmp_path: Path) -> None:
    reports, _ = _reports(easy, tmp_path, batch_size=16)
    assert [(r.step, r.end_of_epoch) for r in reports] == [(180, True), (360, True)]


def test_a_stop_asked_at_a_report_inside_an_epoch_ends_the_run(easy, tmp_path: Path) -> None:
    config = TrainConfig(epochs=3, batch_size=8, lr=1e-2, report_every=60)
    result = train_with(easy, tmp_path, config, lambda report: Stop(StopReason.PRUNED)
                        if report.step >= 240 else None)
    # Stopped at 240 documents, inside epoch 2: epoch 1 is the result.
    assert result.stop.reason is StopReason.PRUNED and len(result.history) == 1
    assert result.best_epoch == 1


def test_the_dev_sample_is_stratified_and_fixed() -> None:
    labels = np.repeat(np.arange(4), [400, 300, 200, 100])
    docs = np.arange(0, 1000, 2)  # 200, 150, 100, 50 of each class
    sample = stratified_sample(labels, docs, size=100, seed=3)
    assert len(sample) == 100 and set(sample) <= set(docs)
    assert np.all(np.diff(sample) > 0)
    assert np.bincount(labels[sample]).tolist() == [40, 30, 20, 10]
    # The same arguments give the same documents, whatever else a trial changes.
    assert np.array_equal(sample, stratified_sample(labels, docs, size=100, seed=3))
    assert not np.array_equal(sample, stratified_sample(labels, docs, size=100, seed=4))
    # A rare class keeps a document; all of `docs` when they are few enough.
    rare = np.array([0] * 995 + [1] * 5)
    assert 1 in rare[stratified_sample(rare, np.arange(1000), size=50, seed=0)]
    assert np.array_equal(stratified_sample(labels, docs[:10], size=50, seed=0), docs[:10])


# ------------------------------------------------------------------------- in a study


def _spec(tmp_path: Path, name: str, *, fixed: str, pruner: str = "", space: str = ""):
    easy_corpus(tmp_path / "train.tsv", docs=160)
    path = study_toml(tmp_path / f"{name}.toml", name=name, train="train.tsv", trials=2,
                      startup_trials=1)
    text = path.read_text(encoding="utf-8").replace("n_warmup_steps = 0", pruner or
                                                    "n_warmup_steps = 0")
    text = text.replace("[fixed]\n", f"[fixed]\n{fixed}\n") + space
    if "[space.batch_size]" in space:
        text = text.replace("batch_size = 16\n", "")
    path.write_text(text, encoding="utf-8")
    return load_study_file(path), RunOptions(storage=f"sqlite:///{tmp_path}/optuna.db",
                                             tracking_uri=f"sqlite:///{tmp_path}/mlflow.db",
                                             device="cpu")


def test_a_pruner_in_documents_stops_a_hopeless_trial_inside_its_first_epoch(
        tmp_path: Path) -> None:
    spec, options = _spec(tmp_path, "inside", fixed='report_every = "0.2 epochs"',
                          pruner='n_warmup_steps = "0.2 epochs"')
    # Trial 0 learns, trial 1 cannot: both enqueued, so the test does not rest on the sampler.
    study = optuna.create_study(study_name="inside", storage=options.storage,
                                direction="maximize")
    study.enqueue_trial(STRONG)
    study.enqueue_trial(WEAK)
    run_study(spec, options, work_dir=tmp_path / "work")
    strong, weak = optuna.load_study(study_name="inside", storage=options.storage).trials
    epoch_docs = TrialRecord.of(strong).epoch_docs
    assert epoch_docs == 120  # 160 documents, 4 folds
    every = round(0.2 * epoch_docs)
    assert strong.state == TrialState.COMPLETE
    assert all(step % every == 0 for step in strong.intermediate_values)
    assert len([s for s in strong.intermediate_values if s < epoch_docs]) >= 3
    assert weak.state == TrialState.PRUNED
    assert max(weak.intermediate_values) < epoch_docs  # inside its first epoch
    assert TrialRecord.of(weak).reason.startswith(f"at {max(weak.intermediate_values)} "
                                                  "documents, epoch 1 (dev F1 ")
    assert TrialRecord.of(weak).epochs_trained(weak) < 1


def test_a_study_searching_the_batch_size_runs(tmp_path: Path) -> None:
    space = '\n[space.batch_size]\ntype = "categorical"\nchoices = [8, 32]\n'
    spec, options = _spec(tmp_path, "batches", fixed="", space=space)
    study = optuna.create_study(study_name="batches", storage=options.storage,
                                direction="maximize")
    study.enqueue_trial(STRONG | {"batch_size": 8})
    study.enqueue_trial(STRONG | {"batch_size": 32})
    summary = run_study(spec, options, work_dir=tmp_path / "work")
    trials = optuna.load_study(study_name="batches", storage=options.storage).trials
    assert [t.params["batch_size"] for t in trials] == [8, 32]
    assert trials[0].state == TrialState.COMPLETE
    assert trials[1].state in (TrialState.COMPLETE, TrialState.PRUNED)
    # Both report at the same steps: documents seen, not batches.
    steps = [list(t.intermediate_values) for t in trials]
    assert steps[1] == steps[0][: len(steps[1])]
    assert summary.best_value is not None and summary.best_value > 0.5


def test_counts_in_epochs_load_and_turn_into_documents(tmp_path: Path) -> None:
    spec, _ = _spec(tmp_path, "units", fixed='report_every = "0.5 epochs"',
                    pruner='n_warmup_steps = "1.5 epochs"\ninterval_steps = 10')
    assert spec.fixed["report_every"] == "0.5 epochs"
    resolved = spec.in_documents(120)
    assert resolved.fixed["report_every"] == 60
    assert resolved.pruner["n_warmup_steps"] == 180 and resolved.pruner["interval_steps"] == 10
    assert isinstance(resolved.make_pruner(), optuna.pruners.MedianPruner)


@pytest.mark.parametrize(("fixed", "pruner", "expected"), [
    ('report_every = "half"', "", "[fixed] report_every: expected a number of documents or "
     'of epochs ("0.5 epochs"), got \'half\''),
    ("report_every = 0", "", "[fixed]: report_every must be a positive integer"),
    ("", 'n_warmup_steps = "two epochs"', "[pruner] n_warmup_steps: expected a number of "
     "documents or of epochs"),
])
def test_bad_counts_in_epochs_are_one_line_errors(tmp_path: Path, fixed: str, pruner: str,
                                                  expected: str) -> None:
    with pytest.raises(StudyFileError) as caught:
        _spec(tmp_path, "bad", fixed=fixed, pruner=pruner)
    assert expected in str(caught.value) and "\n" not in str(caught.value)
