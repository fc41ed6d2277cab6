"""Study files: the shipped ones load, bad ones fail with a one-line message naming the key."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import optuna
import pytest

from han.config import COMPETITION_FORMAT, DataConfig, FileFormat, HANConfig, TrainConfig
from search.errors import StudyFileError
from search.studyfile import builtin_study_path, load_study_file
from search.studyfile.settings import split_settings
from search.studyfile.space import FloatParam, IntParam, suggest

STUDIES = sorted(builtin_study_path().parent.glob("*.toml"))
DEFAULTS = {
    f.name: f.default
    for config in (HANConfig, DataConfig, TrainConfig)
    for f in dataclasses.fields(config)
}

# A small valid study; each bad case edits one line of it.
GOOD = """\
[study]
name = "t"
trials = 3

[sampler]
name = "tpe"
seed = 0

[pruner]
name = "median"
n_startup_trials = 2

[fixed]
epochs = 2

[space.lr]
type = "float"
low = 1e-4
high = 1e-2
log = true

[space.cell]
type = "categorical"
choices = ["lstm", "gru"]

[space.decay_steps]
type = "int"
low = 100
high = 2000
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "x.toml"
    path.write_text(text, encoding="utf-8")
    return path


def edit(old: str, new: str) -> str:
    assert old in GOOD, old
    return GOOD.replace(old, new, 1)


@pytest.fixture(autouse=True)
def quiet_optuna():
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    yield
    optuna.logging.set_verbosity(level)


@pytest.mark.parametrize("path", STUDIES, ids=[p.stem for p in STUDIES])
def test_shipped_study_is_valid(path: Path) -> None:
    spec = load_study_file(path)
    assert spec.name == path.stem  # so builtin_study_path(name) finds it
    assert builtin_study_path(spec.name) == path
    assert isinstance(spec.make_sampler(), optuna.samplers.BaseSampler)
    # Pruner steps are training documents; a study file may count them in epochs.
    assert isinstance(spec.in_documents(1000).make_pruner(), optuna.pruners.BasePruner)
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith(f"# Run: han-search run --config studies/{path.name}"), first
    # Defaults live in han/config.py only: a shipped study overrides, never restates.
    for name, value in {**spec.fixed, **spec.reference}.items():
        assert value != DEFAULTS[name], f"{path.name} restates the default {name} = {value!r}"
    if spec.enqueue_reference:
        for param in spec.space:
            assert param.contains(spec.reference_params()[param.name]), param.name


def test_there_are_shipped_studies() -> None:
    assert {p.stem for p in STUDIES} >= {"demo", "tianchi"}
    assert builtin_study_path() == builtin_study_path("demo")


def test_unknown_builtin_study() -> None:
    with pytest.raises(StudyFileError, match=r"no built-in study 'nope'.*demo"):
        builtin_study_path("nope")


