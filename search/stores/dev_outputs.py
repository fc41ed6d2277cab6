"""Dev-fold outputs kept on MLflow runs, so the best trial, the baseline and their blend are
compared without predicting the dev fold again: each complete trial's best-epoch class
probabilities on its run, the baseline's decision scores on the `baseline` run."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna
from optuna.trial import TrialState

from han import blend
from han.blend import BlendChoice
from han.files import written_file
from search.errors import TrackingError
from search.records import BaselineRecord, TrialRecord
from search.stores.tracking import RunHandle, Tracker

TRIAL_ARTIFACT = "evaluation/dev_probabilities.npz"
BASELINE_ARTIFACT = "evaluation/dev_scores.npz"


@dataclass(frozen=True, kw_only=True)
class DevOutputs:
    """A model's outputs for the dev documents of the training file."""

    docs: np.ndarray  # (N,) corpus indices, ascending
    labels: np.ndarray  # (N,) their true classes
    values: np.ndarray  # (N, C) class probabilities (a trial) or decision scores (baseline)

    def log(self, run: RunHandle, artifact: str) -> bool:
        """Upload as the .npz `artifact` of `run`; False when it could not be."""
        with tempfile.TemporaryDirectory(prefix="han-dev-") as scratch:
            path = Path(scratch) / Path(artifact).name
            with written_file(path, what="the dev fold's outputs") as handle:
                np.savez(handle, docs=self.docs, labels=self.labels, values=self.values)
            return run.log_artifact(path, artifact_path=str(Path(artifact).parent))

    @classmethod
    def download(cls, tracker: Tracker, run_id: str, artifact: str,
                 scratch: Path) -> DevOutputs:
        with np.load(tracker.download(run_id, artifact, scratch)) as saved:
            return cls(docs=saved["docs"], labels=saved["labels"], values=saved["values"])


def baseline_probabilities(scores: DevOutputs) -> np.ndarray:
    """The baseline's dev probabilities: its scores' softmax at the temperature fitted on
    these documents (han.blend)."""
    return blend.probabilities(scores.values,
                               blend.fit_temperature(scores.values, scores.labels))


def compare_on_dev(study: optuna.Study, tracker: Tracker) -> BlendChoice | None:
    """The best trial, the baseline and their blend on the dev fold, from the outputs their
    runs keep. None, quietly, when there is nothing to compare: no complete trial, no
    baseline (off or failed), outputs never stored (a study from before they were, or
    MLflow down at the time) or dev folds that differ (a searched split)."""
    baseline = BaselineRecord.of(study)
    if baseline is None or baseline.run_id is None or not study.get_trials(
            deepcopy=False, states=(TrialState.COMPLETE,)):
        return None
    trial_run = TrialRecord.of(study.best_trial).run_id
    if trial_run is None:
        return None
    with tempfile.TemporaryDirectory(prefix="han-compare-") as scratch:
        try:
            han = DevOutputs.download(tracker, trial_run, TRIAL_ARTIFACT, Path(scratch))
            scores = DevOutputs.download(tracker, baseline.run_id, BASELINE_ARTIFACT,
                                         Path(scratch))
        except (TrackingError, OSError, KeyError, ValueError):
            return None
    if not np.array_equal(han.docs, scores.docs):
        return None
    return blend.choose_weight(
        han.values, blend.widened(baseline_probabilities(scores), han.values.shape[1]),
        han.labels)
