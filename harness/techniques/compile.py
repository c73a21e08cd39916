"""torch.compile of the whole model. Compilation happens during the first (warm-up) step,
whose wall time the worker reports as `compile_time_s`; measured steps never include it."""

from __future__ import annotations

import torch
from torch import nn


def apply_compile(model: nn.Module, enabled: bool) -> nn.Module:
    return torch.compile(model) if enabled else model
