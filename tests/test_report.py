"""The study report: a real study (Optuna and MLflow on SQLite), `han-search report` through
the CLI, the page rendered in headless Chromium, and pure renders of edge cases.

The browser test drives Debian's Chromium through Playwright (no browser download). It
skips when either is missing, unless HAN_REQUIRE_BROWSER=1 (CI), where it fails instead.
"""

from __future__ import annotations

import importlib.util
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import optuna
import pytest
from matplotlib.colors import to_rgb
from mlflow import MlflowClient
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import FrozenTrial, TrialState
from sklearn.metrics import confusion_matrix, f1_score
from typer.testing import Result

from search.records import BaselineRecord
from search.session.run import run_study
from search.setup.options import RunOptions
from search.studyfile import load_study_file
from search.views.html_report import pruning_savings, render_report
from search.views.report_charts import PALETTE
from search.views.summary import versus_baseline
from tests.conftest import easy_corpus
from tests.helpers import free_port
from tests.test_cli import assert_user_error, files_under, invoke
from tests.test_search import STRONG, study_toml, study_without_complete_trial

STUDY = "reported"
CLASS_NAMES = ["科技", "股票", "体育", "娱乐"]
FIGURES = ("optimization-history", "param-importances", "intermediate-values",
           "parallel-coordinate", "trial-times")
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@dataclass
class Reported:
    root: Path
    storage: str
    tracking_uri: str
    page: Path
    result: Result

    @property
    def client(self) -> MlflowClient:
        return MlflowClient(tracking_uri=self.tracking_uri)

    def study(self) -> optuna.Study:
        return optuna.load_study(study_name=STUDY, storage=self.storage)

    def parent_runs(self) -> list[Any]:
        experiment = self.client.get_experiment_by_name(STUDY)
        assert experiment is not None
        return self.client.search_runs([experiment.experiment_id],
                                       filter_string="tags.`han.role` = 'study'")


@pytest.fixture(scope="module")
def reported(tmp_path_factory: pytest.TempPathFactory) -> Reported:
    """Five trials on the easy corpus (seed 3: the reference and one draw complete, three
    draws are pruned after epoch 1), then `han-search report` into a new folder."""
    root = tmp_path_factory.mktemp("report")
    easy_corpus(root / "train.tsv")
    spec = study_toml(root / "study.toml", name=STUDY, train="train.tsv", trials=5, seed=3,
                      reference=STRONG, labels=CLASS_NAMES, startup_trials=2)
    storage = f"sqlite:///{root}/optuna.db"
    tracking_uri = f"sqlite:///{root}/mlflow.db"
    run_study(load_study_file(spec),
              RunOptions(storage=storage, tracking_uri=tracking_uri, device="cpu"),
              work_dir=root / "work")
    result = invoke("report", "--study", STUDY, "--out", root / "pages", "--storage", storage,
                    "--tracking-uri", tracking_uri)
    return Reported(root=root, storage=storage, tracking_uri=tracking_uri,
                    page=root / "pages" / f"{STUDY}-report.html", result=result)


def test_the_study_has_complete_and_pruned_trials(reported: Reported) -> None:
    states = [t.state for t in reported.study().trials]
    assert states.count(TrialState.COMPLETE) >= 2  # importances need two
    assert TrialState.PRUNED in states


def test_report_writes_the_page_and_logs_it_on_the_parent_run(reported: Reported) -> None:
    result = reported.result
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"wrote {reported.page} (")
    assert "5 trials" in lines[0]
    assert reported.page.is_file()
    assert [p.name for p in reported.page.parent.iterdir()] == [reported.page.name]
    parents = reported.parent_runs()
    assert len(parents) == 1  # found, not created
    parent = parents[0]
    assert parent.info.status == "FINISHED"  # not reopened
    assert lines[1] == (f"logged to MLflow {reported.tracking_uri} as report/{STUDY}-report.html"
                        f" on the study's parent run {parent.info.run_id}")
    artifacts = [a.path for a in reported.client.list_artifacts(parent.info.run_id, "report")]
    assert artifacts == [f"report/{STUDY}-report.html"]


