"""The vocabulary (raw token ids -> model ids) and the word2vec vectors mapped onto it."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from han.config import TokenMode
from han.errors import DataError, DimensionMismatch
from han.io import Corpus
from han.tokens import compact_ids, concatenated_ranges

PAD = 0
UNK = 1


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


def distinct_ids(tokens: np.ndarray) -> int:
    """How many different ids `tokens` holds."""
    return int(np.count_nonzero(_bincount(tokens)))


def _gather_tokens(corpus: Corpus, doc_indices: np.ndarray) -> np.ndarray:
    starts = corpus.offsets[doc_indices]
    lengths = corpus.lengths[doc_indices]
    return corpus.tokens[concatenated_ranges(starts, lengths)]


# --------------------------------------------------------------------------- embeddings


@dataclass(frozen=True, eq=False)
class WordVectors:
    """A parsed word2vec text file: its tokens of one kind and their vectors, divided by
    their overall standard deviation (as the reference did) so they sit on the scale the
    trainable embeddings start from. Independent of any vocabulary, so one parse serves
    every trial; `embedding_table` maps it onto a vocabulary."""

    path: Path
    tokens: TokenMode
    words: tuple[str, ...]  # each vector's token, as the file writes it
    vectors: np.ndarray  # (len(words), dim) float32

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])


def read_word2vec(path: str | os.PathLike[str], *, dim: int,
                  tokens: TokenMode = "ids") -> WordVectors:
    """Parse a word2vec text file (first line `count dim`) whose vectors have `dim` numbers;
    the vectors come centred and scaled to unit standard deviation.

    Entries that cannot be a token of the given kind (such as word2vec's '</s>' among
    integer ids) are skipped.
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
            raise DimensionMismatch(path=path, file_dim=file_dim, dim=dim)
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
    # Centred, then scaled to unit standard deviation. word2vec on a small corpus gives
    # vectors that share one large common direction (the built-in corpus's: mean cosine
    # 0.91 between tokens); added to the model's embeddings they make every token look
    # alike, and the model learned less than with no vectors at all (dev macro-F1 0.45
    # after six epochs, against 0.64 without and 0.67 centred). On R8 (cosine 0.20)
    # centring changed nothing beyond noise.
    vectors -= vectors.mean(axis=0)
    vectors /= vectors.std() or 1.0
    return WordVectors(path=path, tokens=tokens, words=tuple(words), vectors=vectors)


def embedding_table(vectors: WordVectors, vocab: Vocabulary) -> np.ndarray:
    """Rows aligned to `vocab`: a token's vector; UNK and tokens missing from the file get
    the mean vector (zero, the vectors being centred), padding gets zeros."""
    table = np.tile(vectors.vectors.mean(axis=0), (vocab.size, 1)).astype(np.float32)
    table[PAD] = 0.0
    model_ids = vocab.model_ids_of_tokens(vectors.words, vectors.tokens)
    known = model_ids != UNK
    table[model_ids[known]] = vectors.vectors[known]
    return table


def load_embeddings(
    path: str | os.PathLike[str], vocab: Vocabulary, *, dim: int, tokens: TokenMode = "ids"
) -> np.ndarray:
    """Rows aligned to `vocab` from a word2vec text file: `read_word2vec` then
    `embedding_table`, for a caller that reads the file once (`DataCache.word2vec` keeps
    the parse for the next vocabulary)."""
    return embedding_table(read_word2vec(path, dim=dim, tokens=tokens), vocab)


_TOKEN_CHECKS: dict[str, Callable[[str], bool]] = {
    "ids": lambda token: token.isascii() and token.isdigit(),
    "chars": lambda token: len(token) == 1,
    "words": bool,
}
