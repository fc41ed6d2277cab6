"""How far a dev macro-F1 can be trusted: its noise on the documents it was scored on, the
score of a guess, and the dev sample large enough to tell apart the differences that matter.

numpy only (no torch), so the search can use it without loading the model's stack.
"""

from __future__ import annotations

import math

import numpy as np

# A report's noise is the spread of its macro-F1 over this many resamples of its documents:
# enough for a standard deviation good to about 5%.
BOOTSTRAP_ROUNDS = 200
# The dev sample scored by reports inside an epoch is sized so that a macro-F1 near 0.5 has
# at most this standard deviation: two trials 0.06 apart then differ by more than twice
# the noise of their difference.
TARGET_NOISE = 0.02
# ... but never fewer documents than this (or the whole dev fold, when it is smaller).
MIN_SAMPLE = 500
# A difference is evidence when it exceeds this many times its noise (about 95% one-sided
# for normal noise).
NOISE_MULTIPLE = 2.0


def macro_f1_noise(true: np.ndarray, predicted: np.ndarray, *,
                   rounds: int = BOOTSTRAP_ROUNDS, seed: int = 0) -> float:
    """The standard deviation of macro-F1 (scikit-learn's: over the classes present in
    `true` or `predicted`) when the scored documents are drawn again with replacement.

    A resample only reweighs the (true, predicted) cells of the confusion matrix, so each of
    the `rounds` resamples is one multinomial draw over at most C x C cells: microseconds,
    whatever the number of documents. 0.0 for fewer than two documents.
    """
    if len(true) < 2:
        return 0.0
    classes = np.union1d(true, predicted)
    true_index = np.searchsorted(classes, true)
    predicted_index = np.searchsorted(classes, predicted)
    cells, counts = np.unique(true_index * len(classes) + predicted_index, return_counts=True)
    draws = np.random.default_rng(seed).multinomial(len(true), counts / counts.sum(),
                                                    size=rounds)  # (R, K)
    row, column = np.divmod(cells, len(classes))
    eye = np.eye(len(classes))
    true_counts = draws @ eye[row]  # (R, K) -> (R, C)
    predicted_counts = draws @ eye[column]
    hits = draws @ (eye[row] * (row == column)[:, None])
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(true_counts + predicted_counts > 0,
                      2 * hits / (true_counts + predicted_counts), 0.0)
    return float(f1.mean(axis=1).std(ddof=1))


def chance_f1(classes: int) -> float:
    """The macro-F1 of guessing each document's class from the class shares: 1 / C (each
    class's F1 is its share). A constant guess of the largest class scores less."""
    return 1.0 / max(classes, 1)


def above_chance(f1: float, noise: float, classes: int, *,
                 multiple: float = NOISE_MULTIPLE) -> bool:
    """Whether a macro-F1 shows learning: clearly above a guess's, given its noise."""
    return f1 - multiple * noise > chance_f1(classes)


def sample_size(labels: np.ndarray, *, noise: float = TARGET_NOISE,
                minimum: int = MIN_SAMPLE) -> int:
    """Dev documents for a report's macro-F1 to have about `noise` standard deviation at
    F1 0.5 on classes as uneven as `labels` (the dev fold's), at most all of them.

    Each class's F1 varies about as a proportion over its n_c documents, F(1-F)/n_c, and
    macro-F1 averages C of them: var = sum_c 0.25 / (n p_c) / C^2. Rare classes set n.
    """
    _, counts = np.unique(labels, return_counts=True)
    shares = counts / counts.sum()
    needed = 0.25 * float(np.sum(1.0 / shares)) / (len(counts) ** 2 * noise**2)
    return int(min(len(labels), max(minimum, math.ceil(needed))))
