"""The documentation: the study file reference is what the schema renders and holds every key
of it, every page is in the navigation, the pictures the pages show are there and small, and
the README stays short with its links alive. The site itself is built by `mkdocs build
--strict` in .ci/run (broken links and anchors)."""

from __future__ import annotations

import dataclasses
import inspect
import re
from pathlib import Path

import pytest
import yaml

from han.config import DataConfig, HANConfig, TrainConfig
from han.synthetic import SyntheticSpec
from search.studyfile import StudyFile
from search.studyfile import reference as studyfile_docs
from search.studyfile.components import PRUNERS, SAMPLERS
from search.studyfile.settings import FROM_DATA
from search.studyfile.space import CategoricalParam, FloatParam, IntParam

REPOSITORY = Path(__file__).resolve().parents[1]
DOCS = REPOSITORY / "docs"
README_LINES = 200
PICTURE_BYTES = 300 * 1024
# The reference page's section of each table of the schema: a new table fails here until
# the page has one.
SECTIONS = {"study": "## [study]", "sampler": "## [sampler]", "pruner": "## [pruner]",
            "data": "## [data]", "fixed": "## [fixed] and [reference]",
            "reference": "## [fixed] and [reference]", "space": "## [space.NAME]",
            "export": "## [export]"}
_LINK = re.compile(r"\]\(([^)\s]+)\)")
_PICTURE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)")


def _section(page: str, heading: str) -> str:
    """The text under `heading` up to the next heading of the same or a higher level."""
    level = heading.split(" ", 1)[0]
    start = page.index(f"\n{heading}\n")
    ends = [m.start() for m in re.finditer(rf"\n#{{1,{len(level)}}} ", page)
            if m.start() > start]
    return page[start: ends[0] if ends else len(page)]


def _table_keys() -> list[tuple[str, str]]:
    """(section heading, key) for every key of the schema, read from the models themselves,
    apart from the page's generator."""
    tables = StudyFile.model_fields
    keys = [(SECTIONS[table], key) for table in ("study", "data", "export")
            for key in tables[table].annotation.model_fields]
    keys += [("### [data.synthetic]", f.name) for f in dataclasses.fields(SyntheticSpec)]
    keys += [(SECTIONS["fixed"], f.name) for config in (HANConfig, DataConfig, TrainConfig)
             for f in dataclasses.fields(config) if f.name not in FROM_DATA]
    keys += [(SECTIONS["space"], key) for model in (FloatParam, IntParam, CategoricalParam)
             for key in model.model_fields]
    keys += [(SECTIONS[table], "name") for table in ("sampler", "pruner")]
    return keys


def _arguments() -> list[tuple[str, str]]:
    """(subsection heading, argument) for every sampler and pruner a study file may name."""
    found = []
    for kind, registry in (("sampler", SAMPLERS), ("pruner", PRUNERS)):
        for name, target in registry.items():
            heading = f"### {kind} `{name}`"
            found += [(heading, arg) for arg, param in inspect.signature(target).parameters
                      .items() if param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY)]
    return found


def test_the_reference_page_is_what_the_schema_renders() -> None:
    page = studyfile_docs.PAGE.read_text(encoding="utf-8")
    assert page == studyfile_docs.render(), "stale page: run python -m search.studyfile.reference"
    assert studyfile_docs.main(["--check"]) == 0


def test_every_table_of_the_schema_has_a_section() -> None:
    page = studyfile_docs.PAGE.read_text(encoding="utf-8")
    for table in StudyFile.model_fields:
        assert f"\n{SECTIONS[table]}\n" in page, table


@pytest.mark.parametrize(("heading", "key"), _table_keys(), ids=lambda v: v)
def test_every_key_of_the_schema_has_a_row(heading: str, key: str) -> None:
    page = studyfile_docs.PAGE.read_text(encoding="utf-8")
    assert f"\n| `{key}` |" in _section(page, heading), f"{heading}: no row for {key}"


@pytest.mark.parametrize(("heading", "argument"), _arguments(), ids=lambda v: v)
def test_every_sampler_and_pruner_argument_is_listed(heading: str, argument: str) -> None:
    page = studyfile_docs.PAGE.read_text(encoding="utf-8")
    assert f"`{argument}`" in _section(page, heading)


@pytest.mark.parametrize("heading", [f"### {kind} `{name}`" for kind, registry in (
    ("sampler", SAMPLERS), ("pruner", PRUNERS)) for name in registry])
def test_every_sampler_and_pruner_has_a_subsection(heading: str) -> None:
    assert f"\n{heading}\n" in studyfile_docs.PAGE.read_text(encoding="utf-8")


def test_each_description_is_of_a_key_the_schema_has() -> None:
    """Both ways: a key added without a description stops the render; a description of a
    removed key is stale text."""
    tables = StudyFile.model_fields
    for table, descriptions in (("study", studyfile_docs.STUDY), ("data", studyfile_docs.DATA),
                                ("export", studyfile_docs.EXPORT)):
        assert set(descriptions) == set(tables[table].annotation.model_fields), table
    assert set(studyfile_docs.SYNTHETIC) == {f.name for f in dataclasses.fields(SyntheticSpec)}
    settings = {f.name for c in (HANConfig, DataConfig, TrainConfig)
                for f in dataclasses.fields(c)} - set(FROM_DATA)
    assert set(studyfile_docs.SETTINGS) == settings
    with pytest.raises(KeyError, match=r"no description of \[study\] name"):
        studyfile_docs._described("study", {}, "name")


def _nav_pages(node: object) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [page for value in node.values() for page in _nav_pages(value)]
    if isinstance(node, list):
        return [page for item in node for page in _nav_pages(item)]
    return []


def test_every_page_is_in_the_navigation_once() -> None:
    config = yaml.safe_load((REPOSITORY / "mkdocs.yml").read_text(encoding="utf-8"))
    nav = _nav_pages(config["nav"])
    pages = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))
    assert sorted(nav) == pages


def test_the_pictures_are_shown_present_and_small() -> None:
    shown = set()
    for page in DOCS.rglob("*.md"):
        for target in _PICTURE.findall(page.read_text(encoding="utf-8")):
            picture = (page.parent / target).resolve()
            assert picture.is_file(), f"{page.name}: {target}"
            shown.add(picture)
    pictures = set((DOCS / "images").glob("*.png"))
    assert pictures, "no pictures: python bench/screenshots.py"
    assert shown == {p.resolve() for p in pictures}  # none left unused
    for picture in pictures:
        assert picture.stat().st_size < PICTURE_BYTES, picture.name


def test_the_readme_is_short_and_its_links_lead_to_files() -> None:
    readme = (REPOSITORY / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= README_LINES
    links = [t for t in _LINK.findall(readme) if "://" not in t and not t.startswith("#")]
    assert "docs/real-text.md" in links  # the quick start's pointer to results on real text
    for target in links:
        assert (REPOSITORY / target.split("#")[0]).is_file(), target
