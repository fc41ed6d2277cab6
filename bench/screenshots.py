#!/usr/bin/env python3
"""The documentation's pictures: the MLflow UI comparing a study's trials, its parent run's
charts, its study report, and its best-so-far dev macro-F1 against wall time.

The docs' pictures come from a real study: `--from DIR` takes them of the study that
`han-search run` made in DIR with the default stores (han-search.db, mlflow.db), such as the
han-search arm of bench/search_efficiency.py on Reuters R8 (40 minutes):

    python bench/search_efficiency.py --corpus r8=DIR --out OUT --arms han-search
    python bench/screenshots.py --from OUT/r8/han-search

Without --from, a small study in a throw-away folder (the tests' easy corpus, 240 documents,
4 classes, the tests' small space, 3 epochs, the median pruner), run with the commands a
user types,

    han-search run --config study.toml --storage ... --tracking-uri ... --device cpu

and, either way, `han-search report` on the study, then a real `mlflow server` on loopback
over its store, browsed with the system Chromium (/usr/bin/chromium, driven by Playwright
as tests/test_mlflow_ui.py does). The pictures are written as small palette PNGs to --out
(docs/images/ by default), the small study's output to run.log beside it (--keep DIR keeps
the folder).

Usage:  python bench/screenshots.py --from DIR [--study train] [--out docs/images]
        python bench/screenshots.py [--out docs/images] [--trials 12] [--keep DIR]
        python bench/screenshots.py --storage URL --study NAME [--out DIR]   # the chart alone
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import re
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo's tests/ helpers

import matplotlib

matplotlib.use("Agg")  # no display: the chart is written to a file
import matplotlib.pyplot as plt
import optuna
from mlflow import MlflowClient
from optuna.trial import TrialState
from PIL import Image

from search.records import BaselineRecord, TrialRecord
from search.stores.tracking import runs_view_url
from tests.conftest import easy_corpus
from tests.helpers import child_env, han_search_command, mlflow_server
from tests.test_mlflow_ui import _close_assistant
from tests.test_report import CHROMIUM, CHROMIUM_ARGS, CLASS_NAMES
from tests.test_search import STRONG, study_toml, unlabelled_test_file

STUDY = "docs"
REPOSITORY = Path(__file__).resolve().parents[1]
VIEWPORT = {"width": 1400, "height": 820}
# A palette PNG of a UI page is a fifth of its RGB size, and the docs ask under 300 KB each.
COLOURS = 128
REFERENCE_AFTER = 4
# The runs table's columns toggled: three of the defaults off, so that the metric, four of
# the searched settings and the outcome (`state`) fit beside the run names at 1400 pixels.
COLUMNS = ("Dataset", "Source", "Models", "dev_macro_f1", "lr", "word_hidden", "sent_hidden",
           "seg_len", "state")


def run(command: list[str], cwd: Path, log: Path) -> str:
    """The command's output, appended to `log`; a failure raises with its tail."""
    done = subprocess.run(command, cwd=cwd, env=child_env(), capture_output=True, text=True,
                          check=False)
    with log.open("a", encoding="utf-8") as sink:
        sink.write(f"$ {' '.join(command)}\n{done.stdout}{done.stderr}\n")
    if done.returncode != 0:
        raise RuntimeError(f"{command[1:3]} exited {done.returncode}:\n{done.stderr[-3000:]}")
    return done.stdout


def make_study(root: Path, trials: int) -> tuple[str, str, float]:
    """The study, run through the CLI; returns its storage, tracking URI and wall seconds."""
    easy_corpus(root / "train.tsv")
    unlabelled_test_file(root / "test.tsv")
    # The reference configuration, which learns this corpus, after the sampler's first draws,
    # so the best so far climbs; seed 3 of this space completes some draws and prunes others
    # (tests/test_report.py's study), so every picture has both kinds of trial.
    config = study_toml(root / "study.toml", name=STUDY, train="train.tsv", test="test.tsv",
                        trials=trials, seed=3, reference=STRONG, labels=list(CLASS_NAMES),
                        startup_trials=2, extra_study=f"reference_after = {REFERENCE_AFTER}")
    storage, tracking = f"sqlite:///{root}/optuna.db", f"sqlite:///{root}/mlflow.db"
    stores = ["--storage", storage, "--tracking-uri", tracking]
    started = time.monotonic()
    run([*han_search_command(), "run", "--config", str(config), *stores, "--device", "cpu",
         "--work-dir", str(root / "work")], root, root / "run.log")
    seconds = time.monotonic() - started
    run([*han_search_command(), "report", "--study", STUDY, "--out", str(root / "report.html"),
         *stores], root, root / "run.log")
    return storage, tracking, seconds


