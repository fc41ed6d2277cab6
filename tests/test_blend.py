"""export-best --blend: the best HAN averaged with the study's linear baseline, the weight
chosen on held-out documents. The weight and temperature on constructed probabilities; then
a one-trial study through the CLI (real Optuna and MLflow on SQLite), exported blended on
its dev fold and out of fold, checked against the probabilities its runs keep."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
from click.testing import Result
from mlflow import MlflowClient
from mlflow.entities import Run

from han import blend
from han.baseline import split_docs
from han.blend import BlendChoice
from han.config import DataConfig
from han.io import read_corpus
from search.cli.console import on_dev_text
from search.records import BaselineRecord
from search.session import baseline as study_baseline
from search.stores.dev_outputs import TRIAL_ARTIFACT, compare_on_dev
from search.stores.tracking import Tracker
from tests.conftest import easy_corpus
from tests.test_cli import assert_user_error, invoke
from tests.test_search import FIXED, STRONG, study_toml, unlabelled_test_file

TRAIN_DOCS = 180
TEST_DOCS = 60
FOLDS = 2


# ------------------------------------------------------------------ the weight, the temperature


def drawn_from(probabilities: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A class for each row, drawn from that row's probabilities."""
    return (probabilities.cumsum(1) > rng.random((len(probabilities), 1))).argmax(1)


def test_the_weight_is_the_mixture_that_drew_the_labels() -> None:
    """Labels drawn from 0.3 x one model's probabilities + 0.7 x the other's: the weight
    chosen on them is 0.3, and the blend beats both models' macro-F1."""
    rng = np.random.default_rng(0)
    han, base = rng.dirichlet(np.ones(4) * 0.5, size=(2, 20_000))
    labels = drawn_from(0.3 * han + 0.7 * base, rng)
    choice = blend.choose_weight(han, base, labels)
    assert choice.weight == 0.3
    assert choice.blend_f1 > max(choice.han_f1, choice.baseline_f1)
    assert choice.best == "blend" and choice.documents == 20_000
    # Labels drawn from one model alone: that model, unblended.
    assert blend.choose_weight(han, base, drawn_from(base, rng)).weight == 0.0
    assert blend.choose_weight(han, base, drawn_from(han, rng)).weight == 1.0


def test_a_model_that_learned_nothing_gets_no_weight() -> None:
    """The HAN's probabilities the same for every document (R8's first trials): the blend is
    the baseline alone, whose probabilities drew the labels."""
    rng = np.random.default_rng(1)
    base = rng.dirichlet(np.ones(8) * 0.3, size=5_000)
    labels = drawn_from(base, rng)
    prior = np.tile(np.bincount(labels, minlength=8) / len(labels), (len(labels), 1))
    choice = blend.choose_weight(prior, base, labels)
    assert choice.weight == 0.0
    assert choice.blend_f1 == choice.baseline_f1 and choice.best == "baseline"


def test_a_weight_that_costs_macro_f1_gives_way_to_the_better_model() -> None:
    """A HAN right on every document but unsure (0.55), a baseline right (0.9) but for a
    fifth of them, where it is surely wrong (0.02): the least log-loss lies near w = 0.5,
    where the baseline's mistakes still win, below the HAN's macro-F1 of 1; the HAN alone is
    taken."""
    labels = np.tile([0, 1], 50)

    def giving_the_true_class(true: np.ndarray) -> np.ndarray:
        return np.where(labels[:, None] == np.arange(2), true[:, None], 1 - true[:, None])

    han = giving_the_true_class(np.full(100, 0.55))
    base = giving_the_true_class(np.where(np.arange(100) % 5 == 0, 0.02, 0.9))
    losses = [blend.mean_log_loss(blend.blended(han, base, w), labels) for w in blend.WEIGHTS]
    inside = blend.WEIGHTS[int(np.argmin(losses))]
    assert 0.4 <= inside <= 0.6
    assert blend.macro_f1(labels, blend.blended(han, base, inside)) < 1.0
    choice = blend.choose_weight(han, base, labels)
    assert choice.weight == 1.0 and choice.blend_f1 == choice.han_f1 == 1.0
    assert choice.best == "HAN"