BAD = [
    pytest.param(edit("low = 1e-4\nhigh = 1e-2", "low = 0.1\nhigh = 0.01"),
                 "[space.lr]: low (0.1) > high (0.01)", id="low-above-high"),
    pytest.param(edit("epochs = 2", "epochs = 2\nfoo = 1"),
                 "unknown key 'foo' in [fixed]", id="unknown-fixed"),
    pytest.param(edit("epochs = 2", "epoch = 2"),
                 "unknown key 'epoch' in [fixed] (did you mean 'epochs'?)", id="fixed-typo"),
    pytest.param(edit("epochs = 2", "vocab_size = 2"),
                 "[fixed] vocab_size: comes from the data", id="fixed-vocab-size"),
    pytest.param(edit('name = "tpe"', 'name = "tp"'),
                 "[sampler] name: unknown sampler 'tp' (choose from gp, qmc, random, tpe)",
                 id="unknown-sampler"),
    pytest.param(edit("seed = 0", "sed = 0"),
                 "unknown key 'sed' in [sampler] (did you mean 'seed'?)",
                 id="unknown-sampler-kwarg"),
    pytest.param(edit("seed = 0", "gamma = 1"),
                 "[sampler] gamma: TPESampler's gamma cannot be given", id="callable-kwarg"),
    pytest.param(edit("seed = 0", 'seed = "zero"'),
                 "[sampler] seed: expected int", id="sampler-kwarg-type"),
    pytest.param(edit('name = "median"', 'name = "medium"'),
                 "[pruner] name: unknown pruner 'medium' (choose from evidence, field_percentile, "
                 "hyperband, median, none, percentile, successive_halving)", id="unknown-pruner"),
    pytest.param(edit("n_startup_trials = 2", "n_startup = 2"),
                 "unknown key 'n_startup' in [pruner]", id="unknown-pruner-kwarg"),
    pytest.param(edit('name = "median"\nn_startup_trials = 2', 'name = "percentile"'),
                 "[pruner]: missing required key 'percentile'", id="pruner-missing-arg"),
    pytest.param(edit('name = "median"\nn_startup_trials = 2',
                      'name = "hyperband"\nreduction_factor = 1'),
                 "[pruner]: HyperbandPruner: The value of `reduction_factor` is 1",
                 id="pruner-bad-value"),
    pytest.param(edit('name = "median"\nn_startup_trials = 2',
                      'name = "hyperband"\nmin_resource = 3\nmax_resource = 2'),
                 "[pruner]: HyperbandPruner: max_resource (2) < min_resource (3)",
                 id="hyperband-resources"),
    pytest.param(edit('name = "median"\nn_startup_trials = 2',
                      'name = "median"\nn_startup_trials = -1'),
                 "[pruner]: MedianPruner: Number of startup trials cannot be negative",
                 id="pruner-negative"),
    pytest.param(edit('name = "median"\nn_startup_trials = 2', 'name = "none"\nseed = 1'),
                 "unknown key 'seed' in [pruner]", id="nop-pruner-kwarg"),
    pytest.param(edit('choices = ["lstm", "gru"]', "choices = []"),
                 "[space.cell]: empty choices", id="empty-choices"),
    pytest.param(edit('choices = ["lstm", "gru"]', 'choices = ["lstm", "rnn"]'),
                 "[space.cell] choices: 'rnn' is not one of 'lstm', 'gru'",
                 id="choice-not-allowed"),
    pytest.param(edit('choices = ["lstm", "gru"]', 'choices = ["lstm", "lstm"]'),
                 "[space.cell] choices: 'lstm' is listed twice", id="duplicate-choice"),
    pytest.param(GOOD.replace("trials = 3", "trials = = 3"),
                 "TOML syntax error", id="toml-syntax"),
    pytest.param(edit("trials = 3", 'trials = "3"'),
                 "[study] trials: expected an integer, got a string", id="trials-type"),
    pytest.param(edit("trials = 3", "trials = 0"),
                 "[study] trials: must be at least 1", id="trials-zero"),
    pytest.param(edit("trials = 3", ""),
                 "[study]: missing required key 'trials'", id="trials-missing"),
    pytest.param(edit('name = "t"', 'name = "a b"'),
                 "[study] name: 'a b' may only use", id="bad-name"),
    pytest.param(edit("trials = 3", 'trials = 3\nmetric = "dev_macro_f1"'),
                 "[study] metric: removed", id="removed-metric"),
    pytest.param(edit("trials = 3", 'trials = 3\ndirection = "up"'),
                 "[study] direction: 'up' is not one of", id="bad-direction"),
    pytest.param(edit("trials = 3", "trials = 3\nenqueue_reference = 1"),
                 "[study] enqueue_reference: expected a boolean", id="enqueue-type"),
    pytest.param(edit("trials = 3", "trials = 3\nbaseline = 0"),
                 "[study] baseline: expected a boolean", id="baseline-type"),
    pytest.param(GOOD + "\n[extra]\na = 1\n", "unknown key 'extra' in the file",
                 id="unknown-table"),
    pytest.param(edit("epochs = 2", "epochs = 2.5"),
                 "[fixed] epochs: expected an integer, got a float (2.5)", id="fixed-type"),
    pytest.param(edit("epochs = 2", "epochs = 0"),
                 "[fixed]: epochs must be a positive integer", id="fixed-config-check"),
    pytest.param(edit("epochs = 2", "epochs = 2\nlr = 0.1"),
                 "[space.lr]: lr is also in [fixed]", id="fixed-and-searched"),
    pytest.param(edit("low = 1e-4", 'low = "small"'),
                 "[space.lr] low: expected a finite number, got a string", id="low-type"),
    pytest.param(edit("log = true", "log = 1"),
                 "[space.lr] log: expected a boolean", id="log-type"),
    pytest.param(edit("low = 1e-4", "low = 0.0"),
                 "[space.lr] low: a log scale needs low > 0", id="log-zero"),
    pytest.param(edit("log = true", "log = true\nstep = 0.001"),
                 "[space.lr] step: a log scale cannot have a step", id="log-and-step"),
    pytest.param(edit("high = 2000", "high = 2000\nstep = 300"),
                 "[space.decay_steps] step: high - low (1900) is not a multiple of step (300)",
                 id="step-grid"),
    pytest.param(edit('type = "int"', 'type = "float"'),
                 '[space.decay_steps] type: decay_steps is an int setting', id="float-for-int"),
    pytest.param(edit('type = "int"', 'type = "integer"'),
                 "[space.decay_steps] type: unknown type 'integer'", id="unknown-type"),
    pytest.param(edit('type = "int"\nlow = 100', 'type = "int"\nlow = 100.0'),
                 "[space.decay_steps] low: expected an integer, got a float",
                 id="int-bound-type"),
    pytest.param(edit('type = "int"\nlow = 100', 'type = "int"\nlow = 100\nlog = false\nq = 2'),
                 "unknown key 'q' in [space.decay_steps]", id="unknown-param-key"),
    pytest.param(edit('type = "categorical"\nchoices = ["lstm", "gru"]',
                      'type = "float"\nlow = 0\nhigh = 1'),
                 '[space.cell] type: cell is not numeric', id="numeric-for-choice"),
    pytest.param(GOOD + '\n[space.dropout]\ntype = "float"\nlow = 0.0\nhigh = 1.0\n',
                 "[space.dropout] high: dropout must be in [0, 1)", id="space-config-check"),
    pytest.param(GOOD + "\n[space.nope]\ntype = \"int\"\nlow = 1\nhigh = 2\n",
                 "unknown key 'nope' in [space]", id="unknown-searched"),
    pytest.param(edit('[space.lr]\ntype = "float"\nlow = 1e-4', '[space.lr]\ntype = "float"\n'
                      'low = 1e-3'),
                 "[space.lr]: the reference trial's lr (config default 0.0002) is outside",
                 id="default-outside-space"),
    pytest.param(GOOD + '\n[reference]\ncell = "rnn"\n',
                 "[reference] cell: 'rnn' is not one of", id="reference-not-a-choice"),
    pytest.param(edit('choices = ["lstm", "gru"]', 'choices = ["gru"]')
                 + '\n[reference]\ncell = "lstm"\n',
                 "[reference] cell: 'lstm' is outside [space.cell] (one of 'gru')",
                 id="reference-not-in-choices"),
    pytest.param(GOOD + "\n[reference]\nlr = 0.5\n",
                 "[reference] lr: 0.5 is outside [space.lr] ([0.0001, 0.01] log)",
                 id="reference-above-high"),
    pytest.param(GOOD + "\n[reference]\nepochs = 3\n",
                 "[reference] epochs: epochs is fixed in [fixed]", id="reference-fixed"),
    pytest.param(GOOD + "\n[reference]\ndropout = 0.1\n",
                 "[reference] dropout: dropout is not searched", id="reference-unsearched"),
    pytest.param(GOOD + '\n[data]\ntrain = 3\n',
                 "[data] train: expected a string", id="data-path-type"),
    pytest.param(GOOD + '\n[data]\ntest = "t.tsv"\n',
                 "[data] test: a test file needs a train file", id="test-without-train"),
    pytest.param(GOOD + '\n[data]\nlabels = ["a", 2]\n',
                 "[data] labels: expected non-empty strings, got 2", id="labels-type"),
    pytest.param(GOOD + '\n[data]\nlabels = ["a", "a"]\n',
                 "[data] labels: repeated names: a", id="labels-repeated"),
    pytest.param(GOOD + '\n[data]\nword2vec = "no"\n',
                 "[data] word2vec: expected a boolean", id="word2vec-type"),
    pytest.param(GOOD + "\n[data.synthetic]\nn_docs = 5\n",
                 "unknown key 'n_docs' in [data.synthetic] (known keys: n_train, n_test, ",
                 id="synthetic-key"),
    pytest.param(GOOD + '\n[data.synthetic]\nn_train = "many"\n',
                 "[data.synthetic] n_train: expected", id="synthetic-type"),
    pytest.param(GOOD + '\n[data]\ntrain = "t.tsv"\n[data.synthetic]\nn_train = 5\n',
                 "[data.synthetic]: settings of the built-in corpus, unused",
                 id="synthetic-and-train"),
    pytest.param(GOOD + '\n[data]\ntrain = "t.tsv"\ntokens = "bytes"\n',
                 "[data] tokens: 'bytes' is not one of 'auto', 'ids', 'chars', 'words'",
                 id="tokens-unknown"),
    pytest.param(GOOD + '\n[data]\ntrain = "t.tsv"\nsep = ";;"\n',
                 "[data]: sep must be one character", id="sep-two-characters"),
    pytest.param(GOOD + '\n[data]\ntrain = "t.tsv"\nsep = 1\n',
                 "[data] sep: expected a string", id="sep-type"),
    pytest.param(GOOD + '\n[data]\ntrain = "t.tsv"\ntext_col = "label"\n',
                 "[data]: text_col and label_col are both 'label'", id="same-columns"),
    pytest.param(GOOD + '\n[data]\ntokens = "chars"\n',
                 "[data] tokens: describes a data file, but there is no [data] train",
                 id="format-without-train"),
    pytest.param(GOOD + '\n[data]\ntrain = "t.tsv"\ntext_column = "body"\n',
                 "unknown key 'text_column' in [data] (did you mean 'text_col'?)",
                 id="format-key-typo"),
]


