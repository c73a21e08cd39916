"""The optimizer axis. Decay applies to matrices only (nanoGPT's grouping: norm gains and
biases are left alone); β = (0.9, 0.95) as in GPT-3 and nanoGPT.

    adamw        torch AdamW, multi-tensor (foreach) implementation
    adamw-fused  torch AdamW, one fused kernel per step (CUDA and CPU)
    sgd          SGD with momentum 0.9 (one state tensor instead of AdamW's two)
    adamw8bit    bitsandbytes AdamW8bit: both moments block-wise quantised to 8 bits (CUDA)
"""

from __future__ import annotations

import torch
from torch import nn

from harness.metrics.memory import local_nbytes

BETAS = (0.9, 0.95)


def make_optimizer(model: nn.Module, name: str, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=BETAS, foreach=True)
    if name == "adamw-fused":
        return torch.optim.AdamW(groups, lr=lr, betas=BETAS, fused=True)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=0.9, foreach=True)
    if name == "adamw8bit":
        import bitsandbytes as bnb

        return bnb.optim.AdamW8bit(groups, lr=lr, betas=BETAS)
    raise ValueError(f"unknown optimizer '{name}'")


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of every tensor the optimizer keeps per parameter (moments, momentum, ...), of
    this rank's shards only under a sharded strategy."""
    return sum(local_nbytes(value) for state in optimizer.state.values()
               for value in state.values() if torch.is_tensor(value))
