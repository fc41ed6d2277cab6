"""The linear baseline beside every search: TF-IDF over hashed 1-2-grams of a corpus's raw token
ids and a linear classifier, trained on the trials' training folds and scored on their dev fold.

Features are built with numpy over the corpus's flat token array, a block of documents at a
time: each unigram and each within-document bigram becomes a 64-bit key, hashed into
`2**hash_bits` buckets, and one sort of (document, bucket) pairs gives each document's
counts as CSR rows. Buckets seen in fewer than `min_df` training documents are dropped; the
rest get scikit-learn's TF-IDF (`TfidfVectorizer(sublinear_tf=True)`: 1 + ln(tf), smoothed
idf, rows of unit L2 norm). Two n-grams may share a bucket (as in HashingVectorizer): on the
competition's corpus mostly pairs of rare ones, which then pass `min_df` together.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.linear_model import SGDClassifier
from sklearn.metrics import accuracy_score, f1_score

from han.batching import stratified_folds
from han.config import BaselineConfig, DataConfig
from han.io import Corpus
from han.tokens import MAX_TOKEN_ID, compact_ids, concatenated_ranges

# Documents are counted in blocks of about this many tokens: a block's per-n-gram arrays
# (keys, rows, columns) then take about 150 MB, whatever the corpus's size.
BLOCK_TOKENS = 4_000_000
DESCRIPTION = "TF-IDF 1-2-gram + SGDClassifier"
_DF_SLICE = 1 << 25
# Splitmix64's finalizer: every bit of a key reaches the top bits, which pick the bucket.
_MIX = (np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB))


@dataclass(frozen=True, kw_only=True)
class BaselineResult:
    """How the baseline scored on the dev fold, and what it was."""

    dev_macro_f1: float
    dev_accuracy: float
    seconds: float
    feature_seconds: float  # of `seconds`: building the TF-IDF features
    features: int
    train_docs: int
    dev_docs: int
    params: dict[str, Any]  # the feature and classifier settings, to record
    # The dev documents (corpus indices, ascending) and their (dev_docs, C) decision scores,
    # whose argmax is the baseline's prediction: kept to blend with a trial's probabilities.
    dev_indices: np.ndarray
    dev_scores: np.ndarray
    description: str = DESCRIPTION


def split_docs(labels: np.ndarray, data: DataConfig) -> tuple[np.ndarray, np.ndarray]:
    """Training and dev documents: the trials' split (`han.batching.prepare` makes the same)."""
    fold_of = stratified_folds(labels, folds=data.folds, seed=data.split_seed)
    return np.flatnonzero(fold_of != data.dev_fold), np.flatnonzero(fold_of == data.dev_fold)


def bucket_of(keys: np.ndarray, bits: int) -> np.ndarray:
    """The bucket of each n-gram key (uint64, overwritten), as int64.

    A unigram's key is its raw id; a bigram's is `(first + 1) << 32 | second`.
    """
    keys ^= keys >> np.uint64(30)
    keys *= _MIX[0]
    keys ^= keys >> np.uint64(27)
    keys *= _MIX[1]
    keys ^= keys >> np.uint64(31)
    keys >>= np.uint64(64 - bits)
    return keys.view(np.int64)