# How the chart draws each kind of finished trial: Optuna's state, refined by what the
# budget did to it (search.records.Outcome). Skipped trials were never trained: a tick at
# the bottom, so that the time they took shows.
KINDS = {"complete": ("#348ABD", "o"), "paused": ("#2CA02C", "s"),
         "stopped": ("#988ED5", "D"), "pruned": ("#E24A33", "x"), "fail": ("#777777", "v"),
         "skipped": ("#999999", "|")}


def best_so_far_chart(study: optuna.Study, path: Path, caption: str) -> None:
    """Best dev macro-F1 so far against wall time since the first trial started; each
    finished trial a point by kind (complete, paused, stopped, pruned at its last report,
    failed, skipped at the bottom), the reference trial ringed, the baseline a line."""
    finished = sorted((t for t in study.trials if t.datetime_complete is not None),
                      key=lambda t: t.datetime_complete)
    start = min(t.datetime_start for t in study.trials if t.datetime_start is not None)
    span = (finished[-1].datetime_complete - start).total_seconds()
    unit, per = ("minutes", 60) if span > 180 else ("seconds", 1)
    figure, axes = plt.subplots(figsize=(8.0, 3.6), dpi=100)
    best, times, bests, shown_values = None, [0.0], [None], []
    points: dict[str, tuple[list[float], list[float]]] = {}
    skipped: list[float] = []
    reference: tuple[float, float] | None = None
    for trial in finished:
        at = (trial.datetime_complete - start).total_seconds() / per
        value = trial.value if trial.state == TrialState.COMPLETE else None
        if value is not None and (best is None or value > best):
            best = value
        times.append(at)
        bests.append(best)
        kind = TrialRecord.of(trial).state_name(trial)
        last = max(trial.intermediate_values.values(), default=None)
        shown = value if value is not None else last
        if kind == "skipped" or shown is None:
            skipped.append(at)
            continue
        points.setdefault(kind, ([], []))[0].append(at)
        points[kind][1].append(shown)
        shown_values.append(shown)
        if TrialRecord.of(trial).reference:
            reference = (at, shown)
    baseline = BaselineRecord.of(study)
    drawn = [*shown_values, *([baseline.dev_macro_f1] if baseline else [])]
    bottom = max(0.0, min(drawn, default=0.0) - 0.08)
    top = min(1.0, max(drawn, default=1.0) + 0.05)
    for kind, (xs, ys) in points.items():
        colour, marker = KINDS[kind]
        axes.scatter(xs, ys, s=24, color=colour, marker=marker, zorder=3, label=kind)
    if skipped:
        colour, marker = KINDS["skipped"]
        axes.scatter(skipped, [bottom + 0.01] * len(skipped), s=60, color=colour,
                     marker=marker, zorder=3, label="skipped (not trained)")
    if reference is not None:
        axes.scatter([reference[0]], [reference[1]], s=150, facecolors="none",
                     edgecolors="black", linewidths=1.2, zorder=4, label="reference trial")
    if baseline is not None:
        axes.axhline(baseline.dev_macro_f1, color="#E69F00", linestyle="--", linewidth=1.2,
                     label=f"baseline (TF-IDF) {baseline.dev_macro_f1:.3f}")
    axes.step(times, [b if b is not None else float("nan") for b in bests], where="post",
              color="black", linewidth=1.5, label="best so far")
    axes.set_xlabel(f"{unit} since the first trial started")
    axes.set_ylabel("dev macro-F1")
    axes.set_ylim(bottom, top)
    axes.set_xlim(left=0)
    axes.grid(alpha=0.3)
    axes.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
    axes.set_title(caption, fontsize=8, loc="left")
    figure.tight_layout()
    save_small(figure_png(figure), path)
    plt.close(figure)


