"""`han-search studies`, `show` and `report`: what studies hold, read for people."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from search.cli.app import command, user_errors
from search.cli.options import Storage, TrackingUri
from search.defaults import DEFAULT_STORAGE, DEFAULT_TRACKING_URI
from search.formatting import redact, short


@command()
def studies(storage: Storage = DEFAULT_STORAGE) -> None:
    """One line per study: trials by state, best value and best trial."""
    from search.views.summary import dataset_text, list_studies

    with user_errors(storage=storage):
        rows = list_studies(storage)
    if not rows:
        typer.echo(f"no studies in {redact(storage)}")
        return
    typer.echo(f"{'study':<24} {'trials':<40} {'best':>8} {'baseline':>8}  "
               f"{'best trial':<10}  dataset")
    for row in rows:
        states = ", ".join(f"{n} {s}" for s, n in sorted(row.states.items()))
        best = f"{row.best_value:.4f}" if row.best_value is not None else "-"
        baseline = f"{row.baseline_value:.4f}" if row.baseline_value is not None else "-"
        trial = str(row.best_trial) if row.best_trial is not None else "-"
        typer.echo(f"{row.name:<24} {states:<40} {best:>8} {baseline:>8}  {trial:<10}  "
                   f"{dataset_text(row.dataset)}")


@command()
def show(
    study: Annotated[str, typer.Option(help="Study name.")] = "demo",
    storage: Storage = DEFAULT_STORAGE,
    top: Annotated[int, typer.Option(min=1, help="How many of the best trials to list.")] =
        10,
) -> None:
    """Best params and the top trials of a study, with the MLflow run of each."""
    from search.stores.optuna_storage import open_study
    from search.views.summary import baseline_text, summarize, top_trials, versus_baseline

    with user_errors(storage=storage):
        loaded = open_study(study, storage)
        summary = summarize(loaded, storage=storage, tracking_uri="")
        rows = top_trials(loaded, limit=top)
    typer.echo(f"study {study}: " + ", ".join(
        f"{n} {s}" for s, n in sorted(summary.states.items())))
    if summary.dataset is not None:  # studies from before datasets were recorded have none
        typer.echo(f"dataset {summary.dataset.describe()}")
    if summary.baseline is not None:
        verdict = versus_baseline(summary.best_value, summary.baseline,
                                  maximize=summary.maximize)
        typer.echo(f"baseline {baseline_text(summary.baseline)}, MLflow run "
                   f"{summary.baseline.run_id or '-'}: {verdict}")
    if summary.best_value is None:
        typer.echo("no complete trial yet")
        return
    typer.echo(f"best dev F1 {summary.best_value:.4f} (trial {summary.best_trial})")
    for key, value in summary.best_params.items():
        typer.echo(f"  {key:<14} {short(value)}")
    typer.echo(f"\n{'trial':>5} {'dev F1':>8} {'epochs':>6}  {'MLflow run':<32}  params")
    for row in rows:
        params = ", ".join(f"{k}={short(v)}" for k, v in row.params.items())
        typer.echo(f"{row.number:>5} {row.value or 0:>8.4f} {row.epochs:>6.3g}  "
                   f"{row.run_id or '-':<32}  {params}")


@command()
def report(
    study: Annotated[str, typer.Option(help="Study name.")] = "demo",
    out: Annotated[Path, typer.Option(
        help="Where to write the page: a file ending in .html, or a folder for "
        "STUDY-report.html (created if missing).")] = Path("."),
    storage: Storage = DEFAULT_STORAGE,
    tracking_uri: TrackingUri = DEFAULT_TRACKING_URI,
) -> None:
    """Write a self-contained HTML report of a study and log it on its MLflow parent run."""
    from search.views.html_report import write_report

    with user_errors(storage=storage):
        result = write_report(study_name=study, storage=storage, tracking_uri=tracking_uri,
                              out=out)
    typer.echo(f"wrote {result.out} ({result.size_bytes / 1024:.0f} KB, {result.trials} "
               f"trials) in {result.seconds:.1f}s")
    logged = result.logged
    if logged.artifact is not None:
        typer.echo(f"logged to MLflow {redact(tracking_uri)} as {logged.artifact} on the "
                   f"study's parent run {logged.parent_run_id}")
    elif logged.warning is not None:
        typer.echo(f"warning: {logged.warning}", err=True)
    else:
        typer.echo(f"note: {logged.note}")
