"""Several worker processes on one machine sharing one study through its storage.

Each worker is a plain `han-search run` process: the same code path as a worker started by
hand on another machine, so the one-machine and many-machine setups cannot drift apart.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any

import torch


@dataclass(frozen=True)
class WorkerPlan:
    index: int
    trials: int | None  # None: as many as the worker's --timeout holds
    threads: int
    device: str


def gpus_for(device: str) -> int:
    """CUDA devices a run on `device` may spread its workers over."""
    return torch.cuda.device_count() if device in ("auto", "cuda") else 0


def plan_workers(*, workers: int, trials: int | None, device: str, threads: int | None = None,
                 cpu_count: int | None = None, per_gpu: int = 1,
                 gpu_count: int | None = None) -> list[WorkerPlan]:
    """Split the trials exactly (no lost or extra trial) and the devices fairly. `trials`
    None (a run under --timeout alone): every worker trains until the timeout.

    With GPUs (`gpu_count`, default: what `device` can use), workers fill them `per_gpu` at
    a time: workers 0..K-1 on cuda:0, the next K on cuda:1, and round again when there are
    more workers than K x GPUs. A small model leaves most of a large GPU idle, so several
    trials share one. On CPU the workers share the cores evenly, since two workers each
    running every core's worth of threads slow each other down many times over.
    """
    cores = cpu_count or os.cpu_count() or 1
    gpus = gpus_for(device) if gpu_count is None else gpu_count
    plans = []
    for index in range(workers):
        share = None if trials is None else (
            trials // workers + (1 if index < trials % workers else 0))
        worker_device = f"cuda:{index // per_gpu % gpus}" if gpus else device
        plans.append(WorkerPlan(index=index, trials=share,
                                threads=threads or max(1, cores // workers),
                                device=worker_device))
    return [plan for plan in plans if plan.trials is None or plan.trials > 0]


def run_workers(plans: Sequence[WorkerPlan], base_args: Sequence[str], *,
                env: Mapping[str, str] | None = None, out: IO[str] | None = None) -> int:
    """Start one `han-search run` per plan, prefix their output, wait for all.

    SIGINT and SIGTERM are passed on, so every worker stops at its next batch boundary.
    Returns the first non-zero exit code, or 0. `env` is added to the workers' environment
    (secrets go there rather than on command lines that `ps` shows).
    """
    env = {**os.environ, **(env or {})}
    out = out or sys.stdout
    lock = threading.Lock()
    processes: list[subprocess.Popen[str]] = []
    for plan in plans:
        trials = [] if plan.trials is None else ["--trials", str(plan.trials)]
        args = [sys.executable, "-m", "search.cli", "run", *base_args, *trials,
                "--threads", str(plan.threads),
                "--device", plan.device, "--worker-index", str(plan.index)]
        # Own process group: a terminal's Ctrl-C reaches the workers once, through pass_on
        # below, rather than twice (a second signal means "stop at once").
        processes.append(subprocess.Popen(args, stdout=subprocess.PIPE,
                                          stderr=subprocess.STDOUT, text=True, bufsize=1,
                                          env=env, process_group=0))

    def forward(process: subprocess.Popen[str], index: int) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            with lock:
                out.write(f"[w{index}] {line}")
                out.flush()

    readers = [threading.Thread(target=forward, args=(p, plan.index), daemon=True)
               for p, plan in zip(processes, plans, strict=True)]
    for reader in readers:
        reader.start()

    def pass_on(signum: int, frame: Any) -> None:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signum)

    previous = {sig: signal.signal(sig, pass_on) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        codes = [process.wait() for process in processes]
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    for reader in readers:
        reader.join(timeout=5)
    return next((code for code in codes if code != 0), 0)
