"""One optimizer step: forward under the precision policy, fp32 loss, backward for each
micro-batch, clip, update.

The loss optimised is the objective's (next-token cross-entropy unless a trial kind supplies
another, e.g. distillation's) plus the auxiliary losses of any routed expert layers; the loss
reported is always the cross-entropy, so every trial's loss curve means the same thing."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from harness.models.moe import auxiliary_loss, routed_layers
from harness.techniques import Precision

Batch = tuple[torch.Tensor, torch.Tensor]
TrainStep = Callable[[Sequence[Batch]], torch.Tensor]
# (logits (B, T, V), inputs (B, T), targets (B, T)) -> (loss to optimise, cross-entropy), both
# summed over the micro-batch's tokens
Objective = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def cross_entropy_objective(logits: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    loss = next_token_loss(logits, y, reduction="sum")
    return loss, loss


def next_token_loss(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy in nats, computed in fp32 whatever the logits' dtype.
    logits (B, T, V), targets (B, T)."""
    return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction=reduction)


def make_train_step(model: nn.Module, optimizer: torch.optim.Optimizer, precision: Precision,
                    grad_clip: float | None, objective: Objective = cross_entropy_objective) -> TrainStep:
    """A function (micro-batches of one optimizer step) -> detached mean loss of the step.

    Gradient accumulation: each micro-batch's summed loss is divided by the tokens of the
    whole step, so the accumulated gradient is the gradient of the mean over all the step's
    tokens, exactly the full batch's (a per-micro-batch mean would weigh short batches more).
    No host synchronisation inside, except fp16's: GradScaler reads its overflow flag on the
    host every step anyway; the scale is read once more, after the update (the scale before
    a step is the one read after the previous step).
    """
    params = [p for group in optimizer.param_groups for p in group["params"]]
    scaler, log = precision.scaler, precision.scale_log
    first_scale = scaler.get_scale() if scaler is not None else None  # no tensor yet: no sync
    routed = routed_layers(model)  # found once: a Mixture of Experts adds its router losses

    def step(batches: Sequence[Batch]) -> torch.Tensor:
        tokens = sum(y.numel() for _, y in batches)
        total = torch.zeros((), device=batches[0][1].device)
        for x, y in batches:
            with precision.autocast():
                logits = model(x)
            optimised, cross_entropy = objective(logits, x, y)
            loss = optimised / tokens
            if routed:  # a per-micro-batch mean, weighed by the micro-batch's share of tokens
                loss = loss + auxiliary_loss(routed) * (y.numel() / tokens)
            (loss if scaler is None else scaler.scale(loss)).backward()
            total += cross_entropy.detach() / tokens
        if scaler is None:
            if grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(params, grad_clip)
            optimizer.step()
        else:
            scaler.unscale_(optimizer)
            if grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(params, grad_clip)
            before = log.scales[-1] if log.scales else first_scale  # read last step, not again
            scaler.step(optimizer)  # skipped when the unscaled gradients hold inf or NaN
            scaler.update()
            after = scaler.get_scale()
            log.scales.append(after)
            log.skipped_steps += after < before  # the scaler backs off only after a skip
        optimizer.zero_grad(set_to_none=True)
        return total

    return step
