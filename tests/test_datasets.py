"""One study, one dataset: runs without a study file, study names and class names from the
data, the dataset a study records and the data it refuses; output paths checked before work;
corrupt checkpoints named by their trial and run."""

from __future__ import annotations

import hashlib
import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
from mlflow import MlflowClient

from search.errors import SearchError
from search.records import DatasetRecord, StudyRecord
from search.session.study import prepare_study
from search.setup.options import RunOptions
from search.setup.resolve import for_data, with_overrides
from search.studyfile import builtin_study_path, load_study_file, name_for_file
from tests.conftest import NEWS_CLASSES, chinese_news
from tests.test_cli import assert_user_error, files_under, invoke
from tests.test_search import study_toml

# The "Any labelled text" example lives on the documentation page for a user's own data.
YOUR_DATA_PAGE = Path(__file__).resolve().parents[1] / "docs" / "your-data.md"
TOPICS = {"sport": ["goal", "match", "team"], "tech": ["chip", "code", "phone"],
          "arts": ["paint", "stage", "poem"]}


def id_file(path: Path, *, classes: int = 20, per_class: int = 4, seed: int = 0,
            labelled: bool = True) -> Path:
    """A tab-separated file of integer labels and short documents of token ids: each class
    has its own keyword among shared ids (short, so the reference configuration trains in
    seconds)."""
    rng = np.random.default_rng(seed)
    rows = []
    for index in range(classes * per_class):
        label = index % classes
        tokens = [1000 + label] * 3 + rng.integers(100, 200, size=5).tolist()
        rng.shuffle(tokens)
        rows.append({"label": label, "text": " ".join(map(str, tokens))})
    frame = pd.DataFrame(rows)
    frame[["label", "text"] if labelled else ["text"]].to_csv(path, sep="\t", index=False)
    return path


def words_file(path: Path, *, per_class: int = 12, seed: int = 0,
               labelled: bool = True) -> list[str]:
    """A comma-separated file of English words with names as labels (`category`,
    `content`; some texts hold a quoted comma). Returns the labels in file order."""
    rng = np.random.default_rng(seed)
    names, texts = [], []
    for index in range(per_class * len(TOPICS)):
        name = list(TOPICS)[index % len(TOPICS)]
        words = [str(rng.choice(TOPICS[name])) for _ in range(3)]
        words += [f"w{rng.integers(50)}" for _ in range(4)]
        rng.shuffle(words)
        names.append(name)
        texts.append(" ".join(words) + (", and more" if index % 5 == 0 else ""))
    columns = {"category": names, "content": texts} if labelled else {"content": texts}
    pd.DataFrame(columns).to_csv(path, index=False)
    return names


def store_state(root: Path) -> dict[str, str]:
    """Every file under `root` with a hash of its bytes: the Optuna and MLflow databases and
    the MLflow artifacts, so "nothing written" is checked byte for byte."""
    return {str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(root.rglob("*")) if path.is_file()}


WORDS = ["--sep", ",", "--text-col", "content", "--label-col", "category", "--tokens", "words"]


@dataclass
class Stores:
    root: Path
    storage: str
    tracking_uri: str

    def args(self) -> list[str]:
        return ["--storage", self.storage, "--tracking-uri", self.tracking_uri]

    def run(self, *args: str | Path) -> list[str | Path]:
        """A `run` command of one trial, on these stores, on the CPU."""
        return ["run", *args, *self.args(), "--trials", "1", "--device", "cpu", "--threads",
                "1", "--work-dir", self.root / "work"]

    def study(self, name: str) -> optuna.Study:
        return optuna.load_study(study_name=name, storage=self.storage)


def stores_in(root: Path) -> Stores:
    return Stores(root=root, storage=f"sqlite:///{root}/optuna.db",
                  tracking_uri=f"sqlite:///{root}/mlflow.db")


@pytest.fixture(scope="module")
def two(tmp_path_factory: pytest.TempPathFactory) -> Stores:
    """Two files run with no study file and no --study into the same stores, each exported:
    20 integer classes in a tab-separated file, and words with named labels in a CSV."""
    stores = stores_in(tmp_path_factory.mktemp("two"))
    root = stores.root
    id_file(root / "twenty.tsv")
    id_file(root / "twenty-test.tsv", per_class=1, seed=1, labelled=False)
    words_file(root / "words.csv")
    words_file(root / "words-test.csv", per_class=4, seed=1, labelled=False)
    for command in (
            stores.run("--train", root / "twenty.tsv", "--test", root / "twenty-test.tsv"),
            stores.run("--train", root / "words.csv", "--test", root / "words-test.csv",
                       *WORDS),
            ["export-best", "--study", "twenty", *stores.args(), "--device", "cpu", "--out",
             root / "twenty-submission.csv"],
            ["export-best", "--study", "words", *stores.args(), "--device", "cpu", "--out",
             root / "words-submission.csv"]):
        result = invoke(*command)
        assert result.exit_code == 0, result.output
    return stores


