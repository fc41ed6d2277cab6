"""Reading, encoding, segmenting, splitting and batching the competition's corpora.

A corpus is held as one flat array of token ids plus per-document offsets, so the
200,000-document training file costs a few hundred MB rather than millions of Python
objects, and every step after parsing is a vectorized numpy operation.
"""

from __future__ import annotations

import csv
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold

from han.config import DataConfig

PAD = 0
UNK = 1
_CHUNK_ROWS = 4096
# Token ids above this are surely not ids (the competition's top out at 7,549); the cap
# also keeps the float accumulation in `_parse_token_ids` exact.
MAX_TOKEN_ID = 10**9 - 1


class DataError(ValueError):
    """Bad input data; the message is one line naming the file and, where known, the line."""


@dataclass(frozen=True, eq=False)
class Corpus:
    """Raw token ids of every document, in file order.

    `labels` is None for an unlabelled (test) file. Document i's ids are
    `tokens[offsets[i]:offsets[i + 1]]`.
    """

    path: Path
    tokens: np.ndarray  # (T,) raw ids, uint16 or int32 (see compact_ids)
    offsets: np.ndarray  # (N + 1,) int64
    labels: np.ndarray | None  # (N,) int64
    notes: tuple[str, ...] = ()

    @property
    def num_docs(self) -> int:
        return len(self.offsets) - 1

    @cached_property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def num_classes(self) -> int:
        if self.labels is None:
            raise ValueError(f"{self.path}: the corpus has no labels")
        return int(self.labels.max()) + 1

    def doc(self, index: int) -> np.ndarray:
        return self.tokens[self.offsets[index] : self.offsets[index + 1]]


