"""The throughput figures of `han-search bench` and the notebook side by side's replay of the
notebook's padding, which its ratio's ceiling rests on."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import numpy as np
from typer.testing import CliRunner

from han.bench import bench
from han.config import DataConfig
from search.cli import app
from tests.conftest import easy_corpus

SMALL_MODEL = {"embed_dim": 16, "word_hidden": 8, "sent_hidden": 8}


def test_bench_times_a_whole_epoch_and_counts_the_padding(tmp_path: Path) -> None:
    train = easy_corpus(tmp_path / "train.tsv", docs=80)
    figures = bench(train, model_config=SMALL_MODEL, data_config=DataConfig(seg_len=32),
                    batch_size=8, steps=None, device="cpu", precision="fp32")
    # 72 training documents (nine folds of ten): nine full batches, two untimed.
    assert figures["train_docs"] == 72 - 2 * 8
    assert figures["word_tokens_per_doc"] >= figures["real_tokens_per_doc"] > 20
    assert figures["train_docs_per_s"] > 0 and figures["eval_docs_per_s"] > 0


def test_bench_command_prints_one_json_line(tmp_path: Path) -> None:
    train = easy_corpus(tmp_path / "train.tsv", docs=60)
    result = CliRunner().invoke(app, ["bench", "--train", str(train), "--seg-len", "32",
                                      "--word-hidden", "8", "--sent-hidden", "8",
                                      "--batch-size", "4", "--steps", "2"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output.strip().splitlines()[-1])
    assert figures["train_docs"] == 8 and figures["steps"] == 2
    assert figures["token_mode"] == "ids"  # detected: no --tokens
    # --steps 0: the whole epoch, 54 training documents of 60, the first two batches untimed.
    result = CliRunner().invoke(app, ["bench", "--train", str(train), "--seg-len", "32",
                                      "--word-hidden", "8", "--sent-hidden", "8",
                                      "--batch-size", "4", "--steps", "0"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output.strip().splitlines()[-1])
    assert figures["train_docs"] == 54 - 8 and figures["steps"] is None


def _notebook_bench() -> ModuleType:
    source = Path(__file__).resolve().parent.parent / "bench" / "notebook.py"
    module_spec = importlib.util.spec_from_file_location("notebook_bench", source)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def test_notebook_padding_replay() -> None:
    tokens_per_doc = _notebook_bench().notebook_word_tokens_per_doc
    # Documents of one length pad nothing, whatever the batching draws; a long one keeps
    # its first and last four segments.
    assert tokens_per_doc(np.full(64, 100), seg_len=256, max_segments=8, batch_size=16) == 100
    assert tokens_per_doc(np.full(64, 9000), seg_len=256, max_segments=8,
                          batch_size=16) == 8 * 256
    # A batch holding a two-segment document pads a one-segment one to 2 x 256.
    mixed = tokens_per_doc(np.array([300, 10]), seg_len=256, max_segments=8, batch_size=16)
    assert mixed == 2 * 256
