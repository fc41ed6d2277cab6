"""Reading, encoding, segmenting, splitting and batching labelled text corpora.

A corpus is held as one flat array of token ids plus per-document offsets, so the
200,000-document training file costs a few hundred MB rather than millions of Python
objects, and every step after parsing is a vectorized numpy operation.

Raw ids depend on what a token is (`FileFormat.tokens`): the integer itself for the
competition's anonymised ids, the Unicode code point for characters (so every file maps a
character to the same id without a dictionary), and the index in the corpus's own
dictionary for words (a vocabulary then keeps the words themselves, so that another file
is encoded by word, not by index).
"""

from __future__ import annotations

import csv
import os
import re
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from itertools import chain
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold

from han.config import COMPETITION_FORMAT, DataConfig, FileFormat, TokenMode

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
    `tokens[offsets[i]:offsets[i + 1]]`. `label_values` holds the original labels of a
    file whose labels are names rather than integers, in class-id order.
    """

    path: Path
    tokens: np.ndarray  # (T,) raw ids, uint16 or int32 (see compact_ids)
    offsets: np.ndarray  # (N + 1,) int64
    labels: np.ndarray | None  # (N,) int64 class ids
    notes: tuple[str, ...] = ()
    file_format: FileFormat = COMPETITION_FORMAT
    dictionary: tuple[str, ...] | None = None  # words: the word of each raw id
    label_values: tuple[str, ...] | None = None

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
        if self.label_values is not None:
            return len(self.label_values)
        return int(self.labels.max()) + 1

    def doc(self, index: int) -> np.ndarray:
        return self.tokens[self.offsets[index] : self.offsets[index + 1]]

    def doc_text(self, index: int) -> str:
        """Document `index` as its tokens' text separated by spaces (word2vec's input)."""
        raw = self.doc(index).tolist()
        if self.dictionary is not None:
            return " ".join([self.dictionary[i] for i in raw])
        return " ".join(map(chr if self.file_format.tokens == "chars" else str, raw))


def read_corpus(path: str | os.PathLike[str], *, labelled: bool,
                file_format: FileFormat = COMPETITION_FORMAT,
                label_order: Sequence[str] | None = None) -> Corpus:
    """Parse a delimited text file (plain, .gz or .zip) with validation.

    `labelled=True` requires the label and text columns; `labelled=False` needs the text
    column and ignores a label column if there is one (with a note). Integer labels are
    class ids; any other labels are names, given class ids in the order of `label_order`
    when it is given (a label outside it is an error), else in sorted order.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty")
    if file_format == COMPETITION_FORMAT:
        fast = _read_plain(path, labelled=labelled)
        if fast is not None:
            return fast
    fmt = file_format
    kind = f"{_SEPARATOR_NAMES.get(fmt.sep, repr(fmt.sep))}-separated file"
    try:
        reader = pd.read_csv(
            path,
            sep=fmt.sep,
            dtype=str,
            keep_default_na=False,
            # Tab-separated files carry raw text without quoting (the competition's do);
            # other delimiters need quoted fields for text that contains them.
            quoting=csv.QUOTE_NONE if fmt.sep == "\t" else csv.QUOTE_MINIMAL,
            encoding="utf-8-sig",
            compression="infer",
            chunksize=_CHUNK_ROWS,
            engine="c",
        )
        header = list(reader.orig_names) if hasattr(reader, "orig_names") else None
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError, OSError,
            ValueError) as error:
        raise DataError(f"{path}: cannot read as a {kind} ({_first_line(error)})") from error

    dictionary: dict[str, int] = {}
    label_reader = _LabelReader(path, label_order)
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
                _check_columns(path, header, fmt, labelled=labelled)
                if not labelled and fmt.label_col in header:
                    notes.append(f"{path}: has a {fmt.label_col!r} column; it is ignored for "
                                 "prediction")
                checked_header = True
            # A row with too few fields leaves NaN in the missing cells.
            texts = frame[fmt.text_col].fillna("").tolist()
            ids, lengths = _tokenize(fmt.tokens, texts, path=path,
                                     first_line=first_row + 2, dictionary=dictionary)
            token_chunks.append(ids)
            length_chunks.append(lengths)
            if labelled:
                label_chunks.append(label_reader.parse(frame[fmt.label_col].fillna(""),
                                                       first_line=first_row + 2))
            first_row += len(frame)
    except (UnicodeDecodeError, pd.errors.ParserError) as error:
        raise DataError(f"{path}: cannot read as a {kind} ({_first_line(error)})") from error
    if not checked_header:
        _check_columns(path, header or [], fmt, labelled=labelled)
    if first_row == 0:
        raise DataError(f"{path}: has a header but no documents")

    lengths = np.concatenate(length_chunks)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    labels, label_values = (label_reader.finish(np.concatenate(label_chunks)) if labelled
                            else (None, None))
    return Corpus(
        path=path,
        tokens=np.concatenate(token_chunks),
        offsets=offsets,
        labels=labels,
        notes=tuple(notes),
        file_format=fmt,
        dictionary=tuple(dictionary) if fmt.tokens == "words" else None,
        label_values=label_values,
    )


