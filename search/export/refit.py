"""K-fold refit ensemble of a study's best trial.

The best trial's dev F1 is the maximum over many trials on one dev fold, so it is optimistic,
and its model saw only (K-1)/K of the data. Retraining its configuration on each of K folds
gives K models that together saw every document, an ensemble that is usually at least as good
on the test file, and an honest estimate: the out-of-fold macro-F1, where every training
document is predicted by the one model that did not train on it. The ensemble weights each
fold model by its macro-F1 on its own held-out fold, so a fold whose training failed does
not drag the others down.

Each fold is a nested MLflow run (`fold-k`) under one `refit-trial-N` run, itself a child of
the study's parent run. A fold whose run FINISHED holds its checkpoint and its out-of-fold
predictions (`oof/oof.npz`) as artifacts, so running the refit again downloads them instead
of training again: an interrupted refit resumes at the first unfinished fold.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from mlflow.entities import Run
from optuna.trial import FrozenTrial
from sklearn.metrics import f1_score

from han.batching import DataCache
from han.checkpoint import load_checkpoint
from han.config import DataConfig
from han.dev_reports import EpochMetrics
from han.device import resolve_device
from han.files import check_writable, temporary_directory, written_file
from han.io import Corpus
from han.predict import Prediction, predict
from han.train import train
from search import records
from search.errors import SearchError, TrackingError
from search.export import registry
from search.export.best import (
    SubmissionIds,
    best_trial_run,
    label_counts,
    resolve_test_path,
    submission_ids,
    write_submission,
)
from search.export.registry import Champion, check_name
from search.records import DatasetRecord, Key, Role, RunState, StudyRecord, Tag
from search.setup.build import build_configs, build_trial
from search.setup.options import DataFiles, RunOptions
from search.setup.provenance import code_tags
from search.setup.resolve import ResolvedRun, fingerprint, resolved_run
from search.stores.mlflow_models import RegisteredVersion
from search.stores.optuna_storage import open_study
from search.stores.tracking import CHECKPOINT_ARTIFACT, RunHandle, Tracker
from search.studyfile import load_study_file as load_spec
from search.studyfile.spec import StudySpec

OOF_ARTIFACT = "oof/oof.npz"
# A fold below this share of the best trial's dev F1 is reported as a sign of instability.
UNSTABLE_SHARE = 0.5
# Settings that legitimately differ between the trial's run and a fold: the split, the
# vocabulary built on other training documents, and the machine.
_PER_FOLD_SETTINGS = {"folds", "dev_fold", "vocab_size", "num_classes", "device",
                      "pretrained_embeddings"}

Echo = Callable[[str], None]


@dataclass(frozen=True, kw_only=True)
class FoldResult:
    """One fold's model and its predictions of the documents it did not train on."""

    fold: int
    run_id: str
    best_dev_f1: float
    checkpoint: Path
    docs: np.ndarray  # corpus indices of the fold's documents, ascending
    predictions: np.ndarray  # the best epoch's class for each of them
    probabilities: np.ndarray  # (len(docs), classes)
    trained: bool  # False: reused from a finished fold run


@dataclass(frozen=True, kw_only=True)
class RefitResult:
    out: Path
    rows: int
    trial: int
    value: float  # the best trial's dev macro-F1
    folds: int
    refit_run_id: str
    oof_macro_f1: float
    fold_f1s: tuple[float, ...]
    trained: tuple[int, ...]
    reused: tuple[int, ...]
    label_counts: dict[int, int]
    notes: tuple[str, ...]
    registered: RegisteredVersion | None = None


@dataclass(frozen=True, kw_only=True)
class TrialSetup:
    """The best trial, ready to train on other folds: the study's run resolved as its trials
    were (its data, settings, seed and vectors; the training and test files and the word2vec
    file parsed once for every fold), and the trial's parameters and split."""

    resolved: ResolvedRun
    params: dict[str, Any]
    data_config: DataConfig

    @property
    def corpus(self) -> Corpus:
        return self.resolved.corpus

    @property
    def cache(self) -> DataCache:
        return self.resolved.cache


@dataclass(frozen=True, kw_only=True)
class Refit:
    """A refit, checked and ready: the best trial, its runs, its settings, the test file."""

    study_name: str
    best: FrozenTrial
    folds: int
    tracker: Tracker
    experiment_id: str
    trial_run_id: str
    parent_run_id: str
    setup: TrialSetup
    test_path: Path
    ids: SubmissionIds | None
    device: str

    @property
    def value(self) -> float:
        return float(self.best.value or 0.0)


