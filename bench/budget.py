#!/usr/bin/env python3
"""A timed search on the issue-10 look-alike corpus: trials by outcome, best dev F1, wall
time against --timeout and the peak memory of the whole process tree.

Builds ~11,000 documents of ~350 tokens in 20 classes over >100,000 token ids
(han.synthetic_wide), then runs the real command

    han-search run --config STUDY --train wide.tsv --timeout T --device cpu

in a throw-away folder (its own Optuna and MLflow SQLite stores). STUDY is, unless --config
names one, the built-in demo study's search space and settings written for the generated
file (the demo's class names belong to the built-in corpus); with --plain no study file is
given at all. Peak memory: the largest sum of the process tree's resident sets, sampled
every 0.2 s, and the children's ru_maxrss (the largest single process).

Usage:  python bench/budget.py [--timeout 2400] [--docs 11000] [--keep DIR] [--plain]
        [--precision fp32] [--timeline]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo's packages

from han.io import load_corpus
from han.synthetic_wide import WideSpec, write_wide_corpus
from han.vocab import distinct_ids
from search.formatting import duration
from search.records import TrialRecord
from search.stores.optuna_storage import open_study
from search.studyfile import builtin_study_path, load_study_file
from tests.helpers import han_search_command, study_toml


def demo_study_for(train: Path, path: Path, precision: str | None = None) -> Path:
    """The built-in demo study's sampler, pruner, fixed settings, space and place of the
    reference trial, for `train` (with `precision` fixed, when given)."""
    spec = load_study_file(builtin_study_path())
    space = {p.name: p.model_dump(exclude_none=True) for p in spec.space}
    fixed = spec.fixed | ({"precision": precision} if precision else {})
    return study_toml(path, name="budget", train=train, trials=spec.trials, fixed=fixed,
                      space=space, pruner=spec.pruner, reference={},
                      reference_after=spec.reference_after,
                      seed=spec.sampler.get("seed", 0))


def _tree_rss(root: int) -> int:
    """Resident bytes of `root` and its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            pages = int(Path(f"/proc/{entry}/statm").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
        rss[int(entry)] = pages * os.sysconf("SC_PAGE_SIZE")
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo += children.get(pid, [])
    return total


def run_sampled(command: list[str], cwd: Path, log: Path, timeline: Path | None = None,
                env: dict[str, str] | None = None) -> tuple[int, float, int]:
    """Run `command`, its output to `log`: exit code, seconds, peak tree RSS in bytes. With
    `timeline`, every log line is prefixed with the seconds since the start and the tree's
    RSS is written there (seconds, MB) at every sample, to find what a peak belongs to."""
    peak = [0]
    started = time.perf_counter()
    samples = timeline.open("w") if timeline is not None else None
    with log.open("w") as out:
        process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, bufsize=1,
                                   env={**(env or os.environ), "PYTHONUNBUFFERED": "1"})

        def sample() -> None:
            while process.poll() is None:
                rss = _tree_rss(process.pid)
                peak[0] = max(peak[0], rss)
                if samples is not None:
                    samples.write(f"{time.perf_counter() - started:.1f},{rss / 2**20:.0f}\n")
                time.sleep(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        assert process.stdout is not None
        for line in process.stdout:
            prefix = f"[{time.perf_counter() - started:7.1f}s] " if timeline else ""
            out.write(prefix + line)
            out.flush()
        code = process.wait()
        sampler.join()
    if samples is not None:
        samples.close()
    return code, time.perf_counter() - started, peak[0]


def outcomes(storage: str) -> dict[str, Any]:
    study = open_study("budget", storage)
    counts = {"complete": 0, "pruned": 0, "stopped": 0, "skipped": 0, "failed": 0}
    for trial in study.trials:
        name = TrialRecord.of(trial).state_name(trial).replace("fail", "failed")
        counts[name] = counts.get(name, 0) + 1
    complete = [t for t in study.trials if t.value is not None]
    best = max(complete, key=lambda t: t.value) if complete else None
    reference = next((t for t in study.trials if TrialRecord.of(t).reference), None)
    return {"counts": counts, "best": best, "reference": reference}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=2400.0)
    parser.add_argument("--docs", type=int, default=WideSpec.docs)
    parser.add_argument("--config", type=Path, help="study file (default: the demo's)")
    parser.add_argument("--plain", action="store_true", help="no study file at all")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"),
                        help="fix the training arithmetic in the demo's study (fp32: the "
                        "path a CPU without AVX512-BF16 takes)")
    parser.add_argument("--timeline", action="store_true",
                        help="time-stamp the log and write memory.csv (seconds, MB)")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="han-budget-"))
    folder.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    train = write_wide_corpus(WideSpec(docs=args.docs), folder / "wide.tsv")
    corpus = load_corpus(train, labelled=True)
    print(f"corpus       {corpus.num_docs:,} docs, {corpus.num_classes} classes, "
          f"{distinct_ids(corpus.tokens):,} distinct ids, mean "
          f"{corpus.lengths.mean():.0f} tokens (written in {time.perf_counter() - started:.0f}s)")
    del corpus
    # Named, so the results are found whatever name the training file would give the study.
    command = [*han_search_command(), "run", "--train", str(train), "--timeout",
               str(args.timeout), "--device", "cpu", "--study", "budget"]
    if not args.plain:
        command += ["--config", str(args.config or demo_study_for(
            train, folder / "study.toml", args.precision))]
    elif args.precision:
        parser.error("--precision needs a study file: drop --plain")
    code, seconds, peak = run_sampled(command, folder, folder / "run.log",
                                      folder / "memory.csv" if args.timeline else None)
    print(f"run          {' '.join(command[1:])}: exit {code}, log {folder / 'run.log'}")
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    found = outcomes(f"sqlite:///{folder}/han-search.db")
    print("trials       " + ", ".join(f"{n} {state}" for state, n in found["counts"].items()))
    best, reference = found["best"], found["reference"]
    if best is not None:
        print(f"best dev F1  {best.value:.4f} (trial {best.number}: {best.params})")
    if reference is not None:
        record = TrialRecord.of(reference)
        value = f" {reference.value:.4f}" if reference.value is not None else ""
        print(f"reference    trial {reference.number} {record.state_name(reference)}{value}"
              f"{'; ' + record.reason if record.reason else ''}")
    print(f"wall time    {duration(seconds)} for --timeout {duration(args.timeout)} "
          f"({seconds - args.timeout:+.0f}s)")
    print(f"peak memory  {peak / 2**20:,.0f} MB (process tree, sampled); largest process "
          f"{children / 2**20:,.0f} MB (ru_maxrss)")
    return code


if __name__ == "__main__":
    sys.exit(main())
