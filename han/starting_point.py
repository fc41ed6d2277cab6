"""The settings a search starts from on data it knows nothing else about: derived from the
documents, their lengths and the class count, chosen to learn within the first epoch.

The reference notebook's configuration (han/config.py's defaults) was tuned for 200,000
news articles of about 900 tokens; on a few thousand short documents its learning rate of
2e-4 leaves a model at chance for epochs, and on a user's file a search whose first trials
sit at chance has nothing to learn from. Measured on Reuters R8 (5,485 documents, p50 66
words) and a Chinese corpus (5,759 documents, p50 2,956 characters), these settings reach
dev macro-F1 0.62 and 0.82 after their first epoch.
"""

from __future__ import annotations

from typing import Any

from han.profile import DataProfile

# Segments a document is cut into at most: the notebook's.
MAX_SEGMENTS = 8
# Tokens kept a document: enough for 90% of the documents, within these bounds. The top
# bound keeps an epoch affordable on a CPU (cost grows with the tokens kept).
MIN_KEPT, MAX_KEPT = 64, 512
# Below this many documents a batch of 32 leaves too few optimiser steps in an epoch.
SMALL_CORPUS = 4000
# From this many documents the encoders get twice the width.
LARGE_CORPUS = 50_000


def _power_of_two_at_least(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def starting_point(profile: DataProfile, *, train_docs: int) -> dict[str, Any]:
    """The first trial's settings for data described by `profile`, `train_docs` of its
    documents in the training folds: segments covering the 90th-percentile document (up
    to MAX_KEPT tokens), small encoders, a GRU, Adam at 2e-3 decaying 10% an epoch,
    dropout 0.2, and the loss weighted by the square root of inverse class frequency (the
    metric is macro-F1)."""
    p90 = profile.length_percentiles[1]
    kept = min(MAX_KEPT, max(MIN_KEPT, _power_of_two_at_least(p90)))
    batch_size = 32 if train_docs >= SMALL_CORPUS else 16
    hidden = 128 if train_docs >= LARGE_CORPUS else 64
    return {"seg_len": kept // MAX_SEGMENTS, "max_segments": MAX_SEGMENTS,
            "word_hidden": hidden, "sent_hidden": hidden, "cell": "gru", "dropout": 0.2,
            "lr": 2e-3, "lr_decay": 0.9, "decay_steps": max(1, train_docs // batch_size),
            "batch_size": batch_size, "class_weight": "sqrt"}