def figure_png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def save_small(png: bytes, path: Path) -> None:
    """`png` as a palette image: UI pages have few colours, and a diff of a regenerated
    picture stays small."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    image.quantize(colors=COLOURS, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)


def browse(root: Path, tracking: str, out: Path, study: str = STUDY) -> list[Path]:
    """The runs table with the study's trials open, the trials compared, the parent run's
    charts, and the study report, as PNGs in `out`."""
    from playwright.sync_api import sync_playwright

    client = MlflowClient(tracking_uri=tracking)
    experiment = client.get_experiment_by_name(study)
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    trials = [r for r in runs if r.info.run_name.startswith("trial-")]
    parent = next(r for r in runs if r.info.run_name == f"study:{study}")
    compared = [r.info.run_id for r in trials]
    ml = "?workflowType=machine_learning"
    shots: list[Path] = []
    with mlflow_server(root) as uri, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            # The runs table as tall as its rows (the parent, the baseline, each trial).
            rows = {"width": VIEWPORT["width"],
                    "height": max(VIEWPORT["height"], min(1800, 320 + 34 * len(runs)))}
            page = browser.new_page(viewport=rows)

            def shoot(name: str, **options: Any) -> None:
                path = out / f"{name}.png"
                save_small(page.screenshot(**options), path)
                shots.append(path)

            # The link `han-search run` prints, with the parent's row opened on its trials.
            page.goto(runs_view_url(uri, experiment.experiment_id), wait_until="load")
            page.get_by_text(f"study:{study}", exact=True).wait_for(timeout=60_000)
            page.locator("[role=row]", has_text=f"study:{study}").locator(
                "button[data-component-id*='runnamecellrenderer']").first.click()
            page.get_by_text("trial-0", exact=True).wait_for(timeout=30_000)
            _close_assistant(page)
            toggle_columns(page, COLUMNS)
            shoot("mlflow-runs")
            page.set_viewport_size(VIEWPORT)
            # Ticking the trials and pressing Compare opens this page.
            page.goto(f"{uri}/#/compare-runs?runs={json.dumps(compared)}"
                      f"&experiments={json.dumps([experiment.experiment_id])}"
                      "&workflowType=machine_learning", wait_until="load")
            page.get_by_text("Parallel Coordinates Plot").first.wait_for(timeout=30_000)
            _close_assistant(page)
            plot_against(page, params=("word_hidden", "sent_hidden"), metric="dev_macro_f1")
            shoot("mlflow-compare")
            # Tall enough for every chart of the parent run: none cut off at the bottom.
            page.set_viewport_size({"width": VIEWPORT["width"], "height": 1400})
            page.goto(f"{uri}/#/experiments/{experiment.experiment_id}/runs/"
                      f"{parent.info.run_id}/model-metrics{ml}", wait_until="load")
            page.get_by_text("best_dev_macro_f1").first.wait_for(timeout=30_000)
            page.wait_for_timeout(3_000)
            shoot("mlflow-parent-metrics")
            page.set_viewport_size(VIEWPORT)
            page.goto((root / "report.html").as_uri(), wait_until="load")
            shoot("study-report")
            path = out / "study-report-curves.png"
            save_small(page.locator("#intermediate").screenshot(), path)
            shots.append(path)
        finally:
            browser.close()
    return shots


def toggle_columns(page: Any, names: tuple[str, ...]) -> None:
    """Ticks or unticks columns in the runs table's Columns menu."""
    page.get_by_role("button", name="Columns").click()
    search = page.get_by_placeholder("Search columns")
    for name in names:
        search.fill(name)
        title = page.locator(".du-bois-light-tree-title",
                             has_text=re.compile(f"^{re.escape(name)}$"))
        node = page.locator(".du-bois-light-tree-treenode", has=title)
        # The last match: `lr` is a metric (per epoch) and, after the metrics, a param.
        node.last.locator(".du-bois-light-tree-checkbox").click()
    page.keyboard.press("Escape")
    page.wait_for_timeout(1_000)


