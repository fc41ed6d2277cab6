"""MLflow as the place to compare: a finished study (Optuna and MLflow on SQLite) seen through a
real `mlflow server` in headless Chromium, and its best model loaded back from the Model
Registry with `mlflow.pyfunc.load_model("models:/NAME@champion")`.

The browser test drives Debian's Chromium through Playwright, as tests/test_report.py does, and
skips without them unless HAN_REQUIRE_BROWSER=1. Screenshots are saved beside the study (or in
HAN_SCREENSHOTS) and their paths printed.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import signal
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import optuna
import pandas as pd
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from search.errors import StudyFileError
from search.export.registry import CHAMPION
from search.records import TRAINING_EXPERIMENT_KIND, Tag
from search.session.run import run_study
from search.setup.options import RunOptions
from search.stores.tracking import Tracker, runs_view_url
from search.studyfile import load_study_file
from search.views.summary import RunSummary
from tests.conftest import easy_corpus
from tests.helpers import child_env, free_port, mlflow_server
from tests.test_cli import invoke
from tests.test_report import CHROMIUM, CHROMIUM_ARGS, _require_browser
from tests.test_search import STRONG, study_toml, unlabelled_test_file

STUDY = "browsed"
MODEL = "han-browsed"
REPOSITORY = Path(__file__).resolve().parents[1]


@dataclass
class Finished:
    root: Path
    storage: str
    tracking_uri: str
    summary: RunSummary

    @property
    def client(self) -> MlflowClient:
        return MlflowClient(tracking_uri=self.tracking_uri)

    def study(self) -> optuna.Study:
        return optuna.load_study(study_name=STUDY, storage=self.storage)

    def experiment_id(self) -> str:
        experiment = self.client.get_experiment_by_name(STUDY)
        assert experiment is not None
        return experiment.experiment_id

    def trial_run(self, number: int) -> mlflow.entities.Run:
        trial = self.study().trials[number]
        return self.client.get_run(trial.user_attrs["mlflow_run_id"])


def with_export_table(path: Path, model: str) -> Path:
    path.write_text(path.read_text(encoding="utf-8")
                    + f'\n[export]\nregistered_model = "{model}"\n', encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Finished:
    """Three trials on the easy corpus (the reference completes); the study file registers
    the best model at the end of the run."""
    root = tmp_path_factory.mktemp("mlflow-ui")
    easy_corpus(root / "train.tsv", docs=120)
    unlabelled_test_file(root / "test.tsv")
    spec = with_export_table(study_toml(root / "study.toml", name=STUDY, train="train.tsv",
                                        test="test.tsv", trials=3, reference=STRONG), MODEL)
    storage, tracking_uri = f"sqlite:///{root}/mlflow-optuna.db", f"sqlite:///{root}/mlflow.db"
    summary = run_study(load_study_file(spec),
                        RunOptions(storage=storage, tracking_uri=tracking_uri, device="cpu"),
                        work_dir=root / "work")
    return Finished(root=root, storage=storage, tracking_uri=tracking_uri, summary=summary)


def test_the_experiment_is_a_model_training_experiment(finished: Finished) -> None:
    tags = finished.client.get_experiment(finished.experiment_id()).tags
    assert tags[Tag.EXPERIMENT_KIND] == TRAINING_EXPERIMENT_KIND == "custom_model_development"
    assert tags[Tag.PRIMARY_METRIC] == "dev_macro_f1"
    assert finished.summary.runs_view == (
        f"http://127.0.0.1:5000/#/experiments/{finished.experiment_id()}/runs"
        "?workflowType=machine_learning")


def test_an_experiment_made_elsewhere_gets_the_kind_but_keeps_a_chosen_one(
        tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(tracking_uri=uri)
    bare = client.create_experiment("bare")
    chosen = client.create_experiment("chosen", tags={Tag.EXPERIMENT_KIND: "genai_development"})
    tracker = Tracker(tracking_uri=uri)
    assert tracker.experiment_id("bare") == bare and tracker.experiment_id("chosen") == chosen
    assert client.get_experiment(bare).tags[Tag.EXPERIMENT_KIND] == TRAINING_EXPERIMENT_KIND
    assert client.get_experiment(chosen).tags[Tag.EXPERIMENT_KIND] == "genai_development"


def test_trial_runs_log_their_training_and_dev_data_as_dataset_inputs(
        finished: Finished) -> None:
    run = finished.trial_run(0)
    inputs = {next(t.value for t in i.tags if t.key == "mlflow.data.context"): i.dataset
              for i in run.inputs.dataset_inputs}
    assert set(inputs) == {"training", "validation"}
    training, dev = inputs["training"], inputs["validation"]
    assert training.name == "train.tsv"
    assert training.digest == run.data.tags["data.sha256"]  # the content hash
    assert json.loads(training.source) == {"uri": (finished.root / "train.tsv").as_uri()}
    assert json.loads(training.profile) == {"documents": 120, "classes": 4, "tokens": "ids",
                                            "text_column": "text"}
    assert dev.name == "train.tsv dev fold 1 of 4"
    assert json.loads(dev.profile)["documents"] == 30  # the dev fold of 4
    parent = finished.client.get_run(run.data.tags[Tag.PARENT])
    assert [i.dataset.digest for i in parent.inputs.dataset_inputs] == [training.digest]


def test_runs_carry_the_code_that_made_them(finished: Finished) -> None:
    run = finished.trial_run(0)
    parent = finished.client.get_run(run.data.tags[Tag.PARENT])
    version = importlib.metadata.version("han-search")
    for tags in (run.data.tags, parent.data.tags):
        assert tags["mlflow.source.name"] == f"han-search {version}"
        assert tags["mlflow.source.type"] == "LOCAL"
    if (REPOSITORY / ".git").exists():
        head = subprocess.run(["git", "-C", str(REPOSITORY), "rev-parse", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        assert run.data.tags["mlflow.source.git.commit"] == head
        assert parent.data.tags["mlflow.source.git.commit"] == head


def test_the_parent_run_logs_the_optimization_history(finished: Finished) -> None:
    study = finished.study()
    parent_id = finished.trial_run(0).data.tags[Tag.PARENT]
    history = {key: [(m.step, m.value) for m in sorted(
        finished.client.get_metric_history(parent_id, key), key=lambda m: m.step)]
        for key in ("trial_dev_macro_f1", "best_dev_macro_f1", "trials_complete",
                    "trials_pruned", "trials_failed")}
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert history["trial_dev_macro_f1"] == [(t.number, pytest.approx(t.value))
                                             for t in complete]
    assert [step for step, _ in history["best_dev_macro_f1"]] == [t.number
                                                                  for t in study.trials]
    assert [value for _, value in history["best_dev_macro_f1"]] == pytest.approx(
        np.maximum.accumulate([t.value if t.value is not None else 0.0
                               for t in study.trials]).tolist())
    states = [t.state for t in study.trials]
    assert history["trials_complete"][-1][1] == states.count(TrialState.COMPLETE)
    assert history["trials_pruned"][-1][1] == states.count(TrialState.PRUNED)
    assert history["trials_failed"][-1][1] == 0


def test_the_study_file_registers_the_best_model_at_the_end_of_the_run(
        finished: Finished) -> None:
    registered = finished.summary.registered
    assert registered is not None and finished.summary.register_warning is None
    assert (registered.name, registered.version, registered.alias) == (MODEL, "1", CHAMPION)
    assert registered.run_id == finished.trial_run(finished.study().best_trial.number).info.run_id


# ------------------------------------------------------------------- the registered model


def test_the_registered_model_predicts_what_export_best_writes(
        finished: Finished, monkeypatch: pytest.MonkeyPatch) -> None:
    out = finished.root / "submission.csv"
    result = invoke("export-best", "--study", STUDY, "--storage", finished.storage,
                    "--tracking-uri", finished.tracking_uri, "--out", out, "--device", "cpu",
                    "--register", MODEL)
    assert result.exit_code == 0, result.output
    assert f"registered {MODEL} version 2 (models:/{MODEL}@champion" in result.stdout
    version = finished.client.get_model_version_by_alias(MODEL, CHAMPION)
    assert str(version.version) == "2"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", finished.tracking_uri)
    model = mlflow.pyfunc.load_model(f"models:/{MODEL}@champion")
    texts = pd.read_csv(finished.root / "test.tsv", sep="\t", dtype=str)
    predicted = model.predict(texts)
    assert predicted["label"].tolist() == pd.read_csv(out)["label"].tolist()
    _assert_no_pickle(Path(mlflow.artifacts.download_artifacts(
        f"models:/{MODEL}@champion", dst_path=str(finished.root / "downloaded"))))


@pytest.mark.slow
def test_the_champion_served_over_rest_returns_what_export_best_writes(
        finished: Finished) -> None:
    """`mlflow models serve` on the registered champion (--env-manager local: this
    environment), asked over HTTP as docs/mlflow.md shows: the same labels, in the same
    order, as export-best's submission for the same rows."""
    out = finished.root / "served-submission.csv"
    exported = invoke("export-best", "--study", STUDY, "--storage", finished.storage,
                      "--tracking-uri", finished.tracking_uri, "--out", out,
                      "--device", "cpu")
    assert exported.exit_code == 0, exported.output
    port = free_port()
    log = finished.root / "serve.log"
    with log.open("wb") as sink:
        server = subprocess.Popen(
            ["mlflow", "models", "serve", "-m", f"models:/{MODEL}@{CHAMPION}",
             "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)],
            env=child_env(MLFLOW_TRACKING_URI=finished.tracking_uri), stdout=sink,
            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        texts = pd.read_csv(finished.root / "test.tsv", sep="\t", dtype=str)
        body = json.dumps({"dataframe_split": {"columns": ["text"],
                                               "data": [[t] for t in texts["text"]]}})
        deadline = time.monotonic() + 120
        while True:
            try:
                request = urllib.request.Request(
                    f"http://127.0.0.1:{port}/invocations", data=body.encode(),
                    headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(request, timeout=30) as response:
                    answer = json.loads(response.read())
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("mlflow models serve did not answer:\n"
                                + log.read_text(errors="replace")[-3000:])
                time.sleep(0.5)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    served = [row["label"] for row in answer["predictions"]]
    assert served == pd.read_csv(out)["label"].tolist()


def _assert_no_pickle(model_dir: Path) -> None:
    """Built from code, its checkpoints artifacts: nothing in it is unpickled to load it."""
    files = {path.relative_to(model_dir).as_posix() for path in model_dir.rglob("*")
             if path.is_file()}
    assert not [name for name in files if name.endswith((".pkl", ".pickle", ".cloudpickle"))]
    assert "pyfunc_model.py" in files and "code/han/predict.py" in files
    assert any(name.endswith(".pt") for name in files)
    mlmodel = (model_dir / "MLmodel").read_text(encoding="utf-8")
    assert "loader_module: mlflow.pyfunc.loaders.code_model" in mlmodel
    assert "python_model:" not in mlmodel  # the key a pickled model would have


WORD_CLASSES = ("sport", "tech", "money", "film")


def words_news(path: Path, *, docs: int, seed: int, labelled: bool = True) -> None:
    """Comma-separated raw words with class names as labels; texts hold commas and quotes."""
    rng = np.random.default_rng(seed)
    rows = []
    for index in range(docs):
        label = index % len(WORD_CLASSES)
        own = [f"{WORD_CLASSES[label]}{k}" for k in range(10)]
        shared = [f"w{k}" for k in range(60)]
        words = [str(rng.choice(own)) if rng.random() < 0.7 else str(rng.choice(shared))
                 for _ in range(int(rng.integers(15, 60)))]
        words[0] += ","
        words[-1] = f'"{words[-1]}"'
        rows.append((WORD_CLASSES[label], " ".join(words)))
    frame = pd.DataFrame(rows, columns=["category", "content"])
    (frame if labelled else frame[["content"]]).to_csv(path, index=False)


def test_the_registered_ensemble_of_a_words_study_predicts_the_refit_labels(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    words_news(tmp_path / "news.csv", docs=96, seed=0)
    words_news(tmp_path / "news-test.csv", docs=24, seed=1, labelled=False)
    config = study_toml(tmp_path / "study.toml", name="words", train="news.csv",
                        test="news-test.csv", trials=1, reference=STRONG)
    stores = ["--storage", f"sqlite:///{tmp_path}/optuna.db",
              "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"]
    read_as = ["--sep", ",", "--text-col", "content", "--label-col", "category",
               "--tokens", "words"]
    run = invoke("run", "--config", config, *stores, "--device", "cpu", "--work-dir",
                 tmp_path / "work", *read_as)
    assert run.exit_code == 0, run.output
    out = tmp_path / "refit.csv"
    refit = invoke("export-best", "--study", "words", *stores, "--device", "cpu", "--out", out,
                   "--folds", "2", "--register", "words-ensemble")
    assert refit.exit_code == 0, refit.output
    monkeypatch.setenv("MLFLOW_TRACKING_URI", stores[3])
    model = mlflow.pyfunc.load_model("models:/words-ensemble@champion")
    predicted = model.predict(pd.read_csv(tmp_path / "news-test.csv", dtype=str))
    expected = pd.read_csv(out, dtype=str)["category"].tolist()
    assert predicted["category"].tolist() == expected
    assert set(expected) <= set(WORD_CLASSES)
    version = MlflowClient(tracking_uri=stores[3]).get_model_version_by_alias(
        "words-ensemble", CHAMPION)
    run_name = MlflowClient(tracking_uri=stores[3]).get_run(version.run_id).info.run_name
    assert run_name.startswith("refit-trial-")  # the ensemble, logged on the refit run


def test_a_bad_model_name_is_refused_before_any_work(finished: Finished) -> None:
    result = invoke("export-best", "--study", STUDY, "--storage", finished.storage,
                    "--tracking-uri", finished.tracking_uri, "--register", "no spaces")
    assert result.exit_code == 2
    assert result.stderr.strip().startswith("error: --register 'no spaces'")


# ------------------------------------------------------------------- in the browser


@dataclass
class Seen:
    runs_url: str = ""
    runs_text: str = ""
    trial_text: str = ""
    screenshots: tuple[Path, ...] = ()


@pytest.fixture(scope="module")
def seen(finished: Finished) -> Seen:
    """The experiment, a trial run, the parent's charts and the registered model, as a user
    opens them in the UI of a real `mlflow server` over the study's store."""
    _require_browser()
    from playwright.sync_api import sync_playwright

    experiment_id = finished.experiment_id()
    # The best trial: the run the registered model came from.
    trial = finished.trial_run(finished.study().best_trial.number)
    parent_id = trial.data.tags[Tag.PARENT]
    # HAN_SCREENSHOTS keeps them where pytest's rotation of old temporary folders cannot.
    folder = Path(os.environ.get("HAN_SCREENSHOTS") or finished.root)
    folder.mkdir(parents=True, exist_ok=True)
    shots = [folder / f"mlflow-{name}.png" for name in ("runs", "trial", "parent", "registry")]
    result = Seen(screenshots=tuple(shots))
    with mlflow_server(finished.root) as uri, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 900})
            ml = "?workflowType=machine_learning"
            # The link `han-search run` prints, on this server.
            page.goto(runs_view_url(uri, experiment_id), wait_until="load")
            page.get_by_text(f"study:{STUDY}", exact=True).wait_for(timeout=60_000)
            # The parent run's row holds its trials, collapsed: open it as a user would.
            page.locator("[role=row]", has_text=f"study:{STUDY}").locator(
                "button[data-component-id*='runnamecellrenderer']").first.click()
            page.get_by_text("trial-0", exact=True).wait_for(timeout=30_000)
            _close_assistant(page)
            result.runs_url, result.runs_text = page.url, page.inner_text("body")
            page.screenshot(path=str(shots[0]))
            page.goto(f"{uri}/#/experiments/{experiment_id}/runs/{trial.info.run_id}{ml}",
                      wait_until="load")
            page.get_by_text("Datasets", exact=True).wait_for(timeout=30_000)
            # The second input, in a popover (the first "+1": the registered models have one too).
            page.get_by_text("+1", exact=True).first.click()
            page.get_by_text("dev fold 1 of 4 (").wait_for(timeout=10_000)
            page.get_by_role("link", name=f"study:{STUDY}").first.wait_for(timeout=10_000)
            result.trial_text = page.inner_text("body")
            page.screenshot(path=str(shots[1]), full_page=True)
            page.goto(f"{uri}/#/experiments/{experiment_id}/runs/{parent_id}/model-metrics{ml}",
                      wait_until="load")
            page.get_by_text("best_dev_macro_f1").first.wait_for(timeout=30_000)
            page.wait_for_timeout(2_000)  # the charts draw after their data arrives
            page.screenshot(path=str(shots[2]), full_page=True)
            page.goto(f"{uri}/#/models/{MODEL}{ml}", wait_until="load")
            page.get_by_text(CHAMPION).first.wait_for(timeout=30_000)
            page.screenshot(path=str(shots[3]), full_page=True)
        finally:
            browser.close()
    for shot in shots:
        print(f"MLflow UI screenshot: {shot}")
    return result


def _close_assistant(page: object) -> None:
    """The assistant side panel would cover the table's right-hand columns."""
    close = page.get_by_role("button", name="Close")  # type: ignore[attr-defined]
    if close.count():
        close.first.click()


def test_the_experiment_opens_on_the_runs_table_with_the_parent_and_its_trials(
        finished: Finished, seen: Seen) -> None:
    assert "/runs" in seen.runs_url and "/overview" not in seen.runs_url
    assert "Token Usage" not in seen.runs_text  # the GenAI overview's panels
    for number in range(len(finished.study().trials)):
        assert f"trial-{number}" in seen.runs_text
    assert "train.tsv" in seen.runs_text  # the Dataset column
    assert "han-search " in seen.runs_text  # the Source column
    assert all(shot.stat().st_size > 0 for shot in seen.screenshots)


def test_a_trial_run_page_lists_its_dataset_inputs(seen: Seen) -> None:
    assert "train.tsv" in seen.trial_text and "Training" in seen.trial_text
    assert "train.tsv dev fold 1 of 4" in seen.trial_text and "Validation" in seen.trial_text
    assert MODEL in seen.trial_text  # the registered model it became


def test_a_study_file_with_a_bad_model_name_is_refused(tmp_path: Path) -> None:
    easy_corpus(tmp_path / "train.tsv", docs=8)
    spec = with_export_table(study_toml(tmp_path / "study.toml", name="bad", train="train.tsv",
                                        reference=STRONG), "no spaces")
    with pytest.raises(StudyFileError, match=r"\[export\] registered_model: 'no spaces'"):
        load_study_file(spec)
    assert load_study_file(with_export_table(
        study_toml(tmp_path / "good.toml", name="good", train="train.tsv", reference=STRONG),
        "han.good-1")).register == "han.good-1"