# ------------------------------------------------------------------- no study file


def test_an_integer_labelled_file_of_20_classes_runs_and_exports(two: Stores) -> None:
    study = two.study("twenty")
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE]
    dataset = DatasetRecord.of(study)
    assert dataset is not None
    assert (dataset.docs, dataset.classes, dataset.builtin) == (80, 20, False)
    assert dataset.path == (two.root / "twenty.tsv").resolve()
    assert dataset.sha256 == hashlib.sha256((two.root / "twenty.tsv").read_bytes()).hexdigest()
    # Integer labels are class ids: the demo study's 14 names do not apply.
    assert StudyRecord.of(study).class_names is None
    frame = pd.read_csv(two.root / "twenty-submission.csv")
    assert list(frame.columns) == ["label"] and len(frame) == 20
    assert frame["label"].between(0, 19).all()


def test_a_words_file_with_named_labels_runs_and_exports_the_names(two: Stores) -> None:
    study = two.study("words")
    assert StudyRecord.of(study).class_names == tuple(sorted(TOPICS))
    dataset = DatasetRecord.of(study)
    assert dataset is not None and dataset.file_format.tokens == "words"
    assert dataset.file_format.sep == "," and dataset.classes == 3
    frame = pd.read_csv(two.root / "words-submission.csv")
    assert list(frame.columns) == ["category"] and len(frame) == 12
    assert set(frame["category"]) <= set(TOPICS)


def test_two_files_without_study_make_two_studies(two: Stores) -> None:
    assert set(optuna.get_all_study_names(two.storage)) == {"twenty", "words"}
    result = invoke("studies", "--storage", two.storage)
    assert result.exit_code == 0, result.output
    short = DatasetRecord.of(two.study("twenty")).short_hash  # type: ignore[union-attr]
    assert f"twenty.tsv (80 docs, 20 classes, sha256 {short})" in result.stdout
    assert "words.csv (36 docs, 3 classes, sha256 " in result.stdout
    shown = invoke("show", "--study", "words", "--storage", two.storage)
    assert shown.exit_code == 0, shown.output
    assert re.search(r"^dataset words\.csv \(36 docs, 3 classes, sha256 [0-9a-f]{12}\)$",
                     shown.stdout, re.MULTILINE), shown.stdout


# ------------------------------------------------------------------- one study, one dataset


@pytest.mark.parametrize("case", ["another file", "another format"])
def test_other_data_under_an_existing_study_is_refused_and_writes_nothing(
        two: Stores, case: str) -> None:
    before = store_state(two.root)
    data = (["--train", two.root / "words.csv", *WORDS] if case == "another file"
            else ["--train", two.root / "twenty.tsv", "--tokens", "words"])
    result = invoke(*two.run("--study", "twenty", *data))
    given = "words.csv (36 docs, 3 classes" if case == "another file" else "twenty.tsv"
    assert_user_error(result, "study 'twenty' holds twenty.tsv (80 docs, 20 classes, sha256 ",
                      f"but was given {given}", "pass --study NEW_NAME")
    if case == "another format":
        assert "read with sep '\\t' text_col 'text' label_col 'label' tokens 'words'" in \
            result.stderr
    assert store_state(two.root) == before


def test_a_data_file_changed_under_a_study_is_refused_by_run_and_refit(two: Stores) -> None:
    train = two.root / "twenty.tsv"
    original = train.read_bytes()
    try:
        id_file(train, seed=7)  # same name, same shape, other documents
        before = store_state(two.root)
        again = invoke(*two.run("--study", "twenty", "--train", train))
        assert_user_error(again, "study 'twenty' holds twenty.tsv",
                          "but was given twenty.tsv (80 docs, 20 classes")
        refit = invoke("export-best", "--study", "twenty", *two.args(), "--device", "cpu",
                       "--folds", "2", "--out", two.root / "refit.csv")
        assert_user_error(refit, f"{train.resolve()} changed since study 'twenty' recorded it "
                          "as twenty.tsv (80 docs, 20 classes, sha256 ")
        assert store_state(two.root) == before
    finally:
        train.write_bytes(original)


