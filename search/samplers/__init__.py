"""Samplers of our own, wrapping Optuna's: `ShapedSampler` draws a whole configuration at once
and draws again what a rule refuses (a session's budget and data decide the rules)."""

from search.samplers.shaped import Refusal, ShapedSampler

__all__ = ["Refusal", "ShapedSampler"]
