"""Files other than the competition's: delimiters, column names, raw text, string labels."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
from click.testing import Result
from mlflow import MlflowClient

from han.batching import prepare
from han.checkpoint import load_checkpoint
from han.config import (
    COMPETITION_FORMAT,
    DataConfig,
    FileFormat,
    HANConfig,
    TrainConfig,
    Word2VecConfig,
)
from han.embeddings import train_word2vec
from han.errors import DataError, TokenMismatch
from han.io import read_corpus
from han.predict import predict
from han.tokens import detect_tokens
from han.train import train
from han.vocab import UNK, Vocabulary, load_embeddings
from tests.conftest import ENGLISH_CLASSES, NEWS_CLASSES, chinese_news, english_news, write_tsv
from tests.test_cli import assert_user_error, invoke
from tests.test_search import STRONG, study_toml

CSV_CHARS = FileFormat(sep=",", text_col="content", label_col="category", tokens="chars")
WORDS = FileFormat(tokens="words")


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_chars_of_a_quoted_csv_with_names_as_labels(tmp_path: Path) -> None:
    path = write(tmp_path / "news.csv",
                 'category,content\n科技,"芯片, 手机。"\n体育,球赛\u3000冠军\n科技,网络\n')
    corpus = read_corpus(path, labelled=True, file_format=CSV_CHARS)
    # Names get ids in sorted order; spaces are no tokens, an ASCII comma is one.
    assert corpus.label_values == ("体育", "科技")
    assert corpus.labels.tolist() == [1, 0, 1]
    assert corpus.num_classes == 2
    assert [chr(c) for c in corpus.doc(0).tolist()] == list("芯片,手机。")
    assert corpus.lengths.tolist() == [6, 4, 2]
    assert corpus.doc_text(1) == "球 赛 冠 军"


def test_names_follow_the_given_class_order(tmp_path: Path) -> None:
    path = write(tmp_path / "news.csv", "category,content\n科技,芯片\n体育,球赛\n")
    corpus = read_corpus(path, labelled=True, file_format=CSV_CHARS,
                         label_order=("科技", "财经", "体育"))
    assert corpus.labels.tolist() == [0, 2]
    assert corpus.label_values == ("科技", "财经", "体育") and corpus.num_classes == 3


def test_words_keep_a_dictionary_and_encode_another_file_by_word(tmp_path: Path) -> None:
    train_file = write(tmp_path / "train.tsv",
                       "label\ttext\nsport\tthe match the goal\nnews\tthe vote\n")
    test_file = write(tmp_path / "test.tsv", "text\ngoal  vote\tunseen the\n".replace(
        "\tunseen", " unseen"))
    corpus = read_corpus(train_file, labelled=True, file_format=WORDS)
    assert corpus.dictionary == ("the", "match", "goal", "vote")
    assert corpus.doc(0).tolist() == [0, 1, 0, 2]
    assert corpus.label_values == ("news", "sport") and corpus.labels.tolist() == [1, 0]
    vocab = Vocabulary.build(corpus, np.arange(2), min_count=1)
    assert vocab.words == ("the", "match", "goal", "vote")

    test = read_corpus(test_file, labelled=False, file_format=WORDS)
    assert test.dictionary == ("goal", "vote", "unseen", "the")  # its own raw ids
    encoded = vocab.encode_corpus(test)
    expected = vocab.encode(np.array([2, 3, 0]))  # goal, vote, the in the training corpus
    assert encoded.tolist() == [expected[0], expected[1], UNK, expected[2]]


@pytest.mark.parametrize(("content", "fmt", "expected"), [
    pytest.param("label\ttext\n1\tgood\nsport\tbad\n", WORDS,
                 "line 3: non-integer label 'sport'", id="name-after-integer"),
    pytest.param("label\ttext\nsport\tgood\n\tbad\n", WORDS, "line 3: empty label",
                 id="empty-name"),
    pytest.param("label\ttext\nsport\tgood\nnews\t  \u3000\n", FileFormat(tokens="chars"),
                 "line 3: empty text", id="only-spaces"),
    pytest.param("category,content\n", CSV_CHARS, "has a header but no documents",
                 id="no-rows"),
    pytest.param("label,content\na,b\n", CSV_CHARS, "line 1: missing column 'category'",
                 id="missing-label-column"),
    pytest.param("category;content\na;b\n", CSV_CHARS,
                 "missing column 'category'; found 'category;content' (is the file "
                 "comma-separated? --sep sets the delimiter)", id="wrong-delimiter"),
    pytest.param("category,content\na,b\na,b,c\n", CSV_CHARS, "cannot read as a "
                 "comma-separated file (Error tokenizing data", id="extra-field"),
])
def test_bad_files_name_the_line(tmp_path: Path, content: str, fmt: FileFormat,
                                 expected: str) -> None:
    path = write(tmp_path / "bad.txt", content)
    with pytest.raises(DataError) as caught:
        read_corpus(path, labelled=True, file_format=fmt)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and expected in message, message
    assert "\n" not in message


def test_label_outside_the_given_class_names(tmp_path: Path) -> None:
    path = write(tmp_path / "news.csv", "category,content\n体育,球\n天气,雨\n")
    with pytest.raises(DataError, match=r"line 3: label '天气' is not one of the 2 class "
                                        r"names given \(体育, 科技\)"):
        read_corpus(path, labelled=True, file_format=CSV_CHARS, label_order=("体育", "科技"))


def test_tab_is_spelled_as_the_shell_and_toml_allow() -> None:
    assert FileFormat(sep="\\t").sep == FileFormat(sep="tab").sep == "\t"
    with pytest.raises(ValueError, match="sep must be one character"):
        FileFormat(sep=" ")


# ------------------------------------------------------------------- tokens told from the file

SEGMENTED = "我们 今天 去 北京 参观 故宫 博物院 ， 天气 很 好 。"
UNSEGMENTED = "我们今天去北京参观故宫博物院，天气很好。"


@pytest.mark.parametrize(("texts", "expected"), [
    pytest.param(["5 6 7", "8  910 11\r"], "ids", id="ids"),
    pytest.param(["the oil price rose 3 pct in 1987", "opec said output fell"], "words",
                 id="english-with-numbers"),
    pytest.param(["1987 3", "12 13 14", "the vote"], "words", id="numbers-only-rows-first"),
    pytest.param(["-5 6", "7"], "words", id="negative-numbers-are-no-ids"),
    pytest.param([UNSEGMENTED, "苹果发布新手机"], "chars", id="unsegmented-chinese"),
    pytest.param([SEGMENTED, "北京 时间 2024 年 的 会议"], "words", id="segmented-chinese"),
    pytest.param(["使用Python和TensorFlow开发深度学习模型"], "chars", id="chinese-with-latin"),
    pytest.param(["talks with 习近平 and 李克强 in beijing went on for hours"], "words",
                 id="english-with-chinese-names"),
    pytest.param(["東京に行きます。日本語の文章です"], "chars", id="unsegmented-japanese"),
    pytest.param(["", "5 6", ""], "ids", id="empty-texts-count-for-nothing"),
])
def test_tokens_are_told_from_the_texts(texts: list[str], expected: str) -> None:
    assert detect_tokens(texts) == expected


def test_loader_resolves_auto_to_the_files_tokens(tmp_path: Path) -> None:
    """tokens "auto" (the default) gives a corpus read with the mode detected, as the same
    mode given would read it."""
    english_news(tmp_path / "english.tsv", docs=12)
    chinese_news(tmp_path / "news.csv", docs=12)
    chinese_file = FileFormat(sep=",", text_col="content", label_col="category")
    for path, fmt, mode in [(tmp_path / "english.tsv", FileFormat(), "words"),
                            (tmp_path / "news.csv", chinese_file, "chars")]:
        detected = read_corpus(path, labelled=True, file_format=fmt)
        given = read_corpus(path, labelled=True, file_format=replace(fmt, tokens=mode))
        assert detected.file_format == given.file_format == replace(fmt, tokens=mode)
        assert detected.tokens.tolist() == given.tokens.tolist()
        assert detected.dictionary == given.dictionary
    assert FileFormat().tokens == "auto" and COMPETITION_FORMAT.tokens == "ids"


def test_competition_rows_are_detected_as_ids(sample_dir: Path, tmp_path: Path) -> None:
    for name, labelled in [("train_head.tsv", True), ("test_a_head.tsv", False)]:
        corpus = read_corpus(sample_dir / name, labelled=labelled, file_format=FileFormat())
        assert corpus.file_format == COMPETITION_FORMAT
    # Off the fast path (CRLF line ends), detected all the same.
    crlf = write(tmp_path / "crlf.tsv", (sample_dir / "train_head.tsv").read_text(
        encoding="utf-8").replace("\n", "\r\n"))
    assert read_corpus(crlf, labelled=True, file_format=FileFormat()).file_format.tokens == "ids"


@pytest.mark.parametrize(("fmt", "make", "expected", "fits"), [
    pytest.param(COMPETITION_FORMAT, english_news, "line 2: non-integer token ", "words",
                 id="english"),
    pytest.param(FileFormat(sep=",", text_col="content", label_col="category", tokens="ids"),
                 chinese_news, "line 2: non-integer token ", "chars", id="chinese"),
])
def test_ids_given_for_text_say_what_it_reads_as(
        tmp_path: Path, fmt: FileFormat, make: Callable[..., list[str]], expected: str,
        fits: str) -> None:
    path = tmp_path / "texts.txt"
    make(path, docs=8)
    with pytest.raises(TokenMismatch) as caught:
        read_corpus(path, labelled=True, file_format=fmt)
    message = str(caught.value)
    assert message.startswith(f"{path}: {expected}") and "\n" not in message
    assert message.endswith(f" in text; the file reads as {fits}")
    assert caught.value.fits == fits


def test_detection_looks_at_the_first_rows_only(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Ids detected from the first rows and words further on: an error naming the line and
    what the file reads as, never a silent switch (a stray word in the competition's ids
    is a broken file)."""
    monkeypatch.setattr("han.tokens.DETECT_CHARS", 20)
    rows = [(i % 2, "5 6 7 8") for i in range(10)] + [(1, "the vote 9")]
    path = write_tsv(tmp_path / "late.tsv", rows)
    with pytest.raises(TokenMismatch) as caught:
        read_corpus(path, labelled=True, file_format=FileFormat())
    assert str(caught.value) == (f"{path}: line 12: non-integer token 'the' in text; "
                                 "detected as ids from its first rows, the file reads as words")


