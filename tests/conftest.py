from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

SAMPLE_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "tianchi-sample"
torch.set_num_threads(int(os.environ.get("HAN_TEST_THREADS", "2")))


def write_tsv(path: Path, rows: list[tuple], header: tuple[str, ...] = ("label", "text")) -> Path:
    lines = ["\t".join(header)] + ["\t".join(str(cell) for cell in row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def easy_corpus(path: Path, *, docs: int = 240, classes: int = 4, seed: int = 0) -> Path:
    """Each class has its own keyword tokens among shared noise: learnable in a few epochs."""
    rng = np.random.default_rng(seed)
    rows = []
    for index in range(docs):
        label = index % classes
        length = int(rng.integers(20, 120))
        tokens = rng.integers(100, 400, size=length)
        keyword_positions = rng.random(length) < 0.5
        tokens[keyword_positions] = 1000 + 10 * label + rng.integers(0, 10, keyword_positions.sum())
        rows.append((label, " ".join(map(str, tokens))))
    return write_tsv(path, rows)


@pytest.fixture
def sample_dir() -> Path:
    if not SAMPLE_DIR.is_dir():
        pytest.skip("shared/data/tianchi-sample is not beside the checkout")
    return SAMPLE_DIR
