"""Training with early stopping on dev macro-F1, reports on a grid of documents seen
(han.dev_reports), stops a caller asks for (han.stopping), and resumable state."""

from __future__ import annotations

import functools
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support
from torch import nn

from han.batching import Batch, EncodedSplit, length_batches, make_batch, split_batch
from han.checkpoint import save_checkpoint
from han.config import DataConfig, HANConfig, TrainConfig
from han.cost import EpochEstimate, Probe, padded_tokens
from han.dev_reports import DevReports, EpochCallback, EpochMetrics, ReportCallback
from han.device import autocast, batch_tensors, check_precision, resolve_device, trim_heap, use_bf16
from han.errors import DeviceOutOfMemoryError, NonFiniteLossError
from han.files import written_file
from han.metrics import macro_f1_noise
from han.model import HAN
from han.predict import predict_probabilities
from han.stopping import Stop, StopReason

BEST_CHECKPOINT = "best.pt"
STATE_FILE = "last_state.pt"


@dataclass(frozen=True, kw_only=True)
class TrainResult:
    best_dev_f1: float
    best_epoch: int
    history: tuple[EpochMetrics, ...]
    checkpoint_path: Path
    stop: Stop  # why training ended (han.stopping)
    resumed_from_epoch: int
    dev_labels: np.ndarray  # true labels of the dev documents
    dev_predictions: np.ndarray  # the best epoch's predictions for them
    # The best epoch's (dev docs, C) class probabilities, for blending with another model
    # without predicting the dev fold again; None after resuming a state saved without them.
    dev_probabilities: np.ndarray | None = None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_model(model_config: HANConfig, data: EncodedSplit | None = None) -> HAN:
    model = HAN(model_config)
    if data is not None and data.pretrained is not None:
        model.load_pretrained(torch.from_numpy(data.pretrained))
    return model