_SEPARATOR_NAMES = {"\t": "tab", ",": "comma", ";": "semicolon", "|": "pipe"}


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


def _check_columns(path: Path, header: Sequence[str], fmt: FileFormat, *,
                   labelled: bool) -> None:
    needed = [fmt.label_col, fmt.text_col] if labelled else [fmt.text_col]
    for column in needed:
        if column not in header:
            found = ", ".join(repr(name) for name in header[:4])
            separator = _SEPARATOR_NAMES.get(fmt.sep, repr(fmt.sep))
            hint = (f" (is the file {separator}-separated? --sep sets the delimiter)"
                    if len(header) == 1 else "")
            raise DataError(f"{path}: line 1: missing column '{column}'; found {found}{hint}")


class _LabelReader:
    """Class ids of a label column, chunk by chunk.

    The first label decides: an integer means every label is a class id (and a later
    non-integer is an error, not a new class), anything else means labels are names.
    """

    def __init__(self, path: Path, order: Sequence[str] | None) -> None:
        self.path = path
        self.order = tuple(order) if order is not None else None
        self.names: bool | None = None
        self.ids: dict[str, int] = {}

    def parse(self, column: pd.Series, *, first_line: int) -> np.ndarray:
        if column.empty:
            return np.zeros(0, dtype=np.int64)
        if self.names is None:
            self.names = not _INTEGER.fullmatch(str(column.iloc[0]).strip())
            if self.names and self.order is not None:
                self.ids = {name: index for index, name in enumerate(self.order)}
        if not self.names:
            return _parse_labels(column, path=self.path, first_line=first_line)
        values = np.char.strip(column.to_numpy(dtype=str))
        codes, uniques = pd.factorize(values)
        # Python strings, not numpy's: the names go into checkpoints and messages.
        uniques = [str(name) for name in uniques]
        for code, name in enumerate(uniques):
            if not name:
                row = int(np.flatnonzero(codes == code)[0])
                raise DataError(f"{self.path}: line {first_line + row}: empty label")
            if name not in self.ids:
                if self.order is not None:
                    row = int(np.flatnonzero(codes == code)[0])
                    listed = ", ".join(self.order[:6]) + (", ..." if len(self.order) > 6 else "")
                    raise DataError(f"{self.path}: line {first_line + row}: label {name!r} is "
                                    f"not one of the {len(self.order)} class names given "
                                    f"({listed})")
                self.ids[name] = len(self.ids)
        return np.array([self.ids[name] for name in uniques], dtype=np.int64)[codes]

    def finish(self, labels: np.ndarray) -> tuple[np.ndarray, tuple[str, ...] | None]:
        """Class ids and, for names, the name of each class id."""
        if not self.names:
            return labels, None
        if self.order is not None:
            return labels, self.order
        # Sorted names rather than first-seen order: shuffling the file keeps the ids.
        names = sorted(self.ids)
        remap = np.empty(len(names), dtype=np.int64)
        for rank, name in enumerate(names):
            remap[self.ids[name]] = rank
        return remap[labels], tuple(names)


_INTEGER = re.compile(r"[-+]?\d+")


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


