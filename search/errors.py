"""The user-facing error of search/ (MLflow's own is tracking.TrackingError): one line, exit 2."""

from __future__ import annotations


class SearchError(ValueError):
    """A user-facing problem (missing study, no complete trial...): one line."""
