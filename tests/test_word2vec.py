"""word2vec by default: vectors trained once per dataset before the trials, cached in the work
folder under a key of the data and settings, logged to MLflow, given to every trial and every
worker; off with --no-word2vec. Real Optuna (SQLite), real MLflow (SQLite), real gensim on
a few hundred tiny documents."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from mlflow.entities import Run
from typer.testing import Result

from han.config import FileFormat, Word2VecConfig
from han.files import content_hash
from search.cli import run as cli
from search.cli.console import word2vec_line
from search.records import Word2VecRecord
from search.session.word2vec import Source, Word2VecData, Word2VecOutcome, not_trained
from search.setup.options import RunOptions
from search.studyfile import load_study_file
from tests.conftest import easy_corpus, write_tsv
from tests.test_cli import assert_user_error, files_under, invoke
from tests.test_search import STRONG, study_toml, unlabelled_test_file

pytest.importorskip("gensim")

TRAINED = re.compile(r"^word2vec   16 dims, ([\d,]+) vectors from (\d+) documents in \d+s "
                     r"\((.+\.txt)\)$", re.MULTILINE)
REUSED = re.compile(r"^word2vec   16 dims, ([\d,]+) vectors from (\d+) documents reused "
                    r"\((.+\.txt)\)$", re.MULTILINE)


pytestmark = pytest.mark.usefixtures("isolated_cwd")


@dataclass
class Root:
    path: Path

    @property
    def storage(self) -> str:
        return f"sqlite:///{self.path}/optuna.db"

    @property
    def tracking_uri(self) -> str:
        return f"sqlite:///{self.path}/mlflow.db"

    @property
    def cache(self) -> Path:
        return self.path / "work" / "word2vec"

    def run(self, *args: str | Path, study: str = "w2v") -> Result:
        return invoke("run", "--config", self.path / "study.toml", "--study", study,
                      "--storage", self.storage, "--tracking-uri", self.tracking_uri,
                      "--device", "cpu", "--work-dir", self.path / "work", *args)

    def runs(self, study: str, role: str) -> list[Run]:
        client = MlflowClient(tracking_uri=self.tracking_uri)
        experiment = client.get_experiment_by_name(study)
        assert experiment is not None
        return client.search_runs([experiment.experiment_id],
                                  filter_string=f"tags.`han.role` = '{role}'")


def make_root(path: Path, *, word2vec: bool = True) -> Root:
    easy_corpus(path / "train.tsv")
    unlabelled_test_file(path / "test.tsv")
    study_toml(path / "study.toml", name="w2v", train="train.tsv", test="test.tsv",
               trials=4, reference=STRONG, word2vec=word2vec)
    return Root(path)


@dataclass
class Cached:
    root: Root
    first: Result
    second: Result
    other_study: Result
    other_test: Result
    mtime_after_first: int


@pytest.fixture(scope="module")
def cached(tmp_path_factory: pytest.TempPathFactory) -> Cached:
    """Four runs on one work folder: one trains the vectors; the study again, and another
    study of the same data, reuse them; the same training file with another test file
    trains its own."""
    root = make_root(tmp_path_factory.mktemp("w2v"))
    first = root.run("--trials", "1")
    files = list(root.cache.iterdir())
    mtime = files[0].stat().st_mtime_ns if files else 0
    second = root.run("--trials", "1")
    other_study = root.run("--trials", "1", study="w2v-again")
    unlabelled_test_file(root.path / "other-test.tsv", seed=2)
    other_test = root.run("--trials", "1", "--test", root.path / "other-test.tsv",
                          study="w2v-other-test")
    return Cached(root=root, first=first, second=second, other_study=other_study,
                  other_test=other_test, mtime_after_first=mtime)


def test_the_first_run_trains_word2vec_before_the_baseline_and_trials(cached: Cached) -> None:
    out = cached.first.stdout
    assert cached.first.exit_code == 0, cached.first.output
    found = TRAINED.search(out)
    assert found, out
    vectors, documents, path = int(found[1].replace(",", "")), int(found[2]), Path(found[3])
    assert documents == 240 + 40  # the training and the test file's texts
    assert path.parent == cached.root.cache
    count, dim = map(int, path.read_text().splitlines()[0].split())
    assert (count, dim) == (vectors, 16)
    assert out.index(found[0]) < out.index("baseline  ") < out.index("[trial 0] start")


def test_a_second_run_reuses_the_file_without_training(cached: Cached) -> None:
    assert cached.second.exit_code == 0, cached.second.output
    trained, reused = TRAINED.search(cached.first.stdout), REUSED.search(cached.second.stdout)
    assert reused and trained, cached.second.stdout
    assert reused.groups() == trained.groups()  # the same vectors, documents and file
    assert not TRAINED.search(cached.second.stdout)
    assert Path(reused[3]).stat().st_mtime_ns == cached.mtime_after_first
    # Another study on the same data takes the same file too.
    other = REUSED.search(cached.other_study.stdout)
    assert other and other[3] == trained[3], cached.other_study.output


def test_another_test_file_gets_vectors_of_its_own(cached: Cached) -> None:
    assert cached.other_test.exit_code == 0, cached.other_test.output
    found = TRAINED.search(cached.other_test.stdout)
    assert found, cached.other_test.stdout
    assert found[3] != TRAINED.search(cached.first.stdout)[3]
    # Only finished vectors files in the cache: no temporary left behind.
    assert sorted(p.suffix for p in cached.root.cache.iterdir()) == [".txt", ".txt"]


def test_the_vectors_are_logged_once_per_study_and_given_to_every_trial(cached: Cached) -> None:
    root = cached.root
    path = Path(TRAINED.search(cached.first.stdout)[3])
    study = optuna.load_study(study_name="w2v", storage=root.storage)
    record = Word2VecRecord.of(study)
    assert record is not None and record.path == path.resolve()
    (run,) = root.runs("w2v", "word2vec")  # two sessions, one run
    (parent,) = root.runs("w2v", "study")
    assert run.info.run_id == record.run_id and run.info.status == "FINISHED"
    assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert run.data.tags["reused"] == "false"
    assert run.data.tags["data.embeddings"] == str(path.resolve())
    assert run.data.params == {"dim": "16", "window": "5", "min_count": "5", "epochs": "5",
                               "seed": "0", "cache_key": record.key,
                               "test_sha256": content_hash(root.path / "test.tsv")}
    assert run.data.metrics["documents"] == 280
    assert run.data.metrics["vectors"] == int(path.read_text().split()[0])
    assert run.data.metrics["seconds"] > 0
    artifacts = MlflowClient(tracking_uri=root.tracking_uri).list_artifacts(
        run.info.run_id, "word2vec")
    assert [a.path for a in artifacts] == [f"word2vec/{path.name}"]
    trials = root.runs("w2v", "trial")
    assert len(trials) == 2
    for trial in trials:
        assert trial.data.tags["data.embeddings"] == str(path.resolve())
        assert trial.data.params["pretrained_embeddings"] == "True"
    # Another study that reuses the file logs it in its own experiment, as reused.
    (again,) = root.runs("w2v-again", "word2vec")
    assert again.data.tags["reused"] == "true"


def test_no_word2vec_trains_none_and_the_trials_have_no_table(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    result = root.run("--trials", "1", "--no-word2vec")
    assert result.exit_code == 0, result.output
    assert "word2vec   off (--no-word2vec)\n" in result.stdout
    assert not root.cache.exists()
    (trial,) = root.runs("w2v", "trial")
    assert trial.data.params["pretrained_embeddings"] == "False"
    assert "data.embeddings" not in trial.data.tags
    assert root.runs("w2v", "word2vec") == []


def test_a_failed_word2vec_leaves_the_trials_without_vectors(tmp_path: Path) -> None:
    # Every token once: nothing reaches word2vec's min_count, and gensim refuses to train.
    rows = [(index % 2, " ".join(str(10 * index + k) for k in range(4))) for index in range(40)]
    write_tsv(tmp_path / "train.tsv", rows)
    study_toml(tmp_path / "study.toml", name="w2v", train="train.tsv", trials=1,
               reference=STRONG, word2vec=True)
    root = Root(tmp_path)
    result = root.run()
    assert result.exit_code == 0, result.output
    assert ("word2vec   failed (RuntimeError: you must first build vocabulary before training "
            "the model); the trials go on without pretrained vectors") in result.stdout
    (trial,) = root.runs("w2v", "trial")
    assert trial.data.params["pretrained_embeddings"] == "False"
    (run,) = root.runs("w2v", "word2vec")
    assert run.info.status == "FAILED"
    assert list(root.cache.iterdir()) == []


def test_a_cache_folder_that_cannot_be_written_is_a_one_line_error(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    (tmp_path / "work").mkdir()
    root.cache.write_text("not a folder", encoding="utf-8")
    before = files_under(tmp_path)
    result = root.run("--trials", "1")
    assert_user_error(result, f"cannot write {root.cache} ({root.cache}: File exists)")
    assert files_under(tmp_path) == before  # no study, no MLflow store


@pytest.mark.slow
def test_workers_take_the_parents_vectors(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    result = root.run("--trials", "2", "--workers", "2", "--threads", "1")
    assert result.exit_code == 0, result.output
    found = TRAINED.search(result.stdout)  # the parent's line, unprefixed
    assert found, result.stdout
    path = Path(found[3]).resolve()
    for worker in (0, 1):
        assert f"[w{worker}] word2vec   given: {path} (not trained)" in result.stdout
    assert len(root.runs("w2v", "word2vec")) == 1
    trials = root.runs("w2v", "trial")
    assert len(trials) == 2
    assert {trial.data.tags["data.embeddings"] for trial in trials} == {str(path)}


def test_a_worker_is_given_the_vectors_and_told_not_to_train() -> None:
    options = RunOptions(embeddings=Path("/w/word2vec/ab.txt"), word2vec=False)
    args = cli._worker_args(Path("study.toml"), options, study="s", timeout=12.5)
    assert args[args.index("--embeddings") + 1] == "/w/word2vec/ab.txt"
    assert args[args.index("--timeout") + 1] == "12.5"
    assert "--no-word2vec" in args


def test_what_turns_word2vec_off(tmp_path: Path) -> None:
    easy_corpus(tmp_path / "train.tsv", docs=40)
    spec = load_study_file(study_toml(tmp_path / "on.toml", name="on", train="train.tsv",
                                      word2vec=True))
    off = load_study_file(study_toml(tmp_path / "off.toml", name="off", train="train.tsv"))
    assert not_trained(spec, flag=None, embeddings=None) is None
    assert not_trained(off, flag=True, embeddings=None) is None  # --word2vec wins
    assert not_trained(spec, flag=False, embeddings=None) == Word2VecOutcome(
        source=Source.OFF, reason="--no-word2vec")
    assert not_trained(off, flag=None, embeddings=None) == Word2VecOutcome(
        source=Source.OFF, reason="[data] word2vec = false")
    given = not_trained(spec, flag=None, embeddings=Path("w2v.txt"))
    assert given == Word2VecOutcome(source=Source.GIVEN, path=Path("w2v.txt"))
    assert word2vec_line(given) == "word2vec   given: w2v.txt (not trained)"
    searched = not_trained(replace(spec, space=(*spec.space, spec.space[0].named("embed_dim"))),
                           flag=None, embeddings=None)
    assert searched is not None and searched.source is Source.OFF
    assert word2vec_line(searched) == ("word2vec   off (embed_dim is searched; fix it in "
                                       "[fixed] to train vectors of that dimension)")


def test_the_key_covers_the_data_and_the_settings() -> None:
    data = Word2VecData(train_sha256="a" * 64, test_sha256=None, file_format=FileFormat(),
                        corpora=())
    config = Word2VecConfig(dim=16)
    key = data.key(config)
    assert key == data.key(Word2VecConfig(dim=16)) and len(key) == 12
    others = [replace(data, train_sha256="b" * 64), replace(data, test_sha256="a" * 64),
              replace(data, file_format=FileFormat(tokens="words")),
              replace(data, file_format=FileFormat(sep=",")),
              replace(data, file_format=FileFormat(text_col="content"))]
    assert len({key, *(other.key(config) for other in others)}) == 1 + len(others)
    assert len({key, data.key(Word2VecConfig(dim=32)), data.key(Word2VecConfig(dim=16,
                                                                                window=3))}) == 3
    # Labels are not read: which column holds them does not change the vectors.
    assert replace(data, file_format=FileFormat(label_col="category")).key(config) == key
