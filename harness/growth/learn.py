"""Learning the LiGO growth operator (Wang et al., ICLR 2023, arXiv 2303.00980, §3.3).

Only the operator is trained: the small model is frozen, and the large model is never
materialised as trainable weights. Each step builds the large model's parameters as
operator(small parameters) and runs the large model on them through
torch.func.functional_call, so the loss's gradient flows through the grown weights into
the width and depth matrices. The paper learns for 100 steps before ordinary training
of the grown model; afterwards the caller writes the result in with grow().

The paper uses SGD; we use Adam, whose per-parameter scaling copes with the very
different gradient scales of the (C2 x C1) width and (L2 x L1) depth matrices.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch.func import functional_call

from harness.growth.operator import GrowthOperator
from harness.models.gpt import GPT


def learn_operator(
    operator: GrowthOperator,
    small_model: GPT,
    large_model: GPT,
    batches: Callable[[int], tuple[torch.Tensor, torch.Tensor]],
    steps: int,
    lr: float,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> list[float]:
    """Train the operator's parameters for `steps` Adam steps; return each step's loss.

    batches(step) -> (x, y), token ids (B, T) and targets; loss_fn(logits (B, T, V), y)
    -> scalar. Runs on the large model's device (the operator is moved there); neither
    model's parameters change. Give the operator noise_std > 0 when the large model is
    wider (see harness/growth/operator.py), and depth_init "stack": all-zero new layers
    ("zero-new") sit at a saddle where only their biases get a gradient.
    """
    if steps < 0 or not lr > 0:
        raise ValueError(f"need steps >= 0 and lr > 0, got steps={steps}, lr={lr}")
    device = next(large_model.parameters()).device
    operator.to(device)
    # detached copies: the small model is data here, never updated nor given gradients
    small = {name: p.detach().to(device) for name, p in small_model.named_parameters()}
    optimizer = torch.optim.Adam(operator.parameters(), lr=lr)
    losses: list[float] = []
    for step in range(steps):
        x, y = batches(step)
        x, y = x.to(device), y.to(device)
        grown = operator(small)
        # A tied lm_head is absent from grown (named_parameters lists the shared tensor
        # once); tie_weights=True makes functional_call use token_embedding.weight for it.
        logits = functional_call(large_model, grown, (x,), tie_weights=True)  # (B, T, V)
        loss = loss_fn(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses
