"""Which arithmetic "auto" picks: bf16 only where it was measured faster."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from han.device import CUDA_BF16_MIN_BATCH, check_precision, native_bf16, resolve_device, use_bf16
from han.errors import DeviceError

CPUINFO = Path("/proc/cpuinfo")


@pytest.mark.skipif(not CPUINFO.exists(), reason="reads the CPU's flags from /proc/cpuinfo")
def test_native_bf16_follows_the_cpu_flags() -> None:
    # A CPU with plain AVX-512 emulates bf16 (oneDNN accepts it, several times slower than
    # fp32): only avx512_bf16 or AMX count.
    flags = set(re.findall(r"\b(avx512_bf16|amx_tile)\b", CPUINFO.read_text()))
    assert native_bf16() == bool(flags)
    assert use_bf16(torch.device("cpu"), "auto") == bool(flags)


def test_explicit_precision_wins() -> None:
    for device in (torch.device("cpu"), torch.device("cuda")):
        assert use_bf16(device, "bf16") and not use_bf16(device, "fp32")


def test_a_device_this_machine_cannot_give_is_one_line() -> None:
    with pytest.raises(DeviceError, match=r"^device 'gpu0': expected auto, cpu, cuda or"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match=r"^device 'cuda:1': CUDA is not available"):
            resolve_device("cuda:1")
    assert resolve_device("cpu") == torch.device("cpu")


def test_bf16_is_refused_only_where_it_cannot_run() -> None:
    cpu = torch.device("cpu")
    check_precision(cpu, "fp32")
    check_precision(cpu, "auto")
    if torch.ops.mkldnn._is_mkldnn_bf16_supported():
        check_precision(cpu, "bf16")
    else:  # no AVX-512: the LSTM's oneDNN primitive fails to build in bf16
        with pytest.raises(DeviceError, match=r"^precision bf16: this CPU cannot run"):
            check_precision(cpu, "bf16")


def test_auto_on_a_gpu_takes_bf16_from_large_batches_on() -> None:
    cuda = torch.device("cuda")  # a device object needs no GPU
    assert not use_bf16(cuda, "auto", batch_size=16)
    assert not use_bf16(cuda, "auto", batch_size=CUDA_BF16_MIN_BATCH - 1)
    assert use_bf16(cuda, "auto", batch_size=CUDA_BF16_MIN_BATCH)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_training_on_a_gpu_matches_the_cpu_path(tmp_path: Path) -> None:
    # On a GPU the step reads the loss back only every CHECK_EVERY batches and keeps the
    # predictions on the device until the epoch ends; the epoch's figures are the same kind.
    from han.batching import prepare
    from han.config import DataConfig, TrainConfig
    from han.io import read_corpus
    from han.train import train
    from tests.conftest import easy_corpus
    from tests.test_train import small_model

    data = DataConfig(seg_len=16, max_segments=4, folds=4, min_count=1)
    split = prepare(read_corpus(easy_corpus(tmp_path / "train.tsv"), labelled=True), data)
    reports = []
    result = train(split, model_config=small_model(split), data_config=data,
                   train_config=TrainConfig(epochs=3, batch_size=8, lr=1e-2, device="cuda",
                                            report_every=60),
                   checkpoint_dir=tmp_path / "run", on_report=reports.append)
    assert result.best_dev_f1 > 0.8
    assert [r.step for r in reports if r.end_of_epoch] == [180, 360, 540]


def test_releasing_host_memory_frees_what_a_reference_cycle_holds() -> None:
    # A pruned trial's traceback keeps its frames, and so its model, in a reference cycle,
    # which only the garbage collector frees (held off here, as between its rare passes).
    import gc
    import weakref

    from han.device import release_host_memory

    class Holder:
        pass

    holder = Holder()
    holder.self = holder  # type: ignore[attr-defined]
    holder.tensor = torch.zeros(1000)  # type: ignore[attr-defined]
    alive = weakref.ref(holder)
    gc.disable()
    try:
        del holder
        assert alive() is not None
        release_host_memory()
        assert alive() is None
    finally:
        gc.enable()