def _tokenize(mode: TokenMode, texts: list[str], *, path: Path, first_line: int,
              dictionary: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """Raw ids of the texts' tokens, concatenated, and the number of tokens of each text."""
    if mode == "words":
        return _parse_words(texts, path=path, first_line=first_line, dictionary=dictionary)
    if mode == "chars":
        return _parse_chars(texts, path=path, first_line=first_line)
    return _parse_token_ids(texts, path=path, first_line=first_line)


def _check_not_empty(lengths: np.ndarray, *, path: Path, first_line: int) -> None:
    if (lengths == 0).any():
        doc = int(np.flatnonzero(lengths == 0)[0])
        raise DataError(f"{path}: line {first_line + doc}: empty text")


# Every code point that Python counts as whitespace lies at or below U+3000, the
# ideographic space of Chinese text.
_WHITESPACE = np.array([c for c in range(0x3001) if chr(c).isspace()], dtype=np.uint32)


def _parse_chars(texts: list[str], *, path: Path, first_line: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Every non-space character is a token, its raw id its code point.

    UTF-32 gives one array element per character of all the texts at once; a text's
    length in characters is its Python length.
    """
    counts = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    codes = np.frombuffer("".join(texts).encode("utf-32-le"), dtype=np.uint32)
    kept = ~np.isin(codes, _WHITESPACE)
    doc_of_char = np.repeat(np.arange(len(texts)), counts)
    lengths = np.bincount(doc_of_char[kept], minlength=len(texts)).astype(np.int64)
    _check_not_empty(lengths, path=path, first_line=first_line)
    return compact_ids(codes[kept].astype(np.int64)), lengths


def _parse_words(texts: list[str], *, path: Path, first_line: int,
                 dictionary: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """Whitespace-separated words; a raw id indexes `dictionary`, which grows with new words.

    pandas factorizes the chunk's words in C, so Python touches each distinct word once.
    """
    words = [text.split() for text in texts]
    lengths = np.fromiter(map(len, words), dtype=np.int64, count=len(words))
    _check_not_empty(lengths, path=path, first_line=first_line)
    codes, uniques = pd.factorize(np.fromiter(chain.from_iterable(words), dtype=object,
                                              count=int(lengths.sum())))
    ids = np.fromiter((dictionary.setdefault(word, len(dictionary)) for word in uniques),
                      dtype=np.int64, count=len(uniques))
    return compact_ids(ids[codes]), lengths


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
    """Maps raw token ids to model ids: 0 is padding, 1 is UNK, then kept tokens by id.

    A vocabulary of words also keeps the words (`words[i]` is the word of `raw_ids[i]`):
    raw ids of words index one corpus's dictionary, so another file is encoded by word.
    """

    raw_ids: np.ndarray  # (V - 2,) raw ids of the kept tokens, ascending
    words: tuple[str, ...] | None = None

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
        raw_ids = np.flatnonzero(counts >= min_count).astype(np.int64)
        words = (None if corpus.dictionary is None
                 else tuple(corpus.dictionary[i] for i in raw_ids.tolist()))
        return cls(raw_ids=raw_ids, words=words)

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
        """Model ids for raw ids, in chunks so a 180M-token corpus needs no big temporaries.

        For words, the raw ids must come from the corpus the vocabulary was built on;
        `encode_corpus` takes any corpus.
        """
        return _translate(self._lookup, raw_tokens)

    def encode_corpus(self, corpus: Corpus) -> np.ndarray:
        """Model ids of every token of `corpus`, which may be another file than the one the
        vocabulary was built on (a test file)."""
        if self.words is None:
            return self.encode(corpus.tokens)
        if corpus.dictionary is None:
            raise ValueError(f"{corpus.path}: a vocabulary of words needs a corpus of words")
        return _translate(compact_ids(self.model_ids_of_words(corpus.dictionary)),
                          corpus.tokens)

    @cached_property
    def _word_index(self) -> dict[str, int]:
        return {word: model_id for model_id, word in enumerate(self.words or (), start=2)}

    def model_ids_of_words(self, words: Sequence[str]) -> np.ndarray:
        index = self._word_index
        return np.fromiter((index.get(word, UNK) for word in words), dtype=np.int64,
                           count=len(words))

    def model_ids_of_tokens(self, tokens: Sequence[str], mode: TokenMode) -> np.ndarray:
        """Model ids of tokens written as text (a word2vec file's first column)."""
        if mode == "words":
            return self.model_ids_of_words(tokens)
        to_raw = ord if mode == "chars" else int
        return self.encode(np.fromiter(map(to_raw, tokens), dtype=np.int64, count=len(tokens)))


def _translate(table: np.ndarray, raw_tokens: np.ndarray) -> np.ndarray:
    """table[raw_tokens] in chunks; raw ids past the table's end map to its last slot."""
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
    path: str | os.PathLike[str], vocab: Vocabulary, *, dim: int, tokens: TokenMode = "ids"
) -> np.ndarray:
    """Rows aligned to `vocab` from a word2vec text file (first line `count dim`).

    Vectors are divided by their overall standard deviation, as the reference did, so they
    sit on the scale the trainable embeddings start from; UNK and tokens missing from the
    file get the mean vector, padding gets zeros. Entries that cannot be a token of the
    given kind (such as word2vec's '</s>' among integer ids) are skipped.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    is_token = _TOKEN_CHECKS[tokens]
    with path.open(encoding="utf-8-sig") as handle:
        header = handle.readline().split()
        if len(header) != 2 or not all(part.isdigit() for part in header):
            raise DataError(f"{path}: line 1: expected a word2vec header 'count dim', "
                            f"got {' '.join(header)[:40]!r}")
        count, file_dim = int(header[0]), int(header[1])
        if file_dim != dim:
            raise DataError(f"{path}: line 1: vectors have dimension {file_dim}, the model's "
                            f"embed_dim is {dim}")
        words: list[str] = []
        rows: list[np.ndarray] = []
        for line_number, line in enumerate(handle, start=2):
            parts = line.rstrip("\n").rstrip(" ").split(" ")
            if len(parts) != dim + 1:
                raise DataError(f"{path}: line {line_number}: expected a token and {dim} "
                                f"numbers, got {len(parts) - 1} numbers")
            if not is_token(parts[0]):
                continue
            try:
                rows.append(np.asarray(parts[1:], dtype=np.float32))
            except ValueError as error:
                raise DataError(f"{path}: line {line_number}: non-numeric vector value") \
                    from error
            words.append(parts[0])
    if not rows:
        raise DataError(f"{path}: no vectors for tokens of kind {tokens!r}")
    if count != len(rows) and count < len(rows):
        raise DataError(f"{path}: line 1: header says {count} vectors, file has more")
    vectors = np.stack(rows)
    vectors /= vectors.std() or 1.0
    table = np.tile(vectors.mean(axis=0), (vocab.size, 1)).astype(np.float32)
    table[PAD] = 0.0
    model_ids = vocab.model_ids_of_tokens(words, tokens)
    known = model_ids != UNK
    table[model_ids[known]] = vectors[known]
    return table


_TOKEN_CHECKS: dict[str, Callable[[str], bool]] = {
    "ids": lambda token: token.isascii() and token.isdigit(),
    "chars": lambda token: len(token) == 1,
    "words": bool,
}


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
    file_format: FileFormat = COMPETITION_FORMAT
    label_values: tuple[str, ...] | None = None  # see Corpus.label_values

    def batches(self, docs: np.ndarray, *, batch_size: int,
                rng: np.random.Generator | None) -> Iterator[Batch]:
        for chunk in length_batches(self.segments, docs, batch_size=batch_size, rng=rng):
            yield make_batch(self.segments, chunk, self.labels)


# --------------------------------------------------------------------------- preparation


@lru_cache(maxsize=4)
def _read_cached(path: str, size: int, mtime_ns: int, labelled: bool, file_format: FileFormat,
                 label_order: tuple[str, ...] | None) -> Corpus:
    return read_corpus(path, labelled=labelled, file_format=file_format,
                       label_order=label_order)


def load_corpus(path: str | os.PathLike[str], *, labelled: bool,
                file_format: FileFormat = COMPETITION_FORMAT,
                label_order: Sequence[str] | None = None) -> Corpus:
    """`read_corpus`, parsed once per process per file version.

    The search runs dozens of trials on the same files; a changed file (size or mtime) is
    parsed again.
    """
    order = tuple(label_order) if label_order is not None else None
    resolved = Path(path).resolve()
    try:
        stat = resolved.stat()
    except OSError:
        # raises the one-line error
        return read_corpus(path, labelled=labelled, file_format=file_format, label_order=order)
    return _read_cached(str(resolved), stat.st_size, stat.st_mtime_ns, labelled, file_format,
                        order)


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
    `max_segments` reuse it and pay for the segmentation alone. A corpus whose labels are
    names names its classes itself; `label_names` names integer classes.
    """
    if corpus.labels is None:
        raise ValueError(f"{corpus.path}: training needs a labelled corpus")
    fold_of, vocab, token_ids = _fold_vocabulary(
        corpus, config.folds, config.dev_fold, config.split_seed, config.min_count
    )
    names = corpus.label_values if corpus.label_values is not None else label_names
    if names is not None and len(names) < corpus.num_classes:
        raise DataError(f"{corpus.path}: has labels up to {corpus.num_classes - 1} but only "
                        f"{len(names)} class names are given")
    pretrained = None
    if embeddings is not None:
        if embed_dim is None:
            raise ValueError("embed_dim is needed to check the embeddings' dimension")
        pretrained = load_embeddings(embeddings, vocab, dim=embed_dim,
                                     tokens=corpus.file_format.tokens)
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
