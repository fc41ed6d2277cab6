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


# Multiply-accumulates a recurrent cell does per step and input unit, by gate count.
GATES = {"lstm": 4, "gru": 3}
# A training step's backward pass costs about twice its forward pass.
TRAIN_PASSES = 3
# An Adam update reads and writes a parameter's value, gradient and two moments: about as much
# time as this many multiply-accumulates, once per batch for every trainable parameter (the
# embedding table's rows included: its gradient is dense).
UPDATE_COST = 8


@dataclass(frozen=True, kw_only=True)
class Shape:
    """What an epoch's arithmetic depends on besides the data: a model's sizes, its cell, its
    segments and its batches."""

    seg_len: int
    max_segments: int
    batch_size: int
    embed_dim: int
    word_hidden: int
    sent_hidden: int
    word_layers: int = 2
    sent_layers: int = 2
    cell: str = "lstm"
    trainable_params: int = 0


def _encoder_units(cell: str, input_size: int, hidden: int, layers: int) -> int:
    """Multiply-accumulates of a bidirectional encoder and its attention, per position."""
    sizes = [input_size] + [2 * hidden] * (layers - 1)
    recurrent = sum(2 * GATES[cell] * hidden * (size + hidden) for size in sizes)
    return recurrent + (2 * hidden) ** 2


def workload(shape: Shape, train_lengths: np.ndarray, dev_lengths: np.ndarray) -> float:
    """An epoch's arithmetic in multiply-accumulates, modeled from the shape and the
    documents' lengths (tokens): the training pass (forward and backward over every kept
    token and segment, an Adam update per batch) and the dev evaluation (forward only).
    Not a time: a session turns it into one with the rate its timed trials showed
    (`Probe`'s estimates), so configurations are compared before any of them runs."""
    word = _encoder_units(shape.cell, shape.embed_dim, shape.word_hidden, shape.word_layers)
    sent = _encoder_units(shape.cell, 2 * shape.word_hidden, shape.sent_hidden,
                          shape.sent_layers)

    def forward(lengths: np.ndarray) -> float:
        segments = np.minimum(-(-lengths // shape.seg_len), shape.max_segments)
        return float(segments.sum()) * (shape.seg_len * word + sent)

    batches = -(-len(train_lengths) // shape.batch_size)
    return (TRAIN_PASSES * forward(train_lengths) + forward(dev_lengths)
            + batches * UPDATE_COST * shape.trainable_params)
