#!/usr/bin/env python3
"""How long the command line takes to answer: `han-search --help`, each command's `--help`,
and `studies` and `show` on a small real study.

Each command runs as the user runs it, a fresh process of the installed `han-search` (or
`python -m search.cli` without one), RUNS times; the figures are the median wall time, with
the fastest and slowest beside it, and the median CPU time (user + system) of the process.
On a busy machine the wall time measures the share of the CPU the command got; its CPU time
barely moves. A first untimed run of `--help` warms the file cache and writes the bytecode,
as any second use of the tool finds them.

The study for `studies` and `show` is made here (untimed): 2 trials of a tiny study file on
a generated 200-document corpus, `han-search run --device cpu` into a temporary folder; or
give an existing one with --storage and --study.

Usage:  python bench/cli_startup.py [--runs 7] [--storage URL --study NAME]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo's packages

import numpy as np
import typer.main

from search.cli import app
from tests.helpers import child_env, han_search_command, study_toml

FIXED = {"epochs": 1, "batch_size": 16, "embed_dim": 16, "min_count": 1}
SPACE = {"word_hidden": {"type": "categorical", "choices": [8, 16]},
         "lr": {"type": "float", "low": 1e-3, "high": 3e-2, "log": True}}
PRUNER = {"name": "median", "n_startup_trials": 1, "n_warmup_steps": 0}


def easy_corpus(path: Path, *, docs: int = 200, classes: int = 4) -> Path:
    """Each class has its own keyword ids among shared noise (tests/conftest.py's corpus)."""
    rng = np.random.default_rng(0)
    lines = ["label\ttext"]
    for index in range(docs):
        label = index % classes
        tokens = rng.integers(100, 400, size=int(rng.integers(20, 120)))
        keywords = rng.random(tokens.size) < 0.5
        tokens[keywords] = 1000 + 10 * label + rng.integers(0, 10, keywords.sum())
        lines.append(f"{label}\t{' '.join(map(str, tokens))}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def small_study(root: Path) -> tuple[str, str]:
    """A 2-trial study run by the CLI in `root`; its storage URL and name."""
    config = study_toml(root / "study.toml", name="startup", train=easy_corpus(root / "train.tsv"),
                        trials=2, fixed=FIXED, space=SPACE, pruner=PRUNER, word2vec=False)
    storage = f"sqlite:///{root}/optuna.db"
    subprocess.run([*han_search_command(), "run", "--config", str(config), "--device", "cpu",
                    "--storage", storage, "--tracking-uri", f"sqlite:///{root}/mlflow.db",
                    "--work-dir", str(root / "work")],
                   cwd=root, env=child_env(), check=True, stdout=subprocess.DEVNULL)
    return storage, "startup"


def cpu_seconds_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(args: list[str], *, runs: int, cwd: Path) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds of each of `runs` runs of `han-search ARGS`."""
    wall, cpu = [], []
    for _ in range(runs):
        started, cpu_before = time.perf_counter(), cpu_seconds_of_children()
        subprocess.run([*han_search_command(), *args], cwd=cwd, env=child_env(), check=True,
                       stdout=subprocess.DEVNULL)
        wall.append(time.perf_counter() - started)
        cpu.append(cpu_seconds_of_children() - cpu_before)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--storage", help="an existing study's storage URL (with --study)")
    parser.add_argument("--study", help="its name")
    given = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cli-startup-") as folder:
        root = Path(folder)
        timed(["--help"], runs=1, cwd=root)  # warm-up
        storage, study = ((given.storage, given.study) if given.storage and given.study
                          else small_study(root))
        commands = typer.main.get_command(app).commands
        cases = [["--help"], *([name, "--help"] for name in commands),
                 ["studies", "--storage", storage],
                 ["show", "--study", study, "--storage", storage]]
        print(f"{'han-search ...':<22} {'wall median':>11} {'min':>7} {'max':>7} "
              f"{'CPU median':>10}  ({given.runs} runs)", flush=True)
        for args in cases:
            wall, cpu = timed(args, runs=given.runs, cwd=root)
            label = " ".join(args) if args[-1] == "--help" else args[0]
            print(f"{label:<22} {statistics.median(wall):>10.2f}s {min(wall):>6.2f}s "
                  f"{max(wall):>6.2f}s {statistics.median(cpu):>9.2f}s", flush=True)


if __name__ == "__main__":
    main()