def test_checkpoint_carries_format_words_and_label_names(tmp_path: Path) -> None:
    """A model trained on named labels predicts a test file, read as its training file was,
    into the original names under the training file's label column."""
    names = chinese_news(tmp_path / "train.csv", docs=120)
    truth = chinese_news(tmp_path / "test.csv", docs=40, seed=5, labelled=False)
    corpus = read_corpus(tmp_path / "train.csv", labelled=True, file_format=CSV_CHARS)
    assert corpus.label_values == tuple(sorted(NEWS_CLASSES))
    assert [corpus.label_values[i] for i in corpus.labels] == names
    data_config = DataConfig(seg_len=32, max_segments=4, min_count=1, folds=4)
    split = prepare(corpus, data_config)
    model_config = HANConfig(vocab_size=split.vocab.size, num_classes=split.num_classes,
                             embed_dim=16, word_hidden=16, sent_hidden=16)
    # At lr 2e-2 this tiny model stopped early at its first epoch (dev F1 0.33, test
    # accuracy exactly 0.5) on an Intel Xeon without bf16; 1e-2 learns on every seed tried.
    result = train(split, model_config=model_config, data_config=data_config,
                   train_config=TrainConfig(epochs=10, lr=1e-2, batch_size=16, device="cpu"),
                   checkpoint_dir=tmp_path / "work")
    loaded = load_checkpoint(result.checkpoint_path)
    assert loaded.file_format == CSV_CHARS
    assert loaded.label_values == loaded.label_names == tuple(sorted(NEWS_CLASSES))

    submission = predict(result.checkpoint_path, tmp_path / "test.csv",
                         device="cpu").submission()
    assert list(submission.columns) == ["category"]
    assert len(submission) == len(truth)
    assert set(submission["category"]) <= set(NEWS_CLASSES)
    accuracy = float(np.mean(submission["category"].to_numpy() == np.array(truth)))
    assert accuracy > 0.5, accuracy  # chance is 0.25


