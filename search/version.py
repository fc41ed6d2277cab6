"""Which han-search this is, and the schema of the records it writes on a study.

`RECORDS_SCHEMA` counts changes to what a study holds (search.records) that an older
han-search would misread: a study records the schema and version that last wrote it, a
newer han-search continues it, and an older one refuses it in one line instead of guessing.
Read from the installed package's metadata: asking costs no import of the libraries.
"""

from __future__ import annotations

import platform
from importlib import metadata

# 1: the first recorded schema; studies that record none are read as 0 (the same records,
# written before the schema was kept), which needs no migration.
RECORDS_SCHEMA = 1

_LIBRARIES = ("optuna", "mlflow", "torch")


def version_of(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def han_search_version() -> str:
    return version_of("han-search")


def program_versions() -> str:
    """One line for `han-search --version`: this program and what it stands on."""
    libraries = ", ".join(f"{name} {version_of(name)}" for name in _LIBRARIES)
    return (f"han-search {han_search_version()} (records schema {RECORDS_SCHEMA}; {libraries}; "
            f"Python {platform.python_version()})")
