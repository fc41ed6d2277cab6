"""The command line answers at once: importing it, and every `--help`, load none of the
libraries its commands work with, and `studies` and `show` read a study without torch,
MLflow or scikit-learn. Each check runs in a fresh interpreter, whose sys.modules holds
only what that check imported. bench/cli_startup.py times the same commands."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import typer.main

from search.cli import app
from tests.helpers import child_env

ROOT = Path(__file__).resolve().parents[1]
# Seconds each to import on a 2-core machine; a command that trains or predicts loads them
# when it runs.
HEAVY = {"torch", "mlflow", "sklearn"}


def packages_loaded(code: str, cwd: Path = ROOT) -> set[str]:
    """The top-level packages in sys.modules after `code` ran in a fresh interpreter."""
    # The last line of the output: what `code` prints (help texts) comes before it.
    script = textwrap.dedent(code) + "\nimport json, sys\nprint(json.dumps(list(sys.modules)))\n"
    done = subprocess.run([sys.executable, "-c", script], cwd=cwd, env=child_env(),
                          capture_output=True, text=True, check=True)
    return {name.split(".")[0] for name in json.loads(done.stdout.splitlines()[-1])}


def test_importing_the_cli_loads_no_heavy_library() -> None:
    assert packages_loaded("import search.cli") & HEAVY == set()


def test_help_loads_no_heavy_library_nor_optuna() -> None:
    commands = [[], *([name] for name in typer.main.get_command(app).commands)]
    loaded = packages_loaded(f"""
        from search.cli import app
        for args in {commands!r}:
            try:
                app([*args, "--help"])
            except SystemExit as done:
                assert done.code == 0, (args, done.code)
    """)
    assert loaded & (HEAVY | {"optuna"}) == set()


def test_studies_and_show_load_no_heavy_library(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path}/optuna.db"
    loaded = packages_loaded(f"""
        import optuna
        from search.cli import app

        study = optuna.create_study(study_name="s", storage={storage!r}, direction="maximize")
        study.add_trial(optuna.trial.create_trial(params={{"lr": 0.01}}, value=0.5,
            distributions={{"lr": optuna.distributions.FloatDistribution(1e-4, 1e-1)}}))
        for args in (["studies"], ["show", "--study", "s"]):
            try:
                app([*args, "--storage", {storage!r}])
            except SystemExit as done:
                assert done.code == 0, (args, done.code)
    """, cwd=tmp_path)
    assert loaded & HEAVY == set()
