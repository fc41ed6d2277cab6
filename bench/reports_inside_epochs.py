#!/usr/bin/env python3
"""What reports inside an epoch save: one study file run twice, with and without
`report_every`, on a generated corpus at the competition's document lengths.

Generates 20,000 documents (han.synthetic, the competition's length law: mean ~907 tokens),
writes a study file (a small space that a 2-core CPU can search in minutes, 2 epochs), then
runs the real command

    han-search run --config STUDY --trials 20 --device cpu

in a fresh folder per variant; the variants differ only in `report_every` ("0.2 epochs"
against none: one report per epoch). The sampler is random, seeded: both variants then train
the same 20 configurations, and differ only in when the pruner may stop them (with TPE, the
second variant's sampler would also learn from other evidence, and the comparison would mix
that in). The pruner is search.pruners' field_percentile rule: at 0.2 epoch and every 0.4
epoch after (0.6, 1.0, 1.4, 1.8), a trial whose best report is not in the top fifth of the
reports every other trial made at the same number of training documents (complete and
pruned ones) stops. Prints per variant: wall time, trials complete and pruned, training
documents seen by all trials, and the best dev macro-F1.

Usage:  python bench/reports_inside_epochs.py [--docs 20000] [--trials 20] [--seed 0] [--keep DIR]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo's packages

from optuna.trial import TrialState

from han.synthetic import SyntheticSpec, write_corpus
from search.formatting import duration
from search.records import TrialRecord
from search.stores.optuna_storage import open_study
from tests.helpers import han_search_command, study_toml

SPACE = {
    "word_hidden": {"type": "categorical", "choices": [16, 32]},
    "sent_hidden": {"type": "categorical", "choices": [16, 32]},
    "dropout": {"type": "float", "low": 0.0, "high": 0.4},
    "lr": {"type": "float", "low": 3e-4, "high": 3e-2, "log": True},
    "seg_len": {"type": "categorical", "choices": [16, 32]},
    "max_segments": {"type": "categorical", "choices": [2, 4]},
}
# The pruner's checks, its n_warmup_steps and interval_steps (see bench/pruner_replay.py for
# how they were chosen).
REPORT_EVERY = "0.2 epochs"  # the variant with reports inside epochs
FIRST_CHECK = "0.2 epochs"
CHECK_EVERY = "0.4 epochs"
KEEP_PERCENT = 20.0
FIXED = {"batch_size": 64, "embed_dim": 32, "min_count": 2, "patience": 2,
         "report_dev_docs": 1000}


def pruner_of(args: argparse.Namespace) -> dict[str, Any]:
    """The [pruner] table both variants share."""
    return {"name": "field_percentile", "percentile": args.keep_percent,
            "n_warmup_steps": args.first_check, "interval_steps": args.check_every}


def run_variant(train: Path, folder: Path, *, args: argparse.Namespace,
                report_every: str | None, pruner: dict[str, Any]) -> dict:
    """Runs the study in `folder` and sums up its trials."""
    folder.mkdir(parents=True, exist_ok=True)
    fixed = FIXED | {"epochs": args.epochs} | ({"report_every": report_every} if report_every
                                              else {})
    study = study_toml(folder / "study.toml", name="reports", train=train, trials=args.trials,
                       fixed=fixed, space=SPACE, pruner=pruner, sampler=args.sampler,
                       seed=args.seed)
    command = [*han_search_command(), "run", "--config", str(study), "--trials",
               str(args.trials), "--device", "cpu"]
    started = time.perf_counter()
    with (folder / "run.log").open("w") as log:
        code = subprocess.run(command, cwd=folder, stdout=log, stderr=subprocess.STDOUT).returncode
    seconds = time.perf_counter() - started
    found = open_study("reports", f"sqlite:///{folder}/han-search.db").trials
    docs = sum(max(t.intermediate_values, default=0) for t in found)
    complete = [t for t in found if t.state == TrialState.COMPLETE]
    epoch_docs = TrialRecord.of(found[0]).epoch_docs if found else None
    return {"report_every": report_every or "epoch end", "exit": code, "seconds": seconds,
            "complete": len(complete),
            "pruned": sum(t.state == TrialState.PRUNED for t in found),
            "docs": docs, "epoch_docs": epoch_docs,
            "best": max((t.value for t in complete), default=float("nan"))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=20_000)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--report-every", default=REPORT_EVERY)
    parser.add_argument("--first-check", default=FIRST_CHECK,
                        help="the pruner's first check (its n_warmup_steps)")
    parser.add_argument("--check-every", default=CHECK_EVERY,
                        help="the pruner's checks after the first (its interval_steps)")
    parser.add_argument("--keep-percent", type=float, default=KEEP_PERCENT,
                        help="a trial goes on while its best report is in this top percent "
                             "of the other trials' reports at the same step")
    parser.add_argument("--sampler", default="random",
                        help="random (default): both variants train the same configurations, "
                             "so they differ only in when the pruner may act")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="han-reports-"))
    train, _ = write_corpus(SyntheticSpec(n_train=args.docs, n_test=0), folder / "corpus")
    rows = [run_variant(train, folder / name, args=args, report_every=every,
                        pruner=pruner_of(args))
            for name, every in (("epoch-end", None), ("inside", args.report_every))]
    print(f"{'reports':<14} {'wall':>8} {'complete':>9} {'pruned':>7} {'docs trained':>13} "
          f"{'epochs':>7} {'best dev F1':>12}")
    for row in rows:
        epochs = row["docs"] / row["epoch_docs"] if row["epoch_docs"] else float("nan")
        print(f"{row['report_every']:<14} {duration(row['seconds']):>8} {row['complete']:>9} "
              f"{row['pruned']:>7} {row['docs']:>13,} {epochs:>7.2f} {row['best']:>12.4f}"
              + (f"  (exit {row['exit']})" if row["exit"] else ""))
    plain, reported = rows
    print(f"with reports inside epochs: {reported['docs'] / max(plain['docs'], 1):.0%} of the "
          f"documents, best dev F1 {reported['best'] - plain['best']:+.4f}; logs in {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
