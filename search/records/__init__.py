"""What a study writes down, by name: Optuna study attributes (`study`), trial attributes
(`trial`) and MLflow tags, params and metric keys (`tags`).

No other module spells a record key: they read and write through the accessors here, so a
key is renamed in one place and every reader of a study (the session, the trials, the
exports, the reports, the command line) agrees on what it holds. The bottom of search/: it
imports nothing of search/ but its errors.
"""

from search.records.study import (
    SHORT_HASH,
    BaselineRecord,
    DatasetRecord,
    StudyRecord,
    Word2VecRecord,
    first_rung,
    set_first_rung,
)
from search.records.tags import (
    LOCAL_SOURCE,
    MAX_PARAM_LENGTH,
    MAX_TAG_LENGTH,
    MODEL_NAME_RE,
    MODEL_NAME_RULE,
    PRIMARY_METRIC,
    TRAINING_EXPERIMENT_KIND,
    DataContext,
    Key,
    Role,
    RunState,
    Tag,
    best_tags,
    data_tags,
    end_tags,
    environment_tags,
    experiment_tags,
    fingerprint_tags,
    role_filter,
    run_tags,
    source_tags,
)
from search.records.trial import (
    Outcome,
    TrialRecord,
    add_report_noise,
    from_data_attrs,
    reference_attrs,
    retry_attrs,
    set_dev_confusion,
    set_epochs_done,
    set_local_checkpoint,
    set_max_epochs,
    set_outcome,
    set_pruned_by,
    set_reason,
    set_run_id,
)

__all__ = [
    "LOCAL_SOURCE", "MAX_PARAM_LENGTH", "MAX_TAG_LENGTH", "MODEL_NAME_RE", "MODEL_NAME_RULE",
    "PRIMARY_METRIC", "SHORT_HASH", "TRAINING_EXPERIMENT_KIND", "BaselineRecord", "DataContext",
    "DatasetRecord", "Key", "Outcome", "Role", "RunState", "StudyRecord", "Tag", "TrialRecord",
    "Word2VecRecord", "add_report_noise", "best_tags", "data_tags", "end_tags",
    "environment_tags", "experiment_tags", "fingerprint_tags", "first_rung", "from_data_attrs",
    "reference_attrs", "retry_attrs", "role_filter", "run_tags", "set_dev_confusion",
    "set_epochs_done", "set_first_rung", "set_local_checkpoint", "set_max_epochs",
    "set_outcome", "set_pruned_by", "set_reason", "set_run_id", "source_tags",
]