def export_refit(*, study_name: str, storage: str, tracking_uri: str, folds: int,
                 test: Path | None = None, out: Path = Path("submission.csv"),
                 device: str = "auto", echo: Echo | None = None,
                 register: str | None = None, id_col: str | None = None) -> RefitResult:
    """Refit the best trial on `folds` folds, write the ensemble's submission (after the test
    file's `id_col` when given), log it all; with `register`, the ensemble is registered as
    an MLflow Model of that name.

    Every input is checked before any training, so a bad argument costs nothing.
    """
    check_writable(out)
    if register is not None:
        check_name(register)
    refit = prepare_refit(study_name=study_name, storage=storage, tracking_uri=tracking_uri,
                          folds=folds, test=test, device=device, id_col=id_col)
    with refit_run(refit) as run, temporary_directory("han-refit-") as scratch:
        ensemble = refit_ensemble(refit, run, Path(scratch), echo or (lambda _message: None))
        results = ensemble.results
        write_submission(out, ensemble.prediction, refit.ids)
        run.log_artifact(out, artifact_path="predictions")
        registered = None if register is None else registry.register(
            refit.tracker, Champion(run_id=run.id, checkpoints=[r.checkpoint for r in results],
                                    weights=ensemble.weights.tolist()),
            name=register, example_file=refit.test_path)
    return RefitResult(
        out=out, rows=len(ensemble.prediction.labels), trial=refit.best.number,
        value=refit.value, folds=folds, refit_run_id=run.id, oof_macro_f1=ensemble.oof_f1,
        fold_f1s=tuple(r.best_dev_f1 for r in results),
        trained=tuple(r.fold for r in results if r.trained),
        reused=tuple(r.fold for r in results if not r.trained),
        label_counts=label_counts(ensemble.prediction.labels),
        notes=ensemble.prediction.notes + unstable_folds(results, trial_value=refit.value),
        registered=registered)


@dataclass(frozen=True, kw_only=True)
class Ensemble:
    """A refit's K fold models together: each fold's result, the out-of-fold macro-F1, each
    model's weight and the weighted ensemble's prediction of the test file."""

    results: list[FoldResult]
    oof_f1: float
    weights: np.ndarray
    prediction: Prediction


def refit_ensemble(refit: Refit, run: RunHandle, scratch: Path, say: Echo) -> Ensemble:
    """Every fold's model (reused or trained in `scratch`, which must outlive the use of
    their checkpoints) and the ensemble's test prediction; its figures on the refit `run`."""
    results = fold_results(refit, run.id, scratch, say)
    oof_f1 = out_of_fold_f1(results, refit.setup.corpus)
    weights = fold_weights([r.best_dev_f1 for r in results])
    prediction = ensemble_prediction([r.checkpoint for r in results], refit.test_path,
                                     device=refit.device, weights=weights,
                                     cache=refit.setup.cache)
    run.log_metrics({
        Key.OOF_F1: oof_f1, Key.BEST_TRIAL_DEV_F1: refit.value,
        Key.MEAN_FOLD_DEV_F1: float(np.mean([r.best_dev_f1 for r in results])),
        **{Key.fold_dev_f1(r.fold): r.best_dev_f1 for r in results},
        **{Key.fold_weight(r.fold): float(w)
           for r, w in zip(results, weights, strict=True)}}, step=0)
    return Ensemble(results=results, oof_f1=oof_f1, weights=weights, prediction=prediction)


