"""Numeric precision of training.

    fp32       fp32 everywhere, TF32 off (strict: the baseline the "mixed precision is 6x" claims
               are made against)
    tf32       fp32 tensors, matmuls on TF32 tensor cores (CUDA, Ampere or newer)
    bf16       autocast to bf16; fp32 master weights, gradients and optimizer state
    fp16       autocast to fp16 with a dynamic loss scaler (GradScaler); its loss scale and
               skipped steps are recorded
    bf16-pure  weights, gradients and optimizer state in bf16, no fp32 master copy, no autocast
    fp8        torchao float8 training: Linear layers' matmuls in fp8 (dynamic tensorwise
               scaling), under bf16 autocast for the rest (CUDA, compute capability 8.9+)

Precision is partly a model transform (bf16-pure casts the weights, fp8 swaps the Linear
layers) and partly the context of the forward pass and the scaling of the loss. The loss
itself is always computed in fp32 (see harness.train.step).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import ContextManager

import torch
from torch import nn

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp8": torch.bfloat16}


@dataclass
class LossScaleLog:
    """What the fp16 loss scaler did: the scale after each optimizer step, skipped steps."""

    scales: list[float] = field(default_factory=list)
    skipped_steps: int = 0


@dataclass
class Precision:
    name: str
    device: torch.device
    scaler: torch.amp.GradScaler | None = None
    scale_log: LossScaleLog | None = None

    def autocast(self) -> ContextManager:
        dtype = AUTOCAST_DTYPES.get(self.name)
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=dtype)


def apply_precision(name: str, device: torch.device, fp16_init_scale: float = 2.0**16) -> Precision:
    """Set the process-wide fp32 matmul mode and build the step's precision policy."""
    allow_tf32 = name == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = allow_tf32
    torch.backends.cudnn.allow_tf32 = allow_tf32
    torch.set_float32_matmul_precision("high" if allow_tf32 else "highest")
    if name == "fp16":
        scaler = torch.amp.GradScaler(device.type, init_scale=fp16_init_scale)
        return Precision(name, device, scaler, LossScaleLog())
    return Precision(name, device)


def convert_model(model: nn.Module, name: str) -> nn.Module:
    """The model-side half of a precision: cast for bf16-pure, fp8 Linear layers for fp8.
    In place; returns the model."""
    if name == "bf16-pure":
        return model.to(torch.bfloat16)
    if name == "fp8":
        from torchao.float8 import convert_to_float8_training

        convert_to_float8_training(model, module_filter_fn=_fp8_eligible)
    return model


def _fp8_eligible(module: nn.Module, fqn: str) -> bool:
    # torchao's fp8 matmuls need both dimensions divisible by 16; the LM head stays in bf16,
    # as torchtitan keeps its output layer out of float8
    if not isinstance(module, nn.Linear) or fqn.endswith("lm_head"):
        return False
    return module.in_features % 16 == 0 and module.out_features % 16 == 0
