"""Reports of the dev macro-F1 while a model trains, for a pruner to read: on a grid of
training documents seen, inside epochs on a fixed dev sample, at each epoch's end on the
whole dev fold."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
from sklearn.metrics import f1_score

from han.batching import EncodedSplit, stratified_sample
from han.config import DataConfig, TrainConfig
from han.metrics import macro_f1_noise, sample_size
from han.stopping import Stop


@dataclass(frozen=True, kw_only=True)
class EpochMetrics:
    epoch: int
    train_loss: float
    train_macro_f1: float
    dev_macro_f1: float
    dev_macro_precision: float
    dev_macro_recall: float
    dev_accuracy: float
    lr: float
    epoch_seconds: float
    train_docs_per_s: float
    # Mean cross-entropy of the dev fold, unweighted: ln C for a uniform guess. NaN in the
    # history of a run saved before it was recorded.
    dev_loss: float = math.nan
    # The noise of dev_macro_f1 (han.metrics.macro_f1_noise); NaN likewise.
    dev_macro_f1_noise: float = math.nan

    def as_dict(self) -> dict[str, float]:
        return {key: value for key, value in asdict(self).items() if key != "epoch"}


@dataclass(frozen=True, kw_only=True)
class Report:
    """The dev macro-F1 at a point of training, for a pruner: `step` is the training
    documents seen, on the run's `ReportGrid`. Inside an epoch it scores a fixed stratified
    sample of `dev_docs` dev documents; at an epoch's end the whole dev fold, and
    `epoch_metrics` holds that epoch's figures."""

    step: int
    epoch: int
    docs_seen: int
    dev_macro_f1: float
    dev_docs: int
    # The report's noise: the standard deviation of its macro-F1 over resamples of the
    # documents it scored (han.metrics.macro_f1_noise).
    dev_macro_f1_noise: float = 0.0
    epoch_metrics: EpochMetrics | None = None

    @property
    def end_of_epoch(self) -> bool:
        return self.epoch_metrics is not None


# What a caller hears after each epoch and at each report; a Stop it returns ends training.
EpochCallback = Callable[[EpochMetrics], Stop | None]
ReportCallback = Callable[[Report], Stop | None]


@dataclass(frozen=True)
class ReportGrid:
    """Where reports fall: at multiples of `every` training documents, the same points for
    every run over `epoch_docs` training documents whatever its batch size. An epoch's end
    is reported at the grid point it has reached (every None: exactly at its end)."""

    every: int | None
    epoch_docs: int

    def epoch_end(self, epoch: int) -> int:
        seen = epoch * self.epoch_docs
        return seen if self.every is None else seen // self.every * self.every

    def crossed(self, before: int, after: int, epoch: int) -> int | None:
        """The grid point inside epoch `epoch` that training from `before` to `after`
        documents crossed (the highest, if several), or None. The epoch's own end point is
        left to the epoch's end, which scores the whole dev fold there."""
        if self.every is None:
            return None
        point = after // self.every * self.every
        return point if before < point < self.epoch_end(epoch) else None


@dataclass(kw_only=True)
class DevReports:
    """A run's reports: the grid, the dev sample scored inside epochs, the callback."""

    grid: ReportGrid
    sample: np.ndarray  # dev documents scored by reports inside an epoch
    sample_labels: np.ndarray  # their true classes
    dev_size: int
    callback: ReportCallback | None
    last_step: int = -1

    @classmethod
    def of(cls, data: EncodedSplit, data_config: DataConfig, train_config: TrainConfig,
           callback: ReportCallback | None) -> DevReports:
        # Seeded by the split's seed alone: every trial of a study scores the same sample.
        size = train_config.report_dev_docs or sample_size(data.labels[data.dev_docs])
        sample = stratified_sample(data.labels, data.dev_docs, size=size,
                                   seed=data_config.split_seed)
        return cls(grid=ReportGrid(train_config.report_every, len(data.train_docs)),
                   sample=sample, sample_labels=data.labels[sample],
                   dev_size=len(data.dev_docs), callback=callback)

    @property
    def inside_epochs(self) -> bool:
        return self.callback is not None and self.grid.every is not None

    def per_epoch(self) -> int:
        """Reports inside one epoch (at most)."""
        every = self.grid.every
        return 0 if not self.inside_epochs or every is None else self.grid.epoch_docs // every

    def due(self, *, epoch: int, before: int, after: int) -> int | None:
        """The grid point a batch that took the documents seen from `before` to `after`
        crossed inside epoch `epoch`, when a report is due there; else None."""
        return self.grid.crossed(before, after, epoch) if self.inside_epochs else None

    def inside_epoch(self, point: int, *, epoch: int, docs_seen: int,
                     predicted: np.ndarray) -> Stop | None:
        """Report the dev sample's `predicted` classes at grid `point`; the callback's stop."""
        assert self.callback is not None
        self.last_step = point
        true = self.sample_labels
        f1 = float(f1_score(true, predicted, average="macro", zero_division=0))
        return self.callback(Report(step=point, epoch=epoch, docs_seen=docs_seen,
                                    dev_macro_f1=f1, dev_docs=len(self.sample),
                                    dev_macro_f1_noise=macro_f1_noise(true, predicted)))

    def epoch_done(self, metrics: EpochMetrics) -> Stop | None:
        """Report the epoch's whole-dev F1 at its grid point (once: a point an earlier
        report took is not reported again); the callback's stop."""
        point = self.grid.epoch_end(metrics.epoch)
        if self.callback is None or point <= self.last_step:
            return None
        self.last_step = point
        return self.callback(Report(
            step=point, epoch=metrics.epoch, docs_seen=metrics.epoch * self.grid.epoch_docs,
            dev_macro_f1=metrics.dev_macro_f1, dev_docs=self.dev_size,
            dev_macro_f1_noise=metrics.dev_macro_f1_noise, epoch_metrics=metrics))