def prepare_refit(*, study_name: str, storage: str, tracking_uri: str, folds: int,
                  test: Path | None, device: str, id_col: str | None = None) -> Refit:
    """Check every input of a refit: the fold count, the study, its best trial and runs,
    the test file and its id column, the study file's settings."""
    if folds < 2:
        raise SearchError(f"--folds must be at least 2, got {folds}")
    study = open_study(study_name, storage)
    best, trial_run_id = best_trial_run(study)
    cache = DataCache()
    test_path = resolve_test_path(study, test, cache=cache)
    ids = submission_ids(study, test_path, id_col, cache=cache)
    tracker = Tracker(tracking_uri=tracking_uri)
    trial_run = tracker.get_run(trial_run_id)
    parent_run_id = trial_run.data.tags.get(Tag.PARENT)
    if parent_run_id is None:
        raise SearchError(f"run {trial_run_id} of trial {best.number} has no parent run")
    device_name = str(resolve_device(device))
    setup = trial_setup(study=study, trial=best, trial_run=trial_run,
                        parent_run=tracker.get_run(parent_run_id), device=device_name,
                        cache=cache)
    if folds > setup.corpus.num_docs:
        raise SearchError(f"--folds {folds}: the training file has only "
                          f"{setup.corpus.num_docs} documents")
    return Refit(study_name=study_name, best=best, folds=folds, tracker=tracker,
                 experiment_id=trial_run.info.experiment_id, trial_run_id=trial_run_id,
                 parent_run_id=parent_run_id, setup=setup, test_path=test_path, ids=ids,
                 device=device_name)


def refit_run(refit: Refit) -> AbstractContextManager[RunHandle]:
    """The refit run of (trial, folds): found again and reopened, so a second call resumes."""
    trial = refit.best.number
    return refit.tracker.child_run(
        experiment_id=refit.experiment_id, name=f"refit-trial-{trial}",
        tags=records.run_tags(Role.REFIT, study=refit.study_name,
                              parent_run_id=refit.parent_run_id, trial_number=trial,
                              folds=refit.folds) | code_tags(),
        params={Key.TRIAL_NUMBER: trial, Key.FOLDS: refit.folds,
                Key.SPLIT_SEED: refit.setup.data_config.split_seed,
                Key.TRIAL_RUN_ID: refit.trial_run_id},
        resume=records.role_filter(Role.REFIT, parent_run_id=refit.parent_run_id,
                                   trial_number=trial, folds=refit.folds))


def fold_results(refit: Refit, refit_run_id: str, scratch: Path,
                 say: Echo) -> list[FoldResult]:
    """Every fold's result: reused from a finished fold run, else trained now."""
    finished = finished_folds(refit.tracker, experiment_id=refit.experiment_id,
                              refit_run_id=refit_run_id, scratch=scratch)
    results = []
    for fold in range(refit.folds):
        started = time.perf_counter()
        result = finished.get(fold) or train_fold(refit, fold=fold,
                                                  refit_run_id=refit_run_id, scratch=scratch)
        how = "trained" if result.trained else f"reused from run {result.run_id}"
        say(f"fold-{fold} ({fold + 1}/{refit.folds}): dev macro-F1 {result.best_dev_f1:.4f} "
            f"({how}, {time.perf_counter() - started:.1f}s)")
        results.append(result)
    return results


def trial_setup(*, study: optuna.Study, trial: FrozenTrial, trial_run: Run,
                parent_run: Run, device: str, cache: DataCache) -> TrialSetup:
    """The study's run resolved again from what it recorded (the study file, the training
    file and how it was read, the class names, the trial's seed and vectors), and the
    trial's settings rebuilt by the build step its trials took.

    That step gives typed values (MLflow params are strings); the trial's run params are
    then compared with them, so a study file edited since the search is refused instead of
    silently refitting another configuration.
    """
    study_file = parent_run.data.params.get(Key.STUDY_FILE)
    if study_file is None or not Path(study_file).is_file():
        where = study_file or "not logged on the parent run"
        raise SearchError(f"the study file of {study.study_name!r} ({where}) is not there; "
                          "the refit needs its fixed settings")
    record = StudyRecord.of(study)
    # The class names the study trained with, not the study file's: its [data] labels name
    # only its own data, and the study may have run on a file given on the command line.
    spec = replace(load_spec(study_file), label_names=record.class_names)
    corpus, dataset = study_training_data(study, record, cache)
    logged = trial_run.data.params
    # A --seed given to `run` overrides the training seed; only the run's params keep it.
    seed = int(logged[Key.SEED]) if Key.SEED in logged else None
    assert record.train_path is not None  # study_training_data refuses a study without one
    resolved = resolved_run(
        spec, RunOptions(device=device, seed=seed),
        files=DataFiles(train=record.train_path, test=record.test_path,
                        embeddings=_trial_embeddings(trial, trial_run, spec),
                        builtin=dataset.builtin),
        corpus=corpus, cache=cache, dataset=dataset, device=device)
    model_kwargs, data_config, train_config = build_configs(dict(trial.params), resolved)
    rebuilt = {**model_kwargs, **asdict(data_config), **asdict(train_config)}
    changed = sorted(key for key, value in rebuilt.items()
                     if key not in _PER_FOLD_SETTINGS and key in logged
                     and str(value) != logged[key])
    if changed:
        listed = ", ".join(f"{key} {logged[key]} -> {rebuilt[key]}" for key in changed)
        raise SearchError(f"{study_file} changed since trial {trial.number} ran ({listed})")
    return TrialSetup(resolved=resolved, params=dict(trial.params), data_config=data_config)