@pytest.mark.parametrize("tokens", ["words", "chars"])
def test_word2vec_vectors_of_text_tokens_reach_the_vocabulary(tmp_path: Path,
                                                              tokens: str) -> None:
    pytest.importorskip("gensim")
    rows = [("体育" if i % 2 else "科技", " ".join(f"球{i % 7} 赛{i % 5} 冠军" for _ in range(6)))
            for i in range(60)]
    path = tmp_path / "train.tsv"
    pd.DataFrame(rows, columns=["label", "text"]).to_csv(path, sep="\t", index=False)
    fmt = FileFormat(tokens=tokens)
    corpus = read_corpus(path, labelled=True, file_format=fmt)
    out = tmp_path / "w2v.txt"
    stats = train_word2vec([corpus], out=out, workers=1,
                           config=Word2VecConfig(dim=8, min_count=1, epochs=1))
    assert stats.vectors > 5
    split = prepare(corpus, DataConfig(min_count=1, folds=2))
    table = load_embeddings(out, split.vocab, dim=8, tokens=tokens)
    own_vector = (table[2:] != table[1]).any(axis=1)
    assert own_vector.all()  # every kept token found its vector by its text


# ------------------------------------------------------------------- through the CLI


@dataclass
class NewsStudy:
    root: Path
    storage: str
    tracking_uri: str
    truth: list[str]
    run: Result
    single: Result
    refit: Result

    def submission(self, name: str) -> pd.DataFrame:
        return pd.read_csv(self.root / name)