def read_corpus(path: str | os.PathLike[str], *, labelled: bool) -> Corpus:
    """Parse a tab-separated competition file (plain, .gz or .zip) with validation.

    `labelled=True` requires columns `label` and `text`; `labelled=False` needs `text` and
    ignores a `label` column if there is one (with a note).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty")
    fast = _read_plain(path, labelled=labelled)
    if fast is not None:
        return fast
    try:
        reader = pd.read_csv(
            path,
            sep="\t",
            dtype=str,
            keep_default_na=False,
            quoting=csv.QUOTE_NONE,
            encoding="utf-8-sig",
            compression="infer",
            chunksize=_CHUNK_ROWS,
            engine="c",
        )
        header = list(reader.orig_names) if hasattr(reader, "orig_names") else None
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError, OSError,
            ValueError) as error:
        raise DataError(f"{path}: cannot read as a tab-separated file ({_first_line(error)})") \
            from error

    token_chunks: list[np.ndarray] = []
    length_chunks: list[np.ndarray] = []
    label_chunks: list[np.ndarray] = []
    notes: list[str] = []
    first_row = 0
    checked_header = False
    try:
        for frame in reader:
            if not checked_header:
                header = list(frame.columns)
                _check_columns(path, header, labelled=labelled)
                if not labelled and "label" in header:
                    notes.append(f"{path}: has a 'label' column; it is ignored for prediction")
                checked_header = True
            texts = frame["text"].tolist()
            ids, lengths = _parse_token_ids(texts, path=path, first_line=first_row + 2)
            token_chunks.append(ids)
            length_chunks.append(lengths)
            if labelled:
                label_chunks.append(_parse_labels(frame["label"], path=path,
                                                  first_line=first_row + 2))
            first_row += len(frame)
    except (UnicodeDecodeError, pd.errors.ParserError) as error:
        raise DataError(f"{path}: cannot read as a tab-separated file ({_first_line(error)})") \
            from error
    if not checked_header:
        _check_columns(path, header or [], labelled=labelled)
    if first_row == 0:
        raise DataError(f"{path}: has a header but no documents")

    lengths = np.concatenate(length_chunks)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return Corpus(
        path=path,
        tokens=np.concatenate(token_chunks),
        offsets=offsets,
        labels=np.concatenate(label_chunks) if labelled else None,
        notes=tuple(notes),
    )


_BLOCK_BYTES = 1 << 24


def _read_plain(path: Path, *, labelled: bool) -> Corpus | None:
    """The common case at full speed: a plain file exactly as the competition ships it.

    Whole 16 MB blocks of lines are parsed by numpy in C, labels and tokens alike, with no
    Python object per document. Anything unusual (compression, other columns, CR line
    ends, odd spacing, a bad value) returns None, and the general reader handles it and
    names the offending line.
    """
    if path.suffix in (".gz", ".zip", ".bz2", ".xz", ".zst"):
        return None
    columns = 2 if labelled else 1
    labels, tokens, lengths = [], [], []
    with path.open("rb") as handle:
        header = handle.readline().removeprefix(b"\xef\xbb\xbf").rstrip(b"\n")
        if header.split(b"\t") != [b"label", b"text"][2 - columns:]:
            return None
        while block := handle.read(_BLOCK_BYTES):
            block += handle.readline()
            parsed = _parse_plain_block(block, columns)
            if parsed is None:
                return None
            labels.append(parsed[0])
            tokens.append(parsed[1])
            lengths.append(parsed[2])
    if not lengths:
        return None
    all_lengths = np.concatenate(lengths)
    offsets = np.zeros(len(all_lengths) + 1, dtype=np.int64)
    np.cumsum(all_lengths, out=offsets[1:])
    return Corpus(path=path, tokens=np.concatenate(tokens), offsets=offsets,
                  labels=np.concatenate(labels) if labelled else None)


def _parse_plain_block(block: bytes, columns: int
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    data = np.frombuffer(block, dtype=np.uint8)
    if data[-1] != ord("\n"):
        data = np.append(data, np.uint8(ord("\n")))
    ends = np.flatnonzero(data == ord("\n"))
    starts = np.concatenate(([0], ends[:-1] + 1))
    if (ends == starts).any() or (data == ord("\r")).any():
        return None  # blank lines or CRLF: the general reader's business
    is_tab = data == ord("\t")
    # Per-line counts through positions and searchsorted: add.reduceat over a bool array
    # converts it whole and was the slowest step.
    tabs = np.diff(np.searchsorted(np.flatnonzero(is_tab), ends), prepend=0)
    if (tabs != columns - 1).any():
        return None
    separators = np.flatnonzero(is_tab | (data == ord(" ")))
    numbers = np.diff(np.searchsorted(separators, ends), prepend=0) + 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            values = np.fromstring(block, dtype=np.int64, sep=" ")  # any whitespace
        except ValueError:
            return None
    if len(values) != numbers.sum() or values.min() < 0 or values.max() > MAX_TOKEN_ID:
        return None
    if columns == 1:
        return np.zeros(0, dtype=np.int64), compact_ids(values), numbers
    label_positions = np.cumsum(numbers) - numbers
    is_token = np.ones(len(values), dtype=bool)
    is_token[label_positions] = False
    return values[label_positions], compact_ids(values[is_token]), numbers - 1


def compact_ids(ids: np.ndarray) -> np.ndarray:
    """Ids in the narrowest type that holds them: the competition's fit in 16 bits, which
    halves the memory of a 180M-token corpus."""
    if len(ids) == 0 or ids.max() <= np.iinfo(np.uint16).max:
        return ids.astype(np.uint16)
    return ids.astype(np.int32)


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def _check_columns(path: Path, header: Sequence[str], *, labelled: bool) -> None:
    needed = ["label", "text"] if labelled else ["text"]
    for column in needed:
        if column not in header:
            found = ", ".join(repr(name) for name in header[:4])
            hint = " (is the file tab-separated?)" if len(header) == 1 else ""
            raise DataError(f"{path}: line 1: missing column '{column}'; found {found}{hint}")


def _parse_labels(column: pd.Series, *, path: Path, first_line: int) -> np.ndarray:
    values = column.to_numpy(dtype=str)
    stripped = np.char.strip(values)
    valid = np.char.isdigit(stripped)
    if not valid.all():
        row = int(np.flatnonzero(~valid)[0])
        value = str(values[row])
        kind = "negative" if value.strip().startswith("-") and value.strip()[1:].isdigit() \
            else "non-integer"
        raise DataError(f"{path}: line {first_line + row}: {kind} label {value!r}")
    return stripped.astype(np.int64)


def _parse_token_ids(
    texts: list[str], *, path: Path, first_line: int
) -> tuple[np.ndarray, np.ndarray]:
    """Parse space-separated integer ids of many documents at once, without a per-token loop.

    Fast path: numpy parses the joined texts in C, and each document's token count is its
    number of separators plus one. Whenever the two disagree, or an id is negative, the
    texts are not plain single-spaced non-negative integers and the exact (slower)
    byte-level parser finds the culprit or handles the odd spacing.
    """
    lengths = np.fromiter((text.count(" ") + 1 for text in texts), dtype=np.int64,
                          count=len(texts))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            ids = np.fromstring(" ".join(texts), dtype=np.int64, sep=" ")
        except ValueError:
            ids = np.zeros(0, dtype=np.int64)
    if len(ids) == lengths.sum() and (len(ids) == 0 or 0 <= ids.min() <= ids.max()
                                      <= MAX_TOKEN_ID) and all(texts):
        return compact_ids(ids), lengths
    return _parse_token_ids_exactly(texts, path=path, first_line=first_line)


def _parse_token_ids_exactly(
    texts: list[str], *, path: Path, first_line: int
) -> tuple[np.ndarray, np.ndarray]:
    """Byte-level parse that accepts any spacing and names the first bad line.

    The texts are joined with newlines into one byte buffer; digits are found with array
    comparisons and each token's value is the weighted sum of its digits.
    """
    buffer = np.frombuffer("\n".join(texts).encode("utf-8"), dtype=np.uint8)
    is_digit = (buffer >= ord("0")) & (buffer <= ord("9"))
    is_newline = buffer == ord("\n")
    bad = ~(is_digit | is_newline | (buffer == ord(" ")) | (buffer == ord("\r")))
    if bad.any():
        position = int(np.flatnonzero(bad)[0])
        doc = int(np.count_nonzero(is_newline[:position]))
        token = texts[doc].split()
        culprit = next((t for t in token if not t.isdigit()), "?")
        raise DataError(
            f"{path}: line {first_line + doc}: non-integer token {culprit[:20]!r} in text"
        )
    previous_digit = np.zeros_like(is_digit)
    previous_digit[1:] = is_digit[:-1]
    next_digit = np.zeros_like(is_digit)
    next_digit[:-1] = is_digit[1:]
    starts = np.flatnonzero(is_digit & ~previous_digit)
    ends = np.flatnonzero(is_digit & ~next_digit)
    doc_of_start = np.cumsum(is_newline)[starts] if len(starts) else starts
    lengths = np.bincount(doc_of_start, minlength=len(texts)).astype(np.int64)
    if (lengths == 0).any():
        doc = int(np.flatnonzero(lengths == 0)[0])
        raise DataError(f"{path}: line {first_line + doc}: empty text")
    widths = ends - starts + 1
    if widths.max(initial=0) > 9:
        token = int(np.argmax(widths))
        doc = int(doc_of_start[token])
        raise DataError(f"{path}: line {first_line + doc}: token id too large "
                        f"(more than {MAX_TOKEN_ID})")
    digit_positions = np.flatnonzero(is_digit)
    token_of_digit = np.repeat(np.arange(len(starts)), widths)
    power = ends[token_of_digit] - digit_positions
    digit_values = (buffer[digit_positions] - ord("0")).astype(np.float64)
    ids = np.bincount(token_of_digit, weights=digit_values * 10.0**power,
                      minlength=len(starts))
    return compact_ids(ids.astype(np.int64)), lengths


# --------------------------------------------------------------------------- vocabulary


@dataclass(frozen=True)
class Vocabulary:
    """Maps raw token ids to model ids: 0 is padding, 1 is UNK, then kept tokens by id."""

    raw_ids: np.ndarray  # (V - 2,) raw ids of the kept tokens, ascending

    @classmethod
    def build(cls, corpus: Corpus, doc_indices: np.ndarray, *, min_count: int) -> Vocabulary:
        """Keep the tokens seen at least `min_count` times in the given (training) documents."""
        held_out = np.setdiff1d(np.arange(corpus.num_docs), doc_indices)
        if len(held_out) < len(doc_indices):
            # Counting everything minus the small held-out part avoids gathering 90% of a
            # corpus into a temporary copy.
            counts = _bincount(corpus.tokens)
            counts -= _bincount(_gather_tokens(corpus, held_out), minlength=len(counts))
        else:
            counts = _bincount(_gather_tokens(corpus, doc_indices))
        return cls(raw_ids=np.flatnonzero(counts >= min_count).astype(np.int64))

    @property
    def size(self) -> int:
        return len(self.raw_ids) + 2

    @cached_property
    def _lookup(self) -> np.ndarray:
        top = int(self.raw_ids.max()) + 1 if len(self.raw_ids) else 0
        # One slot past the kept ids catches every larger id (clipped onto it) as UNK.
        table = compact_ids(np.full(top + 1, UNK, dtype=np.int64))
        if self.size > np.iinfo(table.dtype).max:
            table = table.astype(np.int32)
        table[self.raw_ids] = np.arange(2, len(self.raw_ids) + 2)
        return table

    def encode(self, raw_tokens: np.ndarray) -> np.ndarray:
        """Model ids for raw ids, in chunks so a 180M-token corpus needs no big temporaries."""
        table = self._lookup
        out = np.empty(len(raw_tokens), dtype=table.dtype)
        step = 1 << 24
        for start in range(0, len(raw_tokens), step):
            chunk = raw_tokens[start : start + step]
            out[start : start + step] = table[np.minimum(chunk, len(table) - 1)]
        return out


def _bincount(values: np.ndarray, minlength: int = 0) -> np.ndarray:
    """np.bincount in slices: it converts its input to int64, which for a whole corpus
    would be a 1.4 GB temporary."""
    top = int(values.max()) + 1 if len(values) else 0
    counts = np.zeros(max(top, minlength), dtype=np.int64)
    step = 1 << 24
    for start in range(0, len(values), step):
        part = np.bincount(values[start : start + step], minlength=len(counts))
        counts[: len(part)] += part
    return counts


def _gather_tokens(corpus: Corpus, doc_indices: np.ndarray) -> np.ndarray:
    starts = corpus.offsets[doc_indices]
    lengths = corpus.lengths[doc_indices]
    return corpus.tokens[_ranges(starts, lengths)]


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenation of arange(s, s + n) for every (s, n), vectorized."""
    block_start = np.cumsum(lengths) - lengths
    return (np.arange(int(lengths.sum())) - np.repeat(block_start, lengths)
            + np.repeat(starts, lengths))


