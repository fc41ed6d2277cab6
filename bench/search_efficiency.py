#!/usr/bin/env python3
"""Whether the search spends its budget better than what a user would run without it: one
table per corpus, every arm with the same time budget on this machine, one run at a time.

The arms, each in a fresh folder on the corpus's train.tsv and test.tsv:

- `han-search`: the README's own-data command, no study file
  (`han-search run --train train.tsv --test test.tsv --timeout T`);
- `plain-optuna`: the same with `--config studies/plain-optuna.toml`: TPE and the median
  pruner at their defaults on per-epoch reports, 10 epochs with early stopping, the same
  space, no first trial from the data, no reference trial, no pausing, no shaped draws;
- `from-data`: `--config studies/from-data.toml`: the configuration derived from the data,
  trained alone to early stopping with the whole time to itself;
- `before` (with `--before DIR`): the README's command with another checkout's code (its
  folder on PYTHONPATH), for before/after figures.

Then `export-best` and `export-best --blend`, scored on the corpus's test_labels.csv.
Columns: the best dev macro-F1 at 10, 20 and the whole budget (from the trials' end times
against the command's start), test macro-F1 of both exports, where the budget went (seconds
of trials complete, pruned, skipped, stopped, paused, promoted, failed), trials, skipped
draws as a share of the draws, the paused trials never promoted, and peak memory of the
process tree. `--seed S` passes --seed S to every arm (a second sampler seed).
`--no-bf16` holds oneDNN and ATen to AVX2 (fp32, as a CPU without AVX512-BF16).
Results: OUT/CORPUS/ARM[-seedS]/ (run.log, rss.csv, results.json); `--records-only` reads
them again.

Usage:  python bench/search_efficiency.py --corpus r8=DIR [--corpus NAME=DIR ...]
        [--arms han-search plain-optuna from-data] [--timeout 2400] [--seed S]
        [--before DIR] [--no-bf16] [--out DIR] [--records-only]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the repo's packages

from optuna.trial import TrialState  # noqa: E402

from bench.budget import run_sampled  # noqa: E402
from bench.real_text import NO_BF16, baseline_test_f1, cpu_name, scored  # noqa: E402
from search.records import Outcome, TrialRecord  # noqa: E402
from search.stores.optuna_storage import open_study  # noqa: E402

STUDY = "train"  # the study a run on train.tsv is named after
ARMS = {"han-search": [], "plain-optuna": ["--config", str(ROOT / "studies/plain-optuna.toml")],
        "from-data": ["--config", str(ROOT / "studies/from-data.toml"), "--trials", "1"],
        "before": []}
MARKS = (600, 1200)  # the best so far at 10 and 20 minutes


def command(arm: str, args: argparse.Namespace) -> tuple[list[str], dict[str, str]]:
    """The han-search command line of an arm, and its environment."""
    env = dict(os.environ) | (NO_BF16 if args.no_bf16 else {})
    if arm == "before":
        env["PYTHONPATH"] = str(args.before)
    return [sys.executable, "-m", "search.cli"], env


def run_arm(name: str, data: Path, arm: str, args: argparse.Namespace) -> dict[str, Any]:
    folder = args.out / name / (arm + ("" if args.seed is None else f"-seed{args.seed}"))
    if args.records_only:
        result = json.loads((folder / "results.json").read_text())
        result |= records_of(f"sqlite:///{folder}/han-search.db", result["started"],
                             args.timeout)
        (folder / "results.json").write_text(json.dumps(result, indent=2, default=str))
        return result
    folder.mkdir(parents=True, exist_ok=False)
    for file in ("train.tsv", "test.tsv"):
        (folder / file).symlink_to((data / file).resolve())
    base, env = command(arm, args)
    seed = [] if args.seed is None else ["--seed", str(args.seed)]
    run = [*base, "run", *ARMS[arm], "--train", "train.tsv", "--test", "test.tsv",
           "--timeout", str(args.timeout), "--device", "cpu", *seed]
    started = time.time()
    # rss.csv: the process tree's memory over time, against run.log's seconds, to tell what
    # a peak belongs to.
    code, seconds, peak = run_sampled(run, folder, folder / "run.log",
                                      timeline=folder / "rss.csv", env=env)
    if code:
        raise SystemExit(f"{name} {arm}: han-search run exited {code}; see {folder}/run.log")
    labels = pd.read_csv(data / "test_labels.csv")["label"].astype(str).to_numpy()
    result: dict[str, Any] = {"corpus": name, "arm": arm, "seed": args.seed,
                              "started": started, "run_seconds": seconds,
                              "peak_mb": peak / 2**20, "cpu": cpu_name(),
                              "no_bf16": args.no_bf16}
    for kind, extra in (("han", []), ("blend", ["--blend"])):
        out = folder / f"{kind}.csv"
        done = subprocess.run([*base, "export-best", "--study", STUDY, "--out", str(out),
                               "--device", "cpu", *extra], cwd=folder, capture_output=True,
                              text=True, env=env)
        (folder / f"export-{kind}.log").write_text(done.stdout + done.stderr)
        result[f"{kind}_test_f1"] = scored(out, labels)[0] if done.returncode == 0 else None
    storage = f"sqlite:///{folder}/han-search.db"
    result["baseline_test_f1"] = baseline_test_f1(folder, storage, labels)
    result |= records_of(storage, started, args.timeout)
    (folder / "results.json").write_text(json.dumps(result, indent=2, default=str))
    return result


def kind(trial: Any) -> str:
    """Where a trial's time went: its budget outcome, a promotion, or its Optuna state."""
    record = TrialRecord.of(trial)
    if record.promoted_from is not None:
        return "promoted"
    if record.outcome is not None:
        return str(record.outcome)
    return {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned",
            TrialState.FAIL: "failed"}.get(trial.state, "other")