def study_training_data(study: optuna.Study, record: StudyRecord,
                        cache: DataCache) -> tuple[Corpus, DatasetRecord]:
    """The study's training file, read as the study read it, and its fingerprint; refused
    when its content is no longer the dataset the study recorded."""
    if record.train_path is None:
        raise SearchError(f"study {study.study_name!r} does not record its training file")
    corpus = cache.load_corpus(record.train_path, labelled=True,
                               file_format=record.file_format, label_order=record.class_names)
    held = DatasetRecord.of(study)
    dataset = fingerprint(record.train_path, corpus,
                          builtin=held is not None and held.builtin)
    if held is not None and dataset.sha256 != held.sha256:
        raise SearchError(f"{record.train_path} changed since study {study.study_name!r} "
                          f"recorded it as {held.describe()}; restore that file to refit, "
                          "or start a new study on the new data (run --study NEW_NAME)")
    return corpus, dataset


def _trial_embeddings(trial: FrozenTrial, trial_run: Run, spec: StudySpec) -> Path | None:
    """The word2vec file the trial's run recorded (else the study file's), when it had one."""
    if trial_run.data.params.get(Key.PRETRAINED_EMBEDDINGS) != "True":
        return None
    recorded = trial_run.data.tags.get(Tag.EMBEDDINGS)
    embeddings = Path(recorded) if recorded else spec.embeddings_path
    if embeddings is None or not embeddings.is_file():
        raise SearchError(f"trial {trial.number} used word2vec embeddings "
                          f"({embeddings or 'file not recorded'}) that are not there; "
                          "the refit needs the same vectors")
    return embeddings


def finished_folds(tracker: Tracker, *, experiment_id: str, refit_run_id: str,
                   scratch: Path) -> dict[int, FoldResult]:
    """Folds already done: FINISHED runs whose checkpoint and oof.npz download.

    A fold run left RUNNING by an interrupted refit is ended KILLED; that fold is trained
    again in a new run (its partial training state lived in a scratch folder that is gone).
    """
    done: dict[int, FoldResult] = {}
    runs = tracker.find_runs(experiment_id, records.role_filter(
        Role.FOLD, parent_run_id=refit_run_id))
    for run in runs:
        fold = int(run.data.tags[Tag.FOLD])
        if run.info.status == RunState.RUNNING.status:
            tracker.run(run.info.run_id).end(
                RunState.INTERRUPTED, "the refit stopped during this fold; trained again")
            continue
        if run.info.status != RunState.COMPLETE.status or fold in done:
            continue
        destination = scratch / f"reused-{fold}"
        destination.mkdir(parents=True, exist_ok=True)
        try:
            checkpoint = tracker.download(run.info.run_id, CHECKPOINT_ARTIFACT, destination)
            load_checkpoint(checkpoint)  # a corrupt one would fail the ensemble, at the end
            oof = np.load(tracker.download(run.info.run_id, OOF_ARTIFACT, destination))
        except (TrackingError, OSError, ValueError):  # CheckpointError is a ValueError
            continue  # artifacts missing or damaged: train the fold again
        done[fold] = FoldResult(
            fold=fold, run_id=run.info.run_id, best_dev_f1=float(oof["best_dev_f1"]),
            checkpoint=checkpoint, docs=oof["docs"], predictions=oof["predictions"],
            probabilities=oof["probabilities"], trained=False)
    return done


