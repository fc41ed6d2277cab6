from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from han.batching import prepare
from han.config import DataConfig, HANConfig
from han.io import read_corpus
from han.model import HAN
from han.synthetic import SyntheticSpec, write_corpus
from han.vocab import load_embeddings
from search.cli import app
from tests.conftest import english_news

pytest.importorskip("gensim")


@pytest.fixture(scope="module")
def corpus_files(tmp_path_factory) -> tuple[Path, Path]:
    spec = SyntheticSpec(n_train=300, n_test=100, length_scale=0.1, seed=3)
    return write_corpus(spec, tmp_path_factory.mktemp("w2v"))


def test_embeddings_command_trains_vectors_a_model_loads(corpus_files, tmp_path: Path) -> None:
    train, test = corpus_files
    out = tmp_path / "w2v.txt"
    result = CliRunner().invoke(app, ["embeddings", "--train", str(train), "--test", str(test),
                                      "--out", str(out), "--dim", "16", "--epochs", "2",
                                      "--min-count", "2", "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert "epoch 2/2" in result.output and "tokens/s" in result.output
    assert " tokens (ids, detected), dim 16" in result.output
    count, dim = map(int, out.read_text().splitlines()[0].split())
    assert dim == 16 and count > 100

    split = prepare(read_corpus(train, labelled=True), DataConfig(min_count=2))
    table = load_embeddings(out, split.vocab, dim=16)
    known = (table[2:] != table[1]).any(axis=1).mean()
    assert known > 0.9  # almost every kept token has its own vector
    model = HAN(HANConfig(vocab_size=split.vocab.size, num_classes=14, embed_dim=16,
                          word_hidden=8, sent_hidden=8, pretrained_embeddings=True))
    model.load_pretrained(torch.from_numpy(table))
    assert np.allclose(model.words.pretrained.weight.numpy(), table)


def test_embeddings_command_reports_bad_input(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["embeddings", "--train", str(tmp_path / "none.tsv"),
                                      "--out", str(tmp_path / "w2v.txt")])
    assert result.exit_code == 2
    assert "no such file" in result.stderr
    assert not (tmp_path / "w2v.txt").exists()


def test_embeddings_command_detects_words(tmp_path: Path) -> None:
    english_news(tmp_path / "english.tsv", docs=40)
    english_news(tmp_path / "english-test.tsv", docs=10, seed=2, labelled=False)
    out = tmp_path / "w2v.txt"
    args = ["embeddings", "--train", str(tmp_path / "english.tsv"), "--test",
            str(tmp_path / "english-test.tsv"), "--out", str(out), "--dim", "8", "--epochs", "1",
            "--min-count", "1", "--workers", "1"]
    result = CliRunner().invoke(app, [*args, "--tokens", "ids"])
    assert result.exit_code == 2 and not out.exists()
    assert "english.tsv: line 2: non-integer token" in result.stderr
    assert result.stderr.strip().endswith("; the file reads as words: --tokens words")
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert " tokens (words, detected), dim 8" in result.output
    words = {line.split(" ")[0] for line in out.read_text(encoding="utf-8").splitlines()[1:]}
    assert {"oil", "the", "1987"} <= words
