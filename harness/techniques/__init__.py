"""Techniques: functions applied to a built model, in one documented order.

    model = build_model(...)                  # bare model, kept by the caller
    model = apply_checkpointing(model, mode)  # 1. recompute block activations in backward
    model = apply_compile(model, enabled)     # 2. torch.compile the (checkpointed) model
    precision = apply_precision(name, device) # the step's autocast and loss scaling

The order is torchtitan's (checkpointing -> compile -> data parallel): compile must see the
checkpoint wrappers to trace the recompute, and sharding wraps the compiled blocks.
`unsupported_reason` is the one capability table: a combination this hardware cannot run
becomes a `skipped` trial carrying its reason.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from harness.techniques import precision as precision_technique
from harness.techniques.checkpointing import apply_checkpointing
from harness.techniques.compile import apply_compile
from harness.techniques.precision import Precision, apply_precision


def apply_techniques(model: nn.Module, techniques: dict[str, Any],
                     device: torch.device) -> tuple[nn.Module, Precision]:
    model = apply_checkpointing(model, techniques["checkpointing"])
    model = apply_compile(model, techniques["compile"])
    return model, apply_precision(techniques["precision"], device)


def unsupported_reason(techniques: dict[str, Any], device: str) -> str | None:
    """Why this combination cannot run on this device, or None when it can."""
    return precision_technique.unsupported_reason(techniques["precision"], device)


__all__ = ["Precision", "apply_checkpointing", "apply_compile", "apply_precision",
           "apply_techniques", "unsupported_reason"]