def test_the_header_sets_the_best_trial_against_the_baseline(reported: Reported) -> None:
    study = reported.study()
    baseline = BaselineRecord.of(study)
    assert baseline is not None
    page = reported.page.read_text(encoding="utf-8")
    header = page[page.index("<header>") : page.index("</header>")]
    verdict = versus_baseline(study.best_value, baseline)
    assert verdict is not None
    assert (f"<dt>baseline</dt><dd>{baseline.dev_macro_f1:.4f} (TF-IDF 1-2-gram + "
            "SGDClassifier") in header
    assert verdict in header and str(baseline.run_id) in header


def test_the_page_is_self_contained(reported: Reported) -> None:
    page = reported.page.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", page)
    assert "<script" not in page
    assert "@import" not in page and "url(http" not in page
    for name in CLASS_NAMES:
        assert name in page


def test_the_macro_average_is_the_trial_value(reported: Reported) -> None:
    best = reported.study().best_trial
    page = reported.page.read_text(encoding="utf-8")
    assert _macro_row(page)[2] == f"{best.value:.4f}"


def _macro_row(page: str) -> list[str]:
    """Precision, recall, F1 and support of the per-class table's macro-average row."""
    row = re.search(r'<tr class="total">(.*?)</tr>', page)
    assert row is not None
    return re.findall(r'<td class="num">([^<]*)</td>', row.group(1))


# ------------------------------------------------------------------- in the browser


@dataclass
class Browsed:
    problems: list[str] = field(default_factory=list)
    figure_boxes: dict[str, dict[str, float] | None] = field(default_factory=dict)
    class_rows: list[str] = field(default_factory=list)
    confusion_cells: list[str] = field(default_factory=list)
    confusion_rows: list[str] = field(default_factory=list)
    confusion_columns: list[str] = field(default_factory=list)
    pruning_text: str = ""
    duplicate_ids: list[str] = field(default_factory=list)
    screenshot: Path = Path()


def _require_browser() -> None:
    missing = [text for text, absent in (
        ("Playwright for Python is not installed", importlib.util.find_spec("playwright") is None),
        (f"{CHROMIUM} is missing", not CHROMIUM.is_file())) if absent]
    if not missing:
        return
    reason = " and ".join(missing) + " (apt-get install chromium; pip install playwright)"
    if os.environ.get("HAN_REQUIRE_BROWSER") == "1":
        pytest.fail(f"HAN_REQUIRE_BROWSER=1 but {reason}", pytrace=False)
    pytest.skip(f"no browser for the report test: {reason}")


@pytest.mark.parametrize("required", [False, True])
def test_without_a_browser_the_test_skips_unless_required(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, required: bool) -> None:
    monkeypatch.setattr(f"{__name__}.CHROMIUM", tmp_path / "no-chromium")
    monkeypatch.setenv("HAN_REQUIRE_BROWSER", "1" if required else "0")
    outcome = pytest.fail.Exception if required else pytest.skip.Exception
    with pytest.raises(outcome, match="no-chromium is missing"):
        _require_browser()


@pytest.fixture(scope="module")
def browsed(reported: Reported) -> Browsed:
    """The page opened in headless Chromium: what it complained about and what it shows."""
    _require_browser()
    from playwright.sync_api import sync_playwright

    seen = Browsed(screenshot=reported.root / "report.png")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on("console", lambda message: seen.problems.append(
                f"console {message.type}: {message.text}")
                if message.type in ("error", "warning") else None)
            page.on("pageerror", lambda error: seen.problems.append(f"page error: {error}"))
            page.on("requestfailed", lambda request: seen.problems.append(
                f"request failed: {request.url}"))
            page.goto(reported.page.as_uri(), wait_until="load")
            for key in FIGURES:
                svg = page.locator(f"figure#fig-{key} > svg")
                seen.figure_boxes[key] = svg.bounding_box() if svg.count() == 1 else None
            seen.class_rows = page.locator("#per-class-scores tbody th").all_inner_texts()
            seen.confusion_cells = page.locator("#confusion-matrix tbody td").all_inner_texts()
            seen.confusion_rows = page.locator("#confusion-matrix tbody th").all_inner_texts()
            seen.confusion_columns = page.locator(
                "#confusion-matrix thead th[scope=col]").all_inner_texts()
            seen.pruning_text = page.locator("section#pruning").inner_text()
            seen.duplicate_ids = page.evaluate("""() => {
                const ids = [...document.querySelectorAll('[id]')].map(e => e.id);
                return ids.filter((id, i) => ids.indexOf(id) !== i);
            }""")
            page.screenshot(path=str(seen.screenshot), full_page=True)
        finally:
            browser.close()
    print(f"report screenshot: {seen.screenshot}")
    return seen


