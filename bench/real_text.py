#!/usr/bin/env python3
"""The user's path on real corpora, scored on their held-out test labels: one table.

For each corpus (a folder with train.tsv, test.tsv and test_labels.csv), in a fresh folder:

    han-search run --train train.tsv --test test.tsv --timeout T --device cpu
    han-search export-best --study train --out han.csv
    han-search export-best --study train --blend --out blend.csv

with no study file, then the test macro-F1 of the HAN export, of the blend and of the
study's linear baseline (han.baseline fitted on the study's training folds, as the blend's
is), and from the run's own records: the best HAN's and the baseline's dev macro-F1, the
first trial's first-epoch report against a guess (1 / classes, beyond twice its noise),
trials by outcome, the comparisons that pruned trials (none may be within the noise),
peak memory of the process tree, and per-class test F1 of the HAN export.

`--no-bf16` holds oneDNN and ATen to AVX2 (ONEDNN_MAX_CPU_ISA=AVX2,
ATEN_CPU_CAPABILITY=avx2): the arithmetic of a CPU without AVX512-BF16, so fp32. `--checkout
DIR` runs another checkout's `han-search` (DIR/.venv/bin/han-search), for before/after
figures; a corpus given as NAME=DIR:TOKENS passes --tokens TOKENS (older checkouts cannot
tell words from ids). Results go to OUT/NAME/ (run.log, results.json).

Usage:  python bench/real_text.py --corpus r8=../shared/data/r8 [--corpus ...]
        [--timeout 2400] [--no-bf16] [--checkout DIR] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo's packages

from sklearn.metrics import f1_score

from bench.budget import run_sampled
from han.baseline import classifier, split_docs, tfidf_features
from han.config import BaselineConfig, FileFormat
from han.io import load_corpus
from han.metrics import above_chance, chance_f1
from search.records import DatasetRecord, StudyRecord, TrialRecord
from search.setup.resolve import reference_split
from search.stores.optuna_storage import open_study
from search.studyfile import builtin_study_path, load_study_file
from tests.helpers import han_search_command

STUDY = "train"  # the study a run on train.tsv is named after
NO_BF16 = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def baseline_test_f1(folder: Path, storage: str, labels: np.ndarray) -> float:
    """The study's baseline, fitted on its training folds as the run fitted it, scored on
    the test labels."""
    study = open_study(STUDY, storage)
    record = StudyRecord.of(study)
    file_format: FileFormat = record.file_format
    corpus = load_corpus(folder / "train.tsv", labelled=True, file_format=file_format)
    test = load_corpus(folder / "test.tsv", labelled=False, file_format=file_format)
    spec = load_study_file(builtin_study_path())
    train_docs, _ = split_docs(corpus.labels, reference_split(spec))
    # Features fitted on the training folds; the test documents as a second block of rows.
    both = _concatenated(corpus, test)
    test_docs = np.arange(corpus.num_docs, both.num_docs)
    x_train, x_test = tfidf_features(both, train_docs, test_docs, BaselineConfig())
    model = classifier(BaselineConfig()).fit(x_train, corpus.labels[train_docs])
    names = np.asarray(corpus.label_values if corpus.label_values else
                       [str(i) for i in range(corpus.num_classes)], dtype=object)
    return float(f1_score(labels, names[model.predict(x_test)], average="macro"))


def _concatenated(first: Any, second: Any) -> Any:
    """Two corpora's documents as one, for features fitted on the first's training folds.
    Raw ids of words index each file's own dictionary: the second's are re-keyed into the
    first's, its unknown words past them (seen in no training document, they are dropped)."""
    second_tokens = second.tokens.astype(np.int64)
    if first.dictionary is not None:
        index = {word: i for i, word in enumerate(first.dictionary)}
        table = np.array([index.get(word, len(index) + j)
                          for j, word in enumerate(second.dictionary)], dtype=np.int64)
        second_tokens = table[second_tokens]
    tokens = np.concatenate([first.tokens.astype(np.int64), second_tokens])
    offsets = np.concatenate([first.offsets, first.offsets[-1] + second.offsets[1:]])
    return replace(first, tokens=tokens, offsets=offsets, labels=None)


