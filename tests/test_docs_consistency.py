"""The README and the pages under docs/ read against the code: the options they write exist,
the study-file keys they write exist, no measurement is given on two pages, no page speaks
of the project's own issues or of paths outside the repository, and the recipe for deleting
a study works.

Only `search.cli.app`, `search.studyfile.StudyFile` and `han.config` are imported from the
project: the options come from the typer app itself, the keys from the pydantic schema, so
a renamed option or key fails here until the docs follow.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import tomllib
import typing
from collections import defaultdict
from pathlib import Path

import pytest
import typer

from han.config import DataConfig, HANConfig, TrainConfig
from search.cli import app
from search.studyfile import StudyFile

REPOSITORY = Path(__file__).resolve().parents[1]
PAGES = [REPOSITORY / "README.md", *sorted((REPOSITORY / "docs").rglob("*.md"))]

_FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```[ \t]*$", re.M | re.S)
_INLINE = re.compile(r"(`+)(.+?)\1", re.S)
_OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
# Where a command written in a shell line ends: a comment, or the next command.
_COMMAND_END = re.compile(r"\s#|&&|;|\s\|\s")
_TABLE_KEY = re.compile(r"^\[([a-z_]+)(?:\.([A-Za-z_]\w*))?\](?:\s+([a-z_]\w*))?")
# A measurement: a rate or an amount of memory (machine sizes in GB are not measured).
_FIGURE = re.compile(r"(?<![\w.,])(\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?\s?(?:docs/s|MB)\b")
_ISSUE = re.compile(r"\bissues?\s+#?\d+", re.I)
_LINK_TARGET = re.compile(r"\]\([^)\s]*\)")


def _page_name(page: Path) -> str:
    return page.relative_to(REPOSITORY).as_posix()


def _fences(text: str) -> list[tuple[str, str]]:
    """(language, body) of each fenced code block."""
    return [(m.group(1), m.group(2)) for m in _FENCE.finditer(text)]


def _prose(text: str) -> str:
    """The text outside fenced code blocks."""
    return _FENCE.sub("", text)


def _inline_code(text: str) -> list[str]:
    return [" ".join(m.group(2).split()) for m in _INLINE.finditer(_prose(text))]


# --- (a) every han-search option written in the docs exists ---------------------------------

def _options() -> dict[str | None, set[str]]:
    """Each command's visible options, from the typer app (None: the top level)."""
    group = typer.main.get_command(app)
    options: dict[str | None, set[str]] = {None: {"--help"} | {
        opt for param in group.params if not getattr(param, "hidden", False)
        for opt in param.opts if opt.startswith("--")}}
    for name, command in group.commands.items():
        options[name] = {"--help"} | {
            opt for param in command.params if not getattr(param, "hidden", False)
            for opt in (*param.opts, *param.secondary_opts) if opt.startswith("--")}
    return options


OPTIONS = _options()
_COMMANDS = "|".join(sorted((re.escape(c) for c in OPTIONS if c), key=len, reverse=True))
_INVOCATION = re.compile(rf"(?:^|(?<=[\s(`]))han-search(?:\s+({_COMMANDS})\b)?")
_BARE_COMMAND = re.compile(rf"^({_COMMANDS})\s+--")


def _shell_lines(body: str) -> list[str]:
    return body.replace("\\\n", " ").splitlines()


def _invocations(line: str) -> list[tuple[str | None, list[str]]]:
    """(command, options) of each `han-search [COMMAND] ...` written on one line."""
    found = []
    for match in _INVOCATION.finditer(line):
        rest = line[match.end():]
        if match.group(1) is None and re.match(r"\s+[A-Z]+\b", rest):
            continue  # `han-search COMMAND --help`: a placeholder, any command
        end = _COMMAND_END.search(rest)
        found.append((match.group(1), _OPTION.findall(rest[:end.start()] if end else rest)))
    return found


def _written_options() -> list[tuple[str, str | None, str]]:
    """(page, command, option) for every option written after a han-search command, in code
    blocks and in inline code (where `export-best --folds K` names its command alone)."""
    written = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        lines = [line for language, body in _fences(text) if language != "python"
                 for line in _shell_lines(body)]
        for span in _inline_code(text):
            bare = _BARE_COMMAND.match(span)
            lines.append(f"han-search {span}" if bare else span)
        for line in lines:
            written += [(_page_name(page), command, option)
                        for command, options in _invocations(line) for option in options]
    return written


