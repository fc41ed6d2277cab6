"""Planning worker processes: trials split exactly, CPU cores shared, several workers per
GPU. Planned with a given GPU count, so it runs without one; a real GPU run is
bench/gpu_probe.py's."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from search.cli import app
from search.session.workers import plan_workers


def test_trials_are_split_exactly_and_cores_evenly() -> None:
    plans = plan_workers(workers=3, trials=10, device="cpu", cpu_count=6)
    assert [p.trials for p in plans] == [4, 3, 3]
    assert {p.threads for p in plans} == {2} and {p.device for p in plans} == {"cpu"}
    # A worker with no trial left is not started.
    assert len(plan_workers(workers=4, trials=2, device="cpu", cpu_count=4)) == 2


def test_one_worker_per_gpu_by_default() -> None:
    plans = plan_workers(workers=4, trials=8, device="cuda", gpu_count=4, cpu_count=16)
    assert [p.device for p in plans] == ["cuda:0", "cuda:1", "cuda:2", "cuda:3"]
    assert {p.threads for p in plans} == {4}


@pytest.mark.parametrize(("workers", "per_gpu", "gpus", "devices"), [
    (4, 2, 2, ["cuda:0", "cuda:0", "cuda:1", "cuda:1"]),
    (4, 4, 1, ["cuda:0"] * 4),
    (2, 2, 1, ["cuda:0", "cuda:0"]),
    # More workers than K x GPUs: round again.
    (6, 2, 2, ["cuda:0", "cuda:0", "cuda:1", "cuda:1", "cuda:0", "cuda:0"]),
])
def test_several_workers_share_a_gpu(workers: int, per_gpu: int, gpus: int,
                                     devices: list[str]) -> None:
    plans = plan_workers(workers=workers, trials=12, device="auto", per_gpu=per_gpu,
                         gpu_count=gpus, cpu_count=16)
    assert [p.device for p in plans] == devices
    assert sum(p.trials for p in plans) == 12


def test_no_gpu_means_the_named_device() -> None:
    plans = plan_workers(workers=2, trials=2, device="cpu", per_gpu=2, gpu_count=0,
                         cpu_count=2)
    assert [p.device for p in plans] == ["cpu", "cpu"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a CPU machine")
def test_workers_per_gpu_without_a_gpu_is_a_one_line_error(tmp_path) -> None:
    result = CliRunner().invoke(app, ["run", "--workers-per-gpu", "2", "--trials", "1",
                                      "--storage", f"sqlite:///{tmp_path}/o.db",
                                      "--tracking-uri", f"sqlite:///{tmp_path}/m.db"])
    assert result.exit_code == 2
    assert "--workers-per-gpu 2: no CUDA GPU for --device auto" in result.output
    assert not (tmp_path / "o.db").exists()


def test_a_timeout_alone_gives_every_worker_the_whole_time() -> None:
    plans = plan_workers(workers=3, trials=None, device="cpu", cpu_count=6)
    assert [p.trials for p in plans] == [None, None, None]
