"""From a corpus to training batches: the dev split, segments, length-grouped batches, and
the cache of what a process parses and encodes once."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from sklearn.model_selection import StratifiedKFold

from han.config import COMPETITION_FORMAT, DataConfig, FileFormat, TokenMode
from han.errors import DataError
from han.io import Corpus, file_version, read_corpus
from han.tokens import concatenated_ranges
from han.vocab import PAD, Vocabulary, WordVectors, embedding_table, read_word2vec

# --------------------------------------------------------------------------- segmentation


@dataclass(frozen=True)
class Segments:
    """Documents cut into segments: every segment is a slice of the encoded token array."""

    token_ids: np.ndarray  # (T,) model ids
    seg_start: np.ndarray  # (M,) into token_ids
    seg_length: np.ndarray  # (M,)
    doc_first_seg: np.ndarray  # (N + 1,) document d owns segments [first[d], first[d+1])

    @property
    def num_segments(self) -> np.ndarray:
        return np.diff(self.doc_first_seg)


def segment(
    token_ids: np.ndarray, offsets: np.ndarray, *, seg_len: int, max_segments: int
) -> Segments:
    """Cut each document into `seg_len`-token segments, at most `max_segments` of them.

    A longer document keeps its first ceil(max/2) and last floor(max/2) segments: news
    articles state their topic up front and sum it up at the end.
    """
    lengths = np.diff(offsets)
    full = -(-lengths // seg_len)  # ceil
    kept = np.minimum(full, max_segments)
    doc_first = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(kept, out=doc_first[1:])
    doc_of_seg = np.repeat(np.arange(len(lengths)), kept)
    rank = np.arange(int(doc_first[-1])) - doc_first[:-1][doc_of_seg]
    head = (max_segments + 1) // 2
    dropped = (full - kept)[doc_of_seg]
    # Segments past the head of a truncated document come from its tail.
    source_index = np.where(rank < head, rank, rank + dropped)
    starts = offsets[:-1][doc_of_seg] + source_index * seg_len
    ends = np.minimum(starts + seg_len, offsets[1:][doc_of_seg])
    return Segments(token_ids=token_ids, seg_start=starts, seg_length=ends - starts,
                    doc_first_seg=doc_first)


# --------------------------------------------------------------------------- folds


def stratified_folds(labels: np.ndarray, *, folds: int, seed: int) -> np.ndarray:
    """Fold number of every document, stratified by label and seeded.

    Classes with fewer documents than folds are dealt out round-robin from a seeded
    shuffle, since scikit-learn's splitter cannot stratify them.
    """
    fold_of = np.empty(len(labels), dtype=np.int64)
    counts = np.bincount(labels)
    rare = np.isin(labels, np.flatnonzero(counts < folds))
    rng = np.random.default_rng(seed)
    common = np.flatnonzero(~rare)
    if len(common):
        if len(common) >= folds:
            splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
            for fold, (_, held_out) in enumerate(splitter.split(common, labels[common])):
                fold_of[common[held_out]] = fold
        else:
            fold_of[common] = rng.permutation(len(common)) % folds
    rare_docs = np.flatnonzero(rare)
    fold_of[rare_docs[rng.permutation(len(rare_docs))]] = (
        rng.integers(folds) + np.arange(len(rare_docs))
    ) % folds
    return fold_of


def stratified_sample(labels: np.ndarray, docs: np.ndarray, *, size: int,
                      seed: int) -> np.ndarray:
    """At most `size` of `docs`, every class in proportion to its share of them (at least
    one document of each class present), drawn with `seed`: the same documents for the same
    arguments. Sorted; all of `docs` when they are no more than `size`."""
    if len(docs) <= size:
        return np.sort(docs)
    classes, counts = np.unique(labels[docs], return_counts=True)
    quota = np.maximum(1, np.floor(counts * size / len(docs))).astype(np.int64)
    # The largest remainders take the places that rounding down left.
    remainder = counts * size / len(docs) - np.floor(counts * size / len(docs))
    for index in np.argsort(-remainder, kind="stable")[: max(0, size - int(quota.sum()))]:
        quota[index] += 1
    rng = np.random.default_rng(seed)
    chosen = [rng.permutation(np.sort(docs[labels[docs] == label]))[: min(int(q), int(c))]
              for label, q, c in zip(classes, quota, counts, strict=True)]
    return np.sort(np.concatenate(chosen))


# --------------------------------------------------------------------------- batches


@dataclass(frozen=True)
class Batch:
    """One batch in numpy, ready to become tensors.

    `tokens` holds only the batch's real segments, trimmed to the longest of them, so no
    encoder step is spent on an empty segment; `seg_index` says where each lands in the
    (B, S) grid of the document encoder.
    """

    doc_indices: np.ndarray  # (B,)
    tokens: np.ndarray  # (M, W) model ids, 0-padded
    token_lengths: np.ndarray  # (M,)
    seg_counts: np.ndarray  # (B,)
    labels: np.ndarray | None  # (B,)

    @property
    def size(self) -> int:
        return len(self.doc_indices)


def make_batch(segments: Segments, doc_indices: np.ndarray,
               labels: np.ndarray | None = None) -> Batch:
    firsts = segments.doc_first_seg[doc_indices]
    counts = segments.doc_first_seg[doc_indices + 1] - firsts
    seg_ids = concatenated_ranges(firsts, counts)
    lengths = segments.seg_length[seg_ids]
    width = int(lengths.max())
    columns = np.arange(width)
    positions = segments.seg_start[seg_ids, None] + columns  # (M, W)
    real = columns < lengths[:, None]
    tokens = np.where(real, segments.token_ids[np.where(real, positions, 0)], PAD)
    return Batch(doc_indices=doc_indices, tokens=tokens, token_lengths=lengths,
                 seg_counts=counts, labels=None if labels is None else labels[doc_indices])


def split_batch(batch: Batch, max_tokens: int | None) -> list[Batch]:
    """The batch in chunks of consecutive documents whose padded tokens (segments x width)
    stay within `max_tokens`, each trimmed to its own longest segment (padding changes no
    result); a single document larger than that is a chunk of its own. None: no split."""
    rows, width = batch.tokens.shape
    if max_tokens is None or rows * width <= max_tokens:
        return [batch]
    ends = np.cumsum(batch.seg_counts)
    starts = ends - batch.seg_counts
    # Every document's segments are padded to the batch's width in the worst case.
    per_chunk = max(1, max_tokens // (width * int(batch.seg_counts.max())))
    chunks = []
    for first in range(0, batch.size, per_chunk):
        last = min(first + per_chunk, batch.size)
        seg_rows = slice(int(starts[first]), int(ends[last - 1]))
        lengths = batch.token_lengths[seg_rows]
        chunks.append(Batch(
            doc_indices=batch.doc_indices[first:last],
            tokens=batch.tokens[seg_rows, : int(lengths.max())], token_lengths=lengths,
            seg_counts=batch.seg_counts[first:last],
            labels=None if batch.labels is None else batch.labels[first:last]))
    return chunks


def length_batches(
    segments: Segments, doc_indices: np.ndarray, *, batch_size: int,
    rng: np.random.Generator | None,
) -> list[np.ndarray]:
    """Group documents of similar size into batches, to spend little on padding.

    With `rng`, documents of equal size are shuffled and so is the batch order (training);
    without, the order is deterministic (evaluation).
    """
    seg_counts = segments.num_segments[doc_indices]
    # Ties on segment count are broken by the length of the last segment: it sets the
    # batch's width whenever the batch has no full segments.
    total = segments.seg_length[segments.doc_first_seg[doc_indices + 1] - 1]
    jitter = rng.random(len(doc_indices)) if rng is not None else np.zeros(len(doc_indices))
    order = np.lexsort((jitter, total, seg_counts))
    ordered = doc_indices[order]
    batches = [ordered[i : i + batch_size] for i in range(0, len(ordered), batch_size)]
    if rng is not None:
        rng.shuffle(batches)  # type: ignore[arg-type]
    return batches


@dataclass
class EncodedSplit:
    """Everything the trainer needs: segments for all documents and the split."""

    segments: Segments
    labels: np.ndarray
    train_docs: np.ndarray
    dev_docs: np.ndarray
    vocab: Vocabulary
    num_classes: int
    pretrained: np.ndarray | None = None
    label_names: tuple[str, ...] | None = None
    file_format: FileFormat = COMPETITION_FORMAT
    label_values: tuple[str, ...] | None = None  # see Corpus.label_values

    def batches(self, docs: np.ndarray, *, batch_size: int,
                rng: np.random.Generator | None) -> Iterator[Batch]:
        for chunk in length_batches(self.segments, docs, batch_size=batch_size, rng=rng):
            yield make_batch(self.segments, chunk, self.labels)


# --------------------------------------------------------------------------- the cache


def _read_version(path: str, size: int, mtime_ns: int, labelled: bool,
                  file_format: FileFormat, label_order: tuple[str, ...] | None) -> Corpus:
    return read_corpus(path, labelled=labelled, file_format=file_format,
                       label_order=label_order)


def _read_vectors_version(path: str, size: int, mtime_ns: int, dim: int,
                          tokens: TokenMode) -> WordVectors:
    return read_word2vec(path, dim=dim, tokens=tokens)


def _fold_vocabulary(corpus: Corpus, folds: int, dev_fold: int, split_seed: int,
                     min_count: int) -> tuple[np.ndarray, Vocabulary, np.ndarray]:
    """The fold of every document, the vocabulary of the training folds and the corpus
    encoded with it."""
    assert corpus.labels is not None
    fold_of = stratified_folds(corpus.labels, folds=folds, seed=split_seed)
    train_docs = np.flatnonzero(fold_of != dev_fold)
    vocab = Vocabulary.build(corpus, train_docs, min_count=min_count)
    return fold_of, vocab, vocab.encode(corpus.tokens)


class DataCache:
    """What a process parses and encodes once and every trial reuses: corpora and word2vec
    files by file version (path, size, mtime_ns; a changed file is parsed again), and each
    (corpus, split, min_count)'s vocabulary and encoded tokens.

    The caller creates one, passes it to `prepare` and `predict` or calls its methods, and
    frees the memory by dropping it. Each kind keeps its most recently used entries:
    `corpora` files, `folds` encodings, `vectors` word2vec files.
    """

    def __init__(self, *, corpora: int = 4, folds: int = 8, vectors: int = 2) -> None:
        self._corpora = lru_cache(maxsize=corpora)(_read_version)
        self._folds = lru_cache(maxsize=folds)(_fold_vocabulary)
        self._vectors = lru_cache(maxsize=vectors)(_read_vectors_version)

    def load_corpus(self, path: str | os.PathLike[str], *, labelled: bool,
                    file_format: FileFormat = COMPETITION_FORMAT,
                    label_order: Sequence[str] | None = None) -> Corpus:
        """`read_corpus`, parsed once per file version, under the file's resolved path."""
        order = tuple(label_order) if label_order is not None else None
        version = file_version(path)
        if version is None:  # raises the one-line error
            return read_corpus(path, labelled=labelled, file_format=file_format,
                               label_order=order)
        return self._corpora(*version, labelled, file_format, order)

    def word2vec(self, path: str | os.PathLike[str], *, dim: int,
                 tokens: TokenMode = "ids") -> WordVectors:
        """`read_word2vec`, parsed once per file version; `embedding_table` maps it onto a
        vocabulary."""
        version = file_version(path)
        if version is None:  # raises the one-line error
            return read_word2vec(path, dim=dim, tokens=tokens)
        return self._vectors(*version, dim, tokens)

    def fold_vocabulary(self, corpus: Corpus, config: DataConfig
                        ) -> tuple[np.ndarray, Vocabulary, np.ndarray]:
        """Fold of every document, the training folds' vocabulary and the encoded tokens.

        Trials that change only `seg_len` or `max_segments` reuse it and pay for the
        segmentation alone.
        """
        return self._folds(corpus, config.folds, config.dev_fold, config.split_seed,
                           config.min_count)


