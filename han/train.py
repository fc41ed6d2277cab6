"""Training with early stopping on dev macro-F1, per-epoch reports and resumable state."""

from __future__ import annotations

import contextlib
import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support
from torch import nn

from han.checkpoint import save_checkpoint
from han.config import DataConfig, HANConfig, TrainConfig
from han.data import Batch, EncodedSplit
from han.model import HAN

BEST_CHECKPOINT = "best.pt"
STATE_FILE = "last_state.pt"


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the configuration diverged."""

    def __init__(self, *, epoch: int, step: int, loss: float) -> None:
        super().__init__(f"non-finite loss {loss} at epoch {epoch}, step {step}")
        self.epoch, self.step, self.loss = epoch, step, loss


class DeviceOutOfMemoryError(RuntimeError):
    """The device ran out of memory; the message gives the batch and segment shape."""


class TrainingInterrupted(RuntimeError):
    """`should_stop` asked to stop; raised at a batch boundary."""


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

    def as_dict(self) -> dict[str, float]:
        return {key: value for key, value in asdict(self).items() if key != "epoch"}


@dataclass(frozen=True, kw_only=True)
class TrainResult:
    best_dev_f1: float
    best_epoch: int
    history: tuple[EpochMetrics, ...]
    checkpoint_path: Path
    stop_reason: str  # "max_epochs" | "early_stopping" | "callback"
    resumed_from_epoch: int
    dev_labels: np.ndarray  # true labels of the dev documents
    dev_predictions: np.ndarray  # the best epoch's predictions for them


EpochCallback = Callable[[EpochMetrics], bool | None]


def resolve_device(name: str) -> torch.device:
    """'auto' means the first CUDA device when there is one."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but CUDA is not available")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def batch_tensors(batch: Batch, device: torch.device) -> tuple[torch.Tensor, ...]:
    arrays = (batch.tokens.astype(np.int64), batch.token_lengths, batch.seg_counts)
    tensors = tuple(torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64)) for a in arrays)
    if device.type == "cuda":
        return tuple(t.pin_memory().to(device, non_blocking=True) for t in tensors)
    return tensors


def use_bf16(device: torch.device, precision: str) -> bool:
    if precision != "auto":
        return precision == "bf16"
    if device.type == "cuda":
        return True
    return device.type == "cpu" and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def autocast(device: torch.device, *, bf16: bool) -> contextlib.AbstractContextManager[Any]:
    if bf16:
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def build_model(model_config: HANConfig, data: EncodedSplit | None = None) -> HAN:
    model = HAN(model_config)
    if data is not None and data.pretrained is not None:
        model.load_pretrained(torch.from_numpy(data.pretrained))
    return model


