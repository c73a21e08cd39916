"""Numeric precision of the training step: fp32 (strict, TF32 off), tf32, bf16 and fp16
autocast with fp32 master weights; fp16 adds a dynamic loss scaler.

Precision is not a model transform: it is the context the forward pass runs in and the way
the loss is scaled before backward. The loss itself is always computed in fp32.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import ContextManager

import torch

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Precision:
    name: str
    device: torch.device
    scaler: torch.amp.GradScaler | None

    def autocast(self) -> ContextManager:
        dtype = AUTOCAST_DTYPES.get(self.name)
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=dtype)


def apply_precision(name: str, device: torch.device) -> Precision:
    """Set the process-wide matmul mode for fp32/tf32 and build the autocast policy."""
    allow_tf32 = name == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = allow_tf32
    torch.backends.cudnn.allow_tf32 = allow_tf32
    torch.set_float32_matmul_precision("high" if allow_tf32 else "highest")
    scaler = torch.amp.GradScaler(device.type) if name == "fp16" else None
    return Precision(name, device, scaler)


def unsupported_reason(name: str, device: torch.device | str) -> str | None:
    device_type = torch.device(device).type
    if name == "tf32" and device_type != "cuda":
        return "tf32 is a CUDA tensor-core mode; on CPU it would be plain fp32"
    if name == "tf32" and torch.cuda.get_device_capability()[0] < 8:
        return "tf32 needs an NVIDIA GPU of compute capability 8.0 (Ampere) or newer"
    if name == "bf16" and device_type == "cuda" and not torch.cuda.is_bf16_supported():
        return "this GPU has no bf16 support"
    return None
