"""The `han-search` command line, the top of search/: each command parses its options, calls
one function of the layers below and prints the result (`console`: what `run` prints).

Importing this module loads typer and the option defaults, nothing heavier: each command
imports what it uses (torch, MLflow, scikit-learn, Optuna) when it runs, so that
`han-search --help` and every command's `--help` answer at once. tests/test_cli_startup.py
holds the module to that; bench/cli_startup.py times it.
"""

# Each module registers its commands on `app` as it is imported: in this order in --help,
# the command a user types first, first.
from search.cli import run  # isort: skip
from search.cli import export, inspect, tools  # isort: skip
from search.cli.app import app

__all__ = ["app", "export", "inspect", "run", "tools"]
