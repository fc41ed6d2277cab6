"""Where a run comes from: the program and its version, the git commit it runs from, the
machine, device and package versions; as MLflow tags on every run."""

from __future__ import annotations

import functools
import importlib.metadata
import subprocess
from pathlib import Path

import torch

from search import records

_VERSIONED = ("torch", "numpy", "optuna", "mlflow", "scikit-learn", "han-search")
# Asking git for the commit must never hold a study up.
GIT_TIMEOUT_S = 5


@functools.cache
def code_tags() -> dict[str, str]:
    """The program and its version on every run, and the git commit and branch when
    han-search runs from a checkout (an editable install or PYTHONPATH), for MLflow's
    Source column."""
    try:
        version = importlib.metadata.version("han-search")
    except importlib.metadata.PackageNotFoundError:
        version = "(not installed)"
    root = Path(__file__).resolve().parents[2]
    commit = branch = None
    if (root / ".git").exists():  # a file in a git worktree, a folder in a clone
        commit = _git(root, "rev-parse", "HEAD")
        branch = _git(root, "rev-parse", "--abbrev-ref", "HEAD")
    return records.source_tags(program=f"han-search {version}", commit=commit,
                               branch=None if branch == "HEAD" else branch)


def _git(root: Path, *args: str) -> str | None:
    """One line of git's output in `root`; None without git or outside a repository."""
    try:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True,
                              text=True, timeout=GIT_TIMEOUT_S, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


def environment_tags(device: str) -> dict[str, str]:
    """Where trials run: `device`, Python, the host, package versions and the GPU."""
    versions = {}
    for package in _VERSIONED:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    gpu = (torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda")
           else None)
    return records.environment_tags(device, versions, gpu)
