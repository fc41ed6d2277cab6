"""Exporting a study: its best trial -> checkpoint -> predictions of the test file -> the
submission file, written atomically."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from han.batching import DataCache
from han.errors import CheckpointError
from han.files import check_writable, written_atomically
from han.io import read_column
from han.predict import Prediction, predict
from search.defaults import DEFAULT_STORAGE, DEFAULT_TRACKING_URI
from search.errors import SearchError
from search.export import registry
from search.export.registry import Champion, check_name
from search.records import StudyRecord, TrialRecord
from search.stores.mlflow_models import RegisteredVersion
from search.stores.optuna_storage import open_study
from search.stores.tracking import CHECKPOINT_ARTIFACT, Tracker


@dataclass(frozen=True)
class ExportResult:
    out: Path
    rows: int
    trial: int
    value: float
    run_id: str | None
    label_counts: dict[int, int]
    notes: tuple[str, ...]
    registered: RegisteredVersion | None = None


def best_trial(study: optuna.Study) -> FrozenTrial:
    """The best complete trial, or a one-line error."""
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        raise SearchError(f"study {study.study_name!r} has no complete trial yet; "
                          "run more trials")
    return study.best_trial


def best_trial_run(study: optuna.Study) -> tuple[FrozenTrial, str]:
    """The best complete trial and its MLflow run id, or a one-line error."""
    best = best_trial(study)
    run_id = TrialRecord.of(best).run_id
    if run_id is None:
        raise SearchError(f"trial {best.number} of study {study.study_name!r} has no "
                          "MLflow run")
    return best, run_id


def resolve_test_path(study: optuna.Study, test: Path | None, *, cache: DataCache) -> Path:
    """The given test file, else the study's; read now (into `cache`, for the prediction
    that follows) so a bad one fails before any work."""
    record = StudyRecord.of(study)
    test_path = test or record.test_path
    if test_path is None:
        raise SearchError("no test file: pass --test FILE")
    cache.load_corpus(test_path, labelled=False, file_format=record.file_format)
    return test_path


@dataclass(frozen=True)
class SubmissionIds:
    """The test file's id column, a value per document in file order, which the submission
    carries as its first column."""

    column: str
    values: list[str]


def submission_ids(study: optuna.Study, test_path: Path, id_col: str | None, *,
                   cache: DataCache) -> SubmissionIds | None:
    """The id column `id_col` of the test file (already read into `cache`), checked before
    any work: it exists, it is not the label column, it has a value per document."""
    if id_col is None:
        return None
    file_format = StudyRecord.of(study).file_format
    if id_col == file_format.label_col:
        raise SearchError(f"--id-col {id_col!r} is the label column the submission writes")
    values = read_column(test_path, file_format=file_format, column=id_col)
    documents = cache.load_corpus(test_path, labelled=False, file_format=file_format).num_docs
    if len(values) != documents:
        raise SearchError(f"{test_path}: column {id_col!r} has {len(values)} values for "
                          f"{documents} documents")
    return SubmissionIds(column=id_col, values=values)


def write_submission(out: Path, prediction: Prediction,
                     ids: SubmissionIds | None = None) -> None:
    """The prediction's label column in file order, after the ids when given, written
    atomically."""
    frame = prediction.submission()
    if ids is not None:
        frame.insert(0, ids.column, ids.values)
    with written_atomically(out, what="the submission") as temporary:
        frame.to_csv(temporary, index=False)


def label_counts(labels: np.ndarray) -> dict[int, int]:
    """How many predictions each class got (classes never predicted left out)."""
    return {i: int(c) for i, c in enumerate(np.bincount(labels)) if c}


def best_checkpoint(study: optuna.Study, tracker: Tracker,
                    scratch: Path) -> tuple[FrozenTrial, str | None, Path]:
    """The best trial, its MLflow run and its checkpoint: downloaded from the run, or, when
    MLflow was down as the trial ended, the copy kept on this disk (the trial records where)."""
    best = best_trial(study)
    record = TrialRecord.of(best)
    if record.local_checkpoint is not None and record.local_checkpoint.is_file():
        return best, record.run_id, record.local_checkpoint
    best, run_id = best_trial_run(study)
    return best, run_id, tracker.download(run_id, CHECKPOINT_ARTIFACT, scratch)


def corrupt_checkpoint(trial: FrozenTrial, run_id: str | None, error: CheckpointError, *,
                       downloaded: bool) -> SearchError:
    """A checkpoint that does not load, named by the trial and MLflow run it came from (a
    downloaded copy's temporary path would tell the user nothing)."""
    where = CHECKPOINT_ARTIFACT if downloaded else str(error.path)
    return SearchError(f"trial {trial.number} (MLflow run {run_id or 'none'}): checkpoint "
                       f"{where} is corrupt: {error.problem}")


def export_best(*, study_name: str, storage: str = DEFAULT_STORAGE,
                tracking_uri: str = DEFAULT_TRACKING_URI, test: Path | None = None,
                out: Path = Path("submission.csv"), device: str = "auto",
                register: str | None = None, id_col: str | None = None) -> ExportResult:
    """Predict the test file with the best complete trial's checkpoint; write `label` CSV,
    after the test file's `id_col` when given. With `register`, the checkpoint is also
    registered as an MLflow Model of that name."""
    check_writable(out)
    if register is not None:
        check_name(register)
    study = open_study(study_name, storage)
    best_trial(study)
    cache = DataCache()
    test_path = resolve_test_path(study, test, cache=cache)
    ids = submission_ids(study, test_path, id_col, cache=cache)
    tracker = Tracker(tracking_uri=tracking_uri)
    with tempfile.TemporaryDirectory(prefix="han-export-") as scratch:
        best, run_id, checkpoint = best_checkpoint(study, tracker, Path(scratch))
        try:
            prediction = predict(checkpoint, test_path, device=device, cache=cache)
        except CheckpointError as error:
            downloaded = checkpoint != TrialRecord.of(best).local_checkpoint
            raise corrupt_checkpoint(best, run_id, error, downloaded=downloaded) from None
        write_submission(out, prediction, ids)
        registered = None if register is None else registry.register(
            tracker, Champion(run_id=_model_run(study, run_id), checkpoints=[checkpoint]),
            name=register, example_file=test_path)
    tracker.run(run_id).log_artifact(out, artifact_path="predictions")
    return ExportResult(out=out, rows=len(prediction.labels), trial=best.number,
                        value=float(best.value or 0.0), run_id=run_id,
                        label_counts=label_counts(prediction.labels), notes=prediction.notes,
                        registered=registered)


def register_best(*, study_name: str, name: str, storage: str = DEFAULT_STORAGE,
                  tracking_uri: str = DEFAULT_TRACKING_URI) -> RegisteredVersion:
    """Register the best trial's model without predicting anything: what `run` does at its
    end when the study file sets `[export] register`. The input example comes from the
    study's test file, else its training file."""
    check_name(name)
    study = open_study(study_name, storage)
    record = StudyRecord.of(study)
    example = record.test_path or record.train_path
    if example is None:
        raise SearchError(f"study {study_name!r} records no data file for an input example")
    tracker = Tracker(tracking_uri=tracking_uri)
    with tempfile.TemporaryDirectory(prefix="han-register-") as scratch:
        _best, run_id, checkpoint = best_checkpoint(study, tracker, Path(scratch))
        return registry.register(
            tracker, Champion(run_id=_model_run(study, run_id), checkpoints=[checkpoint]),
            name=name, example_file=example)


def _model_run(study: optuna.Study, run_id: str | None) -> str:
    """The run a registered model is logged on: the best trial's."""
    if run_id is None:
        raise SearchError(f"the best trial of study {study.study_name!r} has no MLflow run "
                          "to log its model on")
    return run_id