def plot_against(page: Any, *, params: tuple[str, ...], metric: str) -> None:
    """The compare page's parallel coordinates with `params` added and `metric` as the
    only metric (it opens on the first three params and the first metric logged)."""
    choosers = page.locator(".du-bois-light-select")
    chosen, metrics = choosers.nth(0), choosers.nth(1)
    # The metric chosen by default, if any (none when the first runs logged no metric).
    chosen_metric = metrics.locator(".du-bois-light-select-selection-item-remove")
    if chosen_metric.count():
        chosen_metric.first.click()
    metrics.click()
    page.locator(f".du-bois-light-select-item-option[title='{metric}']").click()
    page.keyboard.press("Escape")
    chosen.locator("input").click()
    for name in params:
        page.keyboard.type(name)
        page.keyboard.press("Enter")
    page.keyboard.press("Escape")
    page.wait_for_timeout(3_000)  # the plot redraws


def machine() -> str:
    """The CPU, in the words the docs give every figure."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def from_run(folder: Path, study: str, out: Path) -> list[Path]:
    """The pictures of a study `han-search run` made in `folder` with the default stores (a
    bench/search_efficiency.py arm's folder, say): its report, chart and MLflow pages."""
    storage, tracking = f"sqlite:///{folder}/han-search.db", f"sqlite:///{folder}/mlflow.db"
    run([*han_search_command(), "report", "--study", study, "--out",
         str(folder / "report.html"), "--storage", storage, "--tracking-uri", tracking],
        folder, folder / "screenshots.log")
    loaded = optuna.load_study(study_name=study, storage=storage)
    first = min(t.datetime_start for t in loaded.trials if t.datetime_start is not None)
    chart = out / "best-so-far.png"
    best_so_far_chart(loaded, chart, f"study '{study}' ({folder.name}): {len(loaded.trials)} "
                      f"trials, {machine()}, {first:%Y-%m-%d}")
    return [chart, *browse(folder, tracking, out, study)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPOSITORY / "docs" / "images")
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--keep", type=Path, help="run in this folder and keep it")
    parser.add_argument("--from", dest="source", type=Path,
                        help="take the pictures of the study run in this folder (default "
                        "stores han-search.db and mlflow.db) instead of running one")
    parser.add_argument("--storage", help="with --study: only draw the chart of this study, "
                        "as best-so-far-STUDY.png (a bench/budget.py --keep run's, say)")
    parser.add_argument("--study", help="the study of --storage or --from (with --from, "
                        "default 'train', the name of a run on train.tsv)")
    args = parser.parse_args(argv)
    if args.storage is not None and args.study is None:
        parser.error("--storage needs --study")
    if args.storage:
        args.out.mkdir(parents=True, exist_ok=True)
        study = optuna.load_study(study_name=args.study, storage=args.storage)
        chart = args.out / f"best-so-far-{args.study}.png"
        best_so_far_chart(study, chart, f"study '{args.study}': {len(study.trials)} trials")
        print(f"picture  {chart} ({chart.stat().st_size // 1024} KB)")
        return 0
    if not CHROMIUM.is_file():
        parser.error(f"{CHROMIUM} is missing (apt-get install chromium)")
    args.out.mkdir(parents=True, exist_ok=True)
    if args.source is not None:
        for shot in from_run(args.source.resolve(), args.study or "train", args.out):
            print(f"picture  {shot} ({shot.stat().st_size // 1024} KB)")
        return 0
    with tempfile.TemporaryDirectory(prefix="han-screenshots-") as scratch:
        root = args.keep or Path(scratch)
        root.mkdir(parents=True, exist_ok=True)
        storage, tracking, seconds = make_study(root, args.trials)
        study = optuna.load_study(study_name=STUDY, storage=storage)
        when = datetime.now(UTC).strftime("%Y-%m-%d")
        chart = args.out / "best-so-far.png"
        best_so_far_chart(study, chart, f"study '{STUDY}': {len(study.trials)} trials on 240 "
                          f"documents, {machine()}, {when}")
        shots = [chart, *browse(root, tracking, args.out)]
        counts = {s.name.lower(): sum(t.state == s for t in study.trials)
                  for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
        print(f"study    {len(study.trials)} trials {counts}, best dev macro-F1 "
              f"{study.best_value:.4f}, run {seconds:.0f}s ({machine()}, {when})")
        for shot in shots:
            print(f"picture  {shot} ({shot.stat().st_size // 1024} KB)")
        print(f"run log  {root / 'run.log'}" + ("" if args.keep else " (removed)"))
        if not args.keep:
            print((root / "run.log").read_text(encoding="utf-8"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