def train_fold(refit: Refit, *, fold: int, refit_run_id: str, scratch: Path) -> FoldResult:
    """Train on every fold but `fold`, early-stopping on it; log the run and its artifacts."""
    setup = refit.setup
    built = build_trial(setup.params, setup.resolved, fold=(refit.folds, fold))
    with refit.tracker.child_run(
            experiment_id=refit.experiment_id, name=f"fold-{fold}",
            tags=records.run_tags(Role.FOLD, study=refit.study_name,
                                  parent_run_id=refit_run_id, trial_number=refit.best.number,
                                  fold=fold) | code_tags(),
            params=built.params()) as run:

        def on_epoch(metrics: EpochMetrics) -> None:
            run.log_metrics(metrics.as_dict(), step=metrics.epoch)

        result = train(built.split, model_config=built.model_config,
                       data_config=built.data_config, train_config=built.train_config,
                       checkpoint_dir=scratch / f"fold-{fold}", on_epoch=on_epoch)
        if result.dev_probabilities is None:  # no epoch finished: it diverged in the first
            raise SearchError(f"fold-{fold} of trial {refit.best.number} trained no epoch: "
                              f"{result.stop.describe()}")
        oof_path = scratch / f"fold-{fold}" / "oof.npz"
        with written_file(oof_path, what=f"the out-of-fold outputs of fold {fold}") as handle:
            np.savez(handle, docs=built.split.dev_docs, labels=result.dev_labels,
                     predictions=result.dev_predictions, probabilities=result.dev_probabilities,
                     best_dev_f1=result.best_dev_f1)
        run.log_artifact(result.checkpoint_path,
                         artifact_path=str(Path(CHECKPOINT_ARTIFACT).parent))
        run.log_artifact(oof_path, artifact_path=str(Path(OOF_ARTIFACT).parent))
        run.set_tags({Tag.BEST_EPOCH: result.best_epoch, Tag.STOP_REASON: result.stop.reason})
        run.log_metrics({Key.BEST_DEV_F1: result.best_dev_f1}, step=result.best_epoch)
    return FoldResult(fold=fold, run_id=run.id, best_dev_f1=result.best_dev_f1,
                      checkpoint=result.checkpoint_path, docs=built.split.dev_docs,
                      predictions=result.dev_predictions,
                      probabilities=result.dev_probabilities, trained=True)


def out_of_fold_f1(results: list[FoldResult], corpus: Corpus) -> float:
    """Macro-F1 over every training document, each predicted by the model that never saw it.

    The folds partition the corpus, so this is an estimate no model selection has touched
    (unlike the best trial's dev F1, the maximum over trials on one fold).
    """
    assert corpus.labels is not None
    docs = np.concatenate([r.docs for r in results])
    if len(docs) != corpus.num_docs or len(np.unique(docs)) != corpus.num_docs:
        raise SearchError("the folds' out-of-fold documents do not cover the training file "
                          "exactly once; was it changed since the first folds ran?")
    predictions = np.concatenate([r.predictions for r in results])
    return float(f1_score(corpus.labels[docs], predictions, average="macro", zero_division=0))


def fold_weights(fold_f1s: list[float]) -> np.ndarray:
    """Each fold model's share of the ensemble: its macro-F1 on its own held-out fold.

    Folds of similar quality are averaged almost evenly, while a fold whose training failed
    (near-chance F1, which an unstable configuration shows on some splits) barely counts.
    The weights come from training documents only, never from the test file.
    """
    weights = np.asarray(fold_f1s, dtype=np.float64)
    if weights.sum() <= 0:
        return np.full(len(weights), 1.0 / len(weights))
    return weights / weights.sum()


def unstable_folds(results: list[FoldResult], *, trial_value: float) -> tuple[str, ...]:
    """A note when some folds reached less than half the best trial's dev F1."""
    weak = [r for r in results if r.best_dev_f1 < UNSTABLE_SHARE * trial_value]
    if not weak:
        return ()
    listed = ", ".join(f"fold-{r.fold} {r.best_dev_f1:.4f}" for r in weak)
    return (f"{listed}: below half the best trial's dev macro-F1 ({trial_value:.4f}); the "
            "configuration trains unreliably on other splits, so the ensemble gives those "
            "folds little weight and the trial's dev F1 overstates it (see the out-of-fold "
            "F1)",)


def ensemble_prediction(checkpoints: list[Path], test_path: Path, *, device: str,
                        weights: np.ndarray, cache: DataCache) -> Prediction:
    """The fold models' class probabilities on the test file, averaged with `weights`, in
    file order.

    Each checkpoint carries its own vocabulary (built on its training folds), so each model
    encodes the test file itself.
    """
    predictions = [predict(checkpoint, test_path, device=device, cache=cache)
                   for checkpoint in checkpoints]
    mean = np.average([prediction.probabilities for prediction in predictions], axis=0,
                      weights=weights)
    return predictions[0].with_probabilities(mean)
