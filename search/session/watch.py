"""One trial under the run's budget and the user's stop: admitted on its estimate, stopped at
--timeout (at the next batch), at the report past its share, or when the user asks."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from han.dev_reports import EpochMetrics
from han.stopping import Stop, StopReason
from search.errors import TrialSkipped
from search.session.budget import Budget

if TYPE_CHECKING:
    import optuna

    from han.cost import EpochEstimate
    from search.session.progress import Progress


class BudgetWatch:
    """The stops the budget and the user put to one trial (han.stopping)."""

    def __init__(self, trial: optuna.Trial, budget: Budget, *, epochs: int,
                 user_stop: Callable[[], bool] | None = None,
                 progress: Progress | None = None) -> None:
        self.trial, self.budget, self.epochs = trial, budget, epochs
        self.user_stop, self.progress = user_stop, progress
        self.started = budget.clock()

    def estimated(self, epoch: EpochEstimate) -> Stop | None:
        """The estimate after the first batches: skip the trial when not an epoch fits."""
        try:
            estimate = self.budget.admit(epoch, self.epochs)
        except TrialSkipped as skipped:
            return Stop(StopReason.SKIPPED, f"skipped: {skipped}")
        if self.progress is not None:
            self.progress.trial_estimated(self.trial, estimate)
        return None

    def should_stop(self) -> Stop | None:
        """At a batch boundary: a signal (the user's stop) or --timeout reached."""
        if self.user_stop is not None and self.user_stop():
            return Stop(StopReason.INTERRUPTED)
        if self.budget.expired():
            return Stop(StopReason.TIMEOUT, "stopped at --timeout")
        return None

    def at_report(self, metrics: EpochMetrics) -> Stop | None:
        """After an epoch's report: stop here, before an epoch the budget cannot hold (the
        last epoch ends the trial anyway)."""
        if metrics.epoch >= self.epochs:
            return None
        return self.budget.stop_at_report(self.started, metrics.epoch_seconds)
