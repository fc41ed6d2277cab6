"""The layering of han/ and search/ is checked, not described: `lint-imports` (import-linter,
its contracts in pyproject.toml) passes on the tree, and fails on a copy of it that holds one
import running the wrong way."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"

pytestmark = pytest.mark.skipif(not LINT_IMPORTS.exists(),
                                reason="import-linter is not installed (pip install -e .[dev])")


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    # --no-cache: a copy must not read the cache of the tree it was copied from.
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=tree, capture_output=True,
                          text=True, timeout=120, check=False,
                          env={"PATH": str(LINT_IMPORTS.parent), "PYTHONPATH": str(tree)})


def copy_of_the_tree(destination: Path) -> Path:
    for package in ("han", "search"):
        shutil.copytree(ROOT / package, destination / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", destination / "pyproject.toml")
    return destination


def test_the_tree_keeps_every_contract() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(("module", "wrong_way", "contract"), [
    # The records, near the bottom, reaching up into the session.
    ("search/records/trial.py", "from search.session import budget",
     "search/'s sub-packages, each importing only those below it"),
    # The study file reaching up into the exports' registry.
    ("search/studyfile/schema.py", "from search.export import registry",
     "search/'s sub-packages, each importing only those below it"),
    # The training core reaching into the search, and into Optuna.
    ("han/train.py", "from search import records", "never the reverse"),
    ("han/metrics.py", "import optuna", "imports neither Optuna nor MLflow"),
])
def test_a_wrong_way_import_fails_the_check(tmp_path: Path, module: str, wrong_way: str,
                                            contract: str) -> None:
    tree = copy_of_the_tree(tmp_path)
    path = tree / module
    path.write_text(path.read_text(encoding="utf-8") + f"\n{wrong_way}  # noqa\n",
                    encoding="utf-8")
    result = lint_imports(tree)
    assert result.returncode != 0
    assert f"{contract} BROKEN" in result.stdout, result.stdout
