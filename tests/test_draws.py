"""What the sampler may draw under a time budget (search.samplers.ShapedSampler with
search.session.draws's rules): nothing a rule refuses, on real Optuna samplers; an epoch the
cost model says is over a trial's share is refused, and so is a learning rate that decays
away within the first epoch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution

from han.cost import EpochEstimate
from search.records import TrialRecord
from search.samplers import ShapedSampler
from search.session.budget import Budget
from search.session.draws import MIN_FIRST_EPOCH_LR, CostModel, DrawRules, shaped_sampler
from search.setup.options import RunOptions
from search.setup.resolve import resolve
from search.studyfile import load_study_file
from search.studyfile.space import suggest
from tests.conftest import easy_corpus
from tests.test_search import study_toml

SPACE = {"width": CategoricalDistribution([1, 2, 4, 8]),
         "depth": CategoricalDistribution([1, 2, 4]), "rate": FloatDistribution(0.0, 1.0)}


def too_big(params: dict[str, Any]) -> str | None:
    return "too big" if params["width"] * params["depth"] > 8 else None


@pytest.mark.parametrize("base", [
    optuna.samplers.TPESampler(seed=0, n_startup_trials=5),
    optuna.samplers.TPESampler(seed=0, n_startup_trials=5, multivariate=True),
    optuna.samplers.RandomSampler(seed=0)], ids=["tpe", "tpe-multivariate", "random"])
def test_nothing_a_rule_refuses_is_drawn(base: optuna.samplers.BaseSampler) -> None:
    sampler = ShapedSampler(base, space=SPACE, refuse=too_big, shrinkable=("width", "depth"))
    study = optuna.create_study(direction="maximize", sampler=sampler)
    # Enqueued trials keep their parameters, even refused ones.
    study.enqueue_trial({"width": 8, "depth": 4, "rate": 0.5})
    for _ in range(40):
        trial = study.ask()
        params = {name: trial._suggest(name, distribution) for name, distribution in SPACE.items()}
        # The bigger the better: the sampler is pushed towards what the rule refuses.
        study.tell(trial, params["width"] * params["depth"] + params["rate"])
    drawn = study.trials[1:]
    assert study.trials[0].params == {"width": 8, "depth": 4, "rate": 0.5}
    assert all(too_big(t.params) is None for t in drawn)
    assert sampler.refused  # it was pushed, and drew again
    assert max(t.params["width"] * t.params["depth"] for t in drawn) == 8


@pytest.fixture(scope="module")
def resolved(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("draws")
    easy_corpus(root / "train.tsv", docs=120)
    path = study_toml(root / "study.toml", name="draws", train="train.tsv")
    text = path.read_text(encoding="utf-8")
    path.write_text(text + '\n[space.lr_decay]\ntype = "float"\nlow = 0.5\nhigh = 1.0\n'
                    '\n[space.decay_steps]\ntype = "int"\nlow = 1\nhigh = 100\n',
                    encoding="utf-8")
    return resolve(load_study_file(path), RunOptions(device="cpu"))


SMALLEST = {"word_hidden": 8, "sent_hidden": 8, "lr": 1e-3, "seg_len": 16, "max_segments": 2,
            "lr_decay": 1.0, "decay_steps": 100}
LARGEST = SMALLEST | {"word_hidden": 16, "sent_hidden": 16, "seg_len": 32, "max_segments": 4}


def test_an_epoch_over_the_share_is_refused_once_a_trial_was_timed(resolved: Any) -> None:
    cost = CostModel(resolved, vocabulary=200)
    budget = Budget(100, clock=lambda: 0.0)  # a trial's share: 20 s
    rules = DrawRules(resolved, budget, cost)
    assert rules(LARGEST) is None  # nothing timed yet: nothing known
    # The smallest configuration timed at 5 s an epoch: the largest is predicted over 20 s.
    cost.observe(SMALLEST, EpochEstimate(train_seconds=5.0, eval_seconds=0.0, timed_batches=3,
                                         timed_seconds=1.0))
    assert cost.seconds(SMALLEST) == pytest.approx(5.0)
    largest = cost.seconds(LARGEST)
    assert largest is not None and largest > 20
    assert rules(SMALLEST) is None
    assert (rules(LARGEST) or "").startswith("an epoch of about")


def test_the_shaped_space_draws_nothing_whose_epoch_exceeds_the_share(resolved: Any) -> None:
    cost = CostModel(resolved, vocabulary=200)
    cost.observe(SMALLEST, EpochEstimate(train_seconds=4.0, eval_seconds=0.0, timed_batches=3,
                                         timed_seconds=1.0))
    budget = Budget(100, clock=lambda: 0.0)
    rules = DrawRules(resolved, budget, cost)
    study = optuna.create_study(sampler=shaped_sampler(
        resolved, optuna.samplers.TPESampler(seed=1, n_startup_trials=5), rules))
    limit = budget.limit()
    assert limit == 20
    for _ in range(30):
        trial = study.ask()
        params = suggest(trial, resolved.spec.space)
        seconds = cost.seconds(params)
        assert seconds is not None
        reshaped = TrialRecord.of(study.trials[trial.number]).reshaped
        assert seconds <= limit or reshaped, (params, seconds)
        study.tell(trial, -seconds)  # the sampler is pushed towards the costly corner


def test_a_learning_rate_that_decays_away_in_the_first_epoch_is_refused(resolved: Any) -> None:
    rules = DrawRules(resolved, Budget(None), CostModel(resolved, vocabulary=200))
    # 90 training documents, batches of 16: 6 steps an epoch.
    assert rules(SMALLEST | {"lr_decay": 0.5, "decay_steps": 2}) is not None  # 0.5^3 = 12.5%
    assert rules(SMALLEST | {"lr_decay": 0.5, "decay_steps": 3}) is None  # 0.5^2 = 25%
    assert MIN_FIRST_EPOCH_LR == 0.25


def test_nothing_fits_when_the_cheapest_epoch_exceeds_the_time_left(resolved: Any,
                                                                   tmp_path: Path) -> None:
    cost = CostModel(resolved, vocabulary=200)
    cost.observe(SMALLEST, EpochEstimate(train_seconds=4.0, eval_seconds=0.0, timed_batches=3,
                                         timed_seconds=1.0))
    now = {"t": 0.0}
    rules = DrawRules(resolved, Budget(100, clock=lambda: now["t"]), cost)
    assert rules.nothing_fits() is None
    now["t"] = 98.0  # 2 s left, the cheapest epoch about 4 s
    assert "hold no epoch of the space's cheapest configuration" in (rules.nothing_fits() or "")


def test_a_prediction_grows_half_with_the_arithmetic_and_half_with_the_batches(
        resolved: Any) -> None:
    cost = CostModel(resolved, vocabulary=200)
    cost.observe(SMALLEST, EpochEstimate(train_seconds=4.0, eval_seconds=0.0, timed_batches=3,
                                         timed_seconds=1.0))
    # Batches twice as large: half the batches, about the same arithmetic.
    halved = SMALLEST | {"batch_size": 32}  # the study fixes 16
    units = cost.units(halved) / cost.units(SMALLEST)
    batches = cost.batches(halved) / cost.batches(SMALLEST)
    assert batches == pytest.approx(0.5, abs=0.1)
    assert cost.seconds(halved) == pytest.approx(4.0 * (0.5 * units + 0.5 * batches))
    # Two timed trials: the median of what each predicts.
    cost.observe(halved, EpochEstimate(train_seconds=6.0, eval_seconds=0.0, timed_batches=3,
                                       timed_seconds=1.0))
    from_smallest = 4.0 * (0.5 * units + 0.5 * batches)
    assert cost.seconds(halved) == pytest.approx((from_smallest + 6.0) / 2)


def test_nothing_fits_below_the_shortest_epoch_timed_in_the_run(resolved: Any) -> None:
    """The space's cheapest configuration may be predicted to fit where no epoch the run
    timed would: the run then ends rather than draw what it would skip."""
    cost = CostModel(resolved, vocabulary=200)
    cost.observe(LARGEST, EpochEstimate(train_seconds=30.0, eval_seconds=0.0, timed_batches=3,
                                        timed_seconds=1.0))
    now = {"t": 0.0}
    budget = Budget(1000, clock=lambda: now["t"])
    budget.admit(EpochEstimate(train_seconds=30.0, eval_seconds=0.0, timed_batches=3,
                               timed_seconds=1.0), 5)
    rules = DrawRules(resolved, budget, cost)
    cheapest = cost.seconds(SMALLEST)
    assert cheapest is not None and cheapest < 20
    now["t"] = 975.0  # 25 s left: the cheapest predicted fits, the shortest timed does not
    assert (rules.nothing_fits() or "").startswith(
        "the 25s of --timeout left are less than the shortest epoch timed in this run (30s)")
    now["t"] = 960.0
    assert rules.nothing_fits() is None
