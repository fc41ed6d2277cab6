"""Where tensors run and in which arithmetic: the device, bf16 autocast and moving a batch there."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import gc
from typing import Any

import numpy as np
import torch

from han.batching import Batch
from han.errors import DeviceError


def resolve_device(name: str) -> torch.device:
    """'auto' means the first CUDA device when there is one."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DeviceError(f"device {name!r}: expected auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            build = ("a CPU-only build" if torch.version.cuda is None
                     else f"built for CUDA {torch.version.cuda}, but finds no GPU")
            raise DeviceError(f"device {name!r}: CUDA is not available (torch "
                              f"{torch.__version__} is {build})")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(f"device {name!r}: this machine has "
                              f"{torch.cuda.device_count()} CUDA device(s)")
    return device


# Measured on an H200 at the reference configuration (bench/gpu_probe.py): bf16 autocast
# trained 611 / 2,344 / 5,760 docs/s at batch 16 / 64 / 256 against fp32's 1,038 / 2,698 /
# 4,591, so "auto" takes it from this batch size on.
CUDA_BF16_MIN_BATCH = 256


def native_bf16() -> bool:
    """Whether this CPU computes in bf16 natively (AVX512-BF16 or AMX) and oneDNN may use
    it. A CPU with plain AVX-512 only emulates it: oneDNN accepts bf16 there
    (`_is_mkldnn_bf16_supported` says yes) and its LSTMs then run several times slower
    than in fp32. oneDNN held below AVX-512 (ONEDNN_MAX_CPU_ISA=AVX2) cannot run bf16 at
    all, whatever the CPU has."""
    return _onednn_runs_bf16() and any(
        getattr(torch.cpu, probe, lambda: False)()
        for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))


def use_bf16(device: torch.device, precision: str, *, batch_size: int | None = None) -> bool:
    """Whether training runs under bf16 autocast: as `precision` says, or for "auto" where
    it was measured to be faster (a CPU with native bf16; a GPU from CUDA_BF16_MIN_BATCH
    documents a batch on)."""
    if precision != "auto":
        return precision == "bf16"
    if device.type == "cuda":
        return batch_size is None or batch_size >= CUDA_BF16_MIN_BATCH
    return device.type == "cpu" and native_bf16()


def check_precision(device: torch.device, precision: str) -> None:
    """Refuse bf16 where it cannot run at all, before any work: a CPU whose oneDNN has no
    bf16 (without AVX-512 the LSTM's primitive is not even created), a GPU without it."""
    if precision != "bf16":
        return
    if device.type == "cpu" and not _onednn_runs_bf16():
        raise DeviceError("precision bf16: this CPU cannot run the LSTMs in bf16 (oneDNN "
                          "needs AVX-512 for it); use fp32, or auto")
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise DeviceError(f"precision bf16: {torch.cuda.get_device_name(device)} has no "
                          "bf16; use fp32, or auto")


def _onednn_runs_bf16() -> bool:
    """oneDNN's own answer; a build without its probe (no oneDNN) is not second-guessed."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return True


def autocast(device: torch.device, *, bf16: bool) -> contextlib.AbstractContextManager[Any]:
    if bf16:
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


# On a CPU, a batch's segments tensor is padded to a multiple of these rows and columns
# (empty segments, which the model drops after the word encoder): oneDNN builds and caches
# a recurrent primitive for every (rows, width) it meets, and length-grouped batches meet
# hundreds. Measured on 11,000 documents (GRU, bf16, one epoch and a dev evaluation): 18
# shapes instead of 42, the process's peak 1,331 MB instead of 1,661 MB, and no slower (the
# padding's work is what the primitives no longer built would have cost).
CPU_ROW_MULTIPLE = 16
CPU_WIDTH_MULTIPLE = 8


def batch_tensors(batch: Batch, device: torch.device) -> tuple[torch.Tensor, ...]:
    """tokens (M', W'), token_lengths (M',) and seg_counts (B,) of `batch` on `device`; on
    a CPU, M' and W' are M and W rounded up (the extra rows have length 0)."""
    tokens, lengths = batch.tokens, batch.token_lengths
    if device.type == "cpu":
        tokens, lengths = _padded(tokens, lengths)
    arrays = (tokens.astype(np.int64), lengths, batch.seg_counts)
    tensors = tuple(torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64)) for a in arrays)
    if device.type == "cuda":
        return tuple(t.pin_memory().to(device, non_blocking=True) for t in tensors)
    return tensors


def _padded(tokens: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rows, width = tokens.shape
    padded_rows = -(-rows // CPU_ROW_MULTIPLE) * CPU_ROW_MULTIPLE
    padded_width = -(-width // CPU_WIDTH_MULTIPLE) * CPU_WIDTH_MULTIPLE
    if (padded_rows, padded_width) == (rows, width):
        return tokens, lengths
    grown = np.zeros((padded_rows, padded_width), dtype=tokens.dtype)  # PAD is 0
    grown[:rows, :width] = tokens
    return grown, np.concatenate([lengths, np.zeros(padded_rows - rows, lengths.dtype)])


def release_host_memory() -> None:
    """Free what the last trial left behind and hand the heap's free pages back to the
    system. First a full garbage collection: a trial that ends in an exception (pruned,
    skipped, stopped) leaves its frames in reference cycles through the traceback, and
    they hold its model and optimiser until the collector's oldest generation runs, which
    in a run of short trials is rarely. Measured on 11,000 documents (bench/budget.py), the
    live tensors of earlier trials grew by ~200 MB every few trials without it. Then
    `trim_heap`."""
    gc.collect()
    trim_heap()


def trim_heap() -> None:
    """Hand the heap's free pages back to the system (glibc's `malloc_trim`; elsewhere a
    no-op). glibc gives back only the free space at the top of its heap by itself, and a
    freed block below a live one stays resident. In a search run (MLflow and Optuna
    objects allocated between training batches) one trial's RSS climbed ~300 MB an epoch,
    and not in the trainer alone; the trainer trims at every report (1-6 ms a trim,
    measured), which lowers that climb without removing it (README: "A time budget")."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Any:
    """glibc's `malloc_trim`, looked up once (find_library runs ldconfig), or None."""
    name = ctypes.util.find_library("c")
    return None if name is None else getattr(ctypes.CDLL(name), "malloc_trim", None)
