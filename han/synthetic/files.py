"""The built-in corpus as text: documents encoded into the competition's format without a
per-token Python loop, files written atomically, and the cache that generates them once."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path

import numpy as np

from han.files import written_atomically
from han.synthetic.draw import GENERATOR_VERSION, MAX_TOKEN_ID, N_CLASSES, SyntheticSpec, blocks

# --- Text encoding without a per-token Python loop ------------------------------------------
_LABEL_ROW = 2 * (MAX_TOKEN_ID + 1)


@lru_cache(maxsize=1)
def _byte_table() -> tuple[np.ndarray, np.ndarray]:
    """Rows: 'id ' for every id, then 'id\\n' (last token of a line), then 'label\\t'."""
    strings = ([f"{i} " for i in range(MAX_TOKEN_ID + 1)]
               + [f"{i}\n" for i in range(MAX_TOKEN_ID + 1)]
               + [f"{c}\t" for c in range(N_CLASSES)])
    width = max(len(s) for s in strings)
    table = np.zeros((len(strings), width), dtype=np.uint8)
    lens = np.zeros(len(strings), dtype=np.int64)
    for row, s in enumerate(strings):
        raw = s.encode("ascii")
        table[row, : len(raw)] = np.frombuffer(raw, dtype=np.uint8)
        lens[row] = len(raw)
    return table, lens


def _encode(labels: np.ndarray | None, lengths: np.ndarray, tokens: np.ndarray) -> bytes:
    """One line per document: optional 'label\\t', then the ids separated by spaces."""
    table, lens = _byte_table()
    rows = tokens.astype(np.int64)
    ends = np.cumsum(lengths)
    rows[ends - 1] += MAX_TOKEN_ID + 1
    if labels is not None:
        rows = np.insert(rows, ends - lengths, _LABEL_ROW + labels)
    mask = np.arange(table.shape[1]) < lens[rows][:, None]
    return table[rows][mask].tobytes()


def generate(spec: SyntheticSpec, *, n_docs: int,
             seed_offset: int) -> tuple[np.ndarray, list[str]]:
    """Draw `n_docs` documents of the spec's corpus from stream `seed_offset`.

    Returns the labels (int64, label noise included: they are the corpus's ground truth)
    and the texts (space-separated ids). Train files use offset 0 and test files offset 1,
    so the two never share documents while sharing the vocabulary and topics of the seed.
    """
    all_labels: list[np.ndarray] = []
    texts: list[str] = []
    for labels, lengths, tokens in blocks(spec, n_docs, seed_offset):
        all_labels.append(labels)
        texts.extend(_encode(None, lengths, tokens).decode("ascii").split("\n")[:-1])
    merged = np.concatenate(all_labels) if all_labels else np.empty(0, dtype=np.int64)
    return merged, texts


_TRAIN_OFFSET = 0
_TEST_OFFSET = 1


def _write_atomic(path: Path, spec: SyntheticSpec, n_docs: int, seed_offset: int,
                  with_labels: bool) -> None:
    """Stream the blocks into a temporary sibling, then rename it over `path`.

    A reader (or a concurrent writer of the same deterministic corpus) never sees a
    half-written file: it sees either no file or a complete one.
    """
    with written_atomically(path, what="the built-in corpus") as tmp, open(tmp, "wb") as fh:
        fh.write(b"label\ttext\n" if with_labels else b"text\n")
        for labels, lengths, tokens in blocks(spec, n_docs, seed_offset):
            fh.write(_encode(labels if with_labels else None, lengths, tokens))
        fh.flush()
        os.fsync(fh.fileno())


def write_corpus(spec: SyntheticSpec, out_dir: Path) -> tuple[Path, Path]:
    """Write `out_dir/train.tsv` and `out_dir/test.tsv` in the competition format.

    Each file is written under a temporary name and moved into place with `os.replace`, so
    an interrupted run leaves no truncated corpus behind. Returns (train path, test path).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    train, test = out_dir / "train.tsv", out_dir / "test.tsv"
    _write_atomic(train, spec, spec.n_train, _TRAIN_OFFSET, with_labels=True)
    _write_atomic(test, spec, spec.n_test, _TEST_OFFSET, with_labels=spec.test_labels)
    return train, test


def default_cache_root() -> Path:
    """`$XDG_CACHE_HOME/han-search/synthetic`, else `~/.cache/han-search/synthetic`."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "han-search" / "synthetic"


_MARKER = "spec.json"


def builtin_corpus(spec: SyntheticSpec, cache_dir: Path | None = None) -> tuple[Path, Path]:
    """The spec's corpus on disk, generated on first use and reused afterwards.

    `cache_dir` is the folder that holds the files (default: `default_cache_root() /
    spec.fingerprint()`). A `spec.json` marker with the fingerprint is written after both
    files, so a folder is reused only when it holds a complete corpus of this very spec;
    anything else (missing files, an interrupted run, another spec) is regenerated.
    """
    folder = Path(cache_dir) if cache_dir is not None else (
        default_cache_root() / spec.fingerprint())
    train, test = folder / "train.tsv", folder / "test.tsv"
    marker = folder / _MARKER
    if train.is_file() and test.is_file() and marker.is_file():
        try:
            recorded = json.loads(marker.read_text())
        except (OSError, ValueError):
            recorded = None
        if isinstance(recorded, dict) and recorded.get("fingerprint") == spec.fingerprint():
            return train, test
    write_corpus(spec, folder)
    payload = {"fingerprint": spec.fingerprint(), "generator_version": GENERATOR_VERSION,
               **asdict(spec)}
    with written_atomically(marker, what="the built-in corpus") as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    return train, test