def scored(path: Path, labels: np.ndarray) -> tuple[float, dict[str, float]]:
    predicted = pd.read_csv(path)["label"].astype(str).to_numpy()
    classes = sorted(set(labels))
    per_class = f1_score(labels, predicted, labels=classes, average=None, zero_division=0)
    return (float(f1_score(labels, predicted, average="macro")),
            dict(zip(classes, map(float, per_class), strict=True)))


def records_of(storage: str) -> dict[str, Any]:
    """What the run's own records say: outcomes, the best trial, the baseline, the first
    trial's first epoch, and every pruning comparison."""
    study = open_study(STUDY, storage)
    trials = study.trials
    counts: dict[str, int] = {}
    for trial in trials:
        record = TrialRecord.of(trial)
        name = record.state_name(trial)
        if name == "pruned" and (record.reason or "").startswith("not learning"):
            name = "not learning"
        counts[name] = counts.get(name, 0) + 1
    complete = [t for t in trials if t.value is not None]
    best = max(complete, key=lambda t: t.value) if complete else None
    dataset = DatasetRecord.of(study)
    classes = dataset.classes if dataset is not None else 0
    comparisons = [TrialRecord.of(t).pruned_by for t in trials]
    comparisons = [c for c in comparisons if c is not None]
    baseline = study.user_attrs.get("baseline", {})
    return {"counts": counts, "trials": len(trials),
            "best_dev_f1": best.value if best else None,
            "best_trial": best.number if best else None,
            "best_params": best.params if best else None,
            "baseline_dev_f1": baseline.get("dev_macro_f1"),
            "first_trial": first_epoch(trials[0], classes) if trials else None,
            "pruned_on_evidence": len(comparisons),
            "pruned_within_noise": sum(not c["value"] < c["bar"] - c["margin"]
                                       for c in comparisons)}


def first_epoch(trial: Any, classes: int) -> dict[str, Any]:
    """The first trial's report at its first epoch's end: its last report within the first
    epoch_docs documents (the grid point the epoch's end reached, see han.train.ReportGrid)."""
    record = TrialRecord.of(trial)
    steps = [s for s in trial.intermediate_values if record.epoch_docs and s <= record.epoch_docs]
    step = max(steps) if steps else None
    value = trial.intermediate_values.get(step) if step else None
    noise = (record.report_noise or {}).get(step, 0.0) if step else 0.0
    return {"number": trial.number, "from_data": record.from_data, "value": value,
            "noise": noise, "chance": chance_f1(classes),
            "out_of_chance": value is not None and above_chance(value, noise, classes)}


