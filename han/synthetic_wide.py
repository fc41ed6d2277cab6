"""A seeded generator of wide-vocabulary corpora (many classes, over 100,000 distinct ids,
short documents), a look-alike of a newsgroup collection for budget and memory benchmarks.

The built-in corpus (`han/synthetic.py`) copies the competition's statistics: 14 classes,
about 6,800 ids, documents of ~900 tokens. Corpora of other shapes stress other things: a
vocabulary past 100,000 ids (embedding and optimiser state, the lookup tables) and many
short documents (segment shapes). This generator keeps to what those need: a Zipf
background over `vocab` ids with a long tail, each class with its own keywords, log-normal
lengths with a heavy right tail. It writes the competition's file format.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from han.files import written_atomically

_KEYWORDS = 60  # own keywords per class
_BLOCK_DOCS = 2048


@dataclass(frozen=True, kw_only=True)
class WideSpec:
    """A wide corpus's shape. The defaults make the newsgroup look-alike of issue 10:
    11,000 documents, 20 classes, mean length ~350 tokens, >100,000 distinct ids."""

    docs: int = 11_000
    classes: int = 20
    vocab: int = 170_000  # ids 0..vocab-1; a Zipf law over them leaves a tail unseen
    mean_length: float = 350.0
    length_sigma: float = 1.0  # of log length: a heavy right tail, as in posts
    topic_share: float = 0.08  # share of a document's tokens drawn from its class's keywords
    zipf: float = 1.05
    seed: int = 0

    def __post_init__(self) -> None:
        if min(self.docs, self.classes, self.vocab) < 1 or self.mean_length < 2:
            raise ValueError("docs, classes and vocab must be positive, mean_length >= 2")
        if self.classes * _KEYWORDS > self.vocab // 2:
            raise ValueError(f"vocab {self.vocab} is too small for {self.classes} classes")


def _world(spec: WideSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ids by background rank, the background's cumulative probabilities and each class's
    keywords (drawn among mid-frequency ranks, so they also occur elsewhere)."""
    rng = np.random.default_rng([spec.seed, 0])
    ids_by_rank = rng.permutation(spec.vocab)
    weights = 1.0 / np.arange(1, spec.vocab + 1, dtype=np.float64) ** spec.zipf
    cdf = np.cumsum(weights / weights.sum())
    cdf[-1] = 1.0
    ranks = rng.choice(np.arange(200, spec.vocab // 2), size=(spec.classes, _KEYWORDS),
                       replace=False)
    return ids_by_rank, cdf, ids_by_rank[ranks]


def _block(spec: WideSpec, world: tuple[np.ndarray, np.ndarray, np.ndarray], n: int,
           rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ids_by_rank, cdf, keywords = world
    labels = rng.integers(spec.classes, size=n)
    mu = np.log(spec.mean_length) - spec.length_sigma ** 2 / 2
    lengths = np.maximum(2, np.rint(rng.lognormal(mu, spec.length_sigma, n))).astype(np.int64)
    total = int(lengths.sum())
    tokens = ids_by_rank[np.searchsorted(cdf, rng.random(total), side="right")]
    doc = np.repeat(np.arange(n), lengths)
    topical = rng.random(total) < spec.topic_share
    tokens[topical] = keywords[labels[doc[topical]],
                               rng.integers(_KEYWORDS, size=int(topical.sum()))]
    return labels, lengths, tokens


def write_wide_corpus(spec: WideSpec, path: str | os.PathLike[str]) -> Path:
    """Write `spec`'s corpus to `path` (tab-separated `label`, `text` of space-separated ids),
    atomically; the output depends on the spec alone."""
    path = Path(path)
    world = _world(spec)
    with written_atomically(path) as temporary, open(temporary, "w", encoding="ascii") as out:
        out.write("label\ttext\n")
        for block, start in enumerate(range(0, spec.docs, _BLOCK_DOCS)):
            rng = np.random.default_rng([spec.seed, 1, block])
            labels, lengths, tokens = _block(spec, world, min(_BLOCK_DOCS, spec.docs - start),
                                             rng)
            ends = np.cumsum(lengths)
            text = tokens.astype(str)
            out.writelines(f"{label}\t{' '.join(text[end - length:end])}\n"
                           for label, length, end in zip(labels.tolist(), lengths.tolist(),
                                                         ends.tolist(), strict=True))
    return path
