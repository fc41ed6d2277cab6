#!/usr/bin/env python3
"""How to choose the pruner of bench/reports_inside_epochs.py: record whole learning curves
once, then replay them through pruners offline.

Per seed, runs bench/reports_inside_epochs.py's study once with no pruner and reports every
0.2 epoch (the real command, in DIR/seed-N; an existing recording is reused), so every one of
the 20 configurations leaves its whole curve in the Optuna storage. Training is
deterministic and the random sampler draws the same configurations whatever is pruned, so
feeding a curve to a pruner step by step and stopping where it says predicts a real run's
decisions, for both variants of bench/reports_inside_epochs.py: reports every 0.2 epoch, or
only at epoch ends (the curve's points at whole epochs, which score the full dev fold in
both). For its pruner on seeds 0-4 its predictions and the real runs' documents agreed
(README: "Reports inside an epoch").

Prints, per pruner setting and seed, the documents trained with reports inside epochs as a
share of those trained with reports at epoch ends under the same rule (the criterion of
bench/reports_inside_epochs.py) and of those trained with no pruning at all (a rule that
rarely prunes at epoch ends makes the first share look small), and the change in the best
dev F1; the last column is the worst seed. bench/reports_inside_epochs.py then measures the
chosen setting for real.

Usage:  python bench/pruner_replay.py [--seeds 0 1 2 3 4] [--keep DIR]
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo's packages

import optuna
from optuna.trial import FrozenTrial, TrialState

from bench.reports_inside_epochs import FIXED, REPORT_EVERY, run_variant
from han.synthetic import SyntheticSpec, write_corpus
from search.records import TrialRecord
from search.stores.optuna_storage import open_study
from search.studyfile import load_study_file
from search.studyfile.spec import StudySpec


@dataclass(frozen=True)
class Pool:
    curves: list[FrozenTrial]  # the complete trials, in their order
    spec: StudySpec  # the recording's study file
    epoch_docs: int  # training documents per epoch

    @property
    def unpruned_docs(self) -> int:
        """Training documents of all the curves, none pruned."""
        return sum(max(curve.intermediate_values) for curve in self.curves)


@dataclass(frozen=True)
class Replay:
    docs: int  # training documents seen by all trials
    best: float  # the best complete trial's value


def record(folder: Path, *, train: Path, seed: int, trials: int, epochs: int) -> Pool:
    """Whole curves of `trials` seeded random configurations, recorded once in `folder`."""
    storage = folder / "han-search.db"
    if not storage.exists():
        args = argparse.Namespace(epochs=epochs, trials=trials, sampler="random", seed=seed)
        run_variant(train, folder, args=args, report_every=REPORT_EVERY,
                    pruner={"name": "none"})
    found = open_study("reports", f"sqlite:///{storage}").trials
    complete = [t for t in found if t.state == TrialState.COMPLETE]
    if len(complete) != trials:
        sys.exit(f"{folder}: {len(complete)} of {trials} trials complete; see its run.log")
    epoch_docs = TrialRecord.of(complete[0]).epoch_docs
    if not epoch_docs:
        sys.exit(f"{folder}: the recording has no epoch size")
    return Pool(curves=complete, spec=load_study_file(folder / "study.toml"),
                epoch_docs=epoch_docs)


def replay(pool: Pool, setting: dict[str, object], *, inside: bool) -> Replay:
    """The decisions the pruner `setting` describes takes on the pool's curves in their
    order: reports at every recorded step (`inside`) or at whole epochs only. As in a run
    (search.session.trial), the last epoch's report is never pruned."""
    pruner = replace(pool.spec, pruner=setting).in_documents(pool.epoch_docs).make_pruner()
    study = optuna.create_study(direction="maximize", pruner=pruner)
    docs, best = 0, float("-inf")
    for curve in pool.curves:
        trial = study.ask()
        steps = sorted(step for step in curve.intermediate_values
                       if inside or step % pool.epoch_docs == 0)
        for step in steps:
            trial.report(curve.intermediate_values[step], step)
            if step != steps[-1] and trial.should_prune():
                study.tell(trial, state=TrialState.PRUNED)
                docs += step
                break
        else:
            study.tell(trial, curve.value)
            docs += steps[-1]
            best = max(best, curve.value)
    return Replay(docs=docs, best=best)


def settings() -> list[dict[str, object]]:
    """The rules tried: Optuna's percentile rule (the field: complete trials, after one) and
    search.pruners' field_percentile (the field: every trial that reported at the step),
    keeping the top fifth, third or half, first check at 0.2 or 0.4 epoch, then at every
    report, every other one or once an epoch."""
    startup = {"percentile": 1, "field_percentile": 0}
    return [{"name": name, "percentile": keep, "n_startup_trials": startup[name],
             "n_warmup_steps": first, "interval_steps": every}
            for name, keep, first, every in itertools.product(
                ("percentile", "field_percentile"), (20.0, 33.0, 50.0),
                ("0.2 epochs", "0.4 epochs"), ("0.2 epochs", "0.4 epochs", "1 epochs"))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=20_000)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (and "
                                                  "reuse its recordings)")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    folder = args.keep or Path(tempfile.mkdtemp(prefix="han-replay-"))
    corpus = folder / "corpus"
    train = corpus / "train.tsv"
    if not train.exists():
        train, _ = write_corpus(SyntheticSpec(n_train=args.docs, n_test=0), corpus)
    pools = {seed: record(folder / f"seed-{seed}", train=train, seed=seed,
                          trials=args.trials, epochs=args.epochs) for seed in args.seeds}
    print(f"fixed {FIXED}; {args.trials} trials x {args.epochs} epochs; reports every "
          f"{REPORT_EVERY}. Cells: documents with reports inside epochs as a share of those "
          f"at epoch ends (same rule) and of those with no pruning; best F1 change")
    header = f"{'rule':<16} {'keep':>4} {'first':>5} {'every':>5}"
    print(header + "".join(f" {'seed ' + str(s):>19}" for s in args.seeds)
          + f" {'worst':>19}")
    for setting in settings():
        cells, worst_share, worst_whole, worst_change = [], 0.0, 0.0, float("inf")
        for pool in pools.values():
            runs = [replay(pool, setting, inside=inside) for inside in (False, True)]
            share, change = runs[1].docs / runs[0].docs, runs[1].best - runs[0].best
            whole = runs[1].docs / pool.unpruned_docs
            worst_share, worst_change = max(worst_share, share), min(worst_change, change)
            worst_whole = max(worst_whole, whole)
            cells.append(f"{share:4.0%} {whole:4.0%} {change:+.3f}")
        first = str(setting["n_warmup_steps"]).split()[0]
        every = str(setting["interval_steps"]).split()[0]
        print(f"{setting['name']:<16} {setting['percentile']:>4.0f} {first:>5} {every:>5}"
              + "".join(f" {c:>19}" for c in cells)
              + f" {worst_share:4.0%} {worst_whole:4.0%} {worst_change:+.3f}")
    print(f"recordings in {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