def test_the_temperature_fitted_by_log_loss_recovers_the_one_that_drew_the_labels() -> None:
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(20_000, 4))
    drawn = blend.probabilities(scores, 0.5)
    labels = (drawn.cumsum(1) > rng.random((len(scores), 1))).argmax(1)
    fitted = blend.fit_temperature(scores, labels)
    assert fitted == pytest.approx(0.5, rel=0.05)
    # A class the classifier never saw (-inf) gets probability 0, the argmax is kept.
    scores[:, 3] = -np.inf
    probabilities = blend.probabilities(scores, fitted)
    assert (probabilities[:, 3] == 0).all()
    np.testing.assert_array_equal(probabilities.argmax(1), scores.argmax(1))


def test_the_summary_says_which_is_best_and_how_to_export_it() -> None:
    def choice(han: float, baseline: float, blended: float) -> BlendChoice:
        return BlendChoice(weight=0.35, han_f1=han, baseline_f1=baseline, blend_f1=blended,
                           documents=10)

    figures = "HAN 0.6000, baseline 0.9000, blend 0.9200 (HAN weight 0.35)"
    assert on_dev_text(choice(0.6, 0.9, 0.92), "news") == (
        f"{figures}: the blend is best; han-search export-best --study news --blend "
        "submits it")
    assert on_dev_text(choice(0.6, 0.9, 0.9), "news").endswith(
        "the baseline is best; han-search export-best --study news --blend submits a blend "
        "level with it")
    assert on_dev_text(choice(0.9, 0.6, 0.9), "news").endswith(
        "the HAN is best; han-search export-best --study news submits it")


# --------------------------------------------------------------------- a study, blended


@dataclass
class Blended:
    root: Path
    storage: str
    tracking_uri: str
    run: Result
    single: Result
    folds: Result
    plain: Result
    test_labels: np.ndarray

    @property
    def client(self) -> MlflowClient:
        return MlflowClient(tracking_uri=self.tracking_uri)

    def study(self, name: str = "blend") -> optuna.Study:
        return optuna.load_study(study_name=name, storage=self.storage)

    def runs(self, role: str, study: str = "blend") -> list[Run]:
        experiment = self.client.get_experiment_by_name(study)
        assert experiment is not None
        return self.client.search_runs([experiment.experiment_id],
                                       filter_string=f"tags.`han.role` = '{role}'",
                                       order_by=["attributes.start_time ASC"])

    def blend_run(self, folds: int | None) -> Run:
        wanted = "none (the dev fold)" if folds is None else str(folds)
        return next(run for run in self.runs("blend") if run.data.params["folds"] == wanted)

    def logged(self, run: Run) -> dict[str, np.ndarray]:
        path = self.client.download_artifacts(run.info.run_id, "blend/probabilities.npz",
                                              str(self.root))
        with np.load(path) as saved:
            return dict(saved)

    def args(self, *more: str | Path) -> tuple[str | Path, ...]:
        return ("--storage", self.storage, "--tracking-uri", self.tracking_uri, "--device",
                "cpu", *more)


@pytest.fixture(scope="module")
def blended(tmp_path_factory: pytest.TempPathFactory) -> Blended:
    root = tmp_path_factory.mktemp("blend")
    easy_corpus(root / "train.tsv", docs=TRAIN_DOCS)
    test_labels = unlabelled_test_file(root / "test.tsv", docs=TEST_DOCS, seed=7)
    config = study_toml(root / "study.toml", name="blend", train="train.tsv", test="test.tsv",
                        trials=1, reference=STRONG)
    storage, tracking_uri = f"sqlite:///{root}/optuna.db", f"sqlite:///{root}/mlflow.db"
    stores = ("--storage", storage, "--tracking-uri", tracking_uri, "--device", "cpu")
    run = invoke("run", "--config", config, *stores, "--work-dir", root / "work")
    single = invoke("export-best", "--study", "blend", *stores, "--blend", "--out",
                    root / "blend.csv")
    folds = invoke("export-best", "--study", "blend", *stores, "--blend", "--folds",
                   str(FOLDS), "--out", root / "blend-folds.csv")
    plain = invoke("export-best", "--study", "blend", *stores, "--out", root / "han.csv")
    return Blended(root=root, storage=storage, tracking_uri=tracking_uri, run=run,
                   single=single, folds=folds, plain=plain, test_labels=test_labels)