def records_of(storage: str, started: float, timeout: float) -> dict[str, Any]:
    """The run's own records: the best dev macro-F1 at each mark, where the time went, its
    trials, skipped draws, paused trials never promoted."""
    trials = open_study(STUDY, storage).trials
    finished = [t for t in trials if t.datetime_complete is not None]
    best_at = {}
    for mark in (*MARKS, timeout):
        values = [t.value for t in finished if t.value is not None
                  and t.datetime_complete.timestamp() - started <= mark + 1]
        best_at[str(int(mark))] = max(values, default=None)
    split: dict[str, float] = {}
    for trial in finished:
        seconds = trial.duration.total_seconds() if trial.duration else 0.0
        split[kind(trial)] = split.get(kind(trial), 0.0) + seconds
    draws = [t for t in finished if not TrialRecord.of(t).from_data
             and not TrialRecord.of(t).reference and TrialRecord.of(t).promoted_from is None
             and TrialRecord.of(t).retry_of is None]
    skipped = sum(TrialRecord.of(t).outcome is Outcome.SKIPPED for t in draws)
    promoted = {TrialRecord.of(t).promoted_from for t in trials}
    unpromoted = [t.number for t in trials if TrialRecord.of(t).outcome is Outcome.PAUSED
                  and t.number not in promoted]
    best = max((t for t in finished if t.value is not None), key=lambda t: t.value,
               default=None)
    return {"best_at": best_at, "split": split, "trials": len(trials),
            "draws": len(draws), "skipped_draws": skipped, "paused_unpromoted": unpromoted,
            "reshaped": sum(TrialRecord.of(t).reshaped is not None for t in trials),
            "best_trial": None if best is None else best.number,
            "best_noise": None if best is None else _best_noise(best)}


def _best_noise(trial: Any) -> float | None:
    """The noise of a trial's best report."""
    noise = TrialRecord.of(trial).report_noise or {}
    steps = [s for s, v in trial.intermediate_values.items() if v == trial.value]
    return noise.get(steps[-1]) if steps else None


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def table(results: list[dict[str, Any]], timeout: float) -> str:
    marks = [str(m) for m in (*MARKS, int(timeout))]
    kinds = ("complete", "pruned", "skipped", "stopped", "paused", "promoted", "failed")
    lines = [f"| arm | best dev at {' / '.join(f'{int(m) // 60} min' for m in marks)} | "
             "test HAN | test blend | test baseline | seconds: " + " / ".join(kinds)
             + " | trials (skipped draws) | paused, not promoted | peak MB |",
             "|---" * 9 + "|"]
    for r in results:
        seed = "" if r["seed"] is None else f" (seed {r['seed']})"
        lines.append(
            f"| {r['arm']}{seed} | {' / '.join(_f(r['best_at'].get(m)) for m in marks)} | "
            f"{_f(r['han_test_f1'])} | {_f(r['blend_test_f1'])} | "
            f"{_f(r['baseline_test_f1'])} | "
            + " / ".join(f"{r['split'].get(k, 0):.0f}" for k in kinds)
            + f" | {r['trials']} ({r['skipped_draws']} of {r['draws']}) | "
            f"{', '.join(map(str, r['paused_unpromoted'])) or 'none'} | {r['peak_mb']:,.0f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", action="append", required=True, metavar="NAME=DIR")
    parser.add_argument("--arms", nargs="+", default=["han-search", "plain-optuna",
                                                      "from-data"], choices=list(ARMS))
    parser.add_argument("--timeout", type=float, default=2400)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--before", type=Path, help="another checkout, for the arm `before`")
    parser.add_argument("--no-bf16", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("search-efficiency"))
    parser.add_argument("--records-only", action="store_true")
    args = parser.parse_args()
    if "before" in args.arms and args.before is None:
        parser.error("the arm `before` needs --before DIR")
    for spec in args.corpus:
        name, folder = spec.split("=", 1)
        results = [run_arm(name, Path(folder), arm, args) for arm in args.arms]
        print(f"\n### {name} ({results[0]['cpu']}, "
              f"{'fp32, held to AVX2' if args.no_bf16 else 'native arithmetic'}, "
              f"{time.strftime('%Y-%m-%d')})\n")
        print(table(results, args.timeout), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
