from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

SAMPLE_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "tianchi-sample"
torch.set_num_threads(int(os.environ.get("HAN_TEST_THREADS", "2")))
# MLflow writes kept while a test's server is away go to a folder of the test session's own
# (search.stores.journal), never the user's cache; the commands the tests start inherit it.
os.environ["HAN_SEARCH_JOURNAL"] = tempfile.mkdtemp(prefix="han-search-journal-")


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
def isolated_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Relative defaults (han-search.db, mlflow.db, submission.csv...) land in tmp_path, and
    no storage or tracking URI comes from the environment."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HAN_SEARCH_STORAGE", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


@pytest.fixture
def sample_dir() -> Path:
    if not SAMPLE_DIR.is_dir():
        pytest.skip("shared/data/tianchi-sample is not beside the checkout")
    return SAMPLE_DIR


NEWS_CLASSES = ("体育", "科技", "财经", "娱乐")


def chinese_news(path: Path, *, docs: int = 160, seed: int = 0, labelled: bool = True
                 ) -> list[str]:
    """A comma-separated file of raw Chinese text with class names as labels.

    Columns `category` and `content`; each class has its own characters among shared
    ones, and the texts hold ASCII commas (so fields need quoting), full-width punctuation
    and both kinds of space. Returns the true class names in file order.
    """
    rng = np.random.default_rng(seed)
    shared = [chr(0x4E00 + i) for i in range(200)]
    names, texts = [], []
    for index in range(docs):
        label = index % len(NEWS_CLASSES)
        own = [chr(0x6000 + 16 * label + k) for k in range(12)]
        length = int(rng.integers(20, 100))
        chars = [own[rng.integers(len(own))] if rng.random() < 0.8
                 else shared[rng.integers(len(shared))] for _ in range(length)]
        for position in rng.integers(0, length, size=length // 10):
            chars[position] += str(rng.choice([",", "，", "。", " ", "\u3000"]))
        names.append(NEWS_CLASSES[label])
        texts.append("".join(chars))
    columns = {"category": names, "content": texts} if labelled else {"content": texts}
    pd.DataFrame(columns).to_csv(path, index=False)
    return names


ENGLISH_CLASSES = ("acq", "crude", "earn", "trade")
_ENGLISH_WORDS = {
    "acq": ("acquire", "merger", "stake", "takeover", "bid", "offer", "holders", "tender"),
    "crude": ("oil", "barrels", "opec", "bpd", "refinery", "output", "prices", "wells"),
    "earn": ("profit", "dividend", "quarter", "net", "shr", "revs", "loss", "earnings"),
    "trade": ("tariffs", "deficit", "exports", "imports", "surplus", "gatt", "quota", "japan"),
}
_SHARED_WORDS = ("the", "said", "of", "to", "in", "a", "and", "for", "its", "mln", "pct",
                 "1987", "3", "company", "year", "will", "it", "on", "by", "dlrs")


def english_news(path: Path, *, docs: int = 160, seed: int = 0, labelled: bool = True
                 ) -> list[str]:
    """A tab-separated file of lower-case English words in R8's layout (`label` names,
    `text`): each class has its own words among shared ones, some of them numbers (as
    Reuters' `1987` and `3`). Returns the true class names in file order."""
    rng = np.random.default_rng(seed)
    names, rows = [], []
    for index in range(docs):
        name = ENGLISH_CLASSES[index % len(ENGLISH_CLASSES)]
        own = _ENGLISH_WORDS[name]
        length = int(rng.integers(20, 80))
        words = [own[rng.integers(len(own))] if rng.random() < 0.5
                 else _SHARED_WORDS[rng.integers(len(_SHARED_WORDS))] for _ in range(length)]
        names.append(name)
        rows.append((name, " ".join(words)) if labelled else (" ".join(words),))
    write_tsv(path, rows, header=("label", "text") if labelled else ("text",))
    return names
