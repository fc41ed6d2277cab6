from __future__ import annotations

import gzip
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from han.batching import make_batch, prepare, segment, stratified_folds
from han.config import DataConfig
from han.errors import DataError
from han.io import read_corpus
from han.vocab import PAD, UNK, Vocabulary, load_embeddings
from tests.conftest import write_tsv


def test_real_sample_files_load_exactly(sample_dir: Path) -> None:
    corpus = read_corpus(sample_dir / "train_head.tsv", labelled=True)
    frame = pd.read_csv(sample_dir / "train_head.tsv", sep="\t")
    assert corpus.num_docs == 123
    assert (corpus.labels == frame["label"].to_numpy()).all()
    for index in (0, 57, 122):
        assert corpus.doc(index).tolist() == [int(t) for t in frame["text"][index].split()]
    test = read_corpus(sample_dir / "test_a_head.tsv", labelled=False)
    assert test.num_docs == 168 and test.labels is None


def test_real_sample_prepares_with_a_class_rarer_than_folds(sample_dir: Path) -> None:
    corpus = read_corpus(sample_dir / "train_head.tsv", labelled=True)
    split = prepare(corpus, DataConfig())
    assert len(split.train_docs) + len(split.dev_docs) == 123
    assert split.num_classes == 14


@pytest.mark.parametrize("opener,suffix", [(gzip.open, ".gz"), (None, ".zip")])
def test_compressed_files(tmp_path: Path, opener, suffix: str) -> None:
    content = "label\ttext\n1\t5 6 7\n0\t8 9\n"
    path = tmp_path / f"train.tsv{suffix}"
    if opener is gzip.open:
        with gzip.open(path, "wt") as handle:
            handle.write(content)
    else:
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("train.tsv", content)
    corpus = read_corpus(path, labelled=True)
    assert corpus.labels.tolist() == [1, 0]
    assert corpus.tokens.tolist() == [5, 6, 7, 8, 9]


def test_bom_and_crlf(tmp_path: Path) -> None:
    path = tmp_path / "train.tsv"
    path.write_bytes("\ufefflabel\ttext\r\n3\t10 20\r\n4\t30\r\n".encode())
    corpus = read_corpus(path, labelled=True)
    assert corpus.labels.tolist() == [3, 4]
    assert corpus.tokens.tolist() == [10, 20, 30]
    assert corpus.offsets.tolist() == [0, 2, 3]


def test_very_long_document(tmp_path: Path) -> None:
    tokens = " ".join(str(i % 7000) for i in range(100_000))
    corpus = read_corpus(write_tsv(tmp_path / "t.tsv", [(0, tokens), (1, "5")]), labelled=True)
    assert corpus.lengths.tolist() == [100_000, 1]


def test_test_file_with_label_column_is_noted(tmp_path: Path) -> None:
    corpus = read_corpus(write_tsv(tmp_path / "t.tsv", [(0, "5 6")]), labelled=False)
    assert corpus.labels is None
    assert "ignored" in corpus.notes[0]


@pytest.mark.parametrize(
    "content,message",
    [
        (None, "no such file"),
        ("", "the file is empty"),
        ("label\ttext\n", "no documents"),
        ("label,text\n1,2 3\n", "line 1: missing column 'label'"),
        ("label\tbody\n1\t2 3\n", "line 1: missing column 'text'"),
        ("label\ttext\n1\t2 3\nx\t4\n", "line 3: non-integer label 'x'"),
        ("label\ttext\n1\t2 3\n-1\t4\n", "line 3: negative label '-1'"),
        ("label\ttext\n1\t2 3\n2\t4 a5 6\n", "line 3: non-integer token 'a5'"),
        ("label\ttext\n1\t2 3\n2\t4 -5\n", "line 3: non-integer token '-5'"),
        ("label\ttext\n1\t2 3\n2\t\n", "line 3: empty text"),
        ("label\ttext\n1\t2 3\n2\t   \n", "line 3: empty text"),
    ],
)
def test_loader_errors_name_file_and_line(tmp_path: Path, content: str | None,
                                          message: str) -> None:
    path = tmp_path / "bad.tsv"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError) as caught:
        read_corpus(path, labelled=True)
    text = str(caught.value)
    assert str(path) in text and message in text
    assert "\n" not in text