@pytest.mark.parametrize(("text", "expected"), BAD)
def test_bad_study_file(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(StudyFileError) as caught:
        load_study_file(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: "), message
    assert expected in message, message
    assert "\n" not in message


def test_good_base_file_loads(tmp_path: Path) -> None:
    # Guards the bad cases above: each fails for its own edit, not because GOOD is broken.
    spec = load_study_file(write(tmp_path, GOOD))
    assert [p.name for p in spec.space] == ["lr", "cell", "decay_steps"]
    assert spec.fixed == {"epochs": 2}
    assert spec.direction == "maximize"


def test_toml_syntax_error_gives_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("trials = 3", "trials = = 3"))
    with pytest.raises(StudyFileError, match=r"line 3"):
        load_study_file(path)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    with pytest.raises(StudyFileError, match=f"^{path}: no such study file$"):
        load_study_file(path)


def test_error_is_a_value_error() -> None:
    assert issubclass(StudyFileError, ValueError)


def test_data_paths_resolve_against_the_study_folder(tmp_path: Path, monkeypatch) -> None:
    folder = tmp_path / "studies"
    folder.mkdir()
    path = folder / "x.toml"
    path.write_text(GOOD + '\n[data]\ntrain = "data/train.tsv"\ntest = "/abs/test.tsv"\n',
                    encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    spec = load_study_file(Path("studies/x.toml"))
    assert spec.train_path == folder / "data" / "train.tsv"
    assert spec.test_path == Path("/abs/test.tsv")
    assert spec.embeddings_path is None
    assert spec.source == path
    assert spec.synthetic == {}


def test_data_file_format(tmp_path: Path) -> None:
    spec = load_study_file(write(tmp_path, GOOD + '\n[data]\ntrain = "news.csv"\nsep = ","\n'
                            'text_col = "content"\nlabel_col = "category"\n'
                            'tokens = "chars"\n'))
    assert spec.file_format == FileFormat(sep=",", text_col="content", label_col="category",
                                          tokens="chars")
    tab = load_study_file(write(tmp_path, GOOD + '\n[data]\ntrain = "a.tsv"\nsep = "tab"\n'))
    # No [data] tokens: told from the file, and the competition's files read as theirs.
    assert tab.file_format == FileFormat() and tab.file_format.tokens == "auto"
    assert load_study_file(write(tmp_path, GOOD)).file_format == FileFormat()
    assert FileFormat().fits_competition() and COMPETITION_FORMAT.fits_competition()
    # A study file that names its tokens keeps them; ids fit the built-in corpus.
    ids = load_study_file(write(tmp_path, GOOD + '\n[data]\ntokens = "ids"\n'))
    assert ids.file_format == COMPETITION_FORMAT


def test_fixed_float_accepts_integer(tmp_path: Path) -> None:
    spec = load_study_file(write(tmp_path, edit("epochs = 2", "epochs = 2\nclip = 1")))
    assert spec.fixed["clip"] == 1.0 and isinstance(spec.fixed["clip"], float)


def test_reference_is_optional_and_overrides_defaults(tmp_path: Path) -> None:
    spec = load_study_file(write(tmp_path, GOOD + '\n[reference]\ncell = "gru"\n'))
    assert spec.reference_params() == {
        "lr": DEFAULTS["lr"], "cell": "gru", "decay_steps": DEFAULTS["decay_steps"],
    }


def test_default_outside_space_is_fine_without_reference_trial(tmp_path: Path) -> None:
    text = edit("trials = 3", "trials = 3\nenqueue_reference = false")
    text = text.replace("low = 1e-4", "low = 1e-3")
    assert not load_study_file(write(tmp_path, text)).enqueue_reference


def test_the_baseline_is_on_unless_the_file_turns_it_off(tmp_path: Path) -> None:
    assert load_study_file(write(tmp_path, GOOD)).baseline
    off = edit("trials = 3", "trials = 3\nbaseline = false")
    assert not load_study_file(write(tmp_path, off)).baseline


def test_word2vec_is_on_unless_the_file_turns_it_off(tmp_path: Path) -> None:
    assert load_study_file(write(tmp_path, GOOD)).word2vec
    assert not load_study_file(write(tmp_path, GOOD + "\n[data]\nword2vec = false\n")).word2vec


def test_suggest_stays_inside_the_space() -> None:
    spec = load_study_file(builtin_study_path("demo"))
    study = optuna.create_study(sampler=spec.make_sampler(), direction=spec.direction)
    for i in range(15):
        trial = study.ask()
        params = suggest(trial, spec.space)
        assert list(params) == [p.name for p in spec.space]
        for param in spec.space:
            assert param.contains(params[param.name]), (param, params[param.name])
        study.tell(trial, float(i % 4))


def test_suggest_int_step_and_float_step() -> None:
    space = (
        IntParam(type="int", low=100, high=1000, step=100).named("decay_steps"),
        FloatParam(type="float", low=0.0, high=0.5, step=0.1).named("dropout"),
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(20):
        params = suggest(study.ask(), space)
        assert params["decay_steps"] % 100 == 0
        assert all(p.contains(params[p.name]) for p in space)


@pytest.mark.parametrize("path", STUDIES, ids=[p.stem for p in STUDIES])
def test_reference_trial_comes_first(path: Path) -> None:
    spec = load_study_file(path)
    study = optuna.create_study(sampler=spec.make_sampler(),
                                pruner=spec.in_documents(1000).make_pruner(),
                                direction=spec.direction)
    study.enqueue_trial(spec.reference_params())
    trial = study.ask()
    assert suggest(trial, spec.space) == spec.reference_params()
    assert trial.params == spec.reference_params()


def test_split_settings_routes_by_config() -> None:
    model, data, train = split_settings(
        {"word_hidden": 64, "cell": "gru", "seg_len": 128, "folds": 5, "lr": 1e-3,
         "epochs": 3, "device": "cpu"}
    )
    assert model == {"word_hidden": 64, "cell": "gru"}
    assert data == {"seg_len": 128, "folds": 5}
    assert train == {"lr": 1e-3, "epochs": 3, "device": "cpu"}
    HANConfig(vocab_size=10, num_classes=2, **model)
    DataConfig(**data)
    TrainConfig(**train)
    assert split_settings({}) == ({}, {}, {})


@pytest.mark.parametrize("name", ["nope", "vocab_size", "num_classes"])
def test_split_settings_refuses_unknown_names(name: str) -> None:
    with pytest.raises(KeyError, match=name):
        split_settings({"lr": 1e-3, name: 1})


def test_split_settings_covers_every_study_setting() -> None:
    settable = set(DEFAULTS) - {"vocab_size", "num_classes", "pretrained_embeddings"}
    parts = split_settings(dict.fromkeys(settable, 1))
    assert sorted(name for part in parts for name in part) == sorted(settable)


def test_the_gpu_study_bench_derives_a_valid_study_file(tmp_path: Path) -> None:
    # bench/gpu_study.py edits tianchi.toml's text; a GPU machine's time is scarce, so the
    # edits are checked here: they still apply, and the study they give loads.
    source = Path(__file__).resolve().parent.parent / "bench" / "gpu_study.py"
    module_spec = importlib.util.spec_from_file_location("gpu_study", source)
    assert module_spec is not None and module_spec.loader is not None
    gpu_study = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(gpu_study)
    path = tmp_path / "study.toml"
    path.write_text(gpu_study.study_file_text(epochs=3), encoding="utf-8")
    spec = load_study_file(path)
    assert (spec.baseline, spec.fixed["epochs"], spec.test_path) == (False, 3, None)
    assert spec.in_documents(1000).pruner["max_resource"] == 3000