def bench_corpus(name: str, data: Path, tokens: str | None, args: argparse.Namespace
                 ) -> dict[str, Any]:
    folder = args.out / name
    if args.records_only:  # the run and exports are on disk: read the records again
        result = json.loads((folder / "results.json").read_text())
        result |= records_of(f"sqlite:///{folder}/han-search.db")
        (folder / "results.json").write_text(json.dumps(result, indent=2, default=str))
        return result
    folder.mkdir(parents=True, exist_ok=False)
    for file in ("train.tsv", "test.tsv"):
        (folder / file).symlink_to((data / file).resolve())
    command = ([str(args.checkout / ".venv/bin/han-search")] if args.checkout
               else han_search_command())
    flags = ["--tokens", tokens] if tokens else []
    run = [*command, "run", "--train", "train.tsv", "--test", "test.tsv", "--timeout",
           str(args.timeout), "--device", "cpu", *flags]
    code, seconds, peak = run_sampled(run, folder, folder / "run.log")
    if code:
        raise SystemExit(f"{name}: han-search run exited {code}; see {folder / 'run.log'}")
    labels = pd.read_csv(data / "test_labels.csv")["label"].astype(str).to_numpy()
    result: dict[str, Any] = {"corpus": name, "run_seconds": seconds, "peak_mb": peak / 2**20}
    exported = {}
    for kind, extra in (("han", []), ("blend", ["--blend"])):
        out = folder / f"{kind}.csv"
        started = time.perf_counter()
        done = subprocess.run([*command, "export-best", "--study", STUDY, "--out", str(out),
                               "--device", "cpu", *extra], cwd=folder, capture_output=True,
                              text=True)
        (folder / f"export-{kind}.log").write_text(done.stdout + done.stderr)
        if done.returncode == 0:
            exported[kind] = scored(out, labels)
            result[f"{kind}_export_seconds"] = time.perf_counter() - started
    storage = f"sqlite:///{folder}/han-search.db"
    result |= {"han_test_f1": exported.get("han", (None,))[0],
               "han_class_f1": exported.get("han", (None, None))[1],
               "blend_test_f1": exported.get("blend", (None,))[0],
               "baseline_test_f1": baseline_test_f1(folder, storage, labels),
               **records_of(storage)}
    (folder / "results.json").write_text(json.dumps(result, indent=2, default=str))
    return result


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def table(results: list[dict[str, Any]]) -> str:
    rows = ["| corpus | trials | best HAN dev | baseline dev | HAN test | blend test | "
            "baseline test | first trial, epoch 1 | pruned on evidence (within noise) | "
            "class at F1 0 | peak MB | run |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        counts = ", ".join(f"{n} {state}" for state, n in sorted(r["counts"].items()))
        first = r["first_trial"] or {}
        epoch1 = (f"{_f(first.get('value'))} ± {first.get('noise', 0):.3f} vs guess "
                  f"{first.get('chance', 0):.3f}: "
                  f"{'out of chance' if first.get('out_of_chance') else 'AT CHANCE'}")
        zeros = [c for c, f1 in (r["han_class_f1"] or {}).items() if f1 == 0.0]
        rows.append(
            f"| {r['corpus']} | {r['trials']}: {counts} | {_f(r['best_dev_f1'])} | "
            f"{_f(r['baseline_dev_f1'])} | {_f(r['han_test_f1'])} | {_f(r['blend_test_f1'])} | "
            f"{_f(r['baseline_test_f1'])} | {epoch1} | {r['pruned_on_evidence']} "
            f"({r['pruned_within_noise']}) | {', '.join(zeros) or 'none'} | "
            f"{r['peak_mb']:,.0f} | {r['run_seconds'] / 60:.1f} min |")
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", action="append", required=True,
                        help="NAME=DIR or NAME=DIR:TOKENS (DIR holds train.tsv, test.tsv, "
                        "test_labels.csv)")
    parser.add_argument("--timeout", type=float, default=2400.0)
    parser.add_argument("--no-bf16", action="store_true",
                        help="hold oneDNN and ATen to AVX2: a CPU without bf16 (fp32)")
    parser.add_argument("--checkout", type=Path,
                        help="run this checkout's han-search (DIR/.venv/bin/han-search)")
    parser.add_argument("--out", type=Path, default=Path("bench-real-text"))
    parser.add_argument("--records-only", action="store_true",
                        help="no run: read the run's records in OUT again and print the table")
    args = parser.parse_args()
    if args.no_bf16:
        os.environ.update(NO_BF16)
    results = []
    for corpus in args.corpus:
        name, _, where = corpus.partition("=")
        path, _, tokens = where.partition(":")
        results.append(bench_corpus(name, Path(path), tokens or None, args))
    print(f"{cpu_name()}, {os.cpu_count()} cores, "
          f"{'oneDNN/ATen held to AVX2 (fp32)' if args.no_bf16 else 'native arithmetic'}; "
          f"--timeout {args.timeout:.0f}; han-search from {args.checkout or 'this checkout'}")
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