def _count_block(corpus: Corpus, docs: np.ndarray, bits: int) -> sp.csr_matrix:
    """N-gram counts of `docs` (rows in that order) over all buckets, float32, canonical."""
    starts = corpus.offsets[docs]
    lengths = corpus.offsets[docs + 1] - starts
    ids = corpus.tokens[concatenated_ranges(starts, lengths)].astype(np.uint64)
    # A token starts a bigram unless it ends its document.
    has_next = np.ones(len(ids), dtype=bool)
    has_next[np.cumsum(lengths) - 1] = False
    first = np.flatnonzero(has_next)
    # Raw ids are below 2**30 (han.io.MAX_TOKEN_ID): unigram keys stay below 2**32 and
    # bigram keys start above it, so no bigram's key equals a unigram's.
    bigrams = ((ids[first] + np.uint64(1)) << np.uint64(32)) | ids[first + 1]
    row = np.repeat(np.arange(len(docs), dtype=np.int64), lengths)
    # (row, bucket) pairs as one sortable int64: one vectorized sort groups the repeats of
    # each n-gram in each document, cheaper than scipy's duplicate summing row by row.
    cells = np.concatenate([row, row[first]]) << bits
    cells |= bucket_of(np.concatenate([ids, bigrams]), bits)
    del ids, bigrams, row, first
    cells.sort()
    new = np.empty(len(cells), dtype=bool)
    new[0] = True
    np.not_equal(cells[1:], cells[:-1], out=new[1:])
    at = np.flatnonzero(new)
    counts = np.diff(np.append(at, len(cells))).astype(np.float32)
    cells = cells[at]
    indptr = np.searchsorted(cells >> bits, np.arange(len(docs) + 1))
    return sp.csr_matrix((counts, (cells & ((1 << bits) - 1)).astype(np.int32), indptr),
                         shape=(len(docs), 1 << bits))


def _blocks(corpus: Corpus, docs: np.ndarray) -> Iterator[np.ndarray]:
    """`docs` cut into consecutive blocks of about BLOCK_TOKENS tokens."""
    tokens = np.cumsum(corpus.lengths[docs])
    cuts = np.searchsorted(tokens, np.arange(BLOCK_TOKENS, int(tokens[-1]), BLOCK_TOKENS))
    yield from (block for block in np.split(docs, np.unique(cuts)) if len(block))


@dataclass(frozen=True)
class _Columns:
    """The kept buckets: bucket -> feature (-1: dropped), and each feature's idf."""

    feature_of: np.ndarray
    idf: np.ndarray


class _Rows:
    """CSR rows appended block by block into arrays sized for the worst case (every n-gram
    of every document distinct): pages never written take no memory, and `tfidf` rewrites
    the counts in place, so counts and TF-IDF never exist side by side."""

    def __init__(self, corpus: Corpus, docs: np.ndarray) -> None:
        capacity = 2 * int(corpus.lengths[docs].sum())
        if capacity >= 2**31:
            # scikit-learn's SGD takes 32-bit sparse indices only.
            raise ValueError(f"{corpus.path}: too large for the baseline "
                             f"({capacity:,} n-grams; at most 2**31)")
        self.data = np.empty(capacity, dtype=np.float32)
        self.indices = np.empty(capacity, dtype=np.int32)
        self.row_nnz: list[np.ndarray] = []
        self.nnz = 0

    def append(self, counts: sp.csr_matrix) -> None:
        end = self.nnz + counts.nnz
        self.data[self.nnz : end] = counts.data
        self.indices[self.nnz : end] = counts.indices
        self.row_nnz.append(np.diff(counts.indptr))
        self.nnz = end

    def fit_columns(self, *, bits: int, min_df: int) -> _Columns:
        """Keep the buckets in at least `min_df` of these rows; their idf over these rows."""
        # A bucket appears at most once per row: its count of entries is its df. Counted a
        # slice at a time: np.bincount copies its input to 64-bit integers first.
        df = np.zeros(1 << bits, dtype=np.int64)
        for start in range(0, self.nnz, _DF_SLICE):
            end = min(start + _DF_SLICE, self.nnz)
            df += np.bincount(self.indices[start:end], minlength=1 << bits)
        kept = df >= min_df
        feature_of = np.full(1 << bits, -1, dtype=np.int32)
        feature_of[kept] = np.arange(int(kept.sum()), dtype=np.int32)
        rows = sum(len(block) for block in self.row_nnz)
        # TfidfTransformer's smoothed idf: as if one more document held every n-gram.
        idf = (np.log((1 + rows) / (1 + df[kept])) + 1).astype(np.float32)
        return _Columns(feature_of=feature_of, idf=idf)

    def tfidf(self, columns: _Columns) -> sp.csr_matrix:
        """The rows as TF-IDF over the kept features, each of unit L2 norm (in place: a
        block's kept entries move left, never past entries still to be read)."""
        read = write = 0
        for i, row_nnz in enumerate(self.row_nnz):
            end = read + int(row_nnz.sum())
            values, features, self.row_nnz[i] = _weights(
                self.data[read:end], self.indices[read:end], row_nnz, columns)
            self.data[write : write + len(values)] = values
            self.indices[write : write + len(values)] = features
            read, write = end, write + len(values)
        indptr = np.zeros(sum(len(block) for block in self.row_nnz) + 1, dtype=np.int64)
        np.cumsum(np.concatenate(self.row_nnz), out=indptr[1:])
        return sp.csr_matrix((self.data[:write], self.indices[:write], indptr),
                             shape=(len(indptr) - 1, len(columns.idf)))