# --------------------------------------------------------------------------- preparation


def prepare(corpus: Corpus, config: DataConfig, *, embeddings: str | os.PathLike[str] | None = None,
            embed_dim: int | None = None, label_names: Sequence[str] | None = None,
            cache: DataCache | None = None) -> EncodedSplit:
    """Split, build the vocabulary, encode and segment a labelled corpus.

    With a `cache`, the encoding and the parsed word2vec file are reused by later calls
    (see `DataCache`). A corpus whose labels are names names its classes itself;
    `label_names` names integer classes.
    """
    if corpus.labels is None:
        raise ValueError(f"{corpus.path}: training needs a labelled corpus")
    if cache is None:
        cache = DataCache()  # a one-shot caller's: it goes when this call returns
    fold_of, vocab, token_ids = cache.fold_vocabulary(corpus, config)
    names = corpus.label_values if corpus.label_values is not None else label_names
    if names is not None and len(names) < corpus.num_classes:
        raise DataError(f"{corpus.path}: has labels up to {corpus.num_classes - 1} but only "
                        f"{len(names)} class names are given")
    pretrained = None
    if embeddings is not None:
        if embed_dim is None:
            raise ValueError("embed_dim is needed to check the embeddings' dimension")
        pretrained = embedding_table(
            cache.word2vec(embeddings, dim=embed_dim, tokens=corpus.file_format.tokens), vocab)
    return EncodedSplit(
        segments=segment(token_ids, corpus.offsets, seg_len=config.seg_len,
                         max_segments=config.max_segments),
        labels=corpus.labels,
        train_docs=np.flatnonzero(fold_of != config.dev_fold),
        dev_docs=np.flatnonzero(fold_of == config.dev_fold),
        vocab=vocab,
        num_classes=max(corpus.num_classes, len(names or ())),
        pretrained=pretrained,
        label_names=tuple(names) if names is not None else None,
        file_format=corpus.file_format,
        label_values=corpus.label_values,
    )
