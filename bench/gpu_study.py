"""Study throughput on one CUDA GPU: trials per hour with K = 1, 2 and 4 workers sharing it.

    python bench/gpu_study.py [--docs 30000] [--epochs 3] [--window 120] [--ks 1 2 4]

For each K it starts `han-search run --workers-per-gpu K` on a fresh study (its own Optuna
and MLflow SQLite files) of `studies/tianchi.toml`'s search space over a generated corpus of
the competition's document lengths, with the baseline off and `--epochs` epochs a trial.
After `--window` seconds it sends SIGTERM, so each running trial stops at its next batch,
and counts the trials that finished (complete or pruned) inside the window; nvidia-smi
samples the GPU's utilisation and memory meanwhile. One JSON line per K (also written to
$OUT/gpu_study.jsonl when OUT is set), then a table.

A trial of the full competition data takes tens of minutes to an hour, so trials per hour
at that scale cannot be measured in minutes: this measures them on a smaller corpus, where
the ratio between K = 1, 2 and 4 is what carries over. The GPU machines cannot install
packages: bring the wheels of `bash bench/gpu_wheels.sh` (in .whl/) and run

    pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && \
        PYTHONPATH=/tmp/site python3 bench/gpu_study.py

`--device cpu` runs the same machinery with `--workers K` on the CPU (a dry run).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import optuna

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from han.synthetic import SyntheticSpec, write_corpus  # noqa: E402

STUDY_FILE = ROOT / "studies" / "tianchi.toml"
FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


def study_file_text(*, epochs: int) -> str:
    """tianchi.toml with the baseline off, `epochs` epochs (the pruner's last rung too) and
    no test file (the competition's is not on the GPU machine; --train names the corpus)."""
    text = STUDY_FILE.read_text(encoding="utf-8")
    edits = [
        ("[study]\n", "[study]\nbaseline = false\n"),
        ("[fixed]\n", f"[fixed]\nepochs = {epochs}\n"),
        ('max_resource = "20 epochs"', f'max_resource = "{epochs} epochs"'),
        ('test = "data/test_a.csv"\n', ""),
    ]
    for old, new in edits:
        if text.count(old) != 1:
            raise SystemExit(f"{STUDY_FILE}: expected {old!r} once; update bench/gpu_study.py")
        text = text.replace(old, new)
    return text


class GpuSampler:
    """nvidia-smi's utilisation (%) and memory used (MiB), twice a second, in a thread."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []
        try:
            self.process: subprocess.Popen[str] | None = subprocess.Popen(
                ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used",
                 "--format=csv,noheader,nounits", "-lms", "500"],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        except FileNotFoundError:
            self.process = None
            return
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            fields = [f.strip() for f in line.split(",")]
            if len(fields) == 2 and all(re.fullmatch(r"[\d.]+", f) for f in fields):
                self.samples.append((float(fields[0]), float(fields[1])))

    def stop(self) -> dict[str, float | None]:
        if self.process is None:
            return {"gpu_util_mean": None, "gpu_mem_max_mib": None}
        self.process.terminate()
        self.thread.join(timeout=5)
        if not self.samples:
            return {"gpu_util_mean": None, "gpu_mem_max_mib": None}
        return {"gpu_util_mean": round(sum(u for u, _ in self.samples) / len(self.samples), 1),
                "gpu_mem_max_mib": max(m for _, m in self.samples)}


def run_window(*, k: int, train: Path, study_file: Path, work: Path, device: str,
               window: float) -> dict[str, object]:
    """One study of K workers for `window` seconds; its figures."""
    storage = f"sqlite:///{work / f'k{k}-optuna.db'}"
    share = ["--workers-per-gpu", str(k)] if device == "cuda" else ["--workers", str(k)]
    args = [sys.executable, "-m", "search.cli", "run", "--config", str(study_file),
            "--study", f"gpu-k{k}", "--train", str(train), "--trials", "10000",
            "--storage", storage, "--tracking-uri", f"sqlite:///{work / f'k{k}-mlflow.db'}",
            "--device", device, "--work-dir", str(work / f"k{k}-work"), *share]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [*os.environ.get("PYTHONPATH", "").split(os.pathsep), str(ROOT)]).strip(os.pathsep)}
    log = (work / f"k{k}.log").open("w")
    sampler = GpuSampler()
    started = time.time()
    process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=work)
    try:
        process.wait(timeout=window)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGTERM)
    stopped = time.time()
    try:
        process.wait(timeout=120)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    gpu = sampler.stop()
    log.close()
    try:
        trials = optuna.load_study(study_name=f"gpu-k{k}", storage=storage).get_trials(
            deepcopy=False)
    except KeyError:
        tail = (work / f"k{k}.log").read_text(errors="replace").splitlines()[-5:]
        raise SystemExit(f"K={k}: no study was created (exit {process.returncode}):\n"
                         + "\n".join(tail)) from None
    finished = [t for t in trials if t.state in FINISHED and t.datetime_complete is not None
                and t.datetime_complete.timestamp() <= stopped]
    starts = [t.datetime_start.timestamp() for t in trials if t.datetime_start is not None]
    # Trials per hour from the first trial's start: data loading and encoding, the same for
    # every K, are left out.
    first_start = min(starts, default=stopped)
    span = stopped - first_start
    by_state = {state.name.lower(): sum(t.state == state for t in trials)
                for state in optuna.trial.TrialState}
    return {
        "probe": "study", "k": k, "device": device, "window_s": round(stopped - started, 1),
        "startup_s": round(first_start - started, 1), "finished": len(finished),
        "complete": sum(t.state == optuna.trial.TrialState.COMPLETE for t in finished),
        "pruned": sum(t.state == optuna.trial.TrialState.PRUNED for t in finished),
        "failed": by_state["fail"], "trials_per_hour": round(len(finished) * 3600 / span, 1)
        if span > 0 else None,
        "best": max((t.value for t in finished if t.value is not None), default=None),
        "exit": process.returncode, **gpu,
        "at": datetime.now().isoformat(timespec="seconds"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=30_000, help="training documents generated")
    parser.add_argument("--epochs", type=int, default=3, help="epochs a trial at most")
    parser.add_argument("--window", type=float, default=120, help="seconds each K runs")
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 2, 4], help="workers per GPU")
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--work", type=Path, default=Path("/tmp/han-gpu-study"))
    options = parser.parse_args()

    options.work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    train, _ = write_corpus(SyntheticSpec(n_train=options.docs, n_test=0),
                            options.work / "corpus")
    print(f"generated {options.docs} documents in {time.perf_counter() - started:.0f}s",
          file=sys.stderr, flush=True)
    study_file = options.work / "study.toml"
    study_file.write_text(study_file_text(epochs=options.epochs), encoding="utf-8")
    out = Path(os.environ["OUT"]) / "gpu_study.jsonl" if os.environ.get("OUT") else None
    rows = []
    for k in options.ks:
        for stale in options.work.glob(f"k{k}-*.db"):
            stale.unlink()
        row = run_window(k=k, train=train, study_file=study_file, work=options.work,
                         device=options.device, window=options.window)
        rows.append(row)
        print(json.dumps(row), flush=True)
        if out is not None:
            with out.open("a") as sink:
                sink.write(json.dumps(row) + "\n")
            shutil.copy(options.work / f"k{k}.log", out.parent / f"gpu_study-k{k}.log")
    print(f"\n{'K':>2} {'window s':>9} {'finished':>9} {'complete':>9} {'pruned':>7} "
          f"{'failed':>7} {'trials/hour':>12} {'GPU util %':>11} {'GPU MiB':>8}")
    for r in rows:
        print(f"{r['k']:>2} {r['window_s']:>9} {r['finished']:>9} {r['complete']:>9} "
              f"{r['pruned']:>7} {r['failed']:>7} {r['trials_per_hour']!s:>12} "
              f"{r['gpu_util_mean']!s:>11} {r['gpu_mem_max_mib']!s:>8}")


if __name__ == "__main__":
    main()
