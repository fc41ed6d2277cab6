"""search.pruners.FieldPercentilePruner on a real Optuna study (SQLite storage): the field
a trial is measured against holds every trial that reported at the step, pruned ones too."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from search.pruners import FieldPercentilePruner
from search.studyspec import PrunerTable


def _study(tmp_path: Path, pruner: optuna.pruners.BasePruner,
           direction: str = "maximize") -> optuna.Study:
    tmp_path.mkdir(parents=True, exist_ok=True)
    return optuna.create_study(storage=f"sqlite:///{tmp_path}/optuna.db", pruner=pruner,
                               direction=direction)


def _finished(study: optuna.Study, curve: dict[int, float], state: TrialState) -> None:
    trial = study.ask()
    for step, value in curve.items():
        trial.report(value, step)
    if state == TrialState.COMPLETE:
        study.tell(trial, list(curve.values())[-1])
    else:
        study.tell(trial, state=state)


def _pruned_at(study: optuna.Study, curve: dict[int, float]) -> int | None:
    """The step where the study's pruner stops a new trial with this curve, or None."""
    trial = study.ask()
    for step, value in curve.items():
        trial.report(value, step)
        if trial.should_prune():
            study.tell(trial, state=TrialState.PRUNED)
            return step
    study.tell(trial, list(curve.values())[-1])
    return None


def _early_study(tmp_path: Path, pruner: optuna.pruners.BasePruner) -> optuna.Study:
    """One complete trial that was best from the start, three pruned at step 10 well below."""
    study = _study(tmp_path, pruner)
    _finished(study, {10: 0.50, 20: 0.80}, TrialState.COMPLETE)
    for value in (0.10, 0.12, 0.08):
        _finished(study, {10: value}, TrialState.PRUNED)
    return study


def test_a_slow_starter_above_the_field_goes_on_where_the_complete_only_rule_stops_it(
        tmp_path: Path) -> None:
    slow_starter = {10: 0.30, 20: 0.85}
    field = _early_study(tmp_path / "field", FieldPercentilePruner(25.0, n_warmup_steps=10))
    assert _pruned_at(field, slow_starter) is None
    # Optuna's rule sets the bar at step 10 by the one complete trial alone (0.50).
    complete_only = _early_study(tmp_path / "complete", optuna.pruners.PercentilePruner(
        25.0, n_startup_trials=1, n_warmup_steps=10))
    assert _pruned_at(complete_only, slow_starter) == 10


def test_a_trial_below_the_field_is_pruned_at_the_first_check(tmp_path: Path) -> None:
    study = _early_study(tmp_path, FieldPercentilePruner(25.0, n_warmup_steps=10))
    assert _pruned_at(study, {10: 0.05, 20: 0.90}) == 10


def test_no_check_before_the_warmup_off_the_grid_or_with_too_few_in_the_field(
        tmp_path: Path) -> None:
    study = _early_study(tmp_path / "warmup", FieldPercentilePruner(25.0, n_warmup_steps=20))
    assert _pruned_at(study, {10: 0.0, 20: 0.9}) is None
    # The grid is 10, 30, 50...: step 20 is not checked, though only the complete trial
    # reported there.
    study = _early_study(tmp_path / "grid", FieldPercentilePruner(
        0.0, n_warmup_steps=10, interval_steps=20))
    assert _pruned_at(study, {10: 0.9, 20: 0.01}) is None
    # Two trials reported at step 20; three are asked for.
    study = _early_study(tmp_path / "few", FieldPercentilePruner(
        25.0, n_warmup_steps=20, n_min_trials=3))
    _finished(study, {10: 0.5, 20: 0.7}, TrialState.COMPLETE)
    assert _pruned_at(study, {10: 0.5, 20: 0.0}) is None


def test_startup_trials_count_complete_ones(tmp_path: Path) -> None:
    study = _early_study(tmp_path, FieldPercentilePruner(25.0, n_startup_trials=2))
    assert _pruned_at(study, {10: 0.0}) is None  # one complete trial of two


def test_minimize_keeps_the_lowest(tmp_path: Path) -> None:
    study = _study(tmp_path, FieldPercentilePruner(50.0), direction="minimize")
    for value in (1.0, 2.0, 3.0):
        _finished(study, {5: value}, TrialState.COMPLETE)
    assert _pruned_at(study, {5: 1.5}) is None
    assert _pruned_at(study, {5: 2.9}) == 5


@pytest.mark.parametrize(("arguments", "message"), [
    ({"percentile": 120.0}, "percentile must be in [0, 100]"),
    ({"percentile": 25.0, "interval_steps": 0}, "interval_steps and n_min_trials"),
])
def test_bad_arguments_are_refused(arguments: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[")):
        FieldPercentilePruner(**arguments)


def test_a_study_file_names_it_with_counts_in_epochs() -> None:
    table = PrunerTable(name="field_percentile", percentile=20.0,
                        n_warmup_steps="0.2 epochs", interval_steps="0.2 epochs")
    assert table.table()["interval_steps"] == "0.2 epochs"
