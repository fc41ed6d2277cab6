"""The defaults the command line shows in its help.

They live in a module that imports nothing, not beside the code that uses them
(search.stores, search.session and search.setup import Optuna, MLflow
or torch): `han-search --help` prints them without loading those libraries.
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_STORAGE = "sqlite:///han-search.db"
DEFAULT_HEARTBEAT_S = 10
# How long a worker waits for a storage that stopped answering (a PostgreSQL restart, a
# failover) before it stops: a restart takes seconds, a failover a minute or two.
DEFAULT_STORAGE_PATIENCE_S = 300
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
DEFAULT_WORK_DIR = Path("han-search-work")
# No trial may take more than this share of --timeout: past it, a trial stops at the report
# whose next epoch would end beyond it, and keeps its best epoch. Measured on the issue-10
# look-alike (11,000 documents, bench/budget.py): the reference configuration's epoch takes
# about 6-7 minutes on 2 cores, so a fifth of a 40-minute budget holds one of its epochs and
# leaves four fifths to the search.
MAX_TRIAL_SHARE = 0.2
