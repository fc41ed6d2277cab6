"""A study's linear baseline: trained once, before its first trial, on the trials' split,
recorded on the Optuna study and as the MLflow run `baseline` under the study's parent run."""

from __future__ import annotations

from dataclasses import dataclass

import optuna

from han.baseline import train_baseline
from han.errors import first_line
from search.records import BaselineRecord, Key, Role, run_tags
from search.setup.resolve import ResolvedRun
from search.stores.dev_outputs import BASELINE_ARTIFACT, DevOutputs
from search.stores.tracking import Tracker

RUN_NAME = "baseline"


@dataclass(frozen=True)
class BaselineOutcome:
    """What a session found or did: the study's baseline (None: off, or training failed),
    whether this session trained it, and why it has none when training failed."""

    record: BaselineRecord | None
    trained: bool = False
    error: str | None = None


def ensure_baseline(resolved: ResolvedRun, study: optuna.Study, *, tracker: Tracker,
                    parent_run_id: str, threads: int | None = None) -> BaselineOutcome:
    """The study's baseline, trained now unless it has one (a continued study is not
    retrained) or its study file turns it off; on the reference configuration's split, so
    that the baseline and the trials share one dev fold.

    Its run is started first, so a failure ends it FAILED with the reason; the failure (a
    corpus scikit-learn refuses, memory) is the outcome's `error`, and the search goes on.
    """
    spec, corpus = resolved.spec, resolved.corpus
    recorded = BaselineRecord.of(study)
    if recorded is not None or not spec.baseline:
        return BaselineOutcome(recorded)
    try:
        with tracker.child_run(
                experiment_id=tracker.experiment_id(spec.name), name=RUN_NAME,
                tags=run_tags(Role.BASELINE, study=spec.name, parent_run_id=parent_run_id)
                | dict(resolved.tags), required=False) as run:
            result = train_baseline(corpus, resolved.reference_data, threads=threads)
            run.log_params(result.params | {"train_docs": result.train_docs,
                                            "dev_docs": result.dev_docs})
            run.log_metrics({Key.DEV_F1: result.dev_macro_f1,
                             Key.DEV_ACCURACY: result.dev_accuracy,
                             Key.SECONDS: result.seconds, Key.FEATURES: result.features},
                            step=0)
            # So the run's summary compares the best trial, the baseline and their blend.
            DevOutputs(docs=result.dev_indices, labels=corpus.labels[result.dev_indices],
                       values=result.dev_scores).log(run, BASELINE_ARTIFACT)
    except (ValueError, MemoryError) as error:
        return BaselineOutcome(None, error=f"{type(error).__name__}: {first_line(error)}")
    record = BaselineRecord(dev_macro_f1=result.dev_macro_f1, dev_accuracy=result.dev_accuracy,
                            seconds=result.seconds, features=result.features,
                            model=result.description, run_id=run.run_id)
    record.write(study)
    return BaselineOutcome(record, trained=True)
