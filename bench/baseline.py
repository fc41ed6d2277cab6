#!/usr/bin/env python3
"""Time and peak memory of the linear baseline (han.baseline) on a generated corpus.

Generates (once, cached like the built-in corpus) a corpus of `--docs` documents with
han.synthetic at the competition's lengths, reads it, then trains the baseline on the
default split (DataConfig: 10 folds, dev fold 0) and prints one JSON line of figures.

Usage:  python bench/baseline.py [--docs 200000] [--threads N] [--corpus-dir DIR | --train FILE]
Peak memory is the process's resident peak while the baseline runs, the corpus it reads
included (Linux: the peak is reset after reading, through /proc/self/clear_refs). CPU
seconds are given beside wall seconds, for machines whose cores are shared.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from han.baseline import train_baseline
from han.config import DataConfig
from han.io import read_corpus
from han.synthetic import SyntheticSpec, builtin_corpus, write_corpus


def _status_mb(field: str) -> float:
    """A memory figure of this process from /proc/self/status (VmHWM: peak, VmRSS: now)."""
    text = Path("/proc/self/status").read_text()
    match = re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) / 1024 if match else float("nan")


def _cpu_seconds() -> float:
    """CPU time of this process, all threads, user and system: unlike wall time, it barely
    moves when other processes share the cores."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _cpu() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor()
    model = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    return f"{model.group(1) if model else '?'}; bf16: {'avx512_bf16' in text}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=200_000)
    parser.add_argument("--threads", type=int, default=None,
                        help="classifier threads (default: every core)")
    parser.add_argument("--train", type=Path, default=None,
                        help="an existing labelled file instead of a generated corpus")
    parser.add_argument("--corpus-dir", type=Path, default=None,
                        help="where to write the corpus (default: the built-in corpus cache)")
    args = parser.parse_args()
    spec = SyntheticSpec(n_train=args.docs, n_test=0)
    started = time.perf_counter()
    if args.train is not None:
        train = args.train
    elif args.corpus_dir is not None:
        train = write_corpus(spec, args.corpus_dir)[0]
    else:
        train = builtin_corpus(spec)[0]
    generated = time.perf_counter() - started
    corpus = read_corpus(train, labelled=True)
    corpus_mb = _status_mb("VmRSS")
    reset = _reset_peak()
    cpu_before = _cpu_seconds()
    result = train_baseline(corpus, DataConfig(), threads=args.threads)
    cpu = _cpu_seconds() - cpu_before
    figures = {
        "file": str(train), "docs": corpus.num_docs, "tokens": len(corpus.tokens),
        "generate_or_find_s": round(generated, 1), "baseline_s": round(result.seconds, 1),
        "features_s": round(result.feature_seconds, 1), "baseline_cpu_s": round(cpu, 1),
        "peak_rss_mb": round(_status_mb("VmHWM"), 0), "peak_is_baseline_only": reset,
        "rss_after_reading_mb": round(corpus_mb, 0), "features": result.features,
        "train_docs": result.train_docs, "dev_docs": result.dev_docs,
        "dev_macro_f1": round(result.dev_macro_f1, 4),
        "dev_accuracy": round(result.dev_accuracy, 4), "model": result.description,
        "cores": os.cpu_count(), "cpu": _cpu(),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