def predict_batches(model: HAN, batches: Iterator[Batch], device: torch.device
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities of every document the batches hold, in the batches' order."""
    model.eval()
    docs, probabilities = [], []
    # bf16 inference only on CUDA: on CPU, fp32 keeps a document's logits independent of
    # its batch mates to 1e-5.
    with torch.inference_mode(), autocast(device, bf16=device.type == "cuda"):
        for batch in batches:
            logits = model(*batch_tensors(batch, device))
            probabilities.append(torch.softmax(logits.float(), dim=1).cpu().numpy())
            docs.append(batch.doc_indices)
    return np.concatenate(docs), np.concatenate(probabilities)


def macro_scores(true: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    precision, recall, f1, _ = precision_recall_fscore_support(
        true, predicted, average="macro", zero_division=0
    )
    return {"dev_macro_f1": float(f1), "dev_macro_precision": float(precision),
            "dev_macro_recall": float(recall), "dev_accuracy": accuracy_score(true, predicted)}


def train(
    data: EncodedSplit,
    *,
    model_config: HANConfig,
    data_config: DataConfig,
    train_config: TrainConfig,
    checkpoint_dir: Path,
    on_epoch: EpochCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
    resume: bool = False,
) -> TrainResult:
    """Train until early stopping, the epoch limit, or `on_epoch` returning True.

    After every epoch the best model so far is in `checkpoint_dir/best.pt` and the whole
    training state in `checkpoint_dir/last_state.pt`; with `resume=True` training continues
    from that state when it exists. Exceptions raised by `on_epoch` propagate (the search
    uses that to prune).
    """
    device = resolve_device(train_config.device)
    if device.type == "cuda":
        torch.backends.cudnn.enabled = True
        torch.backends.cudnn.benchmark = True
    bf16 = use_bf16(device, train_config.precision)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    best_path = checkpoint_dir / BEST_CHECKPOINT
    state_path = checkpoint_dir / STATE_FILE

    seed_everything(train_config.seed)
    model = build_model(model_config, data).to(device)
    optimizer = torch.optim.Adam((p for p in model.parameters() if p.requires_grad),
                                 lr=train_config.lr)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=train_config.decay_steps,
                                                gamma=train_config.lr_decay)
    loss_fn = nn.CrossEntropyLoss()
    rng = np.random.default_rng(train_config.seed)
    history: list[EpochMetrics] = []
    best_f1, best_epoch, stale_epochs = -1.0, 0, 0
    dev_true = data.labels[data.dev_docs]
    best_dev_pred = np.zeros_like(dev_true)
    resumed_from = 0

    if resume and state_path.exists():
        state = torch.load(state_path, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        rng.bit_generator.state = state["numpy_rng"]
        torch.set_rng_state(state["torch_rng"])
        history = [EpochMetrics(**entry) for entry in state["history"]]
        best_f1, best_epoch, stale_epochs = state["best_f1"], state["best_epoch"], state["stale"]
        best_dev_pred = state["best_dev_pred"].numpy()
        resumed_from = len(history)

    stop_reason = "max_epochs"
    first_epoch = len(history) + 1
    if stale_epochs >= train_config.patience:
        first_epoch, stop_reason = train_config.epochs + 1, "early_stopping"
    for epoch in range(first_epoch, train_config.epochs + 1):
        started = time.perf_counter()
        model.train()
        total_loss, seen = 0.0, 0
        train_true, train_pred = [], []
        for step, batch in enumerate(data.batches(data.train_docs,
                                                  batch_size=train_config.batch_size, rng=rng)):
            if should_stop is not None and should_stop():
                raise TrainingInterrupted(f"stopped at epoch {epoch}, batch {step}")
            try:
                tokens, token_lengths, seg_counts = batch_tensors(batch, device)
                labels = torch.from_numpy(batch.labels).to(device)
                with autocast(device, bf16=bf16):
                    logits = model(tokens, token_lengths, seg_counts)
                loss = loss_fn(logits.float(), labels)
                loss_value = loss.item()
                if not math.isfinite(loss_value):
                    raise NonFiniteLossError(epoch=epoch, step=step, loss=loss_value)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
            except torch.OutOfMemoryError as error:
                rows, width = batch.tokens.shape
                raise DeviceOutOfMemoryError(
                    f"{device} out of memory at batch size {batch.size} with {rows} "
                    f"segments of up to {width} tokens (seg_len {data_config.seg_len}, "
                    f"max_segments {data_config.max_segments})") from error
            nn.utils.clip_grad_norm_(model.parameters(), train_config.clip)
            optimizer.step()
            scheduler.step()
            total_loss += loss_value * batch.size
            seen += batch.size
            train_true.append(batch.labels)
            train_pred.append(logits.argmax(1).cpu().numpy())
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        train_seconds = time.perf_counter() - started

        docs, probabilities = predict_batches(
            model, data.batches(data.dev_docs, batch_size=train_config.eval_batch_size,
                                rng=None), device)
        dev_pred = np.empty_like(dev_true)
        dev_pred[np.searchsorted(data.dev_docs, docs)] = probabilities.argmax(1)
        scores = macro_scores(dev_true, dev_pred)
        metrics = EpochMetrics(
            epoch=epoch,
            train_loss=total_loss / max(seen, 1),
            train_macro_f1=float(f1_score(np.concatenate(train_true),
                                          np.concatenate(train_pred), average="macro",
                                          zero_division=0)),
            lr=optimizer.param_groups[0]["lr"],
            epoch_seconds=time.perf_counter() - started,
            train_docs_per_s=seen / train_seconds if train_seconds > 0 else 0.0,
            **scores,
        )
        history.append(metrics)
        if metrics.dev_macro_f1 > best_f1:
            best_f1, best_epoch, stale_epochs = metrics.dev_macro_f1, epoch, 0
            best_dev_pred = dev_pred
            save_checkpoint(best_path, model=model, model_config=model_config,
                            data_config=data_config, vocab=data.vocab,
                            label_names=data.label_names, file_format=data.file_format,
                            label_values=data.label_values,
                            extra={"epoch": epoch, "dev_macro_f1": best_f1})
        else:
            stale_epochs += 1
        _save_state(state_path, model=model, optimizer=optimizer, scheduler=scheduler, rng=rng,
                    history=history, best_f1=best_f1, best_epoch=best_epoch,
                    stale=stale_epochs, best_dev_pred=best_dev_pred)
        if on_epoch is not None and on_epoch(metrics):
            stop_reason = "callback"
            break
        if stale_epochs >= train_config.patience:
            stop_reason = "early_stopping"
            break

    return TrainResult(
        best_dev_f1=best_f1,
        best_epoch=best_epoch,
        history=tuple(history),
        checkpoint_path=best_path,
        stop_reason=stop_reason,
        resumed_from_epoch=resumed_from,
        dev_labels=dev_true,
        dev_predictions=best_dev_pred,
    )


def _save_state(path: Path, *, model: HAN, optimizer: torch.optim.Optimizer,
                scheduler: torch.optim.lr_scheduler.LRScheduler, rng: np.random.Generator,
                history: list[EpochMetrics], best_f1: float, best_epoch: int, stale: int,
                best_dev_pred: np.ndarray) -> None:
    """Everything needed to continue after this epoch, written atomically."""
    temporary = path.with_suffix(".tmp")
    torch.save({
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "numpy_rng": rng.bit_generator.state,
        "torch_rng": torch.get_rng_state(),
        "history": [asdict(entry) for entry in history],
        "best_f1": best_f1,
        "best_epoch": best_epoch,
        "stale": stale,
        "best_dev_pred": torch.from_numpy(best_dev_pred),
    }, temporary)
    temporary.replace(path)
