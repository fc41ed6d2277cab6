"""Every exception class of search/: each lives here and is imported from here only.

They live in a module that imports nothing, so the command line names them without
importing MLflow, Optuna or pydantic first (the modules that raise them do). The user-facing
ones are one line each, exit code 2 on the command line.
"""

from __future__ import annotations


class SearchError(ValueError):
    """A user-facing problem (missing study, no complete trial...): one line."""


class TrackingError(RuntimeError):
    """MLflow cannot be reached or refused a request; one line for the user."""


class StudyFileError(ValueError):
    """A study file is missing, unreadable or invalid; the message is one line."""


class TrialSkipped(Exception):
    """The budget's answer to a trial whose epoch, as estimated, fits neither the time left
    nor the trial's share of it (the message says by how much): the trial trains no further
    (search.session.budget)."""


class TrialStopped(Exception):
    """A trial that ended with nothing to keep and is not pruned: stopped by the budget
    before its first epoch ended, or interrupted by the user. Optuna records it FAIL and
    its MLflow run ends `interrupted`; the message says why."""


class StorageLost(SearchError):
    """The Optuna storage stopped answering for longer than --storage-patience: the worker
    stops (exit 2); its trial, still RUNNING, is retried by the next run (its heartbeats
    stopped, or its process is gone)."""
