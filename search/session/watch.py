"""One trial under the run's budget and the user's stop: admitted on its estimate, stopped at
--timeout (at the next batch), at the report past its share (or paused there, when it leads
and improves), or when the user asks."""

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

# Whether a trial whose share is spent is paused rather than stopped, from its epochs so far.
PauseRule = Callable[[list[EpochMetrics]], bool]


class BudgetWatch:
    """The stops the budget and the user put to one trial (han.stopping). A `promoted` trial
    has no share: it may take the time left. `pause` decides, when the share is spent,
    whether the trial pauses (its state kept for a promotion) instead of stopping;
    `on_estimate` hears the first epoch's estimate (the session's cost model learns from
    it)."""

    def __init__(self, trial: optuna.Trial, budget: Budget, *, epochs: int,
                 user_stop: Callable[[], bool] | None = None,
                 progress: Progress | None = None, promoted: bool = False,
                 pause: PauseRule | None = None,
                 on_estimate: Callable[[EpochEstimate], None] | None = None) -> None:
        self.trial, self.budget, self.epochs = trial, budget, epochs
        self.user_stop, self.progress = user_stop, progress
        self.promoted, self.pause, self.on_estimate = promoted, pause, on_estimate
        self.started = budget.clock()
        self.history: list[EpochMetrics] = []

    def estimated(self, epoch: EpochEstimate) -> Stop | None:
        """The estimate after the first batches: skip the trial when not an epoch fits."""
        if self.on_estimate is not None:
            self.on_estimate(epoch)
        try:
            estimate = self.budget.admit(epoch, self.epochs, capped=not self.promoted)
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
        last epoch ends the trial anyway); pause instead when the share is what is spent
        and the trial leads and improves."""
        self.history.append(metrics)
        if metrics.epoch >= self.epochs:
            return None
        stop = self.budget.stop_at_report(self.started, metrics.epoch_seconds,
                                          capped=not self.promoted)
        if (stop is not None and stop.reason is StopReason.BUDGET_SHARE
                and self.pause is not None and self.pause(self.history)):
            return Stop(StopReason.PAUSED, f"paused: {stop.message.removeprefix('budget: ')}")
        return stop

    def documents_left(self, docs_seen: int, epoch_docs: int, *, resumed: bool) -> int:
        """Training documents the trial can still see: to its last epoch, and within its
        share or the time left at its pace (its last epoch's, evaluation included; before
        one ends, the pace so far of a trial that started from nothing)."""
        by_epochs = max(0, self.epochs * epoch_docs - docs_seen)
        limit = self.budget.left() if self.promoted else self.budget.limit_from(self.started)
        elapsed = self.budget.clock() - self.started
        if self.history and self.history[-1].epoch_seconds > 0:
            pace = epoch_docs / self.history[-1].epoch_seconds
        elif not resumed and elapsed > 0:
            pace = docs_seen / elapsed
        else:
            return by_epochs
        return by_epochs if limit is None else min(by_epochs, int(limit * pace))