def test_the_browser_reports_no_error_warning_or_failed_request(browsed: Browsed) -> None:
    assert browsed.problems == []
    assert browsed.duplicate_ids == []  # several inline SVGs share one id space
    assert browsed.screenshot.stat().st_size > 0


@pytest.mark.parametrize("key", FIGURES)
def test_every_figure_is_drawn(browsed: Browsed, key: str) -> None:
    box = browsed.figure_boxes[key]
    assert box is not None, f"figure #{key} has no svg"
    assert box["width"] > 100 and box["height"] > 100


def test_the_tables_name_the_classes(browsed: Browsed) -> None:
    names = [f"{index} {name}" for index, name in enumerate(CLASS_NAMES)]
    assert browsed.class_rows == [*names, "macro average"]
    assert browsed.confusion_rows == names
    assert browsed.confusion_columns == names
    assert len(browsed.confusion_cells) == len(names) ** 2
    assert all(cell.isdigit() for cell in browsed.confusion_cells)


def test_the_pruning_section_says_what_was_saved(browsed: Browsed) -> None:
    assert "epochs saved" in browsed.pruning_text
    assert "estimate" in browsed.pruning_text


# ------------------------------------------------------------------- MLflow absent or down


@pytest.fixture
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HAN_SEARCH_STORAGE", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


def test_a_study_without_a_parent_run_is_reported_with_a_note(
        reported: Reported, _in_tmp: Path) -> None:
    study_without_complete_trial(reported.storage, "no-mlflow")
    result = invoke("report", "--study", "no-mlflow", "--storage", reported.storage,
                    "--tracking-uri", reported.tracking_uri)
    assert result.exit_code == 0, result.output
    assert (_in_tmp / "no-mlflow-report.html").is_file()  # --out defaults to the cwd
    assert result.stdout.splitlines()[1] == (
        f"note: study 'no-mlflow' has no MLflow parent run in {reported.tracking_uri}; "
        "the report was not logged")
    assert reported.client.get_experiment_by_name("no-mlflow") is None


def test_a_missing_mlflow_store_is_not_created(reported: Reported, _in_tmp: Path) -> None:
    result = invoke("report", "--study", STUDY, "--storage", reported.storage,
                    "--tracking-uri", f"sqlite:///{_in_tmp}/mlflow.db")
    assert result.exit_code == 0, result.output
    assert "note: " in result.stdout and "no such database file" in result.stdout
    assert files_under(_in_tmp) == {Path(f"{STUDY}-report.html")}


def test_an_unreachable_mlflow_server_costs_a_warning_not_the_page(
        reported: Reported, _in_tmp: Path) -> None:
    uri = f"http://127.0.0.1:{free_port()}"
    result = invoke("report", "--study", STUDY, "--storage", reported.storage,
                    "--tracking-uri", uri)
    assert result.exit_code == 0, result.output
    assert (_in_tmp / f"{STUDY}-report.html").is_file()
    warning = result.stderr.strip().splitlines()[-1]
    assert warning.startswith(f"warning: MLflow at {uri}: not reachable")
    assert warning.endswith("the report was not logged")


@pytest.mark.parametrize("case", ["unknown study", "missing storage file"])
def test_bad_input_is_one_error_line_and_no_file(reported: Reported, _in_tmp: Path,
                                                 case: str) -> None:
    storage = (reported.storage if case == "unknown study"
               else f"sqlite:///{_in_tmp}/missing.db")
    result = invoke("report", "--study", "nope", "--out", "pages", "--storage", storage,
                    "--tracking-uri", reported.tracking_uri)
    assert_user_error(result, "no study named 'nope'" if case == "unknown study"
                      else "no such database file")
    assert files_under(_in_tmp) == set()