@pytest.fixture(scope="module")
def news(tmp_path_factory: pytest.TempPathFactory) -> NewsStudy:
    """A study of raw Chinese text with named labels in comma-separated files, given its
    format on the command line (not in the study file), then both kinds of export; and
    word2vec vectors of its characters."""
    pytest.importorskip("gensim")
    root = tmp_path_factory.mktemp("news")
    chinese_news(root / "news.csv", docs=200)
    truth = chinese_news(root / "news-test.csv", docs=40, seed=5, labelled=False)
    # A test file as users keep them: an id column before the text.
    test_file = pd.read_csv(root / "news-test.csv")
    test_file.insert(0, "id", [f"n{index:04d}" for index in range(len(test_file))])
    test_file.to_csv(root / "news-test.csv", index=False)
    config = study_toml(root / "study.toml", name="news", train="news.csv",
                        test="news-test.csv", trials=2, reference=STRONG)
    read_as = ["--sep", ",", "--text-col", "content", "--tokens", "chars"]
    words = invoke("embeddings", "--train", root / "news.csv", "--test",
                     root / "news-test.csv", "--out", root / "w2v.txt", "--dim", "16",
                     "--min-count", "1", "--epochs", "1", "--workers", "1", *read_as)
    assert words.exit_code == 0, words.output
    stores = ["--storage", f"sqlite:///{root}/optuna.db",
              "--tracking-uri", f"sqlite:///{root}/mlflow.db"]
    run = invoke("run", "--config", config, *stores, "--device", "cpu", "--work-dir",
                 root / "work", *read_as, "--label-col", "category")
    assert run.exit_code == 0, run.output
    export = ("export-best", "--study", "news", *stores, "--device", "cpu")
    single = invoke(*export, "--out", root / "single.csv")
    refit = invoke(*export, "--out", root / "refit.csv", "--folds", "2", "--id-col", "id")
    return NewsStudy(root=root, storage=stores[1], tracking_uri=stores[3], truth=truth,
                     run=run, single=single, refit=refit)


def test_study_records_the_file_format_and_class_names(news: NewsStudy) -> None:
    study = optuna.load_study(study_name="news", storage=news.storage)
    assert study.user_attrs["file_format"] == asdict(CSV_CHARS)
    assert study.user_attrs["class_names"] == sorted(NEWS_CLASSES)
    run_id = study.best_trial.user_attrs["mlflow_run_id"]
    run = MlflowClient(tracking_uri=news.tracking_uri).get_run(run_id)
    assert run.data.tags["data.tokens"] == "chars" and run.data.tags["data.sep"] == ","



def test_export_carries_the_test_files_id_column(news: NewsStudy) -> None:
    export = ("export-best", "--study", "news", "--storage", news.storage, "--tracking-uri",
              news.tracking_uri, "--device", "cpu")
    result = invoke(*export, "--out", news.root / "ids.csv", "--id-col", "id")
    assert result.exit_code == 0, result.output
    frame = news.submission("ids.csv")
    ids = pd.read_csv(news.root / "news-test.csv")["id"].tolist()
    assert list(frame.columns) == ["id", "category"] and frame["id"].tolist() == ids
    assert frame["category"].tolist() == news.submission("single.csv")["category"].tolist()
    assert news.submission("refit.csv")["id"].tolist() == ids
    # Checked before any prediction: nothing is written.
    assert_user_error(invoke(*export, "--out", news.root / "no.csv", "--id-col", "ID"),
                      "news-test.csv: line 1: missing column 'ID'; found 'id', 'content'")
    assert_user_error(invoke(*export, "--out", news.root / "no.csv", "--id-col", "category"),
                      "--id-col 'category' is the label column")
    assert not (news.root / "no.csv").exists()


def test_embeddings_command_reads_raw_text(news: NewsStudy) -> None:
    lines = (news.root / "w2v.txt").read_text(encoding="utf-8").splitlines()
    count, dim = map(int, lines[0].split())
    tokens = {line.split(" ")[0] for line in lines[1:]}
    assert dim == 16 and count == len(tokens) > 100
    assert all(len(token) == 1 for token in tokens)  # characters, spaces dropped
    assert "，" in tokens and chr(0x6000) in tokens


