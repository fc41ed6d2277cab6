"""The `han-search` command line through typer's CliRunner, on real Optuna and MLflow stores."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import optuna
import pandas as pd
import pytest
import torch
import typer.main
from mlflow import MlflowClient
from optuna.trial import TrialState
from rich.console import Console
from typer.testing import CliRunner, Result

from han.dev_reports import EpochMetrics
from search.cli import app
from search.cli import run as cli
from search.cli.console import ConsoleProgress
from search.cli.live import LiveProgress
from search.defaults import DEFAULT_STORAGE_PATIENCE_S
from search.records import BaselineRecord
from search.session.budget import Budget
from search.setup.options import RunOptions
from search.version import han_search_version
from tests.conftest import chinese_news, easy_corpus, write_tsv
from tests.test_search import (
    STRONG,
    study_toml,
    study_without_complete_trial,
    unlabelled_test_file,
)

# Typer vendors its own click: go by duck typing, not isinstance against `click`.
COMMANDS = typer.main.get_command(app)


def invoke(*args: str | Path) -> Result:
    return CliRunner().invoke(app, [str(arg) for arg in args])


def files_under(folder: Path) -> set[Path]:
    return {path.relative_to(folder) for path in folder.rglob("*")}


def assert_user_error(result: Result, *fragments: str) -> None:
    """Exit code 2, one `error: ...` line on stderr, no traceback."""
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0]
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


pytestmark = pytest.mark.usefixtures("isolated_cwd")


# ------------------------------------------------------------------- a study run by the CLI


@dataclass
class CliStudy:
    root: Path
    storage: str
    tracking_uri: str
    result: Result

    def study(self, name: str = "cli") -> optuna.Study:
        return optuna.load_study(study_name=name, storage=self.storage)


@pytest.fixture(scope="module")
def cli_study(tmp_path_factory: pytest.TempPathFactory) -> CliStudy:
    # Module-scoped, so set up before the autouse chdir: every path here is absolute.
    root = tmp_path_factory.mktemp("cli")
    easy_corpus(root / "train.tsv")
    unlabelled_test_file(root / "test.tsv")
    config = study_toml(root / "study.toml", name="cli", train="train.tsv", test="test.tsv",
                        trials=10, reference=STRONG)
    storage = f"sqlite:///{root}/optuna.db"
    tracking_uri = f"sqlite:///{root}/mlflow.db"
    result = invoke("run", "--config", config, "--trials", "2", "--storage", storage,
                    "--tracking-uri", tracking_uri, "--device", "cpu",
                    "--work-dir", root / "work")
    return CliStudy(root=root, storage=storage, tracking_uri=tracking_uri, result=result)


def test_run_prints_progress_and_a_summary(cli_study: CliStudy) -> None:
    result = cli_study.result
    assert result.exit_code == 0, result.output
    study = cli_study.study()
    assert len(study.trials) == 2  # --trials overrides the file's 10
    best = study.best_trial
    out = result.stdout
    assert "study 'cli' from " in out
    assert "[trial 0] start " in out
    # The baseline comes first, trained before trial 0, and again in the summary.
    baseline = BaselineRecord.of(study)
    assert baseline is not None
    line = f"baseline  dev F1 {baseline.dev_macro_f1:.4f} (TF-IDF 1-2-gram + SGDClassifier, "
    assert out.index(line) < out.index("[trial 0] start ")
    verdict = ("beat the baseline" if best.value > baseline.dev_macro_f1
               else "tied the baseline" if best.value == baseline.dev_macro_f1
               else "not beaten")
    assert f"baseline       dev F1 {baseline.dev_macro_f1:.4f} (" in out and verdict in out
    assert "[trial 0] epoch 1/3 dev F1 " in out
    assert "[trial 1] " in out
    assert "; this run 1 of 2" in out and "; this run 2 of 2" in out
    assert "study          cli" in out
    assert "this run       2 trials in " in out
    assert f"best dev F1    {best.value:.4f} (trial {best.number})" in out
    assert f"reference      {study.trials[0].value:.4f} (trial 0" in out
    experiment = MlflowClient(tracking_uri=cli_study.tracking_uri).get_experiment_by_name("cli")
    assert experiment is not None
    parents = MlflowClient(tracking_uri=cli_study.tracking_uri).search_runs(
        [experiment.experiment_id], filter_string="tags.`han.role` = 'study'")
    assert len(parents) == 1
    assert f"parent run {parents[0].info.run_id}" in out
    assert "warning" not in out


def test_studies_lists_the_study(cli_study: CliStudy) -> None:
    result = invoke("studies", "--storage", cli_study.storage)
    assert result.exit_code == 0, result.output
    best = cli_study.study().best_value
    line = next(line for line in result.stdout.splitlines() if line.startswith("cli "))
    assert f"{best:.4f}" in line
    assert "baseline" in result.stdout.splitlines()[0]
    baseline = BaselineRecord.of(cli_study.study())
    assert baseline is not None and f" {baseline.dev_macro_f1:.4f} " in line


def test_show_prints_the_best_params_and_runs(cli_study: CliStudy) -> None:
    result = invoke("show", "--study", "cli", "--storage", cli_study.storage)
    assert result.exit_code == 0, result.output
    study = cli_study.study()
    best = study.best_trial
    assert f"best dev F1 {best.value:.4f} (trial {best.number})" in result.stdout
    baseline = BaselineRecord.of(study)
    assert baseline is not None and baseline.run_id is not None
    assert f"baseline dev F1 {baseline.dev_macro_f1:.4f} (" in result.stdout
    assert baseline.run_id in result.stdout
    for key in best.params:
        assert f"  {key}" in result.stdout
    for trial in study.trials:
        if trial.state == TrialState.COMPLETE:
            assert trial.user_attrs["mlflow_run_id"] in result.stdout


def test_show_a_study_without_a_complete_trial(cli_study: CliStudy) -> None:
    study_without_complete_trial(cli_study.storage, "all-pruned")
    result = invoke("show", "--study", "all-pruned", "--storage", cli_study.storage)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["study all-pruned: 1 pruned", "no complete trial yet"]


def test_studies_in_an_empty_storage(tmp_path: Path) -> None:
    result = invoke("studies", "--storage", f"sqlite:///{tmp_path}/empty.db")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"no studies in sqlite:///{tmp_path}/empty.db"


def test_show_an_unknown_study(cli_study: CliStudy) -> None:
    result = invoke("show", "--study", "nope", "--storage", cli_study.storage)
    assert_user_error(result, "no study named 'nope'", "cli")


def test_export_best_writes_the_submission(cli_study: CliStudy, tmp_path: Path) -> None:
    result = invoke("export-best", "--study", "cli", "--storage", cli_study.storage,
                    "--tracking-uri", cli_study.tracking_uri, "--device", "cpu")
    assert result.exit_code == 0, result.output
    out = tmp_path / "submission.csv"  # the default, in the current directory
    frame = pd.read_csv(out)
    assert list(frame.columns) == ["label"]
    assert len(frame) == 40
    best = cli_study.study().best_trial
    assert (f"wrote 40 predictions to submission.csv from trial {best.number} "
            f"(dev F1 {best.value:.4f}, MLflow run {best.user_attrs['mlflow_run_id']})"
            ) in result.stdout


@pytest.mark.parametrize("case", ["no complete trial", "no such study", "missing test file"])
def test_export_best_errors(cli_study: CliStudy, tmp_path: Path, case: str) -> None:
    study_without_complete_trial(cli_study.storage, "all-pruned")
    name = {"no complete trial": "all-pruned", "no such study": "nope"}.get(case, "cli")
    extra = ["--test", "missing.tsv"] if case == "missing test file" else []
    result = invoke("export-best", "--study", name, "--storage", cli_study.storage,
                    "--tracking-uri", cli_study.tracking_uri, "--out", "out/sub.csv",
                    "--device", "cpu", *extra)
    fragment = {"no complete trial": "has no complete trial",
                "no such study": "no study named 'nope'"}.get(case, "missing.tsv: no such file")
    assert_user_error(result, fragment)
    assert files_under(tmp_path) == set()


@pytest.mark.parametrize(("direction", "best"), [("maximize", 0.7), ("minimize", 0.2)])
def test_progress_keeps_the_best_of_the_studys_direction(direction: str, best: float,
                                                          capsys: pytest.CaptureFixture) -> None:
    study = optuna.create_study(direction=direction)
    progress = ConsoleProgress(started=0.0)
    for value in (0.5, 0.7, 0.2):
        study.add_trial(optuna.trial.create_trial(value=value))
        progress.trial_done(study, study.trials[-1])
    assert progress.best == best
    assert f", best {best:.4f}; this run " in capsys.readouterr().out.splitlines()[-1]


def test_the_live_view_shows_budget_running_trial_and_best() -> None:
    """On a terminal the same lines scroll above a panel: the budget spent and left, the
    trial running and its epoch, the best so far and which trial holds it."""
    clock = iter(float(t) for t in range(0, 10_000, 30))
    budget = Budget(600.0, started=0.0, clock=lambda: next(clock))
    screen = io.StringIO()
    live = LiveProgress(started=0.0, budget=budget, console=Console(
        file=screen, force_terminal=True, width=120, color_system=None))
    study = optuna.create_study(direction="maximize")
    study.add_trial(optuna.trial.create_trial(value=0.61))
    live.next_trial(1, 3)
    live.trial_done(study, study.trials[-1])
    trial = study.ask()
    trial.set_user_attr("max_epochs", 10)
    live.trial_started(trial, {"lr": 0.002})
    live.epoch_done(trial, EpochMetrics(
        epoch=3, train_loss=0.5, train_macro_f1=0.7, dev_macro_f1=0.5812,
        dev_macro_precision=0.6, dev_macro_recall=0.6, dev_accuracy=0.6, lr=0.002,
        epoch_seconds=1.0, train_docs_per_s=100.0))
    panel = Console(file=io.StringIO(), width=120, color_system=None)
    with panel.capture() as shown:
        panel.print(live.panel())
    text = shown.get()
    assert "budget" in text and " spent, " in text and " left" in text
    assert "trial 1, 3/10 epochs done, dev F1 0.5812" in text
    assert "best 0.6100 (trial 0)" in text and "this run 1 of 3 done" in text


# ------------------------------------------------------------------- help


@pytest.mark.parametrize("name", sorted(COMMANDS.commands))
def test_help_of_every_command_names_every_option(name: str) -> None:
    result = invoke(name, "--help")
    assert result.exit_code == 0, result.output
    command = COMMANDS.commands[name]
    # Rich wraps the description at the terminal width: compare with whitespace collapsed.
    assert command.help and " ".join(command.help.split()) in " ".join(result.stdout.split())
    for param in command.params:
        shown = param.opts if param.param_type_name == "option" else [param.name or ""]
        for opt in shown:
            if getattr(param, "hidden", False):
                assert opt not in result.stdout
            else:
                assert opt in result.stdout, f"{name}: {opt} missing from --help"


def test_top_level_help_lists_every_command() -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    for name in COMMANDS.commands:
        assert name in result.stdout


# ------------------------------------------------------------------- bad input


def _bad_input(tmp_path: Path, case: str) -> tuple[list[str], str]:
    easy_corpus(tmp_path / "train.tsv", docs=40)
    config = study_toml(tmp_path / "study.toml", name="bad", train="train.tsv")
    if case == "unknown key in the study file":
        study_toml(config, name="bad", train="train.tsv", extra_study="trails = 3")
        return [], "unknown key 'trails' in [study] (did you mean 'trials'?)"
    if case == "no such study file":
        return ["--config", "missing.toml"], "missing.toml: no such study file"
    if case == "missing train file":
        return ["--train", "missing.tsv"], "missing.tsv: no such file"
    if case == "train file without a text column":
        write_tsv(tmp_path / "columns.tsv", [(1, "5 6 7")], header=("label", "content"))
        return ["--train", "columns.tsv"], "missing column 'text'"
    if case == "test file with a non-integer token":
        write_tsv(tmp_path / "test.tsv", [("5 6 7",), ("8 x9 10",)], header=("text",))
        return ["--test", "test.tsv"], "line 3: non-integer token 'x9'"
    if case == "empty train file":
        (tmp_path / "empty.tsv").write_text("", encoding="utf-8")
        return ["--train", "empty.tsv"], "empty.tsv: the file is empty"
    if case == "binary train file":
        (tmp_path / "binary.tsv").write_bytes(bytes(range(256)) * 8)
        return ["--train", "binary.tsv"], "binary.tsv: cannot read as a tab-separated file"
    if case == "comma-separated train file":
        (tmp_path / "commas.csv").write_text("label,text\n1,5 6 7\n", encoding="utf-8")
        return ["--train", "commas.csv"], "line 1: missing column 'label'"
    if case == "negative label":
        write_tsv(tmp_path / "negative.tsv", [(1, "5 6"), (-2, "7 8")])
        return ["--train", "negative.tsv"], "negative.tsv: line 3: negative label '-2'"
    if case == "one class":
        write_tsv(tmp_path / "one.tsv", [(3, "5 6"), (3, "7 8"), (3, "9")])
        return ["--train", "one.tsv"], ("one.tsv: all 3 documents have the same label; a "
                                        "classifier needs two classes or more")
    if case == "empty text":
        write_tsv(tmp_path / "blank.tsv", [(1, "5 6"), (2, "")])
        return ["--train", "blank.tsv"], "blank.tsv: line 3: empty text"
    if case == "embeddings with a wrong header":
        (tmp_path / "w2v.txt").write_text("5 6 7\n", encoding="utf-8")
        return ["--embeddings", "w2v.txt"], "w2v.txt: line 1: expected a word2vec header"
    if case == "embeddings of another dimension":
        (tmp_path / "w2v.txt").write_text("1 3\n5 0.1 0.2 0.3\n", encoding="utf-8")
        return ["--embeddings", "w2v.txt"], (
            "w2v.txt: line 1: vectors have dimension 3, the model's embed_dim is 16; train "
            "vectors of 16 (han-search embeddings --dim 16) or set embed_dim = 3 in the study "
            "file's [fixed]")
    if case == "embeddings with a short row":
        (tmp_path / "w2v.txt").write_text("2 16\n5 0.1 0.2\n", encoding="utf-8")
        return ["--embeddings", "w2v.txt"], "w2v.txt: line 2: expected a token and 16"
    if case == "two-character delimiter":
        return ["--sep", ";;"], "sep must be one character"
    if case == "same text and label column":
        return ["--text-col", "label"], "text_col and label_col are both 'label'"
    if case == "file format for the built-in corpus":
        study_toml(config, name="bad")
        return ["--tokens", "words"], "give --train (the built-in corpus has"
    if case == "label name not among the class names":
        chinese_news(tmp_path / "news.csv", docs=8)
        study_toml(config, name="bad", train="news.csv")
        text = config.read_text(encoding="utf-8")
        config.write_text(text.replace("[data]\n", '[data]\nlabels = ["体育", "科技"]\n'),
                          encoding="utf-8")
        return (["--sep", ",", "--text-col", "content", "--label-col", "category", "--tokens",
                 "chars"], "news.csv: line 4: label '财经' is not one of the 2 class names")
    if case == "text file read as ids":
        chinese_news(tmp_path / "news.csv", docs=8)
        return (["--train", "news.csv", "--sep", ",", "--text-col", "content",
                 "--label-col", "category", "--tokens", "ids"],
                " in text; the file reads as chars: --tokens chars")
    if case == "words read as ids":
        write_tsv(tmp_path / "r8.tsv", [("earn", "champion products approves stock split"),
                                        ("acq", "computer terminal systems completes sale")])
        return (["--train", "r8.tsv", "--tokens", "ids"],
                "r8.tsv: line 2: non-integer token 'champion' in text; the file reads as "
                "words: --tokens words")
    if case == "words read as the study file's ids":
        write_tsv(tmp_path / "r8.tsv", [("earn", "3 for 2 stock split"), ("acq", "1987 sale")])
        study_toml(config, name="bad", train="r8.tsv")
        text = config.read_text(encoding="utf-8")
        config.write_text(text.replace("[data]\n", '[data]\ntokens = "ids"\n'),
                          encoding="utf-8")
        return [], ("r8.tsv: line 2: non-integer token 'for' in text; the file reads as "
                    "words: --tokens words")
    if case == "unknown device":
        return ["--device", "gpu0"], "device 'gpu0': expected auto, cpu, cuda or cuda:N"
    if case == "CUDA on a machine without it":
        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
        return ["--device", "cuda"], "device 'cuda': CUDA is not available (torch "
    if case == "bf16 on a CPU that cannot run it":
        if torch.ops.mkldnn._is_mkldnn_bf16_supported():
            pytest.skip("this CPU runs bf16 (natively or emulated)")
        text = config.read_text(encoding="utf-8")
        config.write_text(text.replace("[fixed]\n", '[fixed]\nprecision = "bf16"\n'),
                          encoding="utf-8")
        return [], "study.toml: precision bf16: this CPU cannot run the LSTMs in bf16"
    assert case == "missing test file"
    return ["--test", "missing-test.tsv"], "missing-test.tsv: no such file"


@pytest.mark.parametrize("case", [
    "unknown key in the study file",
    "no such study file",
    "missing train file",
    "train file without a text column",
    "test file with a non-integer token",
    "missing test file",
    "empty train file",
    "binary train file",
    "comma-separated train file",
    "negative label",
    "empty text",
    "one class",
    "embeddings with a wrong header",
    "embeddings of another dimension",
    "embeddings with a short row",
    "two-character delimiter",
    "same text and label column",
    "file format for the built-in corpus",
    "label name not among the class names",
    "text file read as ids",
    "words read as ids",
    "words read as the study file's ids",
    "unknown device",
    "CUDA on a machine without it",
    "bf16 on a CPU that cannot run it",
])
def test_run_refuses_bad_input_before_creating_anything(tmp_path: Path, case: str) -> None:
    args, fragment = _bad_input(tmp_path, case)
    before = files_under(tmp_path)
    # The default stores (han-search.db, mlflow.db) and work dir are in the cwd, tmp_path.
    result = invoke("run", "--config", "study.toml", "--trials", "1", "--device", "cpu", *args)
    assert_user_error(result, fragment)
    assert files_under(tmp_path) == before  # no Optuna or MLflow database, run or work dir


def test_run_with_an_explicit_storage_and_bad_input_creates_no_database(
        tmp_path: Path) -> None:
    args, fragment = _bad_input(tmp_path, "missing train file")
    before = files_under(tmp_path)
    result = invoke("run", "--config", "study.toml", "--storage",
                    f"sqlite:///{tmp_path}/optuna.db", "--tracking-uri",
                    f"sqlite:///{tmp_path}/mlflow.db", *args)
    assert_user_error(result, fragment)
    assert files_under(tmp_path) == before


# ------------------------------------------------------------------- the real sample files


def test_sample_files_run_and_export(sample_dir: Path, tmp_path: Path) -> None:
    config = study_toml(tmp_path / "sample.toml", name="sample")
    storage = f"sqlite:///{tmp_path}/optuna.db"
    tracking_uri = f"sqlite:///{tmp_path}/mlflow.db"
    result = invoke("run", "--config", config, "--study", "sample", "--train",
                    sample_dir / "train_head.tsv",
                    "--test", sample_dir / "test_a_head.tsv", "--trials", "1",
                    "--storage", storage, "--tracking-uri", tracking_uri, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "best dev F1    " in result.stdout
    study = optuna.load_study(study_name="sample", storage=storage)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE]

    result = invoke("export-best", "--study", "sample", "--storage", storage,
                    "--tracking-uri", tracking_uri, "--out", "sample.csv", "--device", "cpu")
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(tmp_path / "sample.csv")
    assert list(frame.columns) == ["label"]
    assert len(frame) == 168
    train_labels = pd.read_csv(sample_dir / "train_head.tsv", sep="\t")["label"]
    assert frame["label"].between(0, train_labels.max()).all()
    assert "wrote 168 predictions" in result.stdout


def test_run_with_a_storage_that_cannot_be_opened_creates_no_database(
        tmp_path: Path) -> None:
    easy_corpus(tmp_path / "train.tsv", docs=40)
    study_toml(tmp_path / "study.toml", name="x", train="train.tsv")
    before = files_under(tmp_path)
    result = invoke("run", "--config", "study.toml", "--device", "cpu",
                    "--storage", f"sqlite:///{tmp_path}/no-such-folder/optuna.db")
    assert result.exit_code == 2 and "does not exist" in result.stderr
    assert files_under(tmp_path) == before
    assert_user_error(result, "does not exist")  # without a new MLflow store, no INFO lines


def test_workers_get_the_parents_options_including_the_file_format() -> None:
    options = RunOptions(train=Path("a.csv"), test=None, heartbeat_s=10)
    args = cli._worker_args(Path("study.toml"), options, study="s", timeout=None, sep="\t",
                            text_col="content", label_col=None, tokens="chars")
    # The parent trains the study's baseline; its workers must not.
    assert args.pop() == "--skip-baseline"
    flags = args[::2]
    assert dict(zip(flags, args[1::2], strict=True)) == {
        "--config": "study.toml", "--study": "s", "--train": "a.csv", "--sep": "\t",
        "--text-col": "content", "--tokens": "chars", "--heartbeat": "10",
        "--storage-patience": str(DEFAULT_STORAGE_PATIENCE_S)}
    run_options = {opt for param in COMMANDS.commands["run"].params for opt in param.opts}
    assert set(flags) <= run_options


def test_version_names_the_program_and_what_it_stands_on() -> None:
    result = invoke("--version")
    assert result.exit_code == 0, result.output
    [line] = result.output.strip().splitlines()
    assert line.startswith(f"han-search {han_search_version()} (records schema ")
    for library in ("optuna", "mlflow", "torch", "Python"):
        assert library in line
