"""Pruners of our own, beside Optuna's (search.studyfile.components registers them):
`evidence` (successive halving that prunes only on evidence) and `field_percentile`
(Optuna's percentile rule against every trial that reached the step). They read what the
trials record (search.records) and nothing above it."""

from search.pruners.evidence import Comparison, EvidencePruner, decision
from search.pruners.field_percentile import FieldPercentilePruner

__all__ = ["Comparison", "EvidencePruner", "FieldPercentilePruner", "decision"]