def test_vocabulary_min_count_counts_training_docs_only(tmp_path: Path) -> None:
    rows = [(0, "7 7 7 8"), (1, "7 8 9"), (0, "9 9 9 9 9")]
    corpus = read_corpus(write_tsv(tmp_path / "t.tsv", rows), labelled=True)
    vocab = Vocabulary.build(corpus, np.array([0, 1]), min_count=2)
    assert vocab.raw_ids.tolist() == [7, 8]  # 9 is seen once in training docs
    encoded = vocab.encode(np.array([7, 8, 9, 12345], dtype=np.int32))
    assert encoded.tolist() == [2, 3, UNK, UNK]
    # The complement path (most documents in training) counts the same.
    assert Vocabulary.build(corpus, np.array([0, 1, 2]), min_count=4).raw_ids.tolist() == [7, 9]


def test_segmentation_keeps_head_and_tail() -> None:
    tokens = np.arange(1, 24, dtype=np.int32)  # doc 0: 20 tokens, doc 1: 3 tokens
    offsets = np.array([0, 20, 23])
    segments = segment(tokens, offsets, seg_len=3, max_segments=4)
    assert segments.num_segments.tolist() == [4, 1]
    starts, lengths = segments.seg_start.tolist(), segments.seg_length.tolist()
    # 7 segments (6 full + 2 tokens): keep segments 0, 1 and the last two (5 and 6).
    assert starts[:4] == [0, 3, 15, 18]
    assert lengths[:4] == [3, 3, 3, 2]
    assert (starts[4], lengths[4]) == (20, 3)
    odd = segment(tokens, offsets, seg_len=3, max_segments=3)
    assert odd.seg_start[:3].tolist() == [0, 3, 18]  # ceil(3/2) from the head, 1 from the tail


def test_batch_holds_only_real_segments_trimmed() -> None:
    tokens = np.arange(1, 12, dtype=np.int32)
    segments = segment(tokens, np.array([0, 7, 9, 11]), seg_len=4, max_segments=8)
    batch = make_batch(segments, np.array([1, 0]))
    assert batch.seg_counts.tolist() == [1, 2]
    assert batch.tokens.shape == (3, 4)
    assert batch.tokens.tolist() == [[8, 9, PAD, PAD], [1, 2, 3, 4], [5, 6, 7, PAD]]
    assert batch.token_lengths.tolist() == [2, 4, 3]


def test_stratified_folds_are_seeded_balanced_and_cover_rare_classes() -> None:
    labels = np.array([0] * 50 + [1] * 30 + [2] * 3 + [3])
    folds = stratified_folds(labels, folds=10, seed=7)
    assert (folds == stratified_folds(labels, folds=10, seed=7)).all()
    assert not (folds == stratified_folds(labels, folds=10, seed=8)).all()
    for label, count in ((0, 50), (1, 30)):
        assert np.bincount(folds[labels == label], minlength=10).tolist() == [count // 10] * 10
    assert set(folds[labels >= 2].tolist()) <= set(range(10))
    assert len(set(folds[labels == 2].tolist())) == 3  # rare docs spread over folds


def test_embeddings_align_scale_and_fill_unknowns(tmp_path: Path) -> None:
    path = tmp_path / "w2v.txt"
    path.write_text("3 2\n7 1.0 2.0\n</s> 9 9\n8 3.0 4.0\n", encoding="utf-8")
    vocab = Vocabulary(raw_ids=np.array([7, 8, 9]))
    table = load_embeddings(path, vocab, dim=2)
    # Centred (the mean vector is (2, 3)), then scaled to unit standard deviation.
    centred = np.array([[1.0, 2.0], [3.0, 4.0]]) - np.array([2.0, 3.0])
    assert table.shape == (5, 2)
    assert np.allclose(table[PAD], 0)
    assert np.allclose(table[2], centred[0] / centred.std())
    assert np.allclose(table[UNK], 0)  # the mean vector
    assert np.allclose(table[4], table[UNK])  # token 9 has no vector
    assert table[2:4].std() == pytest.approx(1.0)


@pytest.mark.parametrize(
    "content,message",
    [
        ("7 1.0 2.0\n", "line 1: expected a word2vec header"),
        ("1 2\n7 1.0\n", "line 2: expected a token and 2 numbers"),
        ("1 3\n7 1.0 2.0 3.0\n", "line 1: vectors have dimension 3"),
        ("1 2\n7 1.0 abc\n", "line 2: non-numeric"),
    ],
)
def test_embedding_file_errors(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "w2v.txt"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=message):
        load_embeddings(path, Vocabulary(raw_ids=np.array([7])), dim=2)
