#!/usr/bin/env python3
"""Training speed against the reference notebook's pipeline, side by side in one run.

Generates a corpus with the competition's document lengths (han.synthetic), writes a
random 100-dim word2vec file for the notebook's frozen table, then times, one after the
other on the same machine and threads:

  1. the notebook's pipeline (`shared/reference/seed_pipeline.py --batches N`): its own
     batching, fully padded 256 x 8 segments, batch 16;
  2. han-search's training step at the same configuration, fp32, the way `train` runs it
     on this device (CPU: in chunks of `max_batch_tokens` padded tokens), over the same
     number of batches after two untimed ones;

and prints both docs/s and their ratio (one JSON line each, then a summary line). With
`--epoch`, both sides train one whole epoch of their 90% of the corpus instead (han-search's
first two batches untimed): every document once, so which batches a side happened to draw
no longer moves the ratio.

The summary also gives the ratio's ceiling where the LSTMs are all the time: the padded
tokens (segments x width) each side's word encoder runs per document. The notebook's are
counted by replaying its batching (segment counts sorted with +-1 noise, batches of 16,
each padded to its most segments and longest segment) over the same documents.

Usage:  python bench/notebook.py [--docs 4000] [--batches 30 | --epoch] [--whole]
                                 [--seed-pipeline PATH]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo's packages

from han.bench import bench
from han.config import DataConfig
from han.io import Corpus, read_corpus
from han.synthetic import SyntheticSpec, write_corpus

DEFAULT_SEED_PIPELINE = Path(__file__).resolve().parents[2] / "shared/reference/seed_pipeline.py"


def random_word2vec(corpus: Corpus, path: Path, *, dim: int = 100, words: int = 5000) -> Path:
    """Random vectors for the corpus's most frequent ids: any vectors do for timing."""
    counts = np.bincount(corpus.tokens)
    ids = np.argsort(counts)[::-1][:words]
    rng = np.random.default_rng(0)
    with path.open("w") as out:
        out.write(f"{len(ids)} {dim}\n")
        for token in ids:
            out.write(f"{token} " + " ".join(f"{v:.4f}" for v in rng.normal(size=dim)) + "\n")
    return path


def notebook_word_tokens_per_doc(lengths: np.ndarray, *, seg_len: int, max_segments: int,
                                 batch_size: int, rounds: int = 20) -> float:
    """Padded tokens per document the notebook's word LSTM runs, averaged over `rounds` of
    its batching (shared/reference/seed_pipeline.py: data_iter and batch2tensor)."""
    full, rest = np.divmod(lengths, seg_len)
    segments = np.minimum(full + (rest > 0), max_segments)
    # Its longest segment is seg_len whenever a document has two or more.
    longest = np.where(full > 0, seg_len, rest)
    rng = np.random.default_rng(0)
    padded = 0
    for _ in range(rounds):
        order = rng.permutation(len(lengths))
        noisy = -(segments[order] + rng.uniform(-1, 1, len(lengths)))
        ranked = order[np.argsort(noisy)]
        for start in range(0, len(ranked), batch_size):
            batch = ranked[start:start + batch_size]
            padded += len(batch) * int(segments[batch].max()) * int(longest[batch].max())
    return padded / (rounds * len(lengths))


def notebook_docs_per_s(script: Path, train: Path, test: Path, vectors: Path, *,
                        batches: int, threads: int) -> float:
    done = subprocess.run([sys.executable, str(script), str(train), str(test), str(vectors),
                           "--batches", str(batches), "--threads", str(threads),
                           "--fast-vocab"], capture_output=True, text=True, check=True)
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    epoch = next(line for line in lines if "train_docs_per_s" in line)
    print(json.dumps({"pipeline": "notebook", **epoch}), flush=True)
    return float(epoch["train_docs_per_s"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=4000)
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--epoch", action="store_true",
                        help="time one whole epoch on each side instead of --batches")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed-pipeline", type=Path, default=DEFAULT_SEED_PIPELINE)
    parser.add_argument("--whole", action="store_true",
                        help="also time han-search with batches not split into chunks")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    folder = Path(tempfile.mkdtemp(prefix="han-notebook-"))
    train, test = write_corpus(SyntheticSpec(n_train=args.docs, n_test=200), folder)
    corpus = read_corpus(train, labelled=True)
    vectors = random_word2vec(corpus, folder / "w2v.txt")
    steps = None if args.epoch else args.batches
    notebook = notebook_docs_per_s(args.seed_pipeline, train, test, vectors,
                                   batches=steps or 0, threads=args.threads)
    shape = DataConfig()
    ours = bench(train, model_config={}, data_config=shape, batch_size=16, steps=steps,
                 device="cpu", precision="fp32")
    print(json.dumps({"pipeline": "han-search", **ours}), flush=True)
    if args.whole:
        whole = bench(train, model_config={}, data_config=shape, batch_size=16, steps=steps,
                      device="cpu", precision="fp32", max_batch_tokens=None)
        print(json.dumps({"pipeline": "han-search, batches whole", **whole}), flush=True)
    notebook_tokens = notebook_word_tokens_per_doc(
        corpus.lengths, seg_len=shape.seg_len, max_segments=shape.max_segments, batch_size=16)
    ratio = ours["train_docs_per_s"] / notebook
    print(f"fp32 training, reference configuration, batch 16, {args.threads} threads, "
          f"{'one epoch' if args.epoch else f'{args.batches} batches'}: notebook "
          f"{notebook:.2f} docs/s, han-search {ours['train_docs_per_s']:.2f} docs/s "
          f"({ratio:.2f}x). Word-encoder tokens a document, padded: notebook "
          f"{notebook_tokens:.0f}, han-search {ours['word_tokens_per_doc']:.0f} "
          f"({notebook_tokens / ours['word_tokens_per_doc']:.2f}x: the ratio's ceiling where "
          f"LSTMs are all the time), real {ours['real_tokens_per_doc']:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
