"""`export-best --blend`: a submission at least level with the study's linear baseline.

The best HAN's class probabilities are averaged with the baseline's, `w * p_han + (1 - w) *
p_baseline` (han.blend), `w` chosen on documents neither model trained on: the best trial's
dev fold, or with `folds` every training document out of fold (the K-fold refit's models
beside K baselines fitted on the same folds). On those documents the blend scores at least
as well as either model alone, since w = 0 and w = 1 are among the weights tried.

The baseline is fitted again here, on the same training folds: its model is a
deterministic function of the training file (whose content the study recorded and
`study_training_data` checks) and han.config.BaselineConfig, so storing it would only move
a version-bound pickle of scikit-learn objects into MLflow to save its training time
(seconds on small corpora; 4-5 minutes at 200,000 documents, 4-5 minutes per fold with
--folds).

The figures, the weight and the submission go on a `blend-trial-N` run under the study's
parent run, beside `baseline` and `refit-trial-N`: the blend is neither the trial's model
nor the baseline, and its held-out figures would be misread on either's run.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna

from han import blend
from han.baseline import fit_baseline, split_docs
from han.batching import DataCache
from han.blend import BlendChoice
from han.checkpoint import load_checkpoint
from han.errors import CheckpointError
from han.files import check_writable, temporary_directory, written_file
from han.io import Corpus
from han.predict import Prediction, predict, probabilities_of
from search.errors import SearchError, StudyFileError, TrackingError
from search.export.best import (
    SubmissionIds,
    best_checkpoint,
    best_trial,
    corrupt_checkpoint,
    label_counts,
    resolve_test_path,
    submission_ids,
    write_submission,
)
from search.export.refit import Refit, prepare_refit, refit_ensemble, refit_run, study_training_data
from search.records import (
    BaselineRecord,
    Key,
    Role,
    RunState,
    StudyRecord,
    Tag,
    TrialRecord,
    run_tags,
)
from search.setup.provenance import code_tags
from search.stores.dev_outputs import TRIAL_ARTIFACT, DevOutputs
from search.stores.optuna_storage import open_study
from search.stores.tracking import RunHandle, Tracker
from search.studyfile import load_study_file

Echo = Callable[[str], None]
PROBABILITIES_ARTIFACT = "blend/probabilities.npz"


@dataclass(frozen=True, kw_only=True)
class HanSide:
    """The HAN's part of a blend: its probabilities of held-out training documents, the
    held-out sets they came from (the dev fold; or each fold of a refit), and its test
    prediction."""

    trial: int
    held_out: list[np.ndarray]  # corpus indices of each held-out set, ascending
    probabilities: np.ndarray  # (held-out docs, C), the sets concatenated in order
    test: Prediction


@dataclass(frozen=True, kw_only=True)
class BaselineSide:
    """The baselines fitted without each held-out set: their probabilities of it (at one
    temperature fitted on them all) and the mean of their probabilities of the test file."""

    probabilities: np.ndarray  # (held-out docs, C), in HanSide's order
    test: np.ndarray  # (test docs, C)
    temperature: float


@dataclass(frozen=True, kw_only=True)
class BlendResult:
    out: Path
    rows: int
    trial: int
    folds: int | None  # None: chosen on the best trial's dev fold
    choice: BlendChoice
    temperature: float
    run_id: str
    label_counts: dict[int, int]
    notes: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class _Inputs:
    """The checked inputs of a blend."""

    study: optuna.Study
    tracker: Tracker
    corpus: Corpus
    test_path: Path
    test_corpus: Corpus
    ids: SubmissionIds | None
    cache: DataCache


def export_blend(*, study_name: str, storage: str, tracking_uri: str, folds: int | None = None,
                 test: Path | None = None, out: Path = Path("submission.csv"),
                 device: str = "auto", echo: Echo | None = None,
                 id_col: str | None = None) -> BlendResult:
    """Blend the best trial (with `folds`, its K-fold refit) with the study's baseline,
    write the submission (after the test file's `id_col` when given) and log the blend.

    Every input, the baseline's existence included, is checked before any training."""
    say = echo or (lambda _message: None)
    check_writable(out)
    if folds is not None and folds < 2:
        raise SearchError(f"--folds must be at least 2, got {folds}")
    study = open_study(study_name, storage)
    tracker = Tracker(tracking_uri=tracking_uri)
    require_baseline(study, tracker)
    best_trial(study)
    with temporary_directory("han-blend-") as scratch:
        if folds is None:
            inputs = _inputs(study, tracker, test=test, id_col=id_col)
            han = single_han(inputs, device=device, scratch=Path(scratch))
        else:
            refit = prepare_refit(study_name=study_name, storage=storage,
                                  tracking_uri=tracking_uri, folds=folds, test=test,
                                  device=device, id_col=id_col)
            inputs = _refit_inputs(study, refit)
            with refit_run(refit) as run:
                ensemble = refit_ensemble(refit, run, Path(scratch), say)
            han = HanSide(trial=refit.best.number, held_out=[r.docs for r in ensemble.results],
                          probabilities=np.concatenate([r.probabilities
                                                        for r in ensemble.results]),
                          test=ensemble.prediction)
    return _blend(inputs, han, out=out, folds=folds, say=say)


def require_baseline(study: optuna.Study, tracker: Tracker) -> BaselineRecord:
    """The study's baseline, or a one-line error saying why it has none."""
    record = BaselineRecord.of(study)
    if record is not None:
        return record
    raise SearchError(f"--blend: study {study.study_name!r} has no baseline to blend with: "
                      f"{_why_no_baseline(study.study_name, tracker)}")


def _why_no_baseline(study_name: str, tracker: Tracker) -> str:
    """Its baseline run failed, or its study file turns it off, or it predates baselines."""
    parent = tracker.find_parent_run(study_name)
    if parent is None:
        return "none on record"
    # The study has a parent run, so its experiment exists (experiment_id would create it).
    failed = [run for run in tracker.find_runs(
        tracker.experiment_id(study_name), f"tags.`{Tag.ROLE}` = '{Role.BASELINE}'")
        if run.data.tags.get(Tag.STATE) == RunState.FAILED]
    if failed:
        return f"it failed ({failed[-1].data.tags.get(Tag.REASON, 'no reason recorded')})"
    study_file = tracker.get_run(parent).data.params.get(Key.STUDY_FILE)
    try:
        off = study_file is not None and not load_study_file(study_file).baseline
    except StudyFileError:
        off = False
    if off:
        return f"its study file turns it off ([study] baseline = false in {study_file})"
    return "none on record (a study from before baselines were trained)"


def _refit_inputs(study: optuna.Study, refit: Refit) -> _Inputs:
    """The inputs a refit has checked and read already."""
    cache = refit.setup.cache
    return _Inputs(study=study, tracker=refit.tracker, corpus=refit.setup.corpus,
                   test_path=refit.test_path, ids=refit.ids, cache=cache,
                   test_corpus=cache.load_corpus(refit.test_path, labelled=False,
                                                 file_format=StudyRecord.of(study).file_format))


def _inputs(study: optuna.Study, tracker: Tracker, *, test: Path | None,
            id_col: str | None) -> _Inputs:
    """The training file as the study recorded it, the test file and its id column."""
    cache = DataCache()
    test_path = resolve_test_path(study, test, cache=cache)
    record = StudyRecord.of(study)
    return _Inputs(study=study, tracker=tracker,
                   corpus=study_training_data(study, record, cache)[0], test_path=test_path,
                   test_corpus=cache.load_corpus(test_path, labelled=False,
                                                 file_format=record.file_format),
                   ids=submission_ids(study, test_path, id_col, cache=cache), cache=cache)


def single_han(inputs: _Inputs, *, device: str, scratch: Path) -> HanSide:
    """The best trial: its dev-fold probabilities (kept on its run when it ended, else
    predicted from its checkpoint) and its checkpoint's test prediction."""
    best, run_id, checkpoint = best_checkpoint(inputs.study, inputs.tracker, scratch)
    try:
        test = predict(checkpoint, inputs.test_path, device=device, cache=inputs.cache)
        dev = _kept_dev_outputs(inputs.tracker, run_id, scratch)
        if dev is None:
            loaded = load_checkpoint(checkpoint)
            assert inputs.corpus.labels is not None
            docs = split_docs(inputs.corpus.labels, loaded.data_config)[1]
            dev = DevOutputs(docs=docs, labels=inputs.corpus.labels[docs], values=(
                probabilities_of(loaded, inputs.corpus, device=device, docs=docs)))
    except CheckpointError as error:
        downloaded = checkpoint != TrialRecord.of(best).local_checkpoint
        raise corrupt_checkpoint(best, run_id, error, downloaded=downloaded) from None
    return HanSide(trial=best.number, held_out=[dev.docs], probabilities=dev.values, test=test)


def _kept_dev_outputs(tracker: Tracker, run_id: str | None, scratch: Path) -> DevOutputs | None:
    """The dev outputs the trial's run keeps; None for a trial from before they were kept,
    or whose upload failed."""
    if run_id is None:
        return None
    try:
        return DevOutputs.download(tracker, run_id, TRIAL_ARTIFACT, scratch)
    except TrackingError:
        return None


def baseline_side(corpus: Corpus, held_out: list[np.ndarray], test: Corpus, *,
                  num_classes: int, say: Echo) -> BaselineSide:
    """A baseline fitted on every training document but each held-out set; its scores of
    that set and of the test file, as probabilities at the temperature that fits all the
    held-out sets best (han.blend)."""
    assert corpus.labels is not None
    everything = np.arange(corpus.num_docs)
    scores, test_scores = [], []
    for index, docs in enumerate(held_out):
        started = time.perf_counter()
        fitted = fit_baseline(corpus, np.setdiff1d(everything, docs), num_classes=num_classes)
        scores.append(fitted.scores(corpus, docs))
        test_scores.append(fitted.scores(test))
        f1 = blend.macro_f1(corpus.labels[docs], scores[-1])
        say(f"baseline {index + 1}/{len(held_out)}: held-out macro-F1 {f1:.4f} on "
            f"{len(docs):,} documents ({time.perf_counter() - started:.1f}s)")
    labels = corpus.labels[np.concatenate(held_out)]
    temperature = blend.fit_temperature(np.concatenate(scores), labels)
    return BaselineSide(
        probabilities=blend.probabilities(np.concatenate(scores), temperature),
        test=np.mean([blend.probabilities(s, temperature) for s in test_scores], axis=0),
        temperature=temperature)


def _blend(inputs: _Inputs, han: HanSide, *, out: Path, folds: int | None,
           say: Echo) -> BlendResult:
    """Fit the baselines, choose the weight, write the submission, log the blend run."""
    classes = han.probabilities.shape[1]
    assert inputs.corpus.labels is not None
    labels = inputs.corpus.labels[np.concatenate(han.held_out)]
    study_name = inputs.study.study_name
    with _blend_run(inputs.tracker, study_name, trial=han.trial, folds=folds) as run:
        base = baseline_side(inputs.corpus, han.held_out, inputs.test_corpus,
                             num_classes=classes, say=say)
        choice = blend.choose_weight(han.probabilities, base.probabilities, labels)
        submission = han.test.with_probabilities(
            blend.blended(han.test.probabilities, base.test, choice.weight))
        write_submission(out, submission, inputs.ids)
        _log_blend(run, choice=choice, base=base, han=han, labels=labels, folds=folds)
        run.log_artifact(out, artifact_path="predictions")
    return BlendResult(out=out, rows=len(submission.labels), trial=han.trial, folds=folds,
                       choice=choice, temperature=base.temperature, run_id=run.id,
                       label_counts=label_counts(submission.labels), notes=submission.notes)


def _blend_run(tracker: Tracker, study_name: str, *, trial: int,
               folds: int | None) -> AbstractContextManager[RunHandle]:
    """A new `blend-trial-N` run under the study's parent run, one per export (each wrote
    its own submission)."""
    parent = tracker.find_parent_run(study_name)
    name = f"blend-trial-{trial}" + (f"-{folds}-folds" if folds else "")
    return tracker.child_run(
        experiment_id=tracker.experiment_id(study_name), name=name,
        tags=run_tags(Role.BLEND, study=study_name, parent_run_id=parent, trial_number=trial,
                      folds=folds) | code_tags(),
        params={Key.TRIAL_NUMBER: trial, Key.FOLDS: folds or "none (the dev fold)"})


def _log_blend(run: RunHandle, *, choice: BlendChoice, base: BaselineSide, han: HanSide,
               labels: np.ndarray, folds: int | None) -> None:
    """The weight, the held-out figures and every probability the submission came from."""
    oof = folds is not None
    run.log_metrics({Key.BLEND_WEIGHT: choice.weight,
                     Key.BASELINE_TEMPERATURE: base.temperature,
                     Key.HELD_OUT_DOCS: choice.documents,
                     Key.blend_f1("han", out_of_fold=oof): choice.han_f1,
                     Key.blend_f1("baseline", out_of_fold=oof): choice.baseline_f1,
                     Key.blend_f1("blend", out_of_fold=oof): choice.blend_f1}, step=0)
    with tempfile.TemporaryDirectory(prefix="han-blend-") as scratch:
        path = Path(scratch) / Path(PROBABILITIES_ARTIFACT).name
        with written_file(path, what="the blend's probabilities") as handle:
            np.savez(handle, held_out_docs=np.concatenate(han.held_out), held_out_labels=labels,
                     held_out_han=han.probabilities, held_out_baseline=base.probabilities,
                     test_han=han.test.probabilities, test_baseline=base.test,
                     weight=choice.weight, temperature=base.temperature)
        run.log_artifact(path, artifact_path=str(Path(PROBABILITIES_ARTIFACT).parent))
