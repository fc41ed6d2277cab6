"""`han-search export-best`: the best trial's submission, its K-fold refit, its blend with
the baseline, and the registered model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from search.cli.app import command, fail, user_errors
from search.cli.options import Device, Storage, TrackingUri
from search.defaults import DEFAULT_STORAGE, DEFAULT_TRACKING_URI


@command("export-best")
def export_best(
    study: Annotated[str, typer.Option(help="Study name.")] = "demo",
    storage: Storage = DEFAULT_STORAGE,
    tracking_uri: TrackingUri = DEFAULT_TRACKING_URI,
    test: Annotated[Path | None, typer.Option(
        help="Test file; default: the one the study ran with.")] = None,
    out: Annotated[Path, typer.Option(help="Submission CSV to write.")] =
        Path("submission.csv"),
    device: Device = "auto",
    folds: Annotated[int | None, typer.Option(
        help="Retrain the best trial on K stratified folds and submit the K models' "
        "probabilities averaged, each weighted by its fold's macro-F1; logs the out-of-fold "
        "macro-F1. Default: the best trial's model.")] =
        None,
    register: Annotated[str | None, typer.Option(
        metavar="NAME", help="Also register the model (with --folds, the ensemble) in "
        "MLflow's Model Registry as NAME, alias 'champion': mlflow.pyfunc.load_model("
        "'models:/NAME@champion') labels texts as this file does.")] = None,
    id_col: Annotated[str | None, typer.Option(
        metavar="COLUMN", help="Copy this column of the test file (its document ids) into "
        "the submission, before the labels.")] = None,
    blend: Annotated[bool, typer.Option(
        "--blend", help="Submit w x the HAN's probabilities + (1 - w) x the study's linear "
        "baseline's, w chosen on the dev fold (with --folds, out of fold).")] = False,
) -> None:
    """Predict the test file with the best complete trial and write the submission CSV."""
    from search.export import best as export
    from search.views.summary import registered_text

    if blend:
        _export_blend(study=study, storage=storage, tracking_uri=tracking_uri, test=test,
                      out=out, device=device, folds=folds, register=register, id_col=id_col)
        return
    if folds is not None:
        _export_refit(study=study, storage=storage, tracking_uri=tracking_uri, test=test,
                      out=out, device=device, folds=folds, register=register, id_col=id_col)
        return
    with user_errors(storage=storage):
        result = export.export_best(study_name=study, storage=storage,
                                    tracking_uri=tracking_uri, test=test, out=out,
                                    device=device, register=register, id_col=id_col)
    for note in result.notes:
        typer.echo(f"note: {note}")
    typer.echo(f"wrote {result.rows} predictions to {result.out} from trial {result.trial} "
               f"(dev F1 {result.value:.4f}, MLflow run {result.run_id})")
    if result.registered is not None:
        typer.echo(f"registered {registered_text(result.registered)}")


def _export_refit(*, study: str, storage: str, tracking_uri: str, test: Path | None,
                  out: Path, device: str, folds: int, register: str | None,
                  id_col: str | None) -> None:
    """export-best --folds K: the best trial retrained on K folds, their mean submitted."""
    from search.export.refit import export_refit
    from search.views.summary import registered_text

    with user_errors(storage=storage):
        refitted = export_refit(study_name=study, storage=storage, tracking_uri=tracking_uri,
                                folds=folds, test=test, out=out, device=device,
                                echo=typer.echo, register=register, id_col=id_col)
    for note in refitted.notes:
        typer.echo(f"note: {note}")
    typer.echo(f"out-of-fold macro-F1 {refitted.oof_macro_f1:.4f} "
               f"(best trial's dev macro-F1 {refitted.value:.4f})")
    typer.echo(f"wrote {refitted.rows} predictions to {refitted.out} from a "
               f"{refitted.folds}-fold refit of trial {refitted.trial} (MLflow run "
               f"{refitted.refit_run_id})")
    if refitted.registered is not None:
        typer.echo(f"registered {registered_text(refitted.registered)}")


def _export_blend(*, study: str, storage: str, tracking_uri: str, test: Path | None,
                  out: Path, device: str, folds: int | None, register: str | None,
                  id_col: str | None) -> None:
    """export-best --blend: the best HAN blended with the study's baseline."""
    from search.export.blend import export_blend

    if register is not None:
        fail("--register takes a HAN model; the blend's baseline cannot be registered "
             "with it: drop --blend or --register")
    with user_errors(storage=storage):
        blended = export_blend(study_name=study, storage=storage, tracking_uri=tracking_uri,
                               folds=folds, test=test, out=out, device=device,
                               echo=typer.echo, id_col=id_col)
    for note in blended.notes:
        typer.echo(f"note: {note}")
    choice = blended.choice
    held_out = "dev" if blended.folds is None else f"out-of-fold ({blended.folds} folds)"
    typer.echo(f"blend weight {choice.weight:.2f} on the HAN ({1 - choice.weight:.2f} on the "
               f"baseline); {held_out} macro-F1 on {choice.documents:,} documents: HAN "
               f"{choice.han_f1:.4f}, baseline {choice.baseline_f1:.4f}, blend "
               f"{choice.blend_f1:.4f}")
    source = (f"trial {blended.trial}" if blended.folds is None
              else f"a {blended.folds}-fold refit of trial {blended.trial}")
    typer.echo(f"wrote {blended.rows} predictions to {blended.out} from {source} blended "
               f"with the baseline (MLflow run {blended.run_id})")
