"""The linear baseline: its features against scikit-learn's TfidfVectorizer, and the study's
baseline run (real Optuna on SQLite, real MLflow on SQLite) against scikit-learn by hand."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
import scipy.sparse as sp
from mlflow import MlflowClient
from mlflow.entities import Run
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import SGDClassifier
from sklearn.metrics import f1_score

from han import baseline
from han.batching import prepare
from han.config import BaselineConfig, DataConfig, FileFormat
from han.io import Corpus, read_corpus
from search.records import BaselineRecord
from search.session.run import run_study
from search.setup.options import RunOptions
from search.studyfile import load_study_file
from search.views.summary import RunSummary, versus_baseline
from tests.conftest import chinese_news, easy_corpus
from tests.test_search import FIXED, STRONG, Recorder, study_toml

CONFIG = BaselineConfig()


def bucket_ngrams(ids: list[int]) -> list[str]:
    """A document's 1- and 2-grams as the names of their hash buckets (zero-padded, so
    TfidfVectorizer's alphabetical columns come in the baseline's numeric order)."""
    keys = ids + [((a + 1) << 32) | b for a, b in itertools.pairwise(ids)]
    buckets = baseline.bucket_of(np.array(keys, dtype=np.uint64), CONFIG.hash_bits)
    return [f"{bucket:08d}" for bucket in buckets.tolist()]


def sklearn_tfidf(corpus: Corpus, train_docs: np.ndarray, dev_docs: np.ndarray
                  ) -> tuple[TfidfVectorizer, sp.csr_matrix, sp.csr_matrix]:
    """TfidfVectorizer with the baseline's documented settings, fitted on the training
    documents; a document is read by scikit-learn, n-gram by n-gram, in Python."""
    vectorizer = TfidfVectorizer(analyzer=bucket_ngrams, min_df=CONFIG.min_df,
                                 sublinear_tf=True, dtype=np.float32)
    docs = [[corpus.doc(int(d)).tolist() for d in part] for part in (train_docs, dev_docs)]
    x_train = vectorizer.fit_transform(docs[0])
    return vectorizer, x_train, vectorizer.transform(docs[1])


@pytest.mark.parametrize("kind", ["ids", "chars"])
def test_features_are_sklearns_tfidf_over_1_2_grams(tmp_path: Path, kind: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    if kind == "ids":
        corpus = read_corpus(easy_corpus(tmp_path / "train.tsv"), labelled=True)
    else:
        chinese_news(tmp_path / "news.csv")
        corpus = read_corpus(tmp_path / "news.csv", labelled=True, file_format=FileFormat(
            sep=",", text_col="content", label_col="category", tokens="chars"))
    # Blocks of a few hundred tokens: n-grams must not run across documents or blocks.
    monkeypatch.setattr(baseline, "BLOCK_TOKENS", 500)
    train_docs, dev_docs = baseline.split_docs(corpus.labels, DataConfig(folds=4))
    ours_train, ours_dev = baseline.tfidf_features(corpus, train_docs, dev_docs, CONFIG)
    _, theirs_train, theirs_dev = sklearn_tfidf(corpus, train_docs, dev_docs)
    for ours, theirs in ((ours_train, theirs_train), (ours_dev, theirs_dev)):
        theirs.sort_indices()
        assert ours.shape == theirs.shape
        np.testing.assert_array_equal(ours.indptr, theirs.indptr)
        np.testing.assert_array_equal(ours.indices, theirs.indices)
        np.testing.assert_allclose(ours.data, theirs.data, rtol=1e-6)
    # The n-grams themselves: every word and pair of neighbours within a document.
    plain = TfidfVectorizer(tokenizer=str.split, token_pattern=None, lowercase=False,
                            ngram_range=(1, 2), min_df=CONFIG.min_df)
    plain.fit([" ".join(map(str, corpus.doc(int(d)).tolist())) for d in train_docs])
    # Hashing joins a few pairs of n-grams (two that occur once each then pass min_df).
    assert 0 <= ours_train.shape[1] - len(plain.vocabulary_) <= 0.01 * len(plain.vocabulary_)


def test_the_split_is_the_trials_split(tmp_path: Path) -> None:
    corpus = read_corpus(easy_corpus(tmp_path / "train.tsv"), labelled=True)
    data = DataConfig(folds=5, dev_fold=3, split_seed=7, min_count=1)
    train_docs, dev_docs = baseline.split_docs(corpus.labels, data)
    trials = prepare(corpus, data)
    np.testing.assert_array_equal(train_docs, trials.train_docs)
    np.testing.assert_array_equal(dev_docs, trials.dev_docs)


def test_another_file_of_words_is_scored_by_its_words(tmp_path: Path) -> None:
    """A test file's raw ids index its own dictionary: the fitted baseline scores its rows
    by their words, as it scores the same texts in the training file."""
    ids = read_corpus(easy_corpus(tmp_path / "ids.tsv", docs=80), labelled=True)
    texts = [" ".join(f"w{token}" for token in ids.doc(d).tolist()) for d in range(80)]
    words = FileFormat(sep="\t", text_col="text", label_col="label", tokens="words")
    pd.DataFrame({"label": ids.labels, "text": texts}).to_csv(tmp_path / "train.tsv",
                                                              sep="\t", index=False)
    again = np.array([3, 17, 42])
    pd.DataFrame({"text": ["unseen words first"] + [texts[d] for d in again]}).to_csv(
        tmp_path / "test.tsv", sep="\t", index=False)
    train = read_corpus(tmp_path / "train.tsv", labelled=True, file_format=words)
    test = read_corpus(tmp_path / "test.tsv", labelled=False, file_format=words)
    assert train.dictionary is not None and test.dictionary is not None
    assert test.dictionary[: 3] == ("unseen", "words", "first")  # other raw ids than train's
    fitted = baseline.fit_baseline(train, np.arange(60), CONFIG, threads=1)
    scores = fitted.scores(test)
    assert scores.shape == (4, 4)
    np.testing.assert_allclose(scores[1:], fitted.scores(train, again), rtol=1e-6)


def test_dev_scores_argmax_is_the_classifiers_prediction_with_two_classes(
        tmp_path: Path) -> None:
    corpus = read_corpus(easy_corpus(tmp_path / "two.tsv", docs=80, classes=2), labelled=True)
    result = baseline.train_baseline(corpus, DataConfig(folds=4), CONFIG, threads=1)
    train_docs, dev_docs = baseline.split_docs(corpus.labels, DataConfig(folds=4))
    x_train, x_dev = baseline.tfidf_features(corpus, train_docs, dev_docs, CONFIG)
    model = baseline.classifier(CONFIG, threads=1).fit(x_train, corpus.labels[train_docs])
    np.testing.assert_array_equal(result.dev_indices, dev_docs)
    assert result.dev_scores.shape == (20, 2)
    np.testing.assert_array_equal(result.dev_scores[:, 0], 0.0)  # a two-class model: (0, s)
    np.testing.assert_array_equal(result.dev_scores.argmax(1), model.predict(x_dev))


# ------------------------------------------------------------------- a study's baseline


@dataclass
class Studied:
    train: Path
    tracking_uri: str
    storage: str
    first: RunSummary
    second: RunSummary
    events: list[tuple[str, int]]
    off: RunSummary
    off_events: list[tuple[str, int]]

    def runs(self, study: str) -> list[Run]:
        client = MlflowClient(tracking_uri=self.tracking_uri)
        experiment = client.get_experiment_by_name(study)
        assert experiment is not None
        return client.search_runs([experiment.experiment_id],
                                  filter_string="tags.`han.role` = 'baseline'")


@pytest.fixture(scope="module")
def studied(tmp_path_factory: pytest.TempPathFactory) -> Studied:
    root = tmp_path_factory.mktemp("baseline")
    train = easy_corpus(root / "train.tsv")
    options = RunOptions(storage=f"sqlite:///{root}/optuna.db",
                         tracking_uri=f"sqlite:///{root}/mlflow.db", device="cpu")
    spec = load_study_file(study_toml(root / "on.toml", name="on", train="train.tsv",
                                      trials=1, reference=STRONG))
    progress, again = Recorder(), Recorder()
    first = run_study(spec, options, work_dir=root / "work", progress=progress)
    second = run_study(spec, options, work_dir=root / "work", progress=again)
    off_spec = load_study_file(study_toml(root / "off.toml", name="off", train="train.tsv",
                                          trials=1, reference=STRONG,
                                          extra_study="baseline = false"))
    off_progress = Recorder()
    off = run_study(off_spec, options, work_dir=root / "work", progress=off_progress)
    return Studied(train=train, tracking_uri=options.tracking_uri, storage=options.storage,
                   first=first, second=second, events=progress.events + again.events,
                   off=off, off_events=off_progress.events)


def test_baseline_run_under_the_parent_matches_sklearn_by_hand(studied: Studied) -> None:
    runs = studied.runs("on")
    assert len(runs) == 1  # the continued session did not train it again
    run = runs[0]
    assert run.info.run_name == "baseline" and run.info.status == "FINISHED"
    assert run.data.tags["mlflow.parentRunId"] == studied.first.parent_run_id
    assert run.data.tags["state"] == "complete"
    recorded = run.data.metrics["dev_macro_f1"]
    assert {"dev_accuracy", "seconds", "features"} <= set(run.data.metrics)
    # By hand: the trials' split (han.batching.prepare with the study's fixed settings),
    # scikit-learn's TfidfVectorizer and SGDClassifier with the baseline's settings.
    corpus = read_corpus(studied.train, labelled=True)
    split = prepare(corpus, DataConfig(folds=FIXED["folds"], min_count=FIXED["min_count"]))
    assert run.data.params["dev_docs"] == str(len(split.dev_docs))
    vectorizer, x_train, x_dev = sklearn_tfidf(corpus, split.train_docs, split.dev_docs)
    assert run.data.metrics["features"] == len(vectorizer.vocabulary_)
    model = SGDClassifier(loss=CONFIG.loss, alpha=CONFIG.alpha, max_iter=CONFIG.epochs,
                          tol=None, class_weight="balanced", random_state=CONFIG.seed)
    model.fit(x_train, corpus.labels[split.train_docs])
    truth = corpus.labels[split.dev_docs]
    expected = f1_score(truth, model.predict(x_dev), average="macro", zero_division=0)
    assert recorded == pytest.approx(expected, abs=1e-9)
    # Its dev scores, kept for the summary's comparison with the best trial (and a blend).
    kept = np.load(MlflowClient(tracking_uri=studied.tracking_uri).download_artifacts(
        run.info.run_id, "evaluation/dev_scores.npz", str(studied.train.parent)))
    np.testing.assert_array_equal(kept["docs"], split.dev_docs)
    np.testing.assert_array_equal(kept["labels"], truth)
    np.testing.assert_array_equal(kept["values"].argmax(1), model.predict(x_dev))
    # A constant guess scores about 0.1 here: the figure is a real classifier's.
    assert recorded > 0.5


def test_the_study_records_it_and_the_continued_session_reuses_it(studied: Studied) -> None:
    study = optuna.load_study(study_name="on", storage=studied.storage)
    record = BaselineRecord.of(study)
    assert record is not None
    assert record.run_id == studied.runs("on")[0].info.run_id
    assert record.model == baseline.DESCRIPTION
    assert studied.first.baseline == studied.second.baseline == record
    # Trained before trial 0 in the first session, shown (not trained) in the second.
    assert studied.events.index(("baseline", 1)) < studied.events.index(("start", 0))
    assert ("baseline", 0) in studied.events
    verdict = versus_baseline(studied.second.best_value, record)
    assert verdict is not None and any(word in verdict for word in ("beat", "tied", "not beaten"))


def test_a_study_file_can_turn_it_off(studied: Studied) -> None:
    assert studied.runs("off") == []
    assert studied.off.baseline is None
    study = optuna.load_study(study_name="off", storage=studied.storage)
    assert BaselineRecord.of(study) is None
    assert studied.off_events.count(("baseline", 0)) == 1
    assert studied.off.states == {"complete": 1}
