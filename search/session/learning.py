"""Whether a trial is learning at all: after an epoch, a dev loss still at a uniform guess's
(or not finite) with a dev macro-F1 no better than a guess's is a stop, for any trial."""

from __future__ import annotations

import math

from han.dev_reports import EpochMetrics
from han.metrics import above_chance, chance_f1
from han.stopping import Stop, StopReason

# A trial whose dev loss is within this share of ln C after an epoch has learned nothing a
# uniform guess does not know: not even the class shares (which score below ln C).
UNIFORM_LOSS_SHARE = 0.99
# A model at ln C after a handful of optimiser updates has simply not begun: on a few hundred
# documents an epoch is a dozen updates, and a configuration that ends best can still be at
# ln C after its first (seen on a 96-document corpus at 5 updates an epoch).
MIN_UPDATES_JUDGED = 50


def stop_if_not_learning(metrics: EpochMetrics, *, classes: int,
                         updates: int) -> Stop | None:
    """The stop of a trial whose dev loss, after an epoch, is not finite, or, after at least
    MIN_UPDATES_JUDGED optimiser `updates`, is still at the uniform guess's ln C while its dev
    macro-F1 is no better than a guess's: more epochs of it are wasted time, the study's
    first trial included. (A loss above ln C alone is no proof: a model that ranks well but
    is overconfident where it errs has one.) None: it learns, or it is too soon to say."""
    uniform = math.log(classes)
    if math.isfinite(metrics.dev_loss) and (
            updates < MIN_UPDATES_JUDGED
            or metrics.dev_loss < UNIFORM_LOSS_SHARE * uniform
            or above_chance(metrics.dev_macro_f1, metrics.dev_macro_f1_noise, classes)):
        return None
    return Stop(StopReason.NOT_LEARNING,
                f"not learning: dev loss {metrics.dev_loss:.3f} after epoch {metrics.epoch}, "
                f"a uniform guess's is ln {classes} = {uniform:.3f} (dev F1 "
                f"{metrics.dev_macro_f1:.4f}, a guess's {chance_f1(classes):.4f})")
