"""The data cache a caller holds, and the atomic write and one-line error helpers."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import han.batching
from han.batching import DataCache, prepare
from han.config import DataConfig
from han.errors import DataError, first_line
from han.files import folder_lock, written_atomically
from han.vocab import load_embeddings
from tests.conftest import easy_corpus

DATA = DataConfig(seg_len=16, max_segments=4, folds=4, min_count=1)


def test_a_file_is_parsed_once_per_version(tmp_path: Path) -> None:
    path = easy_corpus(tmp_path / "train.tsv", docs=40)
    cache = DataCache()
    first = cache.load_corpus(path, labelled=True)
    assert cache.load_corpus(tmp_path / "." / "train.tsv", labelled=True) is first
    assert first.path == path.resolve()
    other = DataCache().load_corpus(path, labelled=True)
    assert other is not first  # each cache holds its own
    easy_corpus(path, docs=48)
    os.utime(path, ns=(1, 1))  # a new version even on a coarse clock
    again = cache.load_corpus(path, labelled=True)
    assert again is not first and again.num_docs == 48
    with pytest.raises(DataError, match="no such file"):
        cache.load_corpus(tmp_path / "missing.tsv", labelled=True)


def test_word2vec_is_parsed_once_for_every_vocabulary(tmp_path: Path, monkeypatch) -> None:
    corpus = DataCache().load_corpus(easy_corpus(tmp_path / "train.tsv", docs=40),
                                     labelled=True)
    vectors = tmp_path / "w2v.txt"
    ids = np.unique(corpus.tokens).tolist()
    vectors.write_text(f"{len(ids)} 3\n" + "".join(f"{i} {i} 1.0 {-i}\n" for i in ids))
    parses = []
    real = han.batching.read_word2vec
    monkeypatch.setattr(han.batching, "read_word2vec",
                        lambda *args, **kwargs: parses.append(args) or real(*args, **kwargs))
    cache = DataCache()
    splits = [prepare(corpus, replace(DATA, dev_fold=fold),
                      embeddings=vectors, embed_dim=3, cache=cache) for fold in range(3)]
    assert len(parses) == 1
    for split in splits:
        assert split.pretrained is not None
        assert np.array_equal(split.pretrained, load_embeddings(vectors, split.vocab, dim=3))
    assert prepare(corpus, DATA, cache=cache).vocab is splits[0].vocab  # encoding reused
    assert prepare(corpus, DATA).vocab is not splits[0].vocab  # no cache: nothing kept


def test_written_atomically_replaces_only_on_success(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "out.txt"
    with written_atomically(target) as temporary:
        temporary.write_text("new")
        assert not target.exists()
    assert target.read_text() == "new"
    with pytest.raises(RuntimeError), written_atomically(target) as temporary:
        temporary.write_text("half")
        raise RuntimeError("crash")
    assert target.read_text() == "new"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.txt"]


def test_first_line() -> None:
    assert first_line(ValueError("  one\ntwo  ")) == "one"
    assert first_line(ValueError("")) == "ValueError"
    assert first_line(ValueError("abcdef"), limit=3) == "abc"


def test_folder_lock_excludes_other_processes_and_leaves_no_file(tmp_path: Path) -> None:
    try_lock = ("import fcntl, os, sys; d = os.open(sys.argv[1], os.O_RDONLY); "
                "fcntl.flock(d, fcntl.LOCK_EX | fcntl.LOCK_NB)")
    with folder_lock(tmp_path):
        held = subprocess.run([sys.executable, "-c", try_lock, str(tmp_path)],
                              capture_output=True, text=True)
        assert held.returncode != 0 and "BlockingIOError" in held.stderr
    free = subprocess.run([sys.executable, "-c", try_lock, str(tmp_path)])
    assert free.returncode == 0
    assert list(tmp_path.iterdir()) == []
    # A folder that cannot be opened runs the block unlocked instead of failing it.
    with folder_lock(tmp_path / "missing"):
        pass