def _weights(counts: np.ndarray, buckets: np.ndarray, row_nnz: np.ndarray, columns: _Columns
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One block's kept entries as 1 + ln(tf) times idf, rows scaled to unit L2 norm; their
    features (increasing within a row, as `feature_of` is) and the entries left per row."""
    feature = columns.feature_of[buckets]
    kept = feature >= 0
    row = np.repeat(np.arange(len(row_nnz)), row_nnz)[kept]
    feature = feature[kept]
    values = (1 + np.log(counts[kept])) * columns.idf[feature]
    norms = np.sqrt(np.bincount(row, weights=values * values, minlength=len(row_nnz)))
    values = (values / norms[row]).astype(np.float32)
    return values, feature, np.bincount(row, minlength=len(row_nnz))


def _rows(corpus: Corpus, docs: np.ndarray, bits: int) -> _Rows:
    rows = _Rows(corpus, docs)
    for block in _blocks(corpus, docs):
        rows.append(_count_block(corpus, block, bits))
    return rows


def _fit_tfidf(corpus: Corpus, train_docs: np.ndarray,
               config: BaselineConfig) -> tuple[sp.csr_matrix, _Columns]:
    """TF-IDF rows of the training documents and the columns fitted on them."""
    train = _rows(corpus, train_docs, config.hash_bits)
    columns = train.fit_columns(bits=config.hash_bits, min_df=config.min_df)
    return train.tfidf(columns), columns


def tfidf_features(corpus: Corpus, train_docs: np.ndarray, dev_docs: np.ndarray,
                   config: BaselineConfig) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """TF-IDF rows of the training and dev documents (in the given orders), fitted on the
    training documents alone: features seen in fewer than `min_df` of them are dropped."""
    x_train, columns = _fit_tfidf(corpus, train_docs, config)
    return x_train, _rows(corpus, dev_docs, config.hash_bits).tfidf(columns)


def in_raw_ids_of(corpus: Corpus, training: Corpus) -> Corpus:
    """`corpus` with the raw ids of `training`, whose n-grams the features hash.

    Ids and characters are the same raw ids in every file; a word's raw id indexes its own
    file's dictionary, so another file's words are looked up in the training file's, and a
    word it lacks gets an id no training document holds.
    """
    if corpus is training or corpus.dictionary is None or training.dictionary is None:
        return corpus
    known = {word: raw for raw, word in enumerate(training.dictionary)}
    ids = np.fromiter((known.get(word, -1) for word in corpus.dictionary), dtype=np.int64,
                      count=len(corpus.dictionary))
    unknown = ids < 0
    ids[unknown] = len(known) + np.arange(int(unknown.sum()))
    if len(ids) and ids.max() > MAX_TOKEN_ID:
        raise ValueError(f"{corpus.path}: too many distinct words for the baseline")
    return replace(corpus, tokens=compact_ids(ids[corpus.tokens]), dictionary=None)


@dataclass(frozen=True, eq=False)
class LinearBaseline:
    """A fitted baseline: its kept n-gram columns (with their idf) and its classifier, which
    score the documents of the training file or of another file read the same way."""

    training: Corpus
    columns: _Columns
    model: SGDClassifier
    config: BaselineConfig
    num_classes: int

    def scores(self, corpus: Corpus, docs: np.ndarray | None = None) -> np.ndarray:
        """(len(docs), num_classes) decision scores of `docs` (default: every document)."""
        corpus = in_raw_ids_of(corpus, self.training)
        docs = np.arange(corpus.num_docs) if docs is None else docs
        return class_scores(self.model,
                            _rows(corpus, docs, self.config.hash_bits).tfidf(self.columns),
                            self.num_classes)


def class_scores(model: SGDClassifier, features: sp.csr_matrix, num_classes: int) -> np.ndarray:
    """(N, num_classes) decision scores whose argmax is `model.predict`: a class the model
    never saw scores -inf, and a two-class model's one score s becomes (0, s)."""
    raw = model.decision_function(features)
    if raw.ndim == 1:
        raw = np.stack([np.zeros_like(raw), raw], axis=1)
    scores = np.full((features.shape[0], num_classes), -np.inf)
    scores[:, model.classes_] = raw
    return scores


def fit_baseline(corpus: Corpus, train_docs: np.ndarray, config: BaselineConfig | None = None,
                 *, num_classes: int | None = None,
                 threads: int | None = None) -> LinearBaseline:
    """The baseline fitted on `train_docs` of a labelled corpus; it scores `num_classes`
    classes (default: the corpus's)."""
    if corpus.labels is None:
        raise ValueError(f"{corpus.path}: the baseline needs a labelled corpus")
    config = config or BaselineConfig()
    x_train, columns = _fit_tfidf(corpus, train_docs, config)
    model = classifier(config, threads=threads).fit(x_train, corpus.labels[train_docs])
    return LinearBaseline(training=corpus, columns=columns, model=model, config=config,
                          num_classes=num_classes or corpus.num_classes)


def classifier(config: BaselineConfig, *, threads: int | None = None) -> SGDClassifier:
    """The linear classifier; one-vs-rest classes are fitted on `threads` threads (default:
    every core)."""
    return SGDClassifier(loss=config.loss, alpha=config.alpha, max_iter=config.epochs,
                         tol=None, class_weight="balanced" if config.balanced else None,
                         random_state=config.seed, n_jobs=threads or os.cpu_count())


def train_baseline(corpus: Corpus, data: DataConfig, config: BaselineConfig | None = None,
                   *, threads: int | None = None) -> BaselineResult:
    """Fit the baseline on the training folds of `data`'s split and score it on its dev fold."""
    if corpus.labels is None:
        raise ValueError(f"{corpus.path}: the baseline needs a labelled corpus")
    config = config or BaselineConfig()
    started = time.perf_counter()
    train_docs, dev_docs = split_docs(corpus.labels, data)
    x_train, x_dev = tfidf_features(corpus, train_docs, dev_docs, config)
    featured = time.perf_counter()
    model = classifier(config, threads=threads)
    model.fit(x_train, corpus.labels[train_docs])
    dev_scores = class_scores(model, x_dev, corpus.num_classes)
    truth, predicted = corpus.labels[dev_docs], dev_scores.argmax(1)
    return BaselineResult(
        # As han.train.macro_scores scores a trial (not imported: it would load torch).
        dev_macro_f1=float(f1_score(truth, predicted, average="macro", zero_division=0)),
        dev_accuracy=float(accuracy_score(truth, predicted)),
        seconds=time.perf_counter() - started, feature_seconds=featured - started,
        features=x_train.shape[1],
        train_docs=len(train_docs), dev_docs=len(dev_docs),
        dev_indices=dev_docs, dev_scores=dev_scores,
        params={"model": DESCRIPTION, **asdict(config),
                **{k: v for k, v in asdict(data).items()
                   if k in ("folds", "dev_fold", "split_seed")}})
