"""Techniques: functions applied to a built model, in one documented order.

    precision = apply_precision(name, device)      # process-wide matmul mode, loss scaler
    model = convert_model(model, precision)         # 1. bf16-pure cast, fp8 Linear layers
    model = apply_attention(model, backend)         # 2. the attention kernel
    model = apply_checkpointing(model, mode)        # 3. recompute or offload block activations
    model = apply_compile(model, setting)           # 4. torch.compile the result

The order is torchtitan's (model converters -> activation checkpointing -> compile -> data
parallel): fp8 must swap the Linear layers before anything wraps them, compile must see the
checkpoint wrappers to trace the recompute, and sharding wraps the compiled blocks. Steps
1-3 change the model in place, so the caller's handle on the bare model stays valid.
The optimizer (harness.techniques.optimizers) and gradient accumulation (the train step) are
the step's side; the capability table says which combinations a device cannot run.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from harness.techniques.attention import apply_attention
from harness.techniques.checkpointing import apply_checkpointing
from harness.techniques.compile import apply_compile
from harness.techniques.precision import Precision, apply_precision, convert_model


def apply_techniques(model: nn.Module, techniques: dict[str, Any],
                     device: torch.device) -> tuple[nn.Module, Precision]:
    precision = apply_precision(techniques["precision"], device, techniques["fp16_init_scale"])
    model = convert_model(model, techniques["precision"])
    model = apply_attention(model, techniques["attention"])
    model = apply_checkpointing(model, techniques["checkpointing"])
    model = apply_compile(model, techniques["compile"])
    return model, precision


__all__ = ["Precision", "apply_attention", "apply_checkpointing", "apply_compile",
           "apply_precision", "apply_techniques", "convert_model"]
