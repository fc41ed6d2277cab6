"""Reading labelled and unlabelled text files into corpora of raw token ids, with validation.

A corpus is held as one flat array of token ids plus per-document offsets, so the
200,000-document training file costs a few hundred MB rather than millions of Python
objects, and every step after parsing is a vectorized numpy operation.

Raw ids depend on what a token is (`FileFormat.tokens`): the integer itself for the
competition's anonymised ids, the Unicode code point for characters (so every file maps a
character to the same id without a dictionary), and the index in the corpus's own
dictionary for words (a vocabulary then keeps the words themselves, so that another file
is encoded by word, not by index). A format's tokens "auto" are told from the file's first
rows (han.tokens.detect_tokens), and the corpus carries the mode they resolved to.
"""

from __future__ import annotations

import csv
import os
import re
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from han.config import COMPETITION_FORMAT, FileFormat
from han.errors import DataError, NotAnId, TokenMismatch, first_line
from han.tokens import MAX_TOKEN_ID, compact_ids, detect_tokens, tokenize

_CHUNK_ROWS = 4096


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

    def __post_init__(self) -> None:
        if self.file_format.tokens == "auto":
            raise ValueError(f"{self.path}: a corpus's tokens are resolved, never 'auto'")

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
    when it is given (a label outside it is an error), else in sorted order. Tokens "auto"
    are detected from the first rows (`detect_tokens`); the corpus's format names the mode.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty")
    if file_format.fits_competition():
        # Only integer ids get through: under "auto" they are what the file holds.
        fast = _read_plain(path, labelled=labelled)
        if fast is not None:
            return fast
    return _read_delimited(path, labelled=labelled, fmt=file_format, label_order=label_order)


def file_version(path: str | os.PathLike[str]) -> tuple[str, int, int] | None:
    """(resolved path, size, mtime_ns): what tells one version of a file from another, the
    key a cache keeps a parsed file under; None when the file cannot be looked at."""
    resolved = Path(path).resolve()
    try:
        stat = resolved.stat()
    except OSError:
        return None
    return str(resolved), stat.st_size, stat.st_mtime_ns


def load_corpus(path: str | os.PathLike[str], *, labelled: bool,
                file_format: FileFormat = COMPETITION_FORMAT,
                label_order: Sequence[str] | None = None) -> Corpus:
    """`read_corpus` of the file under its resolved path, as `DataCache.load_corpus` reads
    it, for a caller that reads a file once (a missing file raises the one-line error)."""
    version = file_version(path)
    return read_corpus(version[0] if version is not None else path, labelled=labelled,
                       file_format=file_format, label_order=label_order)


def corpus_of_texts(texts: Sequence[str], *,
                    file_format: FileFormat = COMPETITION_FORMAT,
                    source: str = "<input>") -> Corpus:
    """Raw texts (one document each, as the format's text column holds them) parsed as a file
    of that format would be, without a file: a served model reads its requests this way.
    Errors name `source` and the row as a line of a file with a header."""
    chunks = _ParsedChunks(Path(source), file_format, labelled=False, label_order=None)
    if len(texts) == 0:
        raise DataError(f"{source}: no documents")
    chunks.add(pd.DataFrame({file_format.text_col: list(texts)}, dtype=object))
    return chunks.corpus()


def read_texts(path: str | os.PathLike[str], *, file_format: FileFormat = COMPETITION_FORMAT,
               limit: int) -> list[str]:
    """The raw text of the file's first `limit` documents, as `corpus_of_texts` takes them."""
    path = Path(path)
    fmt = file_format
    kind = _file_kind(fmt)
    reader, header = _open_delimited(path, fmt, kind)
    frame = next(iter(reader), None)
    if frame is None or fmt.text_col not in frame.columns:
        _check_columns(path, header or [], fmt, labelled=False)
        raise DataError(f"{path}: has a header but no documents")
    return frame[fmt.text_col].fillna("").head(limit).tolist()


def read_column(path: str | os.PathLike[str], *, file_format: FileFormat,
                column: str) -> list[str]:
    """One column of the file as its text, a row per document in file order: the ids a
    submission carries beside its labels. A missing column is the one-line error."""
    path = Path(path)
    fmt = file_format
    kind = _file_kind(fmt)
    reader, header = _open_delimited(path, fmt, kind)
    columns, values = list(header or []), []
    try:
        for frame in reader:
            columns = list(frame.columns)
            if column not in columns:
                break
            values += frame[column].fillna("").tolist()
    except (UnicodeDecodeError, pd.errors.ParserError) as error:
        raise DataError(f"{path}: cannot read as a {kind} ({first_line(error)})") from error
    _require_columns(path, columns, fmt, [column])
    return values


_SEPARATOR_NAMES = {"\t": "tab", ",": "comma", ";": "semicolon", "|": "pipe"}


def _offsets(lengths: np.ndarray) -> np.ndarray:
    """(N + 1,) offsets of documents of the given lengths laid end to end."""
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return offsets


