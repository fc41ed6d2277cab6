"""Throughput and memory figures of the training core for one file and configuration."""

from __future__ import annotations

import itertools
import os
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from han.batching import EncodedSplit, prepare, split_batch
from han.config import COMPETITION_FORMAT, DataConfig, FileFormat, TrainConfig
from han.device import check_precision, resolve_device, use_bf16
from han.io import read_corpus
from han.model import HAN, config_for
from han.predict import predict_probabilities
from han.train import build_model, train_step

WARMUP_STEPS = 2


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench(train_file: Path, *, model_config: dict[str, Any], data_config: DataConfig,
          batch_size: int, steps: int | None, device: str, precision: str = "auto",
          file_format: FileFormat = COMPETITION_FORMAT,
          max_batch_tokens: int | None = TrainConfig.max_batch_tokens) -> dict[str, Any]:
    """Time parsing+encoding the whole file, then `steps` training and evaluation batches
    (None: the rest of one epoch, and the whole dev fold).

    Training batches are drawn as in training (grouped by length, shuffled), after
    WARMUP_STEPS untimed ones that absorb one-off kernel and allocator set-up.
    `word_tokens_per_doc` is the padded tokens (segments x width) the word encoder ran per
    timed document, `real_tokens_per_doc` the tokens among them: their ratio is the padding.
    """
    torch_device = resolve_device(device)
    check_precision(torch_device, precision)
    bf16 = use_bf16(torch_device, precision, batch_size=batch_size)
    started = time.perf_counter()
    corpus = read_corpus(train_file, labelled=True, file_format=file_format)
    split = prepare(corpus, data_config)
    encode_seconds = time.perf_counter() - started
    encode_rss = peak_rss_mb()

    model = build_model(config_for(split, **model_config), split).to(torch_device)
    # As `train` takes a step: in chunks on CPU, whole on a GPU.
    max_tokens = max_batch_tokens if torch_device.type == "cpu" else None
    timed = _time_training(model, split, batch_size=batch_size, steps=steps,
                           device=torch_device, bf16=bf16, max_tokens=max_tokens)
    eval_docs = split.dev_docs if steps is None else split.dev_docs[: batch_size * steps]
    eval_seconds = _time_evaluation(model, split, eval_docs, batch_size=batch_size,
                                    device=torch_device)
    return {
        "file": str(train_file),
        "docs": corpus.num_docs,
        "tokens": len(corpus.tokens),
        "token_mode": corpus.file_format.tokens,
        "device": str(torch_device),
        "device_name": (torch.cuda.get_device_name(torch_device)
                        if torch_device.type == "cuda" else "cpu"),
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "seg_len": data_config.seg_len,
        "max_segments": data_config.max_segments,
        "batch_size": batch_size,
        "train_precision": "bf16" if bf16 else "fp32",
        "max_batch_tokens": max_tokens,
        "steps": steps,
        **{key: value for key, value in model_config.items()},
        "encode_seconds": round(encode_seconds, 3),
        "encode_docs_per_s": round(corpus.num_docs / encode_seconds, 1),
        "encode_peak_rss_mb": round(encode_rss, 1),
        "train_docs": timed.docs,
        "train_docs_per_s": round(timed.docs / timed.seconds, 2),
        "word_tokens_per_doc": round(timed.word_tokens / timed.docs, 1),
        "real_tokens_per_doc": round(timed.real_tokens / timed.docs, 1),
        "eval_docs_per_s": round(len(eval_docs) / eval_seconds, 2),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


@dataclass
class _Timed:
    docs: int = 0
    seconds: float = 0.0
    word_tokens: int = 0
    real_tokens: int = 0


def _time_training(model: HAN, split: EncodedSplit, *, batch_size: int, steps: int | None,
                   device: torch.device, bf16: bool, max_tokens: int | None) -> _Timed:
    """What `steps` timed training steps (None: the rest of one epoch) trained on and took."""
    optimizer = torch.optim.Adam(model.parameters(), lr=TrainConfig.lr)
    batches = split.batches(split.train_docs, batch_size=batch_size,
                            rng=np.random.default_rng(0))
    model.train()
    timed = _Timed()
    for index in itertools.count() if steps is None else range(WARMUP_STEPS + steps):
        _synchronize(device)
        tick = time.perf_counter()  # batch building counts: it is part of every step
        batch = next(batches, None)
        if batch is None:
            break
        train_step(model, optimizer, batch, device, clip=TrainConfig.clip, bf16=bf16,
                   step=index, max_tokens=max_tokens)
        _synchronize(device)
        if index >= WARMUP_STEPS:
            timed.seconds += time.perf_counter() - tick
            timed.docs += batch.size
            timed.word_tokens += sum(chunk.tokens.size for chunk in split_batch(batch, max_tokens))
            timed.real_tokens += int(batch.token_lengths.sum())
    return timed


def _time_evaluation(model: HAN, split: EncodedSplit, docs: np.ndarray, *, batch_size: int,
                     device: torch.device) -> float:
    """Seconds to predict the given documents."""
    tick = time.perf_counter()
    predict_probabilities(model, split.segments, docs, batch_size=batch_size, device=device)
    _synchronize(device)
    return time.perf_counter() - tick
