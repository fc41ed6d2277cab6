"""Helpers shared by the tests and bench/reliability.py: study files, ports, processes."""

from __future__ import annotations

import os
import shutil
import socket
import sys
from pathlib import Path
from typing import Any


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return repr(value)


def study_toml(path: Path, *, name: str, train: Path, trials: int, fixed: dict[str, Any],
               space: dict[str, dict[str, Any]], pruner: dict[str, Any],
               reference: dict[str, Any] | None = None, seed: int = 0) -> Path:
    """A small study file in the layout of studies/demo.toml."""
    lines = ["[study]", f"name = {toml_value(name)}", 'direction = "maximize"',
             'metric = "dev_macro_f1"', f"trials = {trials}",
             f"enqueue_reference = {toml_value(reference is not None)}",
             "", "[sampler]", 'name = "tpe"', f"seed = {seed}",
             "", "[pruner]", *(f"{k} = {toml_value(v)}" for k, v in pruner.items()),
             "", "[data]", f"train = {toml_value(str(train))}",
             "", "[fixed]", *(f"{k} = {toml_value(v)}" for k, v in fixed.items())]
    for param, fields in space.items():
        lines += ["", f"[space.{param}]", *(f"{k} = {toml_value(v)}" for k, v in fields.items())]
    if reference is not None:
        lines += ["", "[reference]", *(f"{k} = {toml_value(v)}" for k, v in reference.items())]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def han_search_command() -> list[str]:
    found = shutil.which("han-search")
    return [found] if found else [sys.executable, "-m", "search.cli"]


def child_env(**extra: str) -> dict[str, str]:
    """One CPU thread per process; no storage or tracking URI leaking in from the caller."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("HAN_SEARCH_STORAGE", "MLFLOW_TRACKING_URI")}
    env |= {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return env | extra