def _read_delimited(path: Path, *, labelled: bool, fmt: FileFormat,
                    label_order: Sequence[str] | None) -> Corpus:
    """Any delimited file, read by pandas' C parser chunk by chunk; errors name the line."""
    kind = _file_kind(fmt)
    reader, header = _open_delimited(path, fmt, kind)
    chunks = _ParsedChunks(path, fmt, labelled=labelled, label_order=label_order)
    try:
        for frame in reader:
            chunks.add(frame)
    except (UnicodeDecodeError, pd.errors.ParserError) as error:
        raise DataError(f"{path}: cannot read as a {kind} ({first_line(error)})") from error
    if chunks.header is None:
        _check_columns(path, header or [], fmt, labelled=labelled)
    if chunks.rows == 0:
        raise DataError(f"{path}: has a header but no documents")
    return chunks.corpus()


def _open_delimited(path: Path, fmt: FileFormat, kind: str
                    ) -> tuple[Iterator[pd.DataFrame], list[str] | None]:
    """pandas' chunked reader of the file and the header it found, if any."""
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
        raise DataError(f"{path}: cannot read as a {kind} ({first_line(error)})") from error
    return reader, header


class _ParsedChunks:
    """The raw ids, lengths and labels of a delimited file's chunks, in file order."""

    def __init__(self, path: Path, fmt: FileFormat, *, labelled: bool,
                 label_order: Sequence[str] | None) -> None:
        self.path, self.fmt, self.labelled = path, fmt, labelled
        self.dictionary: dict[str, int] = {}
        self.label_reader = _LabelReader(path, label_order)
        self.token_chunks: list[np.ndarray] = []
        self.length_chunks: list[np.ndarray] = []
        self.label_chunks: list[np.ndarray] = []
        self.notes: list[str] = []
        self.rows = 0
        self.header: list[str] | None = None  # set by the first chunk, once checked
        self.detected = fmt.tokens == "auto"  # resolved from the first chunk's texts

    def add(self, frame: pd.DataFrame) -> None:
        fmt = self.fmt
        if self.header is None:
            _check_columns(self.path, list(frame.columns), fmt, labelled=self.labelled)
            self.header = list(frame.columns)
            if not self.labelled and fmt.label_col in self.header:
                self.notes.append(f"{self.path}: has a {fmt.label_col!r} column; it is "
                                  "ignored for prediction")
        # A row with too few fields leaves NaN in the missing cells.
        texts = frame[fmt.text_col].fillna("").tolist()
        if fmt.tokens == "auto":
            fmt = self.fmt = replace(fmt, tokens=detect_tokens(texts))
        try:
            ids, lengths = tokenize(fmt.tokens, texts, path=self.path,
                                     first_line=self.rows + 2, dictionary=self.dictionary)
        except NotAnId as error:
            raise self._mismatch(error, texts[error.doc:]) from None
        self.token_chunks.append(ids)
        self.length_chunks.append(lengths)
        if self.labelled:
            self.label_chunks.append(self.label_reader.parse(
                frame[fmt.label_col].fillna(""), first_line=self.rows + 2))
        self.rows += len(frame)

    def _mismatch(self, error: NotAnId, texts: list[str]) -> DataError:
        """The error of text read as ids that is not, saying what it reads as (`texts`: the
        chunk's from the culprit on)."""
        fits = detect_tokens(texts)
        if fits == "ids":  # the culprit lies past the characters detection looks at
            return error
        how = "detected as ids from its first rows, the file" if self.detected else "the file"
        return TokenMismatch(f"{error}; {how} reads as {fits}", fits=fits)

    def corpus(self) -> Corpus:
        """The file's corpus, once every chunk is added (at least one)."""
        labels, label_values = (
            self.label_reader.finish(np.concatenate(self.label_chunks)) if self.labelled
            else (None, None))
        return Corpus(
            path=self.path,
            tokens=np.concatenate(self.token_chunks),
            offsets=_offsets(np.concatenate(self.length_chunks)),
            labels=labels,
            notes=tuple(self.notes),
            file_format=self.fmt,
            dictionary=tuple(self.dictionary) if self.fmt.tokens == "words" else None,
            label_values=label_values,
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
    return Corpus(path=path, tokens=np.concatenate(tokens),
                  offsets=_offsets(np.concatenate(lengths)),
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


def _file_kind(fmt: FileFormat) -> str:
    """How errors name a file of this format: 'tab-separated file', ..."""
    return f"{_SEPARATOR_NAMES.get(fmt.sep, repr(fmt.sep))}-separated file"


def _check_columns(path: Path, header: Sequence[str], fmt: FileFormat, *,
                   labelled: bool) -> None:
    _require_columns(path, header, fmt,
                     [fmt.label_col, fmt.text_col] if labelled else [fmt.text_col])


def _require_columns(path: Path, header: Sequence[str], fmt: FileFormat,
                     needed: Sequence[str]) -> None:
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
