"""Where tensors run and in which arithmetic: the device, bf16 autocast and moving a batch there."""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import torch

from han.batching import Batch


def resolve_device(name: str) -> torch.device:
    """'auto' means the first CUDA device when there is one."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but CUDA is not available")
    return device


def use_bf16(device: torch.device, precision: str) -> bool:
    if precision != "auto":
        return precision == "bf16"
    if device.type == "cuda":
        return True
    return device.type == "cpu" and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def autocast(device: torch.device, *, bf16: bool) -> contextlib.AbstractContextManager[Any]:
    if bf16:
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def batch_tensors(batch: Batch, device: torch.device) -> tuple[torch.Tensor, ...]:
    arrays = (batch.tokens.astype(np.int64), batch.token_lengths, batch.seg_counts)
    tensors = tuple(torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64)) for a in arrays)
    if device.type == "cuda":
        return tuple(t.pin_memory().to(device, non_blocking=True) for t in tensors)
    return tensors
