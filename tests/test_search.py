"""End-to-end search: real Optuna (SQLite) and real MLflow (SQLite + local artifacts).

One small study is run once per module (a first session, then a continuation) and every
test inspects it through the Optuna and MLflow APIs, not through printed output.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.entities import Run
from optuna.trial import FrozenTrial, TrialState

from han.errors import DataError
from han.predict import predict
from search.errors import SearchError
from search.export import best as export
from search.session.run import run_study
from search.setup.options import RunOptions
from search.stores.optuna_storage import open_storage
from search.studyfile import load_study_file
from search.views.summary import RunSummary
from tests.conftest import easy_corpus, write_tsv
from tests.helpers import toml_value

# The reference trial (trial 0) is a configuration that learns the easy corpus in three
# epochs (dev F1 ~0.7 after one); with a median pruner that starts after one complete trial
# and no warm-up, a random draw that learns slower (most of the lr range) is pruned.
STRONG = {"word_hidden": 16, "sent_hidden": 16, "lr": 2e-2, "seg_len": 32, "max_segments": 4}
# Learns nothing in three epochs: dev F1 stays at the majority-class level.
WEAK = {"word_hidden": 8, "sent_hidden": 8, "lr": 1e-4, "seg_len": 16, "max_segments": 2}
# Learns a little (dev F1 about 0.34 after three epochs): below STRONG, yet complete.
SLOW = WEAK | {"lr": 1e-2}
FIXED = {"epochs": 3, "batch_size": 16, "embed_dim": 16, "folds": 4, "min_count": 1,
         "patience": 2}
EPOCH_METRICS = ("dev_macro_f1", "train_loss", "train_macro_f1", "dev_macro_precision",
                 "dev_macro_recall", "dev_accuracy", "lr", "epoch_seconds", "train_docs_per_s")
TEST_DOCS = 40


def _toml_value(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def study_toml(path: Path, *, name: str, train: str | None = None, test: str | None = None,
               trials: int = 4, seed: int = 0, reference: dict[str, Any] | None = None,
               extra_study: str = "", labels: list[str] | None = None,
               startup_trials: int = 1, word2vec: bool = False) -> Path:
    """A tiny study file in the layout of studies/demo.toml.

    With `reference`, trial 0 of a new study is that configuration (enqueue_reference);
    without, no reference trial (the config defaults lie outside this small space).
    `labels` names the classes; the median pruner prunes nothing in the first
    `startup_trials` trials. word2vec is off unless asked for: on the easy corpus's 17,000
    tokens its vectors are mostly their common mean (cosine 0.99 between two noise tokens)
    and hold STRONG back (dev F1 0.43 after three epochs, against 0.98 without), which the
    tests of the search rely on; tests/test_word2vec.py turns it on.
    """
    lines = ["[study]", f'name = "{name}"', 'direction = "maximize"',
             f"trials = {trials}",
             f"enqueue_reference = {'true' if reference else 'false'}", extra_study,
             "", "[sampler]", 'name = "tpe"', f"seed = {seed}",
             "", "[pruner]", 'name = "median"', f"n_startup_trials = {startup_trials}",
             "n_warmup_steps = 0", "", "[data]", f"word2vec = {toml_value(word2vec)}"]
    if train is not None:
        lines.append(f'train = "{train}"')
    if test is not None:
        lines.append(f'test = "{test}"')
    if labels is not None:
        lines.append(f"labels = {toml_value(labels)}")
    lines += ["", "[fixed]"] + [f"{k} = {v}" for k, v in FIXED.items()]
    lines += ["", "[space.word_hidden]", 'type = "categorical"', "choices = [8, 16]",
              "", "[space.sent_hidden]", 'type = "categorical"', "choices = [8, 16]",
              "", "[space.lr]", 'type = "float"', "low = 1e-4", "high = 3e-2", "log = true",
              "", "[space.seg_len]", 'type = "categorical"', "choices = [16, 32]",
              "", "[space.max_segments]", 'type = "categorical"', "choices = [2, 4]"]
    if reference:
        lines += ["", "[reference]"] + [f"{k} = {_toml_value(v)}" for k, v in reference.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def unlabelled_test_file(path: Path, *, docs: int = TEST_DOCS, seed: int = 1) -> np.ndarray:
    """A test file (single `text` column) from the easy corpus; returns its true labels."""
    labelled = easy_corpus(path.with_name(f"{path.stem}-labelled.tsv"), docs=docs, seed=seed)
    frame = pd.read_csv(labelled, sep="\t", dtype={"label": int, "text": str})
    # Reverse the easy corpus's round-robin label order, so file order matters.
    frame = frame.iloc[::-1].reset_index(drop=True)
    write_tsv(path, [(text,) for text in frame["text"]], header=("text",))
    return frame["label"].to_numpy()


@dataclass
class Recorder:
    """A Progress that remembers the callbacks it got."""

    events: list[tuple[str, int]] = field(default_factory=list)

    def data_described(self, profile: Any) -> None:
        self.events.append(("data", profile.documents))

    def next_trial(self, index: int, total: int | None) -> None:
        self.events.append(("next", index))

    def trial_estimated(self, trial: optuna.Trial, estimate: Any) -> None:
        self.events.append(("estimate", trial.number))

    def trial_started(self, trial: optuna.Trial, params: dict[str, Any]) -> None:
        self.events.append(("start", trial.number))

    def epoch_done(self, trial: optuna.Trial, metrics: Any) -> None:
        self.events.append(("epoch", trial.number))

    def reported(self, trial: optuna.Trial, report: Any) -> None:
        self.events.append(("report", trial.number))

    def trial_done(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.events.append(("done", trial.number))

    def baseline(self, outcome: Any) -> None:
        self.events.append(("baseline", int(outcome.trained)))

    def word2vec(self, outcome: Any) -> None:
        self.events.append(("word2vec", outcome.vectors))

    def disk_short(self, shortage: Any) -> None:
        self.events.append(("disk", shortage.needed))


@dataclass
class Searched:
    root: Path
    train: Path
    test: Path
    test_labels: np.ndarray
    spec_path: Path
    storage: str
    tracking_uri: str
    first: RunSummary
    second: RunSummary
    first_trials: list[FrozenTrial]
    first_parent: Run
    progress: Recorder

    @property
    def client(self) -> MlflowClient:
        return MlflowClient(tracking_uri=self.tracking_uri)

    def study(self, name: str = "tiny") -> optuna.Study:
        return optuna.load_study(study_name=name, storage=self.storage)

    def runs(self, role: str) -> list[Run]:
        experiment = self.client.get_experiment_by_name("tiny")
        assert experiment is not None
        return self.client.search_runs([experiment.experiment_id],
                                       filter_string=f"tags.`han.role` = '{role}'",
                                       max_results=1000)


FIRST_TRIALS = 4
SECOND_TRIALS = 2


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> Searched:
    root = tmp_path_factory.mktemp("search")
    train = easy_corpus(root / "train.tsv")
    test = root / "test.tsv"
    test_labels = unlabelled_test_file(test)
    # Relative paths in a study file resolve against the file's folder.
    spec_path = study_toml(root / "study.toml", name="tiny", train="train.tsv",
                           test="test.tsv", trials=FIRST_TRIALS, reference=STRONG)
    storage = f"sqlite:///{root}/optuna.db"
    tracking_uri = f"sqlite:///{root}/mlflow.db"
    spec = load_study_file(spec_path)
    progress = Recorder()
    options = RunOptions(storage=storage, tracking_uri=tracking_uri, device="cpu")
    common = dict(work_dir=root / "work")
    first = run_study(spec, options, progress=progress, **common)
    first_trials = optuna.load_study(study_name="tiny", storage=storage).trials
    first_parent = MlflowClient(tracking_uri=tracking_uri).get_run(first.parent_run_id)
    second = run_study(spec, options, trials=SECOND_TRIALS, **common)
    return Searched(root=root, train=train, test=test, test_labels=test_labels,
                    spec_path=spec_path, storage=storage, tracking_uri=tracking_uri,
                    first=first, second=second, first_trials=first_trials,
                    first_parent=first_parent, progress=progress)


# ------------------------------------------------------------------- the first session


def test_first_session_prunes_and_completes_trials(searched: Searched) -> None:
    trials = searched.first_trials
    assert len(trials) == FIRST_TRIALS
    states = [t.state for t in trials]
    assert TrialState.PRUNED in states
    assert trials[0].state == TrialState.COMPLETE
    assert set(states) <= {TrialState.COMPLETE, TrialState.PRUNED}
    # Trial 0 is the [reference] configuration, flagged and reported as the reference.
    assert trials[0].params == STRONG
    assert trials[0].user_attrs["reference"] is True
    assert searched.first.reference_value == trials[0].value
    assert searched.first.trials_this_run == FIRST_TRIALS
    assert sum(searched.first.states.values()) == FIRST_TRIALS
    assert searched.first.states["pruned"] == states.count(TrialState.PRUNED)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best = max(complete, key=lambda t: t.value)
    assert (searched.first.best_trial, searched.first.best_value) == (best.number, best.value)
    assert searched.first.best_value > 0.8  # chance is 0.25
    assert searched.first.not_logged == []
    for trial in trials:
        if trial.state == TrialState.PRUNED:
            assert re.match(r"at [\d,]+ documents, epoch \d+ \(dev F1 |not learning: dev loss ",
                            trial.user_attrs["reason"])
    # The study remembers its files, for export-best.
    study = searched.study()
    assert study.user_attrs["train_path"] == str(searched.train.resolve())
    assert study.user_attrs["test_path"] == str(searched.test.resolve())


def test_progress_gets_every_trial_and_epoch(searched: Searched) -> None:
    events = searched.progress.events
    trials = searched.first_trials
    assert [e for e in events if e[0] == "next"] == [("next", i + 1) for i in range(len(trials))]
    assert [e for e in events if e[0] == "start"] == [("start", t.number) for t in trials]
    assert [e for e in events if e[0] == "done"] == [("done", t.number) for t in trials]
    epochs = [e[1] for e in events if e[0] == "epoch"]
    assert epochs == [t.number for t in trials for _ in t.intermediate_values]


def test_one_parent_run_and_one_child_run_per_trial(searched: Searched) -> None:
    parents = searched.runs("study")
    assert [run.info.run_id for run in parents] == [searched.first.parent_run_id]
    parent = parents[0]
    assert parent.data.tags["han.study"] == "tiny"
    assert parent.info.run_name == "study:tiny"

    children = searched.runs("trial")
    trials = searched.study().trials
    assert len(children) == len(trials) == FIRST_TRIALS + SECOND_TRIALS
    by_id = {run.info.run_id: run for run in children}
    for trial in trials:
        run = by_id[trial.user_attrs["mlflow_run_id"]]
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.info.run_name == f"trial-{trial.number}"
        assert run.data.tags["trial_number"] == str(trial.number)
        assert run.data.tags["han.study"] == "tiny"
    # Every child run belongs to exactly one trial.
    assert len({t.user_attrs["mlflow_run_id"] for t in trials}) == len(children)


def test_runs_end_with_the_trial_state(searched: Searched) -> None:
    client = searched.client
    for trial in searched.study().trials:
        run = client.get_run(trial.user_attrs["mlflow_run_id"])
        if trial.state == TrialState.COMPLETE:
            assert (run.info.status, run.data.tags["state"]) == ("FINISHED", "complete")
            # Steps are training documents seen: one report per epoch here.
            best_step = max(trial.intermediate_values, key=trial.intermediate_values.get)
            per_epoch = trial.user_attrs["epoch_docs"]
            assert run.data.tags["best_epoch"] == str(best_step // per_epoch)
        else:
            assert trial.state == TrialState.PRUNED
            assert (run.info.status, run.data.tags["state"]) == ("KILLED", "pruned")
            assert run.data.tags["reason"] == trial.user_attrs["reason"]
        assert run.info.end_time is not None


def test_epoch_metrics_are_logged_with_the_epoch_as_step(searched: Searched) -> None:
    client = searched.client
    for trial in searched.study().trials:
        run_id = trial.user_attrs["mlflow_run_id"]
        # Without report_every, one report per epoch, at the documents seen by its end.
        per_epoch = trial.user_attrs["epoch_docs"]
        steps = sorted(trial.intermediate_values)
        epochs = list(range(1, len(steps) + 1))
        assert steps == [epoch * per_epoch for epoch in epochs]
        assert trial.user_attrs["epochs_done"] == len(epochs)
        for key in EPOCH_METRICS:
            history = client.get_metric_history(run_id, key)
            assert sorted(m.step for m in history) == epochs, key
        f1 = {m.step: m.value for m in client.get_metric_history(run_id, "dev_macro_f1")}
        assert f1 == pytest.approx({e: trial.intermediate_values[e * per_epoch] for e in epochs})
        reported = client.get_metric_history(run_id, "reported_dev_macro_f1")
        assert {m.step: m.value for m in reported} == pytest.approx(trial.intermediate_values)
        lr = client.get_metric_history(run_id, "lr")
        assert lr[0].value == pytest.approx(trial.params["lr"])
        if trial.state == TrialState.COMPLETE:
            best = client.get_metric_history(run_id, "best_dev_macro_f1")
            assert [m.value for m in best] == pytest.approx([trial.value])


def test_runs_record_params_fingerprint_and_versions(searched: Searched) -> None:
    client = searched.client
    sha = hashlib.sha256(searched.train.read_bytes()).hexdigest()[:16]
    for trial in searched.study().trials:
        run = client.get_run(trial.user_attrs["mlflow_run_id"])
        params, tags = run.data.params, run.data.tags
        for key, value in trial.params.items():  # suggested
            assert params[key] == str(value)
        for key, value in FIXED.items():  # fixed in the study file
            assert params[key] == str(value)
        assert params["device"] == "cpu"
        assert int(params["vocab_size"]) > 2 and params["num_classes"] == "4"
        assert tags["data.sha256"] == sha
        assert tags["data.docs"] == "240"
        assert tags["data.classes"] == "4"
        assert tags["data.bytes"] == str(searched.train.stat().st_size)
        assert tags["data.path"] == str(searched.train.resolve())
        for package in ("torch", "optuna", "mlflow", "numpy"):
            assert tags[f"version.{package}"] == importlib.metadata.version(package)
        assert tags["device"] == "cpu"
        assert tags["study_file"] == str(searched.spec_path.absolute())


def _artifacts(client: MlflowClient, run_id: str, path: str) -> set[str]:
    return {item.path for item in client.list_artifacts(run_id, path)}


def test_complete_runs_have_checkpoint_and_evaluation(searched: Searched) -> None:
    client = searched.client
    for trial in searched.study().trials:
        run_id = trial.user_attrs["mlflow_run_id"]
        checkpoint = _artifacts(client, run_id, "checkpoint")
        if trial.state == TrialState.COMPLETE:
            assert checkpoint == {"checkpoint/best.pt"}
            assert _artifacts(client, run_id, "evaluation") == {
                "evaluation/classification_report.txt", "evaluation/confusion_matrix.png",
                "evaluation/dev_probabilities.npz"}
            report = client.download_artifacts(
                run_id, "evaluation/classification_report.txt", str(searched.root / run_id))
            assert "macro avg" in Path(report).read_text()
        else:
            assert checkpoint == set()  # a pruned trial uploads no checkpoint
    # Checkpoints are uploaded, then the trial's scratch folder is removed.
    work = searched.root / "work" / "tiny"
    assert not work.exists() or not any(work.iterdir())
    # Artifacts sit beside the SQLite database, not in the current directory.
    assert (searched.root / "mlruns").is_dir()


def test_parent_run_gets_study_plots_and_best_params(searched: Searched) -> None:
    client = searched.client
    parent_id = searched.first.parent_run_id
    plots = _artifacts(client, parent_id, "study")
    assert {"study/optimization_history.png", "study/intermediate_values.png"} <= plots
    # As of the end of the first session:
    best = max((t for t in searched.first_trials if t.state == TrialState.COMPLETE),
               key=lambda t: t.value)
    # The best changes as trials come, so it is kept in tags (MLflow params are write-once).
    tags, params = searched.first_parent.data.tags, searched.first_parent.data.params
    assert tags["best.trial"] == str(best.number)
    assert float(tags["best.value"]) == pytest.approx(best.value)
    for key, value in best.params.items():
        assert tags[f"best.{key}"] == str(value)
    assert params["direction"] == "maximize"
    assert params["study_file"] == str(searched.spec_path.absolute())
    assert searched.first_parent.data.metrics["best_dev_macro_f1"] == pytest.approx(best.value)
    assert searched.first_parent.data.metrics["trials_complete"] == sum(
        t.state == TrialState.COMPLETE for t in searched.first_trials)


# ------------------------------------------------------------------- continuing


def test_continuing_adds_trials_under_the_same_parent_run(searched: Searched) -> None:
    trials = searched.study().trials
    assert len(trials) == FIRST_TRIALS + SECOND_TRIALS
    assert [t.number for t in trials] == list(range(FIRST_TRIALS + SECOND_TRIALS))
    assert searched.second.trials_this_run == SECOND_TRIALS
    assert sum(searched.second.states.values()) == FIRST_TRIALS + SECOND_TRIALS
    assert searched.second.parent_run_id == searched.first.parent_run_id
    assert len(searched.runs("study")) == 1
    # The reference is enqueued for a new study only, never again.
    assert [t.number for t in trials if t.user_attrs.get("reference")] == [0]
    # The first session's trials are untouched.
    for before, after in zip(searched.first_trials, trials, strict=False):
        assert (before.state, before.params, before.value) == (after.state, after.params,
                                                               after.value)


def test_continuing_does_not_replay_the_first_sessions_draws(searched: Searched) -> None:
    trials = searched.study().trials
    first = [t.params for t in trials[1:FIRST_TRIALS]]  # trial 0 is the enqueued reference
    second = [t.params for t in trials[FIRST_TRIALS:]]
    # A sampler re-seeded as in the first session would draw trial 1's lr again first.
    assert {p["lr"] for p in second}.isdisjoint({p["lr"] for p in first})
    assert all(p not in first for p in second)


# ------------------------------------------------------------------- export-best


def test_export_best_writes_one_label_per_test_document_in_file_order(
        searched: Searched, tmp_path: Path) -> None:
    out = tmp_path / "nested" / "submission.csv"
    result = export.export_best(study_name="tiny", storage=searched.storage,
                                tracking_uri=searched.tracking_uri, out=out, device="cpu")
    study = searched.study()
    best = study.best_trial
    assert (result.trial, result.value) == (best.number, pytest.approx(best.value))
    assert result.run_id == best.user_attrs["mlflow_run_id"]
    assert result.out == out and result.rows == TEST_DOCS

    frame = pd.read_csv(out)
    assert list(frame.columns) == ["label"]
    assert len(frame) == TEST_DOCS
    assert out.read_text().splitlines()[0] == "label"
    labels = frame["label"].to_numpy()
    assert result.label_counts == {int(k): int(v) for k, v in
                                   zip(*np.unique(labels, return_counts=True), strict=True)}
    # Same as predicting with the best run's checkpoint directly, in the file's row order.
    client = searched.client
    checkpoint = client.download_artifacts(result.run_id, "checkpoint/best.pt",
                                           str(tmp_path / "download"))
    np.testing.assert_array_equal(labels, predict(checkpoint, searched.test, device="cpu").labels)
    assert (labels == searched.test_labels).mean() > 0.8  # the file order, not a shuffle
    # Logged on the best run.
    assert _artifacts(client, result.run_id, "predictions") == {"predictions/submission.csv"}
    assert not list(out.parent.glob(".*.tmp"))


def test_export_best_takes_a_test_file_argument(searched: Searched, tmp_path: Path) -> None:
    other = tmp_path / "other.tsv"
    labels = unlabelled_test_file(other, docs=12, seed=5)
    out = tmp_path / "other.csv"
    result = export.export_best(study_name="tiny", storage=searched.storage,
                                tracking_uri=searched.tracking_uri, test=other, out=out,
                                device="cpu")
    assert result.rows == 12
    assert len(pd.read_csv(out)) == len(labels)


def study_without_complete_trial(storage: str, name: str) -> None:
    """A study whose only trial was pruned (made through the Optuna API)."""
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize",
                                load_if_exists=True)
    if not study.trials:
        study.add_trial(optuna.trial.create_trial(
            state=TrialState.PRUNED, params={"lr": 1e-3},
            distributions={"lr": optuna.distributions.FloatDistribution(1e-4, 3e-2, log=True)},
            intermediate_values={1: 0.1}))


@pytest.mark.parametrize(("case", "error", "message"), [
    ("no complete trial", SearchError, "has no complete trial"),
    ("no such study", SearchError, "no study named 'nope'"),
    ("missing test file", DataError, "no such file"),
])
def test_export_best_errors_leave_no_file(searched: Searched, tmp_path: Path, case: str,
                                          error: type[Exception], message: str) -> None:
    study_without_complete_trial(searched.storage, "all-pruned")
    kwargs: dict[str, Any] = {"study_name": "tiny"}
    if case == "no complete trial":
        kwargs["study_name"] = "all-pruned"
    elif case == "no such study":
        kwargs["study_name"] = "nope"
    else:
        kwargs["test"] = tmp_path / "missing.tsv"
    out = tmp_path / "submission.csv"
    with pytest.raises(error, match=message) as raised:
        export.export_best(storage=searched.storage, tracking_uri=searched.tracking_uri,
                           out=out, device="cpu", **kwargs)
    assert "\n" not in str(raised.value)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------- the parent's best


def test_parent_run_follows_a_new_best(searched: Searched) -> None:
    """A continued session that finds a better trial updates the parent's best."""
    path = study_toml(searched.root / "moving.toml", name="moving", train="train.tsv",
                      trials=1, reference=SLOW)
    spec = load_study_file(path)
    options = RunOptions(storage=searched.storage, tracking_uri=searched.tracking_uri,
                         device="cpu")
    common = dict(work_dir=searched.root / "work")
    first = run_study(spec, options, **common)
    assert first.best_trial == 0
    # The next session starts with a configuration known to beat the slow reference.
    optuna.load_study(study_name="moving", storage=searched.storage).enqueue_trial(STRONG)
    second = run_study(spec, options, trials=1, **common)
    assert second.best_trial == 1
    parent = searched.client.get_run(second.parent_run_id)
    assert parent.data.metrics["best_dev_macro_f1"] == pytest.approx(second.best_value)
    assert second.not_logged == []
    assert parent.data.tags["best.trial"] == "1"
    for key, value in STRONG.items():
        assert parent.data.tags[f"best.{key}"] == str(value)


# ------------------------------------------------------------------- storage


def test_open_storage_with_heartbeats_warns_nothing(tmp_path: Path) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        storage = open_storage(f"sqlite:///{tmp_path}/optuna.db", heartbeat_s=10)
    assert isinstance(storage, optuna.storages.RDBStorage)
    assert [str(w.message) for w in caught
            if issubclass(w.category, FutureWarning | DeprecationWarning)] == []


def test_a_study_plot_of_many_trials_warns_nothing_into_the_output() -> None:
    # 60 trials: the intermediate values' legend outgrows the figure, and matplotlib's
    # "Tight layout not applied" warning used to land among the run's progress lines.
    import matplotlib.pyplot
    from optuna.visualization import matplotlib as optuna_plots

    from search.views.figures import study_plot

    study = optuna.create_study(direction="maximize")
    for number in range(60):
        trial = study.ask()
        trial.suggest_float("x", 0.0, 1.0)
        for step in range(3):
            trial.report(number / 100 + step, step)
        study.tell(trial, 1.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        figure = study_plot(optuna_plots.plot_intermediate_values, study)
    assert figure is not None
    matplotlib.pyplot.close(figure)
    assert [str(w.message) for w in caught] == []
