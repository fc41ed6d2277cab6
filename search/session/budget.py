"""The time budget of a run (`--timeout`): the time left, each trial's share of it, how many
of a trial's epochs fit before it starts (none: it is skipped), when a running trial stops,
and an ETA that never promises more time than is left."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from han.stopping import Stop, StopReason
from search.defaults import MAX_TRIAL_SHARE
from search.errors import TrialSkipped
from search.formatting import duration
from search.studyfile import StudySpec

if TYPE_CHECKING:
    from han.cost import EpochEstimate

# A run under --timeout ends after this many trials in a row were skipped while the time
# left is below the cheapest epoch it estimated: drawing on made hundreds of skipped trials
# (each a few timed batches, an Optuna trial and an MLflow run) in the last minutes of a
# 7-minute run. Both conditions: a few costly draws in a row mid-run must not end it.
MAX_SKIPS_IN_A_ROW = 5


@dataclass(frozen=True, kw_only=True)
class TrialEstimate:
    """A trial's cost as estimated before its first epoch: an epoch's time (training batches
    and the dev evaluation), the epochs it would run (`epochs`, of the `planned` ones: as
    many as fit the time left and the trial's cap), and the budget it meets."""

    epoch: EpochEstimate
    epochs: int
    planned: int
    left: float | None  # seconds of --timeout left when it was made; None: no timeout
    cap: float | None  # the most seconds the trial may take; None: no timeout

    @property
    def seconds(self) -> float:
        return self.epochs * self.epoch.seconds

    def describe(self) -> str:
        epochs = (str(self.epochs) if self.epochs == self.planned
                  else f"{self.epochs} of {self.planned}")
        text = (f"estimated {duration(self.seconds)} ({epochs} x "
                f"{duration(self.epoch.seconds)} per epoch)")
        if self.left is not None:
            text += f", {duration(self.left)} left"
        return text


class Budget:
    """`--timeout` seconds from `started` (a `clock()` reading); without a timeout, every
    trial fits and none is stopped."""

    def __init__(self, timeout: float | None, *, started: float | None = None,
                 share: float = MAX_TRIAL_SHARE,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout = timeout
        self.clock = clock
        self.started = clock() if started is None else started
        self.share = share
        # The cheapest epoch estimated in this run (seconds; None: none yet).
        self.cheapest: float | None = None

    def left(self) -> float | None:
        if self.timeout is None:
            return None
        return max(0.0, self.started + self.timeout - self.clock())

    def expired(self) -> bool:
        left = self.left()
        return left is not None and left <= 0.0

    @property
    def cap(self) -> float | None:
        """The most a trial may take."""
        return None if self.timeout is None else self.share * self.timeout

    def admit(self, estimate: EpochEstimate, epochs: int, *,
              capped: bool = True) -> TrialEstimate:
        """The trial's estimate, with the epochs it may run: all `epochs`, or as many as fit
        the time left and the trial's cap (it then stops at the report before the first
        that does not, and keeps its best epoch). TrialSkipped when not one epoch fits: the
        trial could not report once, and ends pruned after the few batches of its estimate,
        recorded as skipped, so the sampler learns to avoid what the budget cannot afford.
        A trial not `capped` (a promoted one) may take all the time left."""
        left, cap = self.left(), self.cap if capped else None
        if self.cheapest is None or estimate.seconds < self.cheapest:
            self.cheapest = estimate.seconds
        if left is not None and estimate.seconds > left:
            raise TrialSkipped(f"estimated {duration(estimate.seconds)} per epoch > "
                               f"{duration(left)} left")
        if cap is not None and estimate.seconds > cap:
            raise TrialSkipped(f"estimated {duration(estimate.seconds)} per epoch > "
                               f"{duration(cap)} per trial ({self.share:.0%} of --timeout)")
        limits = [limit for limit in (left, cap) if limit is not None]
        if not limits or estimate.seconds <= 0:
            fitting = epochs
        else:
            fitting = min(epochs, int(min(limits) // estimate.seconds))
        return TrialEstimate(epoch=estimate, epochs=fitting, planned=epochs, left=left, cap=cap)

    def limit(self) -> float | None:
        """The most seconds a new trial may take: its cap, or the time left when less (None:
        no timeout)."""
        return self.limit_from(self.clock())

    def limit_from(self, trial_started: float) -> float | None:
        """The seconds a trial started at `trial_started` has left: to its cap, or to the
        timeout when sooner (None: no timeout)."""
        left, cap = self.left(), self.cap
        if left is None or cap is None:
            return None
        return max(0.0, min(left, trial_started + cap - self.clock()))

    def below_cheapest(self) -> bool:
        """Whether the time left is less than the cheapest epoch estimated in this run: no
        trial drawn like the ones so far could report once."""
        left = self.left()
        return left is not None and self.cheapest is not None and left < self.cheapest

    def ends_after_skips(self, skipped_in_a_row: int) -> str | None:
        """Why the run ends after `skipped_in_a_row` skipped trials (see MAX_SKIPS_IN_A_ROW),
        or None to go on drawing."""
        if skipped_in_a_row < MAX_SKIPS_IN_A_ROW or not self.below_cheapest():
            return None
        return (f"the last {skipped_in_a_row} trials drawn were skipped, and the "
                f"{duration(self.left() or 0.0)} of --timeout left are less than the "
                f"cheapest epoch estimated in this run ({duration(self.cheapest or 0.0)})")

    def stop_at_report(self, trial_started: float, epoch_seconds: float, *,
                       capped: bool = True) -> Stop | None:
        """At a report: the stop of a trial whose next epoch, as long as the last one, would
        end past its cap (when `capped`) or the timeout; None to go on."""
        if self.timeout is None:
            return None
        now = self.clock()
        next_end = now + epoch_seconds
        if capped and self.cap is not None and next_end - trial_started > self.cap:
            return Stop(StopReason.BUDGET_SHARE,
                        f"budget: another epoch ({duration(epoch_seconds)}) would pass the "
                        f"trial's {duration(self.cap)} cap ({self.share:.0%} of --timeout)")
        if next_end > self.started + self.timeout:
            return Stop(StopReason.TIMEOUT,
                        f"budget: another epoch ({duration(epoch_seconds)}) would end past "
                        f"--timeout ({duration(self.left() or 0.0)} left)")
        return None

    def eta(self, *, elapsed: float, done: int, total: int | None) -> float | None:
        """Seconds until the run ends: the trials to go at the mean pace so far, never more
        than the time left."""
        return eta_seconds(elapsed=elapsed, done=done, total=total, left=self.left())


def budget_of(spec: StudySpec, *, timeout: float | None, started: float | None = None,
              clock: Callable[[], float] = time.monotonic) -> Budget:
    """The budget of a run of `spec`: `timeout` (--timeout) when given, else the study
    file's, each trial taking at most its `max_trial_share` of it."""
    return Budget(spec.timeout if timeout is None else timeout, started=started,
                  share=spec.max_trial_share, clock=clock)


def eta_seconds(*, elapsed: float, done: int, total: int | None,
                left: float | None) -> float | None:
    """`total - done` more trials at `elapsed / done` each, capped at `left` (None: no cap).
    None when nothing can be said (no trial done, or no trial count and no timeout)."""
    projected = None if not total or done == 0 else elapsed / done * max(total - done, 0)
    if left is None:
        return projected
    return left if projected is None else min(projected, left)