WRITTEN_OPTIONS = _written_options()


def test_the_docs_write_han_search_options() -> None:
    """The parser finds what it should: a check of nothing would pass on any docs."""
    assert len(WRITTEN_OPTIONS) > 50
    assert ("README.md", "run", "--timeout") in WRITTEN_OPTIONS
    assert ("docs/your-data.md", "run", "--label-col") in WRITTEN_OPTIONS


@pytest.mark.parametrize(("page", "command", "option"), sorted(set(WRITTEN_OPTIONS),
                                                               key=str), ids=str)
def test_every_written_option_exists(page: str, command: str | None, option: str) -> None:
    known = OPTIONS[command]
    assert option in known, (f"{page}: han-search {command or ''} {option}: no such option; "
                             f"it has {', '.join(sorted(known))}")


# --- (b) every study-file key written in the docs exists ------------------------------------

_TABLES = StudyFile.model_fields
_SETTINGS = ({f.name for config in (HANConfig, DataConfig, TrainConfig)
              for f in dataclasses.fields(config)}
             - set(_TABLES["fixed"].annotation.refused))  # those that come from the data
_PARAM_MODELS = typing.get_args(typing.get_args(
    typing.get_args(_TABLES["space"].annotation)[1])[0])
_PARAM_KEYS = {key for model in _PARAM_MODELS for key in model.model_fields}
_SYNTHETIC = _TABLES["data"].annotation.model_fields["synthetic"].annotation


def _table_keys(table: str) -> set[str]:
    """The keys a table takes; for [space.NAME], those of one parameter."""
    if table in ("fixed", "reference"):
        return _SETTINGS
    if table == "space":
        return _PARAM_KEYS
    return set(_TABLES[table].annotation.model_fields)


def _key_problems(document: dict[str, typing.Any]) -> list[str]:
    """What a TOML document (a whole study file or a part of one) holds that the schema
    does not take."""
    problems = []
    for table, content in document.items():
        if table not in _TABLES:
            problems.append(f"[{table}]: no such table")
        elif table in ("sampler", "pruner"):
            # The table's own model checks `name` and the named class's arguments.
            try:
                _TABLES[table].annotation.model_validate(content)
            except ValueError as error:
                problems.append(f"[{table}]: {error}")
        elif table == "space":
            for name, param in content.items():
                if name not in _SETTINGS:
                    problems.append(f"[space.{name}]: no such setting")
                problems += [f"[space.{name}] {key}: no such key"
                             for key in set(param) - _PARAM_KEYS]
        else:
            for key, value in content.items():
                if table == "data" and key == "synthetic":
                    problems += [f"[data.synthetic] {k}: no such key"
                                 for k in set(value) - set(_SYNTHETIC.model_fields)]
                elif key not in _table_keys(table):
                    problems.append(f"[{table}] {key}: no such key")
    return problems


def _toml_blocks() -> list[tuple[str, str]]:
    return [(_page_name(page), body) for page in PAGES
            for language, body in _fences(page.read_text(encoding="utf-8"))
            if language == "toml"]


@pytest.mark.parametrize(("page", "block"), _toml_blocks(), ids=lambda v: v[:40])
def test_every_toml_block_holds_only_keys_of_the_schema(page: str, block: str) -> None:
    document = tomllib.loads(block)  # a block that is not valid TOML fails here
    assert not _key_problems(document), f"{page}: {_key_problems(document)}"


def _inline_keys() -> list[tuple[str, str, str | None, str | None]]:
    """(page, table, subtable, key) for each `[table] key` or `[table.sub]` in inline code."""
    found = []
    for page in PAGES:
        for span in _inline_code(page.read_text(encoding="utf-8")):
            if match := _TABLE_KEY.match(span):
                found.append((_page_name(page), *match.groups()))
    return found


INLINE_KEYS = _inline_keys()


def test_the_docs_name_study_file_keys_inline() -> None:
    assert ("docs/study-files.md", "export", None, "registered_model") in INLINE_KEYS


