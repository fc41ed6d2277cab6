"""Predicting a test file with a checkpoint, in the file's row order."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from han.checkpoint import load_checkpoint
from han.data import length_batches, load_corpus, make_batch, segment
from han.train import predict_batches, resolve_device


@dataclass(frozen=True)
class Prediction:
    labels: np.ndarray  # (N,) class ids in file order
    probabilities: np.ndarray  # (N, C)
    notes: tuple[str, ...] = ()
    # From the checkpoint: the original label of each class id when the training labels
    # were names, and the label column's name.
    label_values: tuple[str, ...] | None = None
    label_column: str = "label"

    def submission(self) -> pd.DataFrame:
        """One column named like the training file's labels, one row per test document,
        holding the labels as the training file wrote them."""
        labels = (self.labels if self.label_values is None
                  else np.asarray(self.label_values, dtype=object)[self.labels])
        return pd.DataFrame({self.label_column: labels})

    def with_probabilities(self, probabilities: np.ndarray) -> Prediction:
        """The same files' prediction from other probabilities (an ensemble's mean)."""
        return Prediction(labels=probabilities.argmax(1), probabilities=probabilities,
                          notes=self.notes, label_values=self.label_values,
                          label_column=self.label_column)


def predict(checkpoint: str | os.PathLike[str], test_file: str | os.PathLike[str], *,
            device: str = "auto", batch_size: int = 64) -> Prediction:
    """Class probabilities of every document of `test_file`, read as the model's training
    file was (same delimiter, columns and tokens)."""
    loaded = load_checkpoint(checkpoint)
    corpus = load_corpus(Path(test_file), labelled=False, file_format=loaded.file_format)
    config = loaded.data_config
    segments = segment(loaded.vocab.encode_corpus(corpus), corpus.offsets,
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
                      notes=corpus.notes, label_values=loaded.label_values,
                      label_column=loaded.file_format.label_col)
