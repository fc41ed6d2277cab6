"""No function in han/ or search/ runs over MAX_LINES lines, from its `def` to its last line
(docstring, comments and nested functions included; decorators not): past that, a function
does several things, and reads better as several."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 60


def function_lengths(path: Path) -> dict[str, int]:
    """Each function and method of the module at `path`: its lines, by `file:line:name`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {f"{path.relative_to(ROOT)}:{node.lineno}:{node.name}":
            node.end_lineno - node.lineno + 1 for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and node.end_lineno is not None}


def test_no_function_is_over_the_limit() -> None:
    lengths = {name: lines for package in ("han", "search")
               for path in sorted((ROOT / package).rglob("*.py"))
               for name, lines in function_lengths(path).items()}
    assert len(lengths) > 100  # the packages were found
    too_long = {name: lines for name, lines in lengths.items() if lines > MAX_LINES}
    assert too_long == {}


# No module in han/ or search/ over this many lines: past it, a module holds several
# concepts, and its package reads better with one module each.
MAX_MODULE_LINES = 500


def test_no_module_is_over_the_limit() -> None:
    lengths = {str(path.relative_to(ROOT)): len(path.read_text(encoding="utf-8").splitlines())
               for package in ("han", "search") for path in sorted((ROOT / package).rglob("*.py"))}
    assert len(lengths) > 50  # the packages were found
    assert {name: lines for name, lines in lengths.items() if lines > MAX_MODULE_LINES} == {}
