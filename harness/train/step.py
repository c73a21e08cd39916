"""One optimizer step: forward under the precision policy, fp32 loss, backward, clip, update."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from harness.techniques import Precision

TrainStep = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def next_token_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy in nats, computed in fp32 whatever the logits' dtype.
    logits (B, T, V), targets (B, T)."""
    return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())


def make_optimizer(model: nn.Module, lr: float, weight_decay: float,
                   device: torch.device) -> torch.optim.Optimizer:
    """AdamW with decay on matrices only (nanoGPT's grouping: norms, biases unaffected)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    fused = device.type == "cuda"  # one kernel per step; the CPU takes the foreach path
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95), fused=fused)


def make_train_step(model: nn.Module, optimizer: torch.optim.Optimizer, precision: Precision,
                    grad_clip: float | None) -> TrainStep:
    """A function (x, y) -> detached loss. No host synchronisation inside: the caller
    decides when to look at the loss."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    scaler = precision.scaler

    def step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with precision.autocast():
            logits = model(x)
        loss = next_token_loss(logits, y)
        if scaler is None:
            loss.backward()
            if grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(params, grad_clip)
            optimizer.step()
        else:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            if grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(params, grad_clip)
            scaler.step(optimizer)
            scaler.update()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    return step