def test_an_out_folder_that_is_a_file_is_one_error_line(reported: Reported,
                                                        _in_tmp: Path) -> None:
    (_in_tmp / "taken").write_text("", encoding="utf-8")
    result = invoke("report", "--study", STUDY, "--out", "taken", "--storage", reported.storage,
                    "--tracking-uri", reported.tracking_uri)
    assert_user_error(result, f"cannot write taken/{STUDY}-report.html (taken: File exists)")
    assert files_under(_in_tmp) == {Path("taken")}


def test_an_out_path_ending_in_html_is_the_page_itself(reported: Reported,
                                                        _in_tmp: Path) -> None:
    # `--out report.html` is a file name to a user, not a folder to create; MLflow keeps
    # the study's one name for it, so this upload replaces the fixture's.
    result = invoke("report", "--study", STUDY, "--out", "pages/latest.html", "--storage",
                    reported.storage, "--tracking-uri", reported.tracking_uri)
    assert result.exit_code == 0, result.output
    assert files_under(_in_tmp) == {Path("pages"), Path("pages/latest.html")}
    assert result.stdout.splitlines()[1].startswith(
        f"logged to MLflow {reported.tracking_uri} as report/{STUDY}-report.html on ")
    parent = reported.parent_runs()[0]
    artifacts = [a.path for a in reported.client.list_artifacts(parent.info.run_id, "report")]
    assert artifacts == [f"report/{STUDY}-report.html"]


# ------------------------------------------------------------------- pure renders


def _trial(number: int, state: TrialState, *, epochs: int, seconds: float | None,
           max_epochs: int | None = None, value: float | None = None) -> FrozenTrial:
    start = datetime(2026, 1, 1, 12, 0, 0) + timedelta(minutes=number)
    user_attrs: dict[str, Any] = {} if max_epochs is None else {"max_epochs": max_epochs}
    return FrozenTrial(number=number, state=state, value=value, datetime_start=start,
                       datetime_complete=None if seconds is None
                       else start + timedelta(seconds=seconds),
                       params={}, distributions={}, user_attrs=user_attrs, system_attrs={},
                       intermediate_values={e: 0.5 for e in range(1, epochs + 1)},
                       trial_id=number)


def test_pruning_savings_counts_pruned_trials_at_their_full_length() -> None:
    saved = pruning_savings([
        _trial(0, TrialState.COMPLETE, epochs=4, seconds=40.0, max_epochs=5, value=0.9),
        _trial(1, TrialState.PRUNED, epochs=2, seconds=10.0, max_epochs=6),  # +4 at 5 s
        _trial(2, TrialState.PRUNED, epochs=1, seconds=3.0),  # no attr: longest run, 4
        _trial(3, TrialState.FAIL, epochs=1, seconds=1.0, max_epochs=5),
        _trial(4, TrialState.RUNNING, epochs=2, seconds=None, max_epochs=5),
    ])
    assert saved.epochs_run == 4 + 2 + 1 + 1 + 2
    assert saved.epochs_unpruned == 4 + 6 + 4 + 1 + 2
    assert saved.epochs_saved == 7
    assert saved.pruned_trials == 2
    assert saved.seconds_saved == pytest.approx(4 * 5.0 + 3 * 3.0)


def _mixed_study(*, class_names: list[str]) -> optuna.Study:
    """In memory: complete trials with a noisy dev confusion, a pruned, a failed, a running
    and a waiting trial."""
    study = optuna.create_study(study_name="mixed <b>", direction="maximize")
    distribution = {"lr": FloatDistribution(1e-4, 1e-1, log=True)}
    rng = np.random.default_rng(0)
    true = rng.integers(0, len(class_names), 200)
    predicted = np.where(rng.random(200) < 0.7, true, rng.integers(0, len(class_names), 200))
    value = float(f1_score(true, predicted, average="macro"))
    matrix = confusion_matrix(true, predicted, labels=list(range(len(class_names))))
    for index, (lr, state, trial_value, epochs, attrs) in enumerate((
            (1e-2, TrialState.COMPLETE, value, 3, {"dev_confusion": matrix.tolist()}),
            (1e-3, TrialState.COMPLETE, value / 2, 3, {}),
            (1e-4, TrialState.PRUNED, None, 1, {"reason": "at epoch 1 <i>slow</i>"}),
            (5e-2, TrialState.FAIL, None, 2, {"reason": "RuntimeError: <boom>"}),
            (2e-2, TrialState.RUNNING, None, 1, {}),
            (3e-2, TrialState.WAITING, None, 0, {}))):
        study.add_trial(optuna.trial.create_trial(
            state=state, value=trial_value, params={"lr": lr}, distributions=distribution,
            user_attrs={"max_epochs": 3, "mlflow_run_id": f"run-{lr}", **attrs},
            intermediate_values={e: 0.1 * e + 0.05 * index for e in range(1, epochs + 1)}))
    return study


