"""search.pruners on a real Optuna study (SQLite storage): FieldPercentilePruner's field holds
every trial that reported at the step, pruned ones too; EvidencePruner prunes only on
evidence beyond the reports' noise."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from search import records
from search.pruners import Comparison, EvidencePruner, FieldPercentilePruner, decision
from search.records import DatasetRecord
from search.studyfile.components import PrunerTable


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


# ------------------------------------------------------------------- the evidence pruner

CLASSES = 20  # a guess scores 1 / 20 = 0.05


def _evidence_study(tmp_path: Path, **pruner: Any) -> optuna.Study:
    study = _study(tmp_path, EvidencePruner(**pruner))
    DatasetRecord(path=tmp_path / "train.tsv", sha256="0" * 64, size=1, docs=1000,
                  classes=CLASSES).write(study)
    return study


def _report(trial: optuna.Trial, step: int, value: float, noise: float) -> None:
    records.add_report_noise(trial, step, noise)
    trial.report(value, step)


def _field(study: optuna.Study, values: list[float], *, step: int = 100,
           noise: float = 0.02) -> None:
    for value in values:
        trial = study.ask()
        _report(trial, step, value, noise)
        study.tell(trial, value)


def _judged(study: optuna.Study, value: float, *, step: int = 100,
            noise: float = 0.02) -> tuple[bool, Comparison | None]:
    trial = study.ask()
    _report(trial, step, value, noise)
    pruned = trial.should_prune()
    study.tell(trial, state=TrialState.PRUNED if pruned else TrialState.COMPLETE,
               values=None if pruned else value)
    return pruned, decision(study.pruner, trial.number)


def test_a_field_of_chance_level_reports_prunes_no_one(tmp_path: Path) -> None:
    study = _evidence_study(tmp_path, min_resource=100)
    # Reports at a guess's level, differing by more than their (small) noise: a degenerate
    # model that predicts one class scores lower still, and is no worse for it.
    _field(study, [0.05, 0.06, 0.04, 0.055, 0.05], noise=0.003)
    pruned, comparison = _judged(study, 0.005, noise=0.001)
    assert not pruned
    assert comparison is not None and comparison.rank == 6 and comparison.bar == 0.055


def test_a_trial_clearly_below_a_learning_field_is_pruned_with_its_comparison(
        tmp_path: Path) -> None:
    study = _evidence_study(tmp_path, min_resource=100)
    _field(study, [0.60, 0.62, 0.65, 0.70, 0.58])
    pruned, comparison = _judged(study, 0.30)
    assert pruned
    # Six reports: the best two go on; the bar is the second best.
    assert comparison == Comparison(
        step=100, value=0.30, noise=0.02, bar=0.65, bar_noise=0.02,
        margin=pytest.approx(2 * math.hypot(0.02, 0.02)), rank=6, reports=6, kept=2,
        chance=1 / CLASSES, pruned=True)
    assert "below the bar 0.6500" in comparison.describe()


def test_a_trial_below_the_bar_by_less_than_the_noise_goes_on(tmp_path: Path) -> None:
    study = _evidence_study(tmp_path, min_resource=100)
    _field(study, [0.60, 0.62, 0.65, 0.70, 0.58], noise=0.03)
    pruned, comparison = _judged(study, 0.58, noise=0.03)
    assert not pruned
    assert comparison is not None and comparison.bar - comparison.value < comparison.margin


def test_the_first_rung_is_where_the_first_trial_showed_learning(tmp_path: Path) -> None:
    study = _evidence_study(tmp_path)
    assert records.first_rung(study) is None
    first = study.ask()
    # At a guess's level at 50 documents; clearly above it (0.05 + 2 x 0.02) at 100, but
    # not yet half way from a guess to its best (0.05 + (0.65 - 0.05) / 2 = 0.35); there
    # at 150.
    for step, value in ((50, 0.06), (100, 0.20), (150, 0.40), (200, 0.65)):
        _report(first, step, value, 0.02)
    study.tell(first, 0.65)
    _field(study, [0.5, 0.6], step=100)  # their reports at 100 alone: not the first rung
    pruned, comparison = _judged(study, 0.0, step=100)
    assert not pruned and comparison is None  # before the first rung
    assert records.first_rung(study) == {"step": 150, "trial": 0, "value": 0.40,
                                         "noise": 0.02, "chance": 1 / CLASSES, "best": 0.65}


def test_rungs_lie_a_reduction_factor_apart_and_decide_once(tmp_path: Path) -> None:
    study = _evidence_study(tmp_path, min_resource=100, reduction_factor=3)
    for _ in range(3):
        trial = study.ask()
        for step in (100, 200, 300, 900):
            _report(trial, step, 0.8, 0.02)
        study.tell(trial, 0.8)
    trial = study.ask()
    _report(trial, 100, 0.8, 0.02)  # level with the field at the first rung
    assert not trial.should_prune()
    _report(trial, 200, 0.1, 0.02)  # far behind, but between rungs: no decision
    assert not trial.should_prune()
    _report(trial, 300, 0.1, 0.02)  # the second rung
    assert trial.should_prune()


def test_the_evidence_pruner_is_a_study_file_choice(tmp_path: Path) -> None:
    table = PrunerTable(name="evidence", min_resource="0.5 epochs", reduction_factor=3)
    assert table.table() == {"name": "evidence", "min_resource": "0.5 epochs",
                             "reduction_factor": 3}
    with pytest.raises(ValueError, match="reduction_factor"):
        EvidencePruner(reduction_factor=1)


# ------------------------------------------------------------------- against the best curve
# With one other trial on record no rung of successive halving has a field: a trial is
# measured against the study's best trial's reports at the same documents, and its own
# trend over the documents its share still holds (its horizon).

BEST = {100: 0.50, 200: 0.69, 300: 0.80, 400: 0.83}


def _best_curve_study(tmp_path: Path, best: dict[int, float] = BEST) -> optuna.Study:
    study = _evidence_study(tmp_path, min_resource=100)
    trial = study.ask()
    trial.set_user_attr("epoch_docs", 200)
    for step, value in best.items():
        _report(trial, step, value, 0.01)
    study.tell(trial, max(best.values()))
    return study


def _following(study: optuna.Study, curve: dict[int, float], *, horizon: int,
               noise: float = 0.01) -> tuple[int | None, Comparison | None]:
    """The step where a trial with `curve` and `horizon` documents left is pruned (None: it
    is not), and the pruner's last comparison for it."""
    trial = study.ask()
    trial.set_user_attr("epoch_docs", 200)
    records.set_horizon(trial, horizon)
    for step, value in curve.items():
        _report(trial, step, value, noise)
        if trial.should_prune():
            study.tell(trial, state=TrialState.PRUNED)
            return step, decision(study.pruner, trial.number)
    study.tell(trial, list(curve.values())[-1])
    return None, decision(study.pruner, trial.number)


