"""Predicting a test file with a checkpoint, in the file's row order."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from han.checkpoint import load_checkpoint
from han.data import length_batches, load_corpus, make_batch, segment
from han.train import predict_batches, resolve_device


@dataclass(frozen=True)
class Prediction:
    labels: np.ndarray  # (N,) class ids in file order
    probabilities: np.ndarray  # (N, C)
    notes: tuple[str, ...] = ()


def predict(checkpoint: str | os.PathLike[str], test_file: str | os.PathLike[str], *,
            device: str = "auto", batch_size: int = 64) -> Prediction:
    loaded = load_checkpoint(checkpoint)
    corpus = load_corpus(Path(test_file), labelled=False)
    config = loaded.data_config
    segments = segment(loaded.vocab.encode(corpus.tokens), corpus.offsets,
                       seg_len=config.seg_len, max_segments=config.max_segments)
    torch_device = resolve_device(device)
    model = loaded.model.to(torch_device)
    all_docs = np.arange(corpus.num_docs)
    batches = (make_batch(segments, chunk)
               for chunk in length_batches(segments, all_docs, batch_size=batch_size, rng=None))
    docs, probabilities = predict_batches(model, batches, torch_device)
    in_file_order = np.empty_like(probabilities)
    in_file_order[docs] = probabilities
    return Prediction(labels=in_file_order.argmax(1), probabilities=in_file_order,
                      notes=corpus.notes)