def _prepare(root: Path, train: Path | None, *, name: str | None = None,
             config: Path | None = None, **file_format: str) -> optuna.Study:
    """Open or create a study the way `run` does, without running a trial."""
    options = RunOptions(storage=f"sqlite:///{root}/optuna.db",
                         tracking_uri=f"sqlite:///{root}/mlflow.db", device="cpu", train=train)
    spec = with_overrides(load_study_file(config or builtin_study_path()), options, name=name,
                          **file_format)
    return prepare_study(spec, options).study


def test_the_same_content_under_another_path_is_the_same_dataset(tmp_path: Path) -> None:
    first = id_file(tmp_path / "a.tsv", classes=3)
    study = _prepare(tmp_path, first)
    assert study.study_name == "a"
    moved = tmp_path / "elsewhere" / "renamed.tsv"
    moved.parent.mkdir()
    shutil.move(first, moved)
    again = _prepare(tmp_path, moved, name="a")
    dataset = DatasetRecord.of(again)
    # The record follows the file to where it is now; the refit reads it there.
    assert dataset is not None and dataset.path == moved.resolve()
    assert StudyRecord.of(again).train_path == moved.resolve()


def test_a_study_file_whose_classes_changed_is_refused(tmp_path: Path) -> None:
    words_file(tmp_path / "words.csv")
    config = study_toml(tmp_path / "study.toml", name="named", train="words.csv",
                        labels=["sport", "tech", "arts"])
    study = _prepare(tmp_path, None, config=config, sep=",", text_col="content",
                     label_col="category", tokens="words")
    assert StudyRecord.of(study).class_names == ("sport", "tech", "arts")
    study_toml(config, name="named", train="words.csv", labels=["arts", "sport", "tech"])
    with pytest.raises(SearchError, match=r"study 'named' holds words\.csv with classes "
                       r"sport, tech, arts but the classes are now arts, sport, tech"):
        _prepare(tmp_path, None, config=config, sep=",", text_col="content",
                 label_col="category", tokens="words")


def test_a_study_from_before_datasets_were_recorded_continues_and_records_it(
        tmp_path: Path) -> None:
    train = id_file(tmp_path / "old.tsv", classes=3)
    optuna.create_study(study_name="old", storage=f"sqlite:///{tmp_path}/optuna.db",
                        direction="maximize")
    study = _prepare(tmp_path, train)
    dataset = DatasetRecord.of(study)
    assert dataset is not None and dataset.classes == 3 and dataset.docs == 12


# ------------------------------------------------------------------- names and class names


@pytest.mark.parametrize(("file", "name"), [
    ("data/news.csv", "news"), ("train_set.csv.gz", "train_set"), ("my data (v2).tsv",
                                                                  "my-data-v2"),
    ("体育.csv", "data"), ("a.b.zip", "a"), ("noext", "noext")])
def test_a_study_is_named_after_its_training_file(file: str, name: str) -> None:
    assert name_for_file(Path(file)) == name


def test_class_names_test_file_and_name_of_the_study_files_data_only(tmp_path: Path) -> None:
    demo = load_study_file(builtin_study_path())
    given = RunOptions(train=tmp_path / "mine.tsv")
    assert with_overrides(demo, given).name == "mine"
    assert with_overrides(demo, given, name="chosen").name == "chosen"
    assert for_data(demo, given).label_names is None  # the built-in corpus's names
    assert with_overrides(demo, RunOptions()).name == "demo"
    assert for_data(demo, RunOptions()).label_names == demo.label_names
    config = study_toml(tmp_path / "own.toml", name="own", train="own.tsv", test="test.tsv",
                        labels=["x", "y"])
    own = load_study_file(config)
    same = RunOptions(train=tmp_path / "own.tsv")  # its own file, named again
    assert with_overrides(own, same).name == "own"
    assert for_data(own, same).label_names == ("x", "y")
    assert for_data(own, same).test_path == tmp_path / "test.tsv"
    # Another file keeps none of them: the study file's test file goes with its own data.
    assert for_data(own, given).test_path is None


# ------------------------------------------------------------------- output paths


@pytest.mark.parametrize("folds", [None, "2"])
def test_export_best_out_naming_a_folder_is_refused_before_any_work(
        two: Stores, folds: str | None) -> None:
    (two.root / "a-folder").mkdir(exist_ok=True)
    before = store_state(two.root)
    listing = files_under(two.root)
    extra = ["--folds", folds] if folds else []
    result = invoke("export-best", "--study", "twenty", *two.args(), "--device", "cpu",
                    "--out", two.root / "a-folder", *extra)
    assert_user_error(result, f"cannot write {two.root / 'a-folder'} "
                      f"({two.root / 'a-folder'}: Is a directory; name a file to write)")
    assert store_state(two.root) == before and files_under(two.root) == listing