@pytest.mark.parametrize("export", ["single", "refit"])
def test_exports_write_the_original_label_names(news: NewsStudy, export: str) -> None:
    result = getattr(news, export)
    assert result.exit_code == 0, result.output
    frame = news.submission(f"{export}.csv")
    # The refit was asked for the test file's ids (--id-col id), the single export not.
    assert list(frame.columns) == (["id", "category"] if export == "refit" else ["category"])
    assert len(frame) == len(news.truth)
    assert set(frame["category"]) <= set(NEWS_CLASSES)
    accuracy = float(np.mean(frame["category"].to_numpy() == np.array(news.truth)))
    print(f"{export}: test accuracy {accuracy:.3f}")
    assert accuracy > 0.5  # chance is 0.25


# ------------------------------------------------------- words without --tokens, end to end


def run_english(root: Path, *args: str) -> Result:
    """One trial of the English study in `root`, on its stores there."""
    return invoke("run", "--config", root / "study.toml", "--storage",
                  f"sqlite:///{root}/optuna.db", "--tracking-uri", f"sqlite:///{root}/mlflow.db",
                  "--device", "cpu", "--work-dir", root / "work", "--trials", "1", *args)


@dataclass
class EnglishStudy:
    root: Path
    truth: list[str]
    run: Result
    export: Result
    spelled_out: Result

    @property
    def tracking_uri(self) -> str:
        return f"sqlite:///{self.root}/mlflow.db"

    def study(self) -> optuna.Study:
        return optuna.load_study(study_name="english", storage=f"sqlite:///{self.root}/optuna.db")


@pytest.fixture(scope="module")
def english(tmp_path_factory: pytest.TempPathFactory) -> EnglishStudy:
    """English words with named labels in R8's layout, run and exported with no --tokens
    and no [data] tokens; then run again with the detected mode spelled out."""
    root = tmp_path_factory.mktemp("english")
    english_news(root / "english.tsv", docs=120)
    truth = english_news(root / "english-test.tsv", docs=40, seed=5, labelled=False)
    study_toml(root / "study.toml", name="english", train="english.tsv",
               test="english-test.tsv", trials=1, reference=STRONG)
    run = run_english(root)
    export = invoke("export-best", "--study", "english", "--storage",
                    f"sqlite:///{root}/optuna.db", "--tracking-uri",
                    f"sqlite:///{root}/mlflow.db", "--device", "cpu", "--out",
                    root / "submission.csv")
    return EnglishStudy(root=root, truth=truth, run=run, export=export,
                        spelled_out=run_english(root, "--tokens", "words"))


def test_words_are_detected_and_the_data_block_says_so(english: EnglishStudy) -> None:
    assert english.run.exit_code == 0, english.run.output
    assert "\ntokens     words (detected from the file; --tokens to choose)\n" in (
        english.run.stdout)
    # The detected mode given by hand is the same dataset: the study takes the trial.
    assert english.spelled_out.exit_code == 0, english.spelled_out.output
    assert "\ntokens     words (as given)\n" in english.spelled_out.stdout
    assert len(english.study().trials) == 2


def test_study_checkpoint_and_tags_hold_the_detected_tokens(english: EnglishStudy) -> None:
    study = english.study()
    assert study.user_attrs["file_format"] == asdict(FileFormat(tokens="words"))
    assert study.user_attrs["dataset"]["file_format"]["tokens"] == "words"
    client = MlflowClient(tracking_uri=english.tracking_uri)
    run_id = study.trials[0].user_attrs["mlflow_run_id"]
    assert client.get_run(run_id).data.tags["data.tokens"] == "words"
    checkpoint = client.download_artifacts(run_id, "checkpoint/best.pt",
                                           str(english.root / "download"))
    assert load_checkpoint(checkpoint).file_format == FileFormat(tokens="words")


def test_export_reads_the_test_file_as_the_detected_words(english: EnglishStudy) -> None:
    assert english.export.exit_code == 0, english.export.output
    frame = pd.read_csv(english.root / "submission.csv")
    assert list(frame.columns) == ["label"] and len(frame) == len(english.truth)
    assert set(frame["label"]) <= set(ENGLISH_CLASSES)
    accuracy = float(np.mean(frame["label"].to_numpy() == np.array(english.truth)))
    assert accuracy > 0.5, accuracy  # chance is 0.25


def test_other_tokens_on_the_same_file_are_another_dataset(english: EnglishStudy) -> None:
    trials = len(english.study().trials)
    assert_user_error(run_english(english.root, "--tokens", "chars"),
                      "study 'english' holds english.tsv", "tokens 'words'",
                      "but was given english.tsv", "tokens 'chars'",
                      "--tokens words reads it as the study does, or pass --study NEW_NAME")
    assert len(english.study().trials) == trials
