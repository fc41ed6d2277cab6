"""Which arithmetic "auto" picks: bf16 only where it was measured faster."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from han.device import CUDA_BF16_MIN_BATCH, native_bf16, use_bf16

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


def test_auto_on_a_gpu_takes_bf16_from_large_batches_on() -> None:
    cuda = torch.device("cuda")  # a device object needs no GPU
    assert not use_bf16(cuda, "auto", batch_size=16)
    assert not use_bf16(cuda, "auto", batch_size=CUDA_BF16_MIN_BATCH - 1)
    assert use_bf16(cuda, "auto", batch_size=CUDA_BF16_MIN_BATCH)
