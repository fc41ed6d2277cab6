"""What a labelled corpus holds, told before any training: documents, classes, token lengths,
the training folds' vocabulary and how much of the text a segment shape keeps."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from han.batching import DataCache, segment
from han.config import DataConfig, TokenMode
from han.io import Corpus
from han.vocab import distinct_ids

PERCENTILES = (50, 90, 99)


@dataclass(frozen=True, kw_only=True)
class ShapeCoverage:
    """The share of a corpus's tokens that segments of `seg_len` x `max_segments` keep
    (a longer document keeps its first and last segments), and of documents cut."""

    label: str
    seg_len: int
    max_segments: int
    kept: float
    docs_cut: float


@dataclass(frozen=True, kw_only=True)
class DataProfile:
    documents: int
    tokens: int
    token_mode: TokenMode  # what a token is (the corpus's format)
    tokens_detected: bool  # the mode was told from the file, not given
    class_counts: tuple[int, ...]  # by class id
    class_names: tuple[str, ...] | None
    length_percentiles: tuple[int, ...]  # tokens per document at PERCENTILES
    distinct: int  # distinct token ids in the file
    vocabulary: int  # ids kept at min_count in the training folds (PAD and UNK aside)
    min_count: int
    coverage: tuple[ShapeCoverage, ...]


def coverage(corpus: Corpus, label: str, seg_len: int, max_segments: int) -> ShapeCoverage:
    kept = segment(corpus.tokens, corpus.offsets, seg_len=seg_len, max_segments=max_segments)
    total = max(len(corpus.tokens), 1)
    return ShapeCoverage(label=label, seg_len=seg_len, max_segments=max_segments,
                         kept=float(kept.seg_length.sum()) / total,
                         docs_cut=float(np.mean(corpus.lengths > seg_len * max_segments)))


def describe(corpus: Corpus, config: DataConfig, shapes: Sequence[tuple[str, int, int]], *,
             class_names: Sequence[str] | None = None,
             cache: DataCache | None = None, tokens_detected: bool = False) -> DataProfile:
    """The profile of a labelled corpus; the vocabulary is the one `config`'s split and
    min_count give (through `cache`, so the first trial of that split reuses it). `shapes`:
    (label, seg_len, max_segments) to report the coverage of. `tokens_detected`: the
    corpus's token mode was detected from the file (format tokens "auto")."""
    if corpus.labels is None:
        raise ValueError(f"{corpus.path}: a profile needs a labelled corpus")
    _, vocab, _ = (cache or DataCache()).fold_vocabulary(corpus, config)
    counts = np.bincount(corpus.labels, minlength=corpus.num_classes)
    names = corpus.label_values or (tuple(class_names) if class_names is not None else None)
    percentiles = np.percentile(corpus.lengths, PERCENTILES, method="nearest")
    return DataProfile(
        documents=corpus.num_docs, tokens=len(corpus.tokens),
        token_mode=corpus.file_format.tokens, tokens_detected=tokens_detected,
        class_counts=tuple(int(c) for c in counts), class_names=names,
        length_percentiles=tuple(int(p) for p in percentiles),
        distinct=distinct_ids(corpus.tokens), vocabulary=vocab.size - 2,
        min_count=config.min_count,
        coverage=tuple(coverage(corpus, *shape) for shape in shapes))
