"""What an epoch costs: the padded tokens of a batch plan, and an epoch's time estimated
from the first few timed training batches."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from han.batching import Segments
from han.stopping import Stop

# The first training batch of a run pays one-off costs (kernel selection, allocator warm-up)
# and is not timed; then at least PROBE_BATCHES are, and for at least PROBE_SECONDS (or to
# the epoch's end). Three batches alone took 0.1-0.3 s on small shapes, and estimates of one
# configuration then ranged 1m35s-5m19s (11,000 documents, 2 cores): a few short batches,
# each with its fixed cost (the optimiser step over a 107k-row embedding) and one-off
# kernel choices for new widths, stood for the whole epoch. Two seconds of batches average
# the length mix; a skipped trial costs that much more.
PROBE_BATCHES = 3
PROBE_SECONDS = 2.0
# Evaluation time per padded token as a share of a training step's: a forward pass without
# backward. README: 87.7 docs/s evaluating against 24.2 training, fp32 on 2 cores (0.28).
EVAL_SHARE = 0.3


def padded_tokens(segments: Segments, batches: Sequence[np.ndarray]) -> np.ndarray:
    """For each batch of documents, segments x width of the tensor it becomes (the encoder's
    work, padding included; see `han.batching.make_batch`)."""
    first = segments.doc_first_seg
    # Every document's last segment is its shortest; its first is its longest.
    longest = segments.seg_length[np.minimum(first[:-1], len(segments.seg_length) - 1)]
    counts = segments.num_segments
    return np.array([int(counts[docs].sum()) * int(longest[docs].max(initial=0))
                     for docs in batches], dtype=np.int64)


@dataclass(frozen=True, kw_only=True)
class EpochEstimate:
    """An epoch's estimated time, its training batches and its dev evaluation apart, and
    what it was estimated from."""

    train_seconds: float
    eval_seconds: float
    timed_batches: int
    timed_seconds: float

    @property
    def seconds(self) -> float:
        return self.train_seconds + self.eval_seconds


class Probe:
    """Times a run's first training batches and, once enough are timed, hands the estimate
    of a whole epoch to `report` (once)."""

    def __init__(self, train_tokens: np.ndarray, eval_tokens: int,
                 report: Callable[[EpochEstimate], Stop | None]) -> None:
        self.train_tokens = train_tokens
        self.eval_tokens = eval_tokens
        self.report: Callable[[EpochEstimate], Stop | None] | None = report
        self.started = time.perf_counter()

    def begin(self) -> None:
        """Call before the epoch's first batch."""
        self.started = time.perf_counter()

    def batch_done(self, index: int) -> Stop | None:
        """Call after training batch `index` of the epoch; the last batch of an epoch of
        few batches reports what it has. The stop the report asks for, if any."""
        if self.report is None:
            return None
        last = len(self.train_tokens) - 1
        if index == 0 and last > 0:
            self.started = time.perf_counter()  # the warm-up batch is not timed
            return None
        seconds = time.perf_counter() - self.started
        if (index < PROBE_BATCHES or seconds < PROBE_SECONDS) and index < last:
            return None
        timed = slice(1, index + 1) if index else slice(0, 1)
        rate = seconds / max(int(self.train_tokens[timed].sum()), 1)
        report, self.report = self.report, None
        return report(EpochEstimate(train_seconds=rate * int(self.train_tokens.sum()),
                                    eval_seconds=rate * EVAL_SHARE * self.eval_tokens,
                                    timed_batches=max(index, 1), timed_seconds=seconds))
