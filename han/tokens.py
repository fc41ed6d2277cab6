"""What a token is: telling integer ids, words and characters apart from a file's first
rows, and turning texts into raw token ids (one flat array and per-text lengths)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from itertools import chain
from pathlib import Path

import numpy as np
import pandas as pd

from han.config import TokenMode
from han.errors import DataError, NotAnId

# Token ids above this are surely not ids (the competition's top out at 7,549); the cap
# also keeps the float accumulation in `_parse_token_ids` exact.
MAX_TOKEN_ID = 10**9 - 1


def compact_ids(ids: np.ndarray) -> np.ndarray:
    """Ids in the narrowest type that holds them: the competition's fit in 16 bits, which
    halves the memory of a 180M-token corpus."""
    if len(ids) == 0 or ids.max() <= np.iinfo(np.uint16).max:
        return ids.astype(np.uint16)
    return ids.astype(np.int32)


# Detection looks at the texts' first characters, this many at most: thousands of documents
# of a usual length, a few hundred of the competition's (~4,500 characters each); cheap on a
# file of 200,000 long documents.
DETECT_CHARS = 1 << 20
# Scripts written without spaces between words: Japanese kana, CJK ideographs (extension A,
# the unified block, compatibility ideographs, the supplementary planes' extensions).
_CJK_RANGES = ((0x3040, 0x30FF), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF),
               (0x20000, 0x3134F))
# A Chinese or Japanese word is one to three characters, rarely more (jieba's words average
# under two); text not split into words runs on for a phrase or a sentence between spaces.
_WORD_CJK_CHARS = 3
# What the ids parser reads: digits and spaces (texts joined by line ends).
_ID_CODES = np.array([ord(c) for c in "0123456789 \r\n"], dtype=np.uint32)


def detect_tokens(texts: Sequence[str]) -> TokenMode:
    """What a token of these texts is, judged from their first DETECT_CHARS characters, in
    order (deterministic): "ids" when they hold digits and spaces only (everything the ids
    parser reads); "chars" when CJK characters outnumber the tokens without any and are not
    split into words (over _WORD_CJK_CHARS of them a token on average); else "words"
    (English, or Chinese split into words by spaces). Empty texts count for nothing."""
    sample, left = [], DETECT_CHARS
    for text in texts:
        if left <= 0:
            break
        sample.append(text[:left])
        left -= len(sample[-1]) + 1
    codes = np.frombuffer("\n".join(sample).encode("utf-32-le"), dtype=np.uint32)
    if ((codes >= ord("0")) & (codes <= ord("9"))).any() and np.isin(codes, _ID_CODES).all():
        return "ids"
    space = np.isin(codes, _WHITESPACE)
    starts = ~space & np.concatenate(([True], space[:-1]))  # each token's first character
    cjk = np.zeros(len(codes), dtype=bool)
    for low, high in _CJK_RANGES:
        cjk |= (codes >= low) & (codes <= high)
    cjk_chars = int(np.count_nonzero(cjk))
    if cjk_chars == 0:
        return "words"
    token_of_cjk = np.cumsum(starts)[cjk]  # non-decreasing: a token's CJK characters are adjacent
    cjk_tokens = 1 + int(np.count_nonzero(np.diff(token_of_cjk)))
    other_tokens = int(np.count_nonzero(starts)) - cjk_tokens
    unsegmented = cjk_chars > _WORD_CJK_CHARS * cjk_tokens
    return "chars" if unsegmented and cjk_chars > other_tokens else "words"


def tokenize(mode: TokenMode, texts: list[str], *, path: Path, first_line: int,
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
        raise NotAnId(
            f"{path}: line {first_line + doc}: non-integer token {culprit[:20]!r} in text",
            doc=doc)
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


def concatenated_ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenation of arange(s, s + n) for every (s, n), vectorized."""
    block_start = np.cumsum(lengths) - lengths
    return (np.arange(int(lengths.sum())) - np.repeat(block_start, lengths)
            + np.repeat(starts, lengths))