def test_a_mixed_study_renders_every_state_and_the_macro_f1_of_its_confusion() -> None:
    study = _mixed_study(class_names=["科技", "股票", "体育"])
    open_before = plt.get_fignums()
    page = render_report(study, class_names=["科技", "股票", "体育"], storage="in memory")
    assert plt.get_fignums() == open_before  # every figure closed
    assert _macro_row(page)[2] == f"{study.best_value:.4f}"
    for key in FIGURES:
        assert f'<figure id="fig-{key}"><svg' in page
    rows = re.findall(r'<span class="state (\w+)">', page)
    assert rows == ["complete", "complete", "pruned", "failed", "running", "waiting"]
    assert "2 complete, 1 pruned, 1 failed, 1 running, 1 waiting" in page


def test_strings_from_the_study_are_escaped() -> None:
    names = ["<script>alert(1)</script>", "a&b", '"quoted"']
    page = render_report(_mixed_study(class_names=names), class_names=names, storage="x")
    assert "<script" not in page
    assert "0 &lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "1 a&amp;b" in page and "2 &quot;quoted&quot;" in page
    assert "mixed &lt;b&gt;" in page
    assert "at epoch 1 &lt;i&gt;slow&lt;/i&gt;" in page and "RuntimeError: &lt;boom&gt;" in page


def test_a_study_without_a_complete_trial_renders() -> None:
    study = optuna.create_study(study_name="all-pruned", direction="maximize")
    study.add_trial(optuna.trial.create_trial(
        state=TrialState.PRUNED, params={"lr": 1e-3},
        distributions={"lr": FloatDistribution(1e-4, 3e-2, log=True)},
        intermediate_values={1: 0.1}))
    page = render_report(study, class_names=None, storage="x")
    sections = dict(re.findall(r'<section id="([\w-]+)">(.*?)</section>', page, re.S))
    for key in ("per-class", "confusion"):
        assert "No complete trial yet." in sections[key]
    assert "No complete trial yet." in sections["history"]
    assert "need at least two complete trials" in sections["importances"]
    assert '<figure id="fig-intermediate-values"><svg' in page  # the pruned trial's epoch
    assert "epochs saved" in sections["pruning"]


def test_the_study_name_params_and_storage_are_escaped() -> None:
    study = optuna.create_study(study_name="<script>alert(1)</script> & co",
                                direction="maximize")
    distributions = {"<b>": CategoricalDistribution(["<img src=x>&"]),
                     "lr": FloatDistribution(1e-4, 1e-1, log=True)}
    for lr, value in ((1e-3, 0.5), (1e-2, 0.6)):
        study.add_trial(optuna.trial.create_trial(
            state=TrialState.COMPLETE, value=value, distributions=distributions,
            params={"<b>": "<img src=x>&", "lr": lr}, intermediate_values={1: value}))
    page = render_report(study, class_names=None, storage="sqlite:///a&b<c>.db")
    assert "<script" not in page and "<img" not in page and "<b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in page
    assert "<code>&lt;b&gt;=&lt;img src=x&gt;&amp;</code>" in page
    assert "<code>sqlite:///a&amp;b&lt;c&gt;.db</code>" in page


def test_the_page_colours_each_state_as_the_figures_do() -> None:
    page = render_report(_mixed_study(class_names=["a", "b", "c"]), class_names=None,
                         storage="x")
    for state, style in PALETTE.items():
        assert f".state.{state} {{ color: {style.colour}; }}" in page
    red, green, blue = (round(255 * c) for c in to_rgb(PALETTE["complete"].colour))
    assert f"background-color: rgba({red}, {green}, {blue}, " in page
