"""The user-facing errors of search/: one line each, exit code 2 on the command line.

They live in a module that imports nothing, so the command line names them without
importing MLflow or pydantic first (search.tracking and search.studyfile, which raise the
last two, do).
"""

from __future__ import annotations


class SearchError(ValueError):
    """A user-facing problem (missing study, no complete trial...): one line."""


class TrackingError(RuntimeError):
    """MLflow cannot be reached or refused a request; one line for the user."""


class StudyFileError(ValueError):
    """A study file is missing, unreadable or invalid; the message is one line."""