def test_output_paths_of_every_command_are_checked_first(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    monkeypatch.chdir(tmp_path)
    id_file(tmp_path / "t.tsv", classes=3)
    (tmp_path / "taken").mkdir()
    (tmp_path / "pages" / "s-report.html").mkdir(parents=True)
    (tmp_path / "file").write_text("", encoding="utf-8")
    before = files_under(tmp_path)
    cases = [
        (["embeddings", "--train", "t.tsv", "--out", "taken"], "cannot write taken (taken: "
         "Is a directory"),
        (["report", "--study", "s", "--out", "pages"], "cannot write pages/s-report.html "
         "(pages/s-report.html: Is a directory"),
        (["run", "--train", "t.tsv", "--storage", "sqlite:///taken"],
         "storage sqlite:///taken: cannot write taken (taken: Is a directory"),
        (["run", "--train", "t.tsv", "--work-dir", "file"], "cannot write file (file: "
         "File exists)"),
        (["run", "--train", "t.tsv", "--tracking-uri", "sqlite:///file/mlflow.db"],
         "tracking URI sqlite:///file/mlflow.db: cannot write file/mlflow.db (file: File "
         "exists)"),
    ]
    for args, fragment in cases:
        assert_user_error(invoke(*args), fragment)
        assert files_under(tmp_path) == before, args
    (tmp_path / "taken").rmdir()
    (tmp_path / "mlruns").write_text("", encoding="utf-8")  # MLflow's artifact folder
    result = invoke("run", "--train", "t.tsv")
    assert_user_error(result, f"cannot write {tmp_path / 'mlruns'} ({tmp_path / 'mlruns'}: "
                      "File exists)")
    assert not (tmp_path / "han-search.db").exists() and not (tmp_path / "mlflow.db").exists()


# ------------------------------------------------------------------- corrupt checkpoint


def test_a_corrupt_checkpoint_is_named_by_its_trial_and_run(two: Stores) -> None:
    best = two.study("twenty").best_trial
    run_id = best.user_attrs["mlflow_run_id"]
    artifacts = MlflowClient(tracking_uri=two.tracking_uri).get_run(run_id).info.artifact_uri
    checkpoint = Path(artifacts.removeprefix("file://")) / "checkpoint" / "best.pt"
    original = checkpoint.read_bytes()
    try:
        checkpoint.write_bytes(b"not a checkpoint")
        result = invoke("export-best", "--study", "twenty", *two.args(), "--device", "cpu",
                        "--out", two.root / "corrupt.csv")
        assert_user_error(result, f"trial {best.number} (MLflow run {run_id}): checkpoint "
                          "checkpoint/best.pt is corrupt: not a loadable han-search checkpoint")
        assert "han-export-" not in result.stderr  # no temporary download path
        assert not (two.root / "corrupt.csv").exists()
    finally:
        checkpoint.write_bytes(original)


# ------------------------------------------------------------ the documentation's example


def _readme_commands(section: str) -> list[list[str]]:
    """The `han-search` commands of the first bash block under a heading of the page."""
    text = YOUR_DATA_PAGE.read_text(encoding="utf-8")
    body = text.split(f"## {section}\n", 1)[1]
    block = body.split("```bash\n", 1)[1].split("```", 1)[0]
    joined = block.replace("\\\n", " ")
    return [shlex.split(line, comments=True)[1:] for line in joined.splitlines()
            if line.startswith("han-search ")]


def test_the_docs_any_labelled_text_example_runs_as_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    chinese_news(tmp_path / "news.csv", docs=40)
    chinese_news(tmp_path / "news-test.csv", docs=12, seed=5, labelled=False)
    commands = _readme_commands("Any labelled text")
    assert [c[0] for c in commands] == ["run", "export-best"]
    for command in commands:
        if "--trials" in command:  # one trial, not thirty: the commands are what is tested
            command[command.index("--trials") + 1] = "1"
        result = invoke(*command, "--device", "cpu")
        assert result.exit_code == 0, result.output
    frame = pd.read_csv(tmp_path / "submission.csv")
    assert list(frame.columns) == ["category"] and len(frame) == 12
    assert set(frame["category"]) <= set(NEWS_CLASSES)
    assert optuna.get_all_study_names(f"sqlite:///{tmp_path}/han-search.db") == ["news"]