def cross_entropy(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of `labels` under (N, C) `probabilities`."""
    if not len(labels):
        return math.nan
    chosen = probabilities[np.arange(len(labels)), labels].astype(np.float64)
    return float(-np.log(np.maximum(chosen, 1e-12)).mean())


def macro_scores(true: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    precision, recall, f1, _ = precision_recall_fscore_support(
        true, predicted, average="macro", zero_division=0
    )
    return {"dev_macro_f1": float(f1), "dev_macro_precision": float(precision),
            "dev_macro_recall": float(recall), "dev_accuracy": accuracy_score(true, predicted)}


def class_weights(labels: np.ndarray, num_classes: int, scheme: str) -> np.ndarray | None:
    """Each class's weight in the training loss for the training labels `labels`: None for
    "none"; for "inverse" n / (C n_c), for "sqrt" its square root (a class with no training
    document gets 0: it never meets the loss). Only the ratios matter: a batch's loss is
    divided by its documents' total weight."""
    if scheme == "none":
        return None
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    weights = np.zeros(num_classes)
    present = counts > 0
    weights[present] = len(labels) / (present.sum() * counts[present])
    return np.sqrt(weights) if scheme == "sqrt" else weights


def train_step(model: HAN, optimizer: torch.optim.Optimizer, batch: Batch,
               device: torch.device, *, clip: float, bf16: bool, epoch: int = 1,
               step: int = 0, max_tokens: int | None = None,
               check_finite: bool = True,
               weights: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimisation step on a labelled batch: forward (under bf16 autocast when asked),
    cross-entropy in fp32 (each document weighted by its class's entry of `weights` when
    given: the batch's loss is then the weighted mean), backward, gradient clipping to norm
    `clip`, update.

    With `max_tokens`, a batch of more padded tokens (segments x width) goes forward and
    backward in chunks of documents that each hold at most that many (one document may hold
    more), each chunk's loss its documents' share of the batch's: the same step as one
    pass, with the activations of one chunk alive at a time (a batch of 32 documents of
    8 x 256 tokens holds 1.6 GB of them).

    Returns the loss (a 0-dim tensor on `device`) and the logits, both detached. With
    `check_finite`, a non-finite loss raises NonFiniteLossError (naming `epoch` and `step`)
    before the weights change; reading the loss waits for the device, so a GPU caller asks
    for it only now and then.
    """
    optimizer.zero_grad(set_to_none=True)
    total: torch.Tensor | None = None
    logits = []
    assert batch.labels is not None
    # Chunks sum their documents' losses over the whole batch's weight: the same step as one
    # pass over the batch.
    batch_weight = float(batch.size if weights is None else weights[batch.labels].sum())
    weight = None if weights is None else torch.from_numpy(weights).float().to(device)
    for chunk in split_batch(batch, max_tokens):
        tokens, token_lengths, seg_counts = batch_tensors(chunk, device)
        labels = torch.from_numpy(chunk.labels).to(device, non_blocking=True)
        with autocast(device, bf16=bf16):
            chunk_logits = model(tokens, token_lengths, seg_counts)
        loss = nn.functional.cross_entropy(chunk_logits.float(), labels, weight=weight,
                                           reduction="sum") / max(batch_weight, 1e-12)
        if check_finite and not math.isfinite(value := loss.item()):
            raise NonFiniteLossError(epoch=epoch, step=step, loss=value)
        loss.backward()
        total = loss.detach() if total is None else total + loss.detach()
        logits.append(chunk_logits.detach())
    nn.utils.clip_grad_norm_(model.parameters(), clip)
    optimizer.step()
    assert total is not None  # a batch has at least one document
    return total, torch.cat(logits)


@dataclass(kw_only=True)
class _Run:
    """One training run's moving parts and the record `last_state.pt` keeps of them."""

    model: HAN
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    rng: np.random.Generator
    history: list[EpochMetrics]
    best_dev_pred: np.ndarray
    best_dev_probabilities: np.ndarray | None = None
    best_f1: float = -1.0
    best_epoch: int = 0
    stale: int = 0

    @classmethod
    def start(cls, data: EncodedSplit, model_config: HANConfig, train_config: TrainConfig,
              device: torch.device) -> _Run:
        """A fresh model and optimiser, seeded by `train_config.seed`."""
        seed_everything(train_config.seed)
        model = build_model(model_config, data).to(device)
        optimizer = torch.optim.Adam((p for p in model.parameters() if p.requires_grad),
                                     lr=train_config.lr)
        scheduler = torch.optim.lr_scheduler.StepLR(
            optimizer, step_size=train_config.decay_steps, gamma=train_config.lr_decay)
        return cls(model=model, optimizer=optimizer, scheduler=scheduler,
                   rng=np.random.default_rng(train_config.seed), history=[],
                   best_dev_pred=np.zeros_like(data.labels[data.dev_docs]))

    def restore(self, path: Path, device: torch.device) -> int:
        """Continue from the state saved after an epoch; returns the epochs done."""
        state = torch.load(path, map_location=device, weights_only=True)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.rng.bit_generator.state = state["numpy_rng"]
        torch.set_rng_state(state["torch_rng"])
        self.history = [EpochMetrics(**entry) for entry in state["history"]]
        self.best_f1, self.best_epoch, self.stale = (state["best_f1"], state["best_epoch"],
                                                     state["stale"])
        self.best_dev_pred = state["best_dev_pred"].numpy()
        kept = state.get("best_dev_probabilities")  # absent from states of older versions
        self.best_dev_probabilities = None if kept is None else kept.numpy()
        return len(self.history)

    def record(self, metrics: EpochMetrics, dev_probabilities: np.ndarray) -> bool:
        """Add an epoch to the history; True when it is the best so far."""
        self.history.append(metrics)
        if metrics.dev_macro_f1 > self.best_f1:
            self.best_f1, self.best_epoch, self.stale = metrics.dev_macro_f1, metrics.epoch, 0
            self.best_dev_pred = dev_probabilities.argmax(1)
            self.best_dev_probabilities = dev_probabilities
            return True
        self.stale += 1
        return False

    def result(self, stop: Stop, *, data: EncodedSplit, checkpoint_path: Path,
               resumed_from: int) -> TrainResult:
        """The run so far, ended by `stop`, its best model in `checkpoint_path`."""
        return TrainResult(best_dev_f1=self.best_f1, best_epoch=self.best_epoch,
                           history=tuple(self.history), checkpoint_path=checkpoint_path,
                           stop=stop, resumed_from_epoch=resumed_from,
                           dev_labels=data.labels[data.dev_docs],
                           dev_predictions=self.best_dev_pred,
                           dev_probabilities=self.best_dev_probabilities)

    def save(self, path: Path) -> None:
        """Everything needed to continue after this epoch, written atomically."""
        with written_file(path, what="the training state", new_folders=False) as handle:
            torch.save({
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "numpy_rng": self.rng.bit_generator.state,
                "torch_rng": torch.get_rng_state(),
                "history": [asdict(entry) for entry in self.history],
                "best_f1": self.best_f1,
                "best_epoch": self.best_epoch,
                "stale": self.stale,
                "best_dev_pred": torch.from_numpy(self.best_dev_pred),
                "best_dev_probabilities": None if self.best_dev_probabilities is None
                else torch.from_numpy(self.best_dev_probabilities),
            }, handle)


def train(
    data: EncodedSplit,
    *,
    model_config: HANConfig,
    data_config: DataConfig,
    train_config: TrainConfig,
    checkpoint_dir: Path,
    on_epoch: EpochCallback | None = None,
    should_stop: Callable[[], Stop | None] | None = None,
    resume: bool = False,
    on_estimate: Callable[[EpochEstimate], Stop | None] | None = None,
    on_report: ReportCallback | None = None,
) -> TrainResult:
    """Train until a stop (han.stopping): early stopping, the epoch limit, not learning (the
    loss diverged), or one a callback returns, which the result carries.

    After every epoch the best model so far is in `checkpoint_dir/best.pt` and the whole
    training state in `checkpoint_dir/last_state.pt`; with `resume=True` training continues
    from that state when it exists. `on_epoch` gets each epoch's metrics; `on_report` gets
    the dev macro-F1 on the grid of `train_config.report_every` (see `Report`), inside
    epochs and at their ends; `should_stop` is asked before every batch; `on_estimate` gets
    the first epoch's estimated time after a few batches (han.cost.Probe). A stop any of
    them returns ends training there, with the best epoch so far as the result (best_epoch
    0: none finished). What they raise propagates."""
    device = _training_device(train_config.device)
    check_precision(device, train_config.precision)
    reports = DevReports.of(data, data_config, train_config, on_report)
    step = _Step.of(data, data_config, train_config, device, should_stop=should_stop,
                    reports=reports)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    best_path = checkpoint_dir / BEST_CHECKPOINT
    state_path = checkpoint_dir / STATE_FILE
    run = _Run.start(data, model_config, train_config, device)
    resumed_from = run.restore(state_path, device) if resume and state_path.exists() else 0
    result = functools.partial(run.result, data=data, checkpoint_path=best_path,
                               resumed_from=resumed_from)
    first_epoch = len(run.history) + 1
    reports.last_step = reports.grid.epoch_end(first_epoch - 1) if first_epoch > 1 else -1
    if run.stale >= train_config.patience:  # a run resumed after it stopped early
        return result(Stop(StopReason.EARLY_STOPPING))
    for epoch in range(first_epoch, train_config.epochs + 1):
        probe = on_estimate if epoch == first_epoch else None
        try:
            done = _epoch(run, data, epoch, step, on_estimate=probe)
        except NonFiniteLossError as diverged:
            return result(Stop(StopReason.NOT_LEARNING, f"not learning: diverged, {diverged}"))
        if isinstance(done, Stop):
            return result(done)
        metrics, dev_probabilities = done
        if run.record(metrics, dev_probabilities):
            _save_best(best_path, run, data, model_config, data_config, epoch=epoch)
        run.save(state_path)
        asked = on_epoch(metrics) if on_epoch is not None else None
        stop = reports.epoch_done(metrics) or asked
        if stop is not None:
            return result(stop)
        if run.stale >= train_config.patience:
            return result(Stop(StopReason.EARLY_STOPPING))
    return result(Stop(StopReason.EPOCH_LIMIT))


def _save_best(path: Path, run: _Run, data: EncodedSplit, model_config: HANConfig,
               data_config: DataConfig, *, epoch: int) -> None:
    """The best model so far as a stand-alone checkpoint (configs, vocabulary, labels)."""
    save_checkpoint(path, model=run.model, model_config=model_config, data_config=data_config,
                    vocab=data.vocab, label_names=data.label_names, file_format=data.file_format,
                    label_values=data.label_values,
                    extra={"epoch": epoch, "dev_macro_f1": run.best_f1})


@dataclass(frozen=True, kw_only=True)
class _Step:
    """How every batch of one training run is taken."""

    data_config: DataConfig
    train_config: TrainConfig
    device: torch.device
    bf16: bool
    should_stop: Callable[[], bool] | None
    reports: DevReports
    # Each class's weight in the loss (train_config.class_weight); None: unweighted.
    weights: np.ndarray | None = None

    @classmethod
    def of(cls, data: EncodedSplit, data_config: DataConfig, train_config: TrainConfig,
           device: torch.device, *, should_stop: Callable[[], bool] | None,
           reports: DevReports) -> _Step:
        bf16 = use_bf16(device, train_config.precision, batch_size=train_config.batch_size)
        weights = class_weights(data.labels[data.train_docs], data.num_classes,
                                train_config.class_weight)
        return cls(data_config=data_config, train_config=train_config, device=device,
                   bf16=bf16, should_stop=should_stop, reports=reports, weights=weights)

    @property
    def max_tokens(self) -> int | None:
        # Chunks keep a CPU process's memory down; a GPU is starved by them.
        return self.train_config.max_batch_tokens if self.device.type == "cpu" else None


def _training_device(name: str) -> torch.device:
    device = resolve_device(name)
    if device.type == "cuda":
        torch.backends.cudnn.enabled = True
        torch.backends.cudnn.benchmark = True
    return device


def _epoch(run: _Run, data: EncodedSplit, epoch: int, step: _Step, *,
           on_estimate: Callable[[EpochEstimate], Stop | None] | None
           ) -> tuple[EpochMetrics, np.ndarray] | Stop:
    """One pass over the training documents, then the dev evaluation: the epoch's metrics
    and (dev docs, C) class probabilities (in `dev_docs` order); or the stop a callback
    returned during the pass."""
    started = time.perf_counter()
    trained = _train_batches(run, data, epoch, step, on_estimate=on_estimate)
    if isinstance(trained, Stop):
        return trained
    if step.device.type == "cuda":
        torch.cuda.synchronize(step.device)
    train_seconds = time.perf_counter() - started

    dev_probabilities = predict_probabilities(run.model, data.segments, data.dev_docs,
                                              batch_size=step.train_config.eval_batch_size,
                                              device=step.device)
    trim_heap()
    dev_true = data.labels[data.dev_docs]
    dev_pred = dev_probabilities.argmax(1)
    scores = macro_scores(dev_true, dev_pred)
    metrics = EpochMetrics(
        epoch=epoch,
        train_loss=trained.loss / max(trained.seen, 1),
        dev_loss=cross_entropy(dev_probabilities, dev_true),
        dev_macro_f1_noise=macro_f1_noise(dev_true, dev_pred),
        train_macro_f1=float(f1_score(np.concatenate(trained.true),
                                      np.concatenate(trained.predicted), average="macro",
                                      zero_division=0)),
        lr=run.optimizer.param_groups[0]["lr"],
        epoch_seconds=time.perf_counter() - started,
        train_docs_per_s=trained.seen / train_seconds if train_seconds > 0 else 0.0,
        **scores,
    )
    return metrics, dev_probabilities


def _probe(data: EncodedSplit, plan: list[np.ndarray], step: _Step,
           report: Callable[[EpochEstimate], Stop | None]) -> Probe:
    """A probe of this epoch's batch plan and of its evaluations: the whole dev fold at the
    end, the dev sample at each report inside the epoch."""
    size = step.train_config.eval_batch_size
    dev_plan = length_batches(data.segments, data.dev_docs, batch_size=size, rng=None)
    eval_tokens = int(padded_tokens(data.segments, dev_plan).sum())
    if step.reports.per_epoch():
        sample_plan = length_batches(data.segments, step.reports.sample, batch_size=size,
                                     rng=None)
        eval_tokens += (step.reports.per_epoch()
                        * int(padded_tokens(data.segments, sample_plan).sum()))
    return Probe(padded_tokens(data.segments, plan), eval_tokens, report)


# On a GPU, reading the loss on the host waits for the device: it is checked for NaN every
# this many batches rather than after each.
CHECK_EVERY = 32


@dataclass(frozen=True)
class _Pass:
    """A pass over the training batches: summed loss, documents, and the true and
    predicted classes batch by batch."""

    loss: float
    seen: int
    true: list[np.ndarray]
    predicted: list[np.ndarray]


def _train_batches(run: _Run, data: EncodedSplit, epoch: int, step: _Step, *,
                   on_estimate: Callable[[EpochEstimate], Stop | None] | None
                   ) -> _Pass | Stop:
    """Train on every training batch once, reporting on the grid as documents go by; the
    stop a callback returned on the way ends the pass (with where it came)."""
    config = step.train_config
    run.model.train()
    losses: list[torch.Tensor] = []
    seen = 0
    train_true, train_pred = [], []
    plan = length_batches(data.segments, data.train_docs, batch_size=config.batch_size,
                          rng=run.rng)
    probe = None if on_estimate is None else _probe(data, plan, step, on_estimate)
    if probe is not None:
        probe.begin()
    done_before = (epoch - 1) * len(data.train_docs)
    for index, docs in enumerate(plan):
        asked = step.should_stop() if step.should_stop is not None else None
        if asked is not None:
            return asked.at(f"stopped at epoch {epoch}, batch {index}")
        batch = make_batch(data.segments, docs, data.labels)
        loss, logits = _step(run, batch, step, epoch=epoch, index=index)
        run.scheduler.step()
        losses.append(loss * batch.size)
        train_true.append(batch.labels)
        train_pred.append(logits.argmax(1))
        stop = _report_inside(run, data, step, epoch=epoch, before=done_before + seen,
                              after=done_before + seen + batch.size)
        seen += batch.size
        stop = stop or (probe.batch_done(index) if probe is not None else None)
        if stop is not None:
            return stop
    total_loss = float(torch.stack(losses).sum()) if losses else 0.0
    if not math.isfinite(total_loss):
        raise NonFiniteLossError(epoch=epoch, step=len(plan) - 1, loss=total_loss)
    return _Pass(loss=total_loss, seen=seen, true=train_true,
                 predicted=[p.cpu().numpy() for p in train_pred])


def _step(run: _Run, batch: Batch, step: _Step, *, epoch: int,
          index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`train_step` on one batch; a device out of memory names the batch's shape."""
    config = step.train_config
    try:
        return train_step(run.model, run.optimizer, batch, step.device, clip=config.clip,
                          bf16=step.bf16, epoch=epoch, step=index,
                          max_tokens=step.max_tokens,
                          check_finite=step.device.type == "cpu" or index % CHECK_EVERY == 0,
                          weights=step.weights)
    except torch.OutOfMemoryError as error:
        rows, width = batch.tokens.shape
        raise DeviceOutOfMemoryError(
            f"{step.device} out of memory at batch size {batch.size} with {rows} "
            f"segments of up to {width} tokens (seg_len {step.data_config.seg_len}, "
            f"max_segments {step.data_config.max_segments})") from error


def _report_inside(run: _Run, data: EncodedSplit, step: _Step, *, epoch: int, before: int,
                   after: int) -> Stop | None:
    """The report due after a batch that took the documents seen from `before` to `after`
    (han.dev_reports), scored on the dev sample; the stop its callback returned."""
    point = step.reports.due(epoch=epoch, before=before, after=after)
    if point is None:
        return None
    predicted = predict_probabilities(
        run.model, data.segments, step.reports.sample,
        batch_size=step.train_config.eval_batch_size, device=step.device).argmax(1)
    run.model.train()
    trim_heap()
    return step.reports.inside_epoch(point, epoch=epoch, docs_seen=after, predicted=predicted)
