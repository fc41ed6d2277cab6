#!/usr/bin/env bash
# GPU throughput of the training core, in one call of a few minutes on a machine with a
# CUDA GPU and torch already installed:
#   bash bench/gpu.sh            (from the repository root)
# It installs han-search without touching torch, generates a competition-sized corpus
# (200,000 training documents), runs `han-search bench` on cuda at batch sizes 16, 64 and
# 256 at the reference configuration, and prints a table. JSON lines go to $OUT if set.
set -euo pipefail
cd "$(dirname "$0")/.."
out_dir=${OUT:-$(mktemp -d)}
python3 -m pip install --quiet --no-deps -e . 2>/dev/null \
  || python3 -m pip install --quiet -e .
python3 -m pip install --quiet numpy pandas scikit-learn optuna mlflow typer matplotlib \
  >/dev/null 2>&1 || true

corpus=${HAN_BENCH_CORPUS:-/tmp/han-bench-corpus}
python3 - "$corpus" <<'PY'
import sys, time
from pathlib import Path
from han.synthetic import SyntheticSpec, write_corpus
started = time.perf_counter()
train, _ = write_corpus(SyntheticSpec(n_train=200_000, n_test=0), Path(sys.argv[1]))
print(f"generated {train} in {time.perf_counter() - started:.0f}s", file=sys.stderr)
PY

for batch in 16 64 256; do
  han-search bench --train "$corpus/train.tsv" --seg-len 256 --max-segments 8 \
    --word-hidden 128 --sent-hidden 256 --batch-size "$batch" --steps 20 --device cuda \
    | tee -a "$out_dir/gpu-bench.jsonl"
done

python3 - "$out_dir/gpu-bench.jsonl" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
print(f"\n{'device':<28} {'batch':>5} {'encode docs/s':>14} {'train docs/s':>13} "
      f"{'eval docs/s':>12} {'peak RSS MB':>12}")
for r in rows:
    print(f"{r['device_name'][:28]:<28} {r['batch_size']:>5} {r['encode_docs_per_s']:>14.0f} "
          f"{r['train_docs_per_s']:>13.1f} {r['eval_docs_per_s']:>12.1f} {r['peak_rss_mb']:>12.0f}")
print("\nreference notebook on a GPU: 13 docs/s at batch 16 (shared/notes)")
PY
