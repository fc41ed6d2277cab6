"""GPU facts for the training core, in one call of a few minutes: `python bench/gpu_probe.py`.

Needs only torch, numpy and pandas (the GPU machines have them; nothing is installed). It
generates a look-alike corpus of the competition's document lengths, then prints JSON lines:

- `train`: training docs/s of the current model at the reference configuration (segments
  256 x 8, hidden 128/256) at batch 16, 64 and 256, fp32 and bf16 autocast, and the epoch
  of 180,000 documents those rates imply;
- `word_encoder`: forward+backward time of the word encoder's recurrence alone on one
  real batch's segments: today's per-direction unpacked LSTMs against cuDNN's
  bidirectional LSTM over a PackedSequence (exact) and over the padded batch (inexact);
- `workers`: summed training docs/s of K processes sharing the GPU (K = 1, 2, 4).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from han.bench import bench
from han.config import DataConfig
from han.model import BiRNN
from han.synthetic import SyntheticSpec, write_corpus

REFERENCE_MODEL = {"word_hidden": 128, "sent_hidden": 256}
REFERENCE_DATA = DataConfig(seg_len=256, max_segments=8)
EPOCH_DOCS = 180_000


def emit(record: dict) -> None:
    print(json.dumps(record), flush=True)


def train_rates(train: Path, *, steps: int) -> None:
    for precision in ("fp32", "bf16"):
        for batch in (16, 64, 256):
            figures = bench(train, model_config=REFERENCE_MODEL, data_config=REFERENCE_DATA,
                            batch_size=batch, steps=steps, device="cuda", precision=precision)
            rate = figures["train_docs_per_s"]
            emit({"probe": "train", "precision": precision, "batch": batch,
                  "train_docs_per_s": rate, "eval_docs_per_s": figures["eval_docs_per_s"],
                  "epoch_180k_s": round(EPOCH_DOCS / rate, 1),
                  "gpu": figures["device_name"]})


def _time(step, repeats: int = 10) -> float:
    for _ in range(3):
        step()
    torch.cuda.synchronize()
    tick = time.perf_counter()
    for _ in range(repeats):
        step()
    torch.cuda.synchronize()
    return (time.perf_counter() - tick) / repeats


def word_encoder(*, docs: int, seed: int = 0) -> None:
    """One batch of `docs` documents cut like the competition's: log-normal lengths."""
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(np.log(676), 0.77, docs), 2, 57921).astype(int)
    segs = []
    for length in lengths:
        count = min(-(-length // 256), 8)
        full = [256] * (count - 1) + [length - 256 * (count - 1) if length < 2048 else 256]
        segs += full
    seg_lengths = torch.tensor(sorted(segs, reverse=True), device="cuda")
    n, width = len(segs), int(seg_lengths.max())
    x = torch.randn(n, width, 100, device="cuda", requires_grad=True)
    ours = BiRNN(input_size=100, hidden=128, layers=2, cell="lstm", dropout=0.0).cuda()
    cudnn = nn.LSTM(100, 128, num_layers=2, bidirectional=True, batch_first=True).cuda()
    cpu_lengths = seg_lengths.cpu()

    def run_ours() -> None:
        ours(x, seg_lengths).float().sum().backward()

    def run_packed() -> None:
        packed = pack_padded_sequence(x, cpu_lengths, batch_first=True, enforce_sorted=True)
        out, _ = cudnn(packed)
        out.data.float().sum().backward()

    def run_padded() -> None:
        cudnn(x)[0].float().sum().backward()

    for precision in ("fp32", "bf16"):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision == "bf16"):
            times = {name: _time(step) for name, step in
                     (("per_direction_unpacked", run_ours), ("cudnn_packed", run_packed),
                      ("cudnn_padded", run_padded))}
        emit({"probe": "word_encoder", "docs": docs, "segments": n,
              "real_tokens": int(seg_lengths.sum()), "padded_tokens": n * width,
              "precision": precision, **{k: round(v * 1000, 2) for k, v in times.items()},
              "unit": "ms fwd+bwd"})


def workers(train: Path, *, steps: int) -> None:
    for k in (1, 2, 4):
        command = [sys.executable, __file__, "--child", str(train), "--steps", str(steps)]
        tick = time.perf_counter()
        children = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
                    for _ in range(k)]
        rates = [json.loads(child.communicate()[0].strip().splitlines()[-1])["rate"]
                 for child in children]
        emit({"probe": "workers", "k": k, "batch": 64, "per_worker_docs_per_s": rates,
              "sum_docs_per_s": round(sum(rates), 1),
              "wall_s": round(time.perf_counter() - tick, 1)})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", type=Path)
    parser.add_argument("--corpus", type=Path, default=Path("/tmp/han-gpu-probe"))
    parser.add_argument("--docs", type=int, default=30_000)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    if args.child is not None:
        figures = bench(args.child, model_config=REFERENCE_MODEL, data_config=REFERENCE_DATA,
                        batch_size=64, steps=args.steps, device="cuda", precision="bf16")
        print(json.dumps({"rate": figures["train_docs_per_s"]}))
        return
    tick = time.perf_counter()
    train, _ = write_corpus(SyntheticSpec(n_train=args.docs, n_test=0), args.corpus)
    emit({"probe": "corpus", "docs": args.docs, "seconds": round(time.perf_counter() - tick, 1),
          "torch": torch.__version__, "cudnn": torch.backends.cudnn.version()})
    torch.backends.cudnn.benchmark = True
    for docs in (16, 256):
        word_encoder(docs=docs)
    train_rates(train, steps=args.steps)
    workers(train, steps=args.steps)


if __name__ == "__main__":
    main()