def test_the_blended_submission_is_the_argmax_of_the_weighted_probabilities(
        blended: Blended) -> None:
    assert blended.single.exit_code == 0, blended.single.output
    print(blended.single.output)
    run = blended.blend_run(None)
    logged = blended.logged(run)
    weight = float(logged["weight"])
    expected = (weight * logged["test_han"] + (1 - weight) * logged["test_baseline"]).argmax(1)
    submitted = pd.read_csv(blended.root / "blend.csv")
    assert list(submitted.columns) == ["label"] and len(submitted) == TEST_DOCS
    np.testing.assert_array_equal(submitted["label"].to_numpy(), expected)
    # The HAN's share is the plain export's model: its test labels, its dev probabilities
    # as the trial's run kept them when it ended, on the trial's dev fold.
    assert blended.plain.exit_code == 0, blended.plain.output
    np.testing.assert_array_equal(pd.read_csv(blended.root / "han.csv")["label"].to_numpy(),
                                  logged["test_han"].argmax(1))
    best = blended.study().best_trial
    kept = np.load(blended.client.download_artifacts(
        best.user_attrs["mlflow_run_id"], TRIAL_ARTIFACT, str(blended.root)))
    np.testing.assert_array_equal(kept["values"], logged["held_out_han"])
    corpus = read_corpus(blended.root / "train.tsv", labelled=True)
    dev = split_docs(corpus.labels, DataConfig(folds=FIXED["folds"]))[1]
    np.testing.assert_array_equal(logged["held_out_docs"], dev)
    np.testing.assert_array_equal(kept["docs"], dev)
    # The weight, chosen on the dev fold from the logged probabilities, and the figures.
    choice = blend.choose_weight(logged["held_out_han"], logged["held_out_baseline"],
                                 logged["held_out_labels"])
    metrics = run.data.metrics
    assert metrics["blend_weight"] == pytest.approx(choice.weight) == pytest.approx(weight)
    assert metrics["han_dev_macro_f1"] == pytest.approx(best.value)
    baseline = BaselineRecord.of(blended.study())
    assert baseline is not None
    # Refitted on the same training folds, the baseline scores what the study recorded.
    assert metrics["baseline_dev_macro_f1"] == pytest.approx(baseline.dev_macro_f1)
    assert metrics["blend_dev_macro_f1"] >= max(best.value, baseline.dev_macro_f1)
    assert (f"blend weight {weight:.2f} on the HAN ({1 - weight:.2f} on the baseline); dev "
            f"macro-F1 on {len(dev)} documents: HAN {choice.han_f1:.4f}, baseline "
            f"{choice.baseline_f1:.4f}, blend {choice.blend_f1:.4f}") in blended.single.output
    assert run.data.tags["mlflow.parentRunId"] == blended.runs("study")[0].info.run_id
    artifacts = {a.path for a in blended.client.list_artifacts(run.info.run_id, "predictions")}
    assert artifacts == {"predictions/blend.csv"}


def test_the_run_summary_says_what_the_export_then_finds(blended: Blended) -> None:
    assert blended.run.exit_code == 0, blended.run.output
    line = next(line for line in blended.run.output.splitlines()
                if line.startswith("on dev "))
    print(line)
    metrics = blended.blend_run(None).data.metrics
    assert line.startswith(
        f"on dev         HAN {metrics['han_dev_macro_f1']:.4f}, baseline "
        f"{metrics['baseline_dev_macro_f1']:.4f}, blend {metrics['blend_dev_macro_f1']:.4f} "
        f"(HAN weight {metrics['blend_weight']:.2f}): the ")
    assert "han-search export-best --study blend" in line