# --------------------------------------------------------------------------- embeddings


def load_embeddings(
    path: str | os.PathLike[str], vocab: Vocabulary, *, dim: int
) -> np.ndarray:
    """Rows aligned to `vocab` from a word2vec text file (first line `count dim`).

    Vectors are divided by their overall standard deviation, as the reference did, so they
    sit on the scale the trainable embeddings start from; UNK and tokens missing from the
    file get the mean vector, padding gets zeros.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    with path.open(encoding="utf-8-sig") as handle:
        header = handle.readline().split()
        if len(header) != 2 or not all(part.isdigit() for part in header):
            raise DataError(f"{path}: line 1: expected a word2vec header 'count dim', "
                            f"got {' '.join(header)[:40]!r}")
        count, file_dim = int(header[0]), int(header[1])
        if file_dim != dim:
            raise DataError(f"{path}: line 1: vectors have dimension {file_dim}, the model's "
                            f"embed_dim is {dim}")
        words: list[int] = []
        rows: list[np.ndarray] = []
        for line_number, line in enumerate(handle, start=2):
            parts = line.rstrip("\n").rstrip(" ").split(" ")
            if len(parts) != dim + 1:
                raise DataError(f"{path}: line {line_number}: expected a token and {dim} "
                                f"numbers, got {len(parts) - 1} numbers")
            if not parts[0].isdigit():
                continue  # a word2vec file may hold tokens such as '</s>' that are no ids
            try:
                rows.append(np.asarray(parts[1:], dtype=np.float32))
            except ValueError as error:
                raise DataError(f"{path}: line {line_number}: non-numeric vector value") \
                    from error
            words.append(int(parts[0]))
    if not rows:
        raise DataError(f"{path}: no vectors for integer tokens")
    if count != len(rows) and count < len(rows):
        raise DataError(f"{path}: line 1: header says {count} vectors, file has more")
    vectors = np.stack(rows)
    vectors /= vectors.std() or 1.0
    table = np.tile(vectors.mean(axis=0), (vocab.size, 1)).astype(np.float32)
    table[PAD] = 0.0
    model_ids = vocab.encode(np.asarray(words, dtype=np.int64))
    known = model_ids != UNK
    table[model_ids[known]] = vectors[known]
    return table


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
    seg_ids = _ranges(firsts, counts)
    lengths = segments.seg_length[seg_ids]
    width = int(lengths.max())
    columns = np.arange(width)
    positions = segments.seg_start[seg_ids, None] + columns  # (M, W)
    real = columns < lengths[:, None]
    tokens = np.where(real, segments.token_ids[np.where(real, positions, 0)], PAD)
    return Batch(doc_indices=doc_indices, tokens=tokens, token_lengths=lengths,
                 seg_counts=counts, labels=None if labels is None else labels[doc_indices])


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

    def batches(self, docs: np.ndarray, *, batch_size: int,
                rng: np.random.Generator | None) -> Iterator[Batch]:
        for chunk in length_batches(self.segments, docs, batch_size=batch_size, rng=rng):
            yield make_batch(self.segments, chunk, self.labels)


# --------------------------------------------------------------------------- preparation


@lru_cache(maxsize=4)
def _read_cached(path: str, size: int, mtime_ns: int, labelled: bool) -> Corpus:
    return read_corpus(path, labelled=labelled)


def load_corpus(path: str | os.PathLike[str], *, labelled: bool) -> Corpus:
    """`read_corpus`, parsed once per process per file version.

    The search runs dozens of trials on the same files; a changed file (size or mtime) is
    parsed again.
    """
    resolved = Path(path).resolve()
    try:
        stat = resolved.stat()
    except OSError:
        return read_corpus(path, labelled=labelled)  # raises the one-line error
    return _read_cached(str(resolved), stat.st_size, stat.st_mtime_ns, labelled)


@lru_cache(maxsize=8)
def _fold_vocabulary(corpus: Corpus, folds: int, dev_fold: int, split_seed: int,
                     min_count: int) -> tuple[np.ndarray, Vocabulary, np.ndarray]:
    assert corpus.labels is not None
    fold_of = stratified_folds(corpus.labels, folds=folds, seed=split_seed)
    train_docs = np.flatnonzero(fold_of != dev_fold)
    vocab = Vocabulary.build(corpus, train_docs, min_count=min_count)
    return fold_of, vocab, vocab.encode(corpus.tokens)


def prepare(corpus: Corpus, config: DataConfig, *, embeddings: str | os.PathLike[str] | None = None,
            embed_dim: int | None = None, label_names: Sequence[str] | None = None
            ) -> EncodedSplit:
    """Split, build the vocabulary, encode and segment a labelled corpus.

    Encoding is cached per (corpus, split, min_count): trials that change only `seg_len` or
    `max_segments` reuse it and pay for the segmentation alone.
    """
    if corpus.labels is None:
        raise ValueError(f"{corpus.path}: training needs a labelled corpus")
    fold_of, vocab, token_ids = _fold_vocabulary(
        corpus, config.folds, config.dev_fold, config.split_seed, config.min_count
    )
    if label_names is not None and len(label_names) < corpus.num_classes:
        raise DataError(f"{corpus.path}: has labels up to {corpus.num_classes - 1} but only "
                        f"{len(label_names)} class names are given")
    pretrained = None
    if embeddings is not None:
        if embed_dim is None:
            raise ValueError("embed_dim is needed to check the embeddings' dimension")
        pretrained = load_embeddings(embeddings, vocab, dim=embed_dim)
    return EncodedSplit(
        segments=segment(token_ids, corpus.offsets, seg_len=config.seg_len,
                         max_segments=config.max_segments),
        labels=corpus.labels,
        train_docs=np.flatnonzero(fold_of != config.dev_fold),
        dev_docs=np.flatnonzero(fold_of == config.dev_fold),
        vocab=vocab,
        num_classes=max(corpus.num_classes, len(label_names or ())),
        pretrained=pretrained,
        label_names=tuple(label_names) if label_names is not None else None,
    )