def test_a_trial_clearly_below_the_best_curve_that_cannot_catch_up_is_pruned(
        tmp_path: Path) -> None:
    study = _best_curve_study(tmp_path)
    # 0.09-0.27 below the best (noise 0.01). At step 200 its one epoch of reports climbs
    # 0.2 per 100 documents: it could still pass 0.83. At 300 the line through its last
    # epoch's reports gains 0.13 per 200 documents, and 200 are left: about 0.66 < 0.83.
    step, comparison = _following(study, {100: 0.40, 200: 0.60, 300: 0.53}, horizon=200)
    assert step == 300
    assert comparison is not None and comparison.rule == "best curve"
    assert comparison.best_trial == 0 and comparison.bar == pytest.approx(0.80)
    assert comparison.projected is not None and comparison.projected < 0.83
    assert "below trial 0's 0.8000" in comparison.describe()


def test_a_trial_below_the_best_that_its_trend_could_still_lift_goes_on(
        tmp_path: Path) -> None:
    study = _best_curve_study(tmp_path)
    # As far below, climbing 0.2 an epoch with three epochs left: 0.60 + 0.6 > 0.83.
    step, comparison = _following(study, {100: 0.40, 200: 0.60}, horizon=600)
    assert step is None
    assert comparison is not None and not comparison.pruned and comparison.projected > 0.83


def test_a_trial_within_the_noise_of_the_best_curve_goes_on(tmp_path: Path) -> None:
    study = _best_curve_study(tmp_path)
    # 0.02 under the best at each step with a noise of 0.02: not evidence, whatever its trend.
    step, _ = _following(study, {100: 0.48, 200: 0.67, 300: 0.78}, horizon=0, noise=0.02)
    assert step is None


def test_a_best_curve_at_chance_prunes_no_one(tmp_path: Path) -> None:
    chance = 1 / CLASSES
    study = _best_curve_study(tmp_path, {100: chance, 200: chance + 0.01, 300: chance})
    step, _ = _following(study, {100: 0.0, 200: 0.0, 300: 0.0}, horizon=0)
    assert step is None