def test_out_of_fold_blend_covers_every_training_document(blended: Blended) -> None:
    assert blended.folds.exit_code == 0, blended.folds.output
    print(blended.folds.output)
    run = blended.blend_run(FOLDS)
    logged = blended.logged(run)
    weight = float(logged["weight"])
    expected = (weight * logged["test_han"] + (1 - weight) * logged["test_baseline"]).argmax(1)
    submitted = pd.read_csv(blended.root / "blend-folds.csv")["label"].to_numpy()
    np.testing.assert_array_equal(submitted, expected)
    assert sorted(logged["held_out_docs"].tolist()) == list(range(TRAIN_DOCS))
    refit = blended.runs("refit")[0]
    metrics = run.data.metrics
    assert metrics["han_oof_macro_f1"] == pytest.approx(refit.data.metrics["oof_macro_f1"])
    assert metrics["blend_oof_macro_f1"] >= max(metrics["han_oof_macro_f1"],
                                                metrics["baseline_oof_macro_f1"])
    assert run.info.run_name == f"blend-trial-0-{FOLDS}-folds"
    assert f"out-of-fold ({FOLDS} folds) macro-F1 on {TRAIN_DOCS} documents" in (
        blended.folds.output)
    assert blended.folds.output.count("baseline ") >= FOLDS  # one line per fold baseline


def test_blend_with_register_is_refused(blended: Blended) -> None:
    out = blended.root / "registered.csv"
    result = invoke("export-best", "--study", "blend", *blended.args("--blend", "--register",
                                                                     "champion", "--out", out))
    assert_user_error(result, "--register", "--blend")
    assert not out.exists()


def test_a_study_without_baseline_is_a_one_line_error(
        blended: Blended, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, extra in (("off", "baseline = false"), ("failing", "")):
        config = study_toml(blended.root / f"{name}.toml", name=name, train="train.tsv",
                            test="test.tsv", trials=1, reference=STRONG, extra_study=extra)
        if name == "failing":
            def refused(*_args: object, **_kwargs: object) -> None:
                raise ValueError("scikit-learn refused the corpus")

            monkeypatch.setattr(study_baseline, "train_baseline", refused)
        ran = invoke("run", "--config", config, *blended.args("--work-dir",
                                                              blended.root / "work"))
        assert ran.exit_code == 0, ran.output
        assert "on dev " not in ran.output  # nothing to compare: no line
    out = blended.root / "none.csv"
    off = invoke("export-best", "--study", "off", *blended.args("--blend", "--out", out))
    assert_user_error(off, "study 'off' has no baseline to blend with: its study file turns "
                      f"it off ([study] baseline = false in {blended.root / 'off.toml'})")
    failed = invoke("export-best", "--study", "failing", *blended.args("--blend", "--out", out))
    assert_user_error(failed, "study 'failing' has no baseline to blend with: it failed "
                      "(ValueError: scikit-learn refused the corpus)")
    assert not out.exists()
    assert blended.runs("blend", "off") == blended.runs("blend", "failing") == []


def test_a_trial_from_before_dev_outputs_were_kept_is_predicted_again(
        blended: Blended) -> None:
    """Runs last (it deletes the trial's kept dev outputs): the summary's comparison is
    quietly left out, and the export predicts the dev fold from the checkpoint, with the
    same probabilities to float precision, so the same weight and submission."""
    study = blended.study()
    run_id = study.best_trial.user_attrs["mlflow_run_id"]
    artifacts = Path(blended.client.get_run(run_id).info.artifact_uri.removeprefix("file://"))
    (artifacts / TRIAL_ARTIFACT).unlink()
    assert compare_on_dev(study, Tracker(tracking_uri=blended.tracking_uri)) is None
    out = blended.root / "again.csv"
    result = invoke("export-best", "--study", "blend", *blended.args("--blend", "--out", out))
    assert result.exit_code == 0, result.output
    first, again = blended.runs("blend")[0], blended.runs("blend")[-1]
    assert again.info.run_id != first.info.run_id
    np.testing.assert_allclose(blended.logged(again)["held_out_han"],
                               blended.logged(first)["held_out_han"], atol=1e-5)
    assert again.data.metrics["blend_weight"] == first.data.metrics["blend_weight"]
    pd.testing.assert_frame_equal(pd.read_csv(out), pd.read_csv(blended.root / "blend.csv"))
