"""The synthetic corpus: format, determinism, statistics, class signal and the cache."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import han.synthetic.files as synthetic
from han.synthetic import (
    CLASS_COUNTS,
    CLASS_MEAN_LENGTHS,
    COMMA,
    FULL_STOP,
    MAX_TOKEN_ID,
    PAUSE,
    SENTENCE_ENDS,
    SyntheticSpec,
    builtin_corpus,
    generate,
    write_corpus,
)

SMALL = SyntheticSpec(n_train=300, n_test=120, length_scale=0.05, seed=3)


def _tokens(texts: list[str]) -> list[np.ndarray]:
    return [np.array(t.split(), dtype=np.int64) for t in texts]


@pytest.fixture(scope="module")
def scaled() -> tuple[np.ndarray, list[np.ndarray]]:
    """A few thousand short documents: enough for priors and length shape, fast to draw."""
    labels, texts = generate(SyntheticSpec(length_scale=0.1, seed=11), n_docs=4000,
                             seed_offset=0)
    return labels, _tokens(texts)


def test_same_seed_same_files_other_seed_other_files(tmp_path: Path) -> None:
    a = write_corpus(SMALL, tmp_path / "a")
    b = write_corpus(SMALL, tmp_path / "b")
    c = write_corpus(SyntheticSpec(n_train=300, n_test=120, length_scale=0.05, seed=4),
                     tmp_path / "c")
    for x, y, z in zip(a, b, c, strict=True):
        assert x.read_bytes() == y.read_bytes()
        assert x.read_bytes() != z.read_bytes()
    # Train and test are different draws of the same world.
    train = pd.read_csv(a[0], sep="\t")
    test = pd.read_csv(a[1], sep="\t")
    assert not set(train["text"]) & set(test["text"])


def test_generate_matches_the_written_train_file(tmp_path: Path) -> None:
    labels, texts = generate(SMALL, n_docs=SMALL.n_train, seed_offset=0)
    train, _ = write_corpus(SMALL, tmp_path)
    frame = pd.read_csv(train, sep="\t")
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(frame["label"].to_numpy(), labels)
    assert frame["text"].tolist() == texts
    empty_labels, empty_texts = generate(SMALL, n_docs=0, seed_offset=0)
    assert empty_labels.shape == (0,) and empty_texts == []


def test_files_have_the_competition_format(tmp_path: Path) -> None:
    train, test = write_corpus(SMALL, tmp_path)
    assert (train.name, test.name) == ("train.tsv", "test.tsv")
    train_lines = train.read_text(encoding="utf-8").splitlines()
    test_lines = test.read_text(encoding="utf-8").splitlines()
    assert train_lines[0] == "label\ttext" and test_lines[0] == "text"
    assert len(train_lines) == SMALL.n_train + 1 and len(test_lines) == SMALL.n_test + 1
    line = re.compile(r"^\d+(?: \d+)+$")
    assert all(re.fullmatch(r"\d+\t" + line.pattern[1:-1], x) for x in train_lines[1:])
    assert all(line.fullmatch(x) for x in test_lines[1:])

    frame = pd.read_csv(train, sep="\t")
    assert list(frame.columns) == ["label", "text"]
    assert frame["label"].dtype.kind == "i"
    assert frame["label"].between(0, len(CLASS_COUNTS) - 1).all()
    test_frame = pd.read_csv(test, sep="\t")
    assert list(test_frame.columns) == ["text"]
    assert len(test_frame) == SMALL.n_test


def test_test_labels_option_adds_the_label_column(tmp_path: Path) -> None:
    spec = SyntheticSpec(n_train=50, n_test=40, length_scale=0.05, seed=3, test_labels=True)
    _, test = write_corpus(spec, tmp_path)
    frame = pd.read_csv(test, sep="\t")
    assert list(frame.columns) == ["label", "text"]
    labels, texts = generate(spec, n_docs=40, seed_offset=1)
    np.testing.assert_array_equal(frame["label"].to_numpy(), labels)
    assert frame["text"].tolist() == texts
    # Only the label column differs from the unlabelled variant.
    _, plain = write_corpus(SyntheticSpec(n_train=50, n_test=40, length_scale=0.05, seed=3),
                            tmp_path / "plain")
    assert pd.read_csv(plain, sep="\t")["text"].tolist() == texts


def test_class_priors_follow_the_competition(scaled) -> None:
    labels, _ = scaled
    priors = np.asarray(CLASS_COUNTS) / sum(CLASS_COUNTS)
    observed = np.bincount(labels, minlength=len(priors)) / labels.size
    assert np.abs(observed - priors).max() < 0.025
    assert observed[0] > observed[6] > observed[13] > 0


def test_lengths_follow_the_competition_shape(scaled) -> None:
    labels, docs = scaled
    scale = 0.1
    lengths = np.array([d.size for d in docs])
    assert lengths.min() >= 2
    q1, med, q3 = np.percentile(lengths, [25, 50, 75])
    # README at full length: mean 907, quartiles 374 / 676 / 1131, 92% under 2,000.
    assert 0.85 * 907 * scale < lengths.mean() < 1.15 * 907 * scale
    assert 0.8 * 676 * scale < med < 1.2 * 676 * scale
    assert 0.75 * 374 * scale < q1 < 1.25 * 374 * scale
    assert 0.8 * 1131 * scale < q3 < 1.2 * 1131 * scale
    assert 0.85 < np.mean(lengths < 2000 * scale) < 0.97
    assert lengths.mean() < lengths.std() * 1.5  # heavy right tail: std close to the mean
    # Long classes (education, finance) are longer than short ones (fashion, politics).
    per_class = {c: lengths[labels == c].mean() for c in (4, 6, 7, 11)}
    assert min(per_class[6], per_class[7]) > max(per_class[4], per_class[11])
    assert CLASS_MEAN_LENGTHS[6] > CLASS_MEAN_LENGTHS[11]


def test_length_scale_floor_and_cap() -> None:
    # Scaling keeps the 2-token floor; the full-length cap (57,921) bounds scaled lengths.
    _, texts = generate(SyntheticSpec(length_scale=0.001), n_docs=2000, seed_offset=0)
    lengths = np.array([len(t.split()) for t in texts])
    assert lengths.min() == 2 and np.mean(lengths == 2) > 0.9
    assert lengths.max() <= round(57921 * 0.001)


def test_token_ids_and_separators(scaled) -> None:
    _, docs = scaled
    every = np.concatenate(docs)
    assert every.min() >= 0 and every.max() <= MAX_TOKEN_ID
    counts = np.bincount(every, minlength=MAX_TOKEN_ID + 1)
    assert counts.argmax() == COMMA
    assert set(np.argsort(-counts)[:3]) == {COMMA, PAUSE, FULL_STOP}
    assert 0.03 < counts[COMMA] / every.size < 0.05
    n_docs = len(docs)
    # Short scaled documents miss a comma more often than the real 1%.
    assert sum(COMMA in d for d in docs) / n_docs > 0.8
    last = np.array([d[-1] for d in docs])
    first = np.array([d[0] for d in docs])
    assert np.mean(last == FULL_STOP) > 0.35
    assert np.mean(np.isin(last, SENTENCE_ENDS)) > 0.65
    assert np.mean(last == COMMA) < 0.01
    assert np.mean(np.isin(first, (COMMA, PAUSE, *SENTENCE_ENDS))) < 0.01


def test_full_length_documents_have_about_19_sentences() -> None:
    _, texts = generate(SyntheticSpec(seed=5), n_docs=400, seed_offset=0)
    docs = _tokens(texts)
    sentences = [np.isin(d[:-1], SENTENCE_ENDS).sum() + 1 for d in docs]
    assert 15 < np.mean(sentences) < 24
    # At full length the marks are in (nearly) every document, as in the real corpus.
    assert np.mean([COMMA in d for d in docs]) > 0.97
    assert np.mean([FULL_STOP in d for d in docs]) > 0.95
    assert np.mean([PAUSE in d for d in docs]) > 0.93
    assert 750 < np.mean([d.size for d in docs]) < 1100


def test_classes_are_learnable_but_not_perfectly() -> None:
    """A multinomial naive Bayes on counts: well above chance, clearly below 1.0."""
    spec = SyntheticSpec(length_scale=0.12, seed=2)
    y_train, x_train = generate(spec, n_docs=3000, seed_offset=0)
    y_test, x_test = generate(spec, n_docs=1000, seed_offset=1)
    n_classes, vocab = len(CLASS_COUNTS), MAX_TOKEN_ID + 1
    counts = np.ones((n_classes, vocab))
    for label, doc in zip(y_train, _tokens(x_train), strict=True):
        np.add.at(counts[label], doc, 1.0)
    log_p = np.log(counts / counts.sum(axis=1, keepdims=True))
    log_prior = np.log(np.bincount(y_train, minlength=n_classes) + 1.0)
    guesses = np.array([np.argmax(log_prior + log_p[:, doc].sum(axis=1))
                        for doc in _tokens(x_test)])
    accuracy = float(np.mean(guesses == y_test))
    majority = float(np.mean(y_test == np.bincount(y_train).argmax()))
    assert majority < 0.3
    assert 0.6 < accuracy < 0.97


def test_spec_validation_and_fingerprint() -> None:
    spec = SyntheticSpec()
    assert spec.fingerprint() == SyntheticSpec().fingerprint()
    assert re.fullmatch(r"[0-9a-f]{12}", spec.fingerprint())
    variants = [SyntheticSpec(n_train=1), SyntheticSpec(n_test=1),
                SyntheticSpec(length_scale=0.5), SyntheticSpec(seed=1),
                SyntheticSpec(test_labels=True)]
    assert len({spec.fingerprint(), *(v.fingerprint() for v in variants)}) == 6
    for bad in ({"n_train": 0}, {"n_test": -1}, {"length_scale": 0.0},
                {"length_scale": float("nan")}, {"seed": -1}):
        with pytest.raises(ValueError):
            SyntheticSpec(**bad)
    with pytest.raises(ValueError):
        generate(spec, n_docs=1, seed_offset=-1)


def test_builtin_corpus_reuses_its_cache(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    train, test = builtin_corpus(SMALL)
    assert train.parent == tmp_path / "xdg" / "han-search" / "synthetic" / SMALL.fingerprint()
    stamps = (train.stat().st_mtime_ns, test.stat().st_mtime_ns)

    def boom(*args, **kwargs):
        raise AssertionError("the cached corpus was rewritten")

    monkeypatch.setattr(synthetic, "write_corpus", boom)
    assert builtin_corpus(SMALL) == (train, test)
    assert (train.stat().st_mtime_ns, test.stat().st_mtime_ns) == stamps


def test_builtin_corpus_regenerates_an_incomplete_or_foreign_folder(tmp_path: Path) -> None:
    folder = tmp_path / "corpus"
    train, _ = builtin_corpus(SMALL, cache_dir=folder)
    expected = train.read_bytes()
    # A folder holding another spec's corpus is not taken for this one.
    other = SyntheticSpec(n_train=300, n_test=120, length_scale=0.05, seed=9)
    builtin_corpus(other, cache_dir=folder)
    assert train.read_bytes() != expected
    # A folder whose files are there but whose marker is missing (interrupted) is redone.
    (folder / "spec.json").unlink()
    train.write_text("label\ttext\n")
    builtin_corpus(SMALL, cache_dir=folder)
    assert train.read_bytes() == expected


def test_writes_are_atomic(tmp_path: Path, monkeypatch) -> None:
    train, test = write_corpus(SMALL, tmp_path)
    before = (train.read_bytes(), test.read_bytes())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["test.tsv", "train.tsv"]

    real_encode = synthetic._encode
    calls = {"n": 0}

    def failing_encode(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 1:
            raise RuntimeError("disk full")
        return real_encode(*args, **kwargs)

    monkeypatch.setattr(synthetic, "_encode", failing_encode)
    bigger = SyntheticSpec(n_train=3000, n_test=10, length_scale=0.01, seed=8)
    with pytest.raises(RuntimeError, match="disk full"):
        write_corpus(bigger, tmp_path)
    # The old files are untouched and no temporary file is left behind.
    assert (train.read_bytes(), test.read_bytes()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["test.tsv", "train.tsv"]
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
