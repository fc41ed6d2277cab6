"""Class probabilities from a model: of any documents in their own order, and of a test file
with a checkpoint, in the file's row order."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from han.batching import (
    Batch,
    DataCache,
    Segments,
    length_batches,
    make_batch,
    segment,
    split_batch,
)
from han.checkpoint import LoadedModel, load_checkpoint
from han.device import autocast, batch_tensors, resolve_device
from han.io import Corpus, corpus_of_texts, load_corpus
from han.model import HAN

# Documents per forward pass when predicting (memory, not results: a document's logits do not
# depend on its batch mates).
PREDICT_BATCH_SIZE = 64
# On a CPU, a forward pass's memory grows with its padded tokens: a batch of 64 documents of
# 8 x 256 tokens took several hundred MB, which the allocator then kept. Batches are cut
# into chunks of at most this many tokens there (logits do not depend on batch mates); a
# GPU takes them whole.
CPU_PREDICT_MAX_TOKENS = 32_768


def predict_batches(model: HAN, batches: Iterator[Batch], device: torch.device, *,
                    max_tokens: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities of every document the batches hold, in the batches' order; each
    forward pass takes at most `max_tokens` padded tokens (None: CPU_PREDICT_MAX_TOKENS on a
    CPU, whole batches on a GPU)."""
    if max_tokens is None and device.type == "cpu":
        max_tokens = CPU_PREDICT_MAX_TOKENS
    model.eval()
    docs, probabilities = [], []
    # bf16 inference only on CUDA: on CPU, fp32 keeps a document's logits independent of
    # its batch mates to 1e-5.
    with torch.inference_mode(), autocast(device, bf16=device.type == "cuda"):
        for whole in batches:
            for batch in split_batch(whole, max_tokens):
                logits = model(*batch_tensors(batch, device))
                probabilities.append(torch.softmax(logits.float(), dim=1).cpu().numpy())
                docs.append(batch.doc_indices)
    return np.concatenate(docs), np.concatenate(probabilities)


def predict_probabilities(model: HAN, segments: Segments, docs: np.ndarray, *,
                          batch_size: int, device: torch.device,
                          max_tokens: int | None = None) -> np.ndarray:
    """(len(docs), C) class probabilities of the documents `docs` (ascending indices), in
    that order, however the length-grouped batches ordered them."""
    batches = (make_batch(segments, chunk)
               for chunk in length_batches(segments, docs, batch_size=batch_size, rng=None))
    batch_docs, probabilities = predict_batches(model, batches, device, max_tokens=max_tokens)
    ordered = np.empty_like(probabilities)
    ordered[np.searchsorted(docs, batch_docs)] = probabilities
    return ordered


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


def probabilities_of(loaded: LoadedModel, corpus: Corpus, *, device: str = "auto",
                     batch_size: int = PREDICT_BATCH_SIZE,
                     docs: np.ndarray | None = None) -> np.ndarray:
    """(N, C) class probabilities of the documents `docs` of `corpus` (ascending; default:
    every one), in that order, read and segmented as the model's training data was."""
    config = loaded.data_config
    segments = segment(loaded.vocab.encode_corpus(corpus), corpus.offsets,
                       seg_len=config.seg_len, max_segments=config.max_segments)
    torch_device = resolve_device(device)
    return predict_probabilities(loaded.model.to(torch_device), segments,
                                 np.arange(corpus.num_docs) if docs is None else docs,
                                 batch_size=batch_size, device=torch_device)


def predict(checkpoint: str | os.PathLike[str], test_file: str | os.PathLike[str], *,
            device: str = "auto", batch_size: int = PREDICT_BATCH_SIZE,
            cache: DataCache | None = None) -> Prediction:
    """Class probabilities of every document of `test_file`, read as the model's training
    file was (same delimiter, columns and tokens). With a `cache`, a test file already
    read through it (by another fold model, or a check) is not parsed again."""
    loaded = load_checkpoint(checkpoint)
    read = cache.load_corpus if cache is not None else load_corpus
    corpus = read(Path(test_file), labelled=False, file_format=loaded.file_format)
    probabilities = probabilities_of(loaded, corpus, device=device, batch_size=batch_size)
    return Prediction(labels=probabilities.argmax(1), probabilities=probabilities,
                      notes=corpus.notes, label_values=loaded.label_values,
                      label_column=loaded.file_format.label_col)


class TextClassifier:
    """One checkpoint, or an ensemble of them with weights, labelling raw texts.

    Texts are read as the training file's text column was, and labels come out as the
    training file wrote them, so a list of texts gets exactly the labels `predict` gives
    the same rows of a file (an ensemble: the weighted mean of the models' probabilities,
    as the K-fold refit computes it).
    """

    def __init__(self, checkpoints: Sequence[str | os.PathLike[str]],
                 weights: Sequence[float] | None = None, *, device: str = "auto") -> None:
        if not checkpoints:
            raise ValueError("no checkpoint")
        self.models = [load_checkpoint(path) for path in checkpoints]
        self.weights = np.ones(len(self.models)) if weights is None else np.asarray(weights)
        if len(self.weights) != len(self.models):
            raise ValueError(f"{len(self.weights)} weights for {len(self.models)} models")
        self.device = device
        first = self.models[0]
        self.file_format = first.file_format
        self.label_values = first.label_values

    def predict(self, texts: Sequence[str]) -> Prediction:
        corpus = corpus_of_texts(texts, file_format=self.file_format)
        mean = np.average([probabilities_of(model, corpus, device=self.device)
                           for model in self.models], axis=0, weights=self.weights)
        return Prediction(labels=mean.argmax(1), probabilities=mean, notes=corpus.notes,
                          label_values=self.label_values,
                          label_column=self.file_format.label_col)
