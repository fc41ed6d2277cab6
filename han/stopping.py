"""Why training stopped: a small set of named reasons, and the one value that carries them.

`han.train.train` returns its stop in its result, and every callback that may end training
(`should_stop`, `on_estimate`, `on_epoch`, `on_report`) asks for a stop by returning one
(None: go on). No stop is an exception: exceptions are failures (a device out of memory, a
write the disk refused), and a stop is an answer the caller reads.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace


class StopReason(enum.StrEnum):
    """Why a training run ended."""

    # No better dev macro-F1 for `patience` epochs.
    EARLY_STOPPING = "early_stopping"
    # Every configured epoch ran (the value runs recorded before these names existed).
    EPOCH_LIMIT = "max_epochs"
    # The trial's share of a run's time budget (han-search's --timeout) is spent.
    BUDGET_SHARE = "budget_share"
    # The share is spent while the run leads and still improves: its state is kept, for the
    # caller to resume it later (han-search's promotion).
    PAUSED = "paused"
    # The run's time budget itself is spent.
    TIMEOUT = "timeout"
    # Not one epoch fits the budget, as estimated from the first batches: nothing trained.
    SKIPPED = "skipped"
    # A pruner found the run behind the others.
    PRUNED = "pruned"
    # The loss diverged, or the model is still at a uniform guess.
    NOT_LEARNING = "not_learning"
    # The user asked (a signal).
    INTERRUPTED = "interrupted"


@dataclass(frozen=True)
class Stop:
    """A stop: its reason, the one line that says why (for people), and where training was
    when it came inside an epoch (`stopped at epoch 2, batch 5`; None: at an epoch's end,
    or before training began)."""

    reason: StopReason
    message: str = ""
    where: str | None = None

    def at(self, where: str) -> Stop:
        """The stop, come inside an epoch at `where`."""
        return replace(self, where=where)

    def describe(self) -> str:
        """The message and where it came: `stopped at --timeout (stopped at epoch 2, batch
        5)`."""
        if self.where is None:
            return self.message or str(self.reason)
        return f"{self.message} ({self.where})" if self.message else self.where