@pytest.mark.parametrize(("page", "table", "sub", "key"), INLINE_KEYS, ids=str)
def test_every_inline_table_and_key_exists(page: str, table: str, sub: str | None,
                                           key: str | None) -> None:
    where = f"{page}: [{table}{'.' + sub if sub else ''}]{' ' + key if key else ''}"
    assert table in _TABLES, f"{where}: no such table"
    if sub is not None and not sub.isupper():  # [space.NAME] is a placeholder
        if table == "space":
            assert sub in _SETTINGS, f"{where}: no such setting"
        else:
            assert (table, sub) == ("data", "synthetic"), f"{where}: no such table"
    if key is None or (table in ("sampler", "pruner") and key != "name"):
        return  # a sampler's or pruner's other keys depend on its name
    keys = set(_SYNTHETIC.model_fields) if sub == "synthetic" else _table_keys(table)
    assert key in keys, f"{where}: no such key"


# --- (c) every measurement appears on one page ----------------------------------------------

def test_no_rate_or_memory_figure_appears_on_two_pages() -> None:
    """The docs promise each measurement once, on the figures pages or beside what it
    explains; a rate or an amount of memory written on two pages is a copy that will drift
    (as one H200 rate did). Other figures are too alike to tell apart from limits and
    settings, so only these are held."""
    pages_of = defaultdict(set)
    for page in PAGES:
        for match in _FIGURE.finditer(page.read_text(encoding="utf-8")):
            pages_of[" ".join(match.group(0).split())].add(_page_name(page))
    repeated = {figure: sorted(pages) for figure, pages in pages_of.items() if len(pages) > 1}
    assert not repeated, f"figures on more than one page: {repeated}"


# --- no project-internal words --------------------------------------------------------------

@pytest.mark.parametrize("page", PAGES, ids=_page_name)
def test_no_issue_numbers_or_paths_outside_the_repository(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    assert not _ISSUE.findall(text), f"{_page_name(page)}: {_ISSUE.findall(text)}"
    # Links between pages may climb out of docs/figures/; nothing else may climb at all.
    outside = [line for line in _LINK_TARGET.sub("]()", text).splitlines() if "../" in line]
    assert not outside, f"{_page_name(page)}: a path outside the repository: {outside}"
    assert "project machine" not in text.lower(), f"{_page_name(page)}: say which machine"


# --- the recipe for deleting a study --------------------------------------------------------

def _section_block(page: Path, heading: str) -> str:
    text = page.read_text(encoding="utf-8")
    section = text[text.index(f"\n{heading}\n"):]
    return next(body for language, body in _fences(section) if language == "bash")


@pytest.mark.slow
def test_the_documented_delete_recipe_deletes_a_study(tmp_path: Path) -> None:
    """docs/command-line.md's commands, run as written on stores holding a study `demo`:
    afterwards Optuna and MLflow hold nothing of it, its name is free in both, and the
    word2vec cache that other studies share is left."""
    import optuna
    from mlflow import MlflowClient

    storage, tracking = f"sqlite:///{tmp_path}/han-search.db", f"sqlite:///{tmp_path}/mlflow.db"
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    optuna.create_study(study_name="demo", storage=storage).enqueue_trial({"lr": 0.002})
    client = MlflowClient(tracking_uri=tracking)
    experiment = client.create_experiment("demo", artifact_location=str(tmp_path / "mlruns"))
    assert experiment == "1", "the page's commands name the experiment id 1"
    client.set_terminated(client.create_run(experiment).info.run_id)
    (tmp_path / "han-search-work" / "demo" / "trial-0").mkdir(parents=True)
    (tmp_path / "han-search-work" / "word2vec").mkdir()

    recipe = _section_block(REPOSITORY / "docs" / "command-line.md", "## Deleting or starting over")
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("MLFLOW_TRACKING_URI", "HAN_SEARCH_STORAGE")}
    environment["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environment['PATH']}"
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", recipe], cwd=tmp_path,
                          env=environment, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr

    assert "demo" not in optuna.get_all_study_names(storage)
    assert client.get_experiment_by_name("demo") is None
    client.create_experiment("demo")  # the name is free again
    assert not (tmp_path / "han-search-work" / "demo").exists()
    assert (tmp_path / "han-search-work" / "word2vec").is_dir()
