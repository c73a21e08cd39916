"""Plain training of a model a trial needs before its measured training: a distillation
teacher, the small model a larger one grows from, the weights an inference trial loads.

No meters, no warm-up window: only the total wall time (one synchronisation at the end), the
tokens and the model FLOPs, because the trial's report counts what this training cost.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import nn

from harness.data import TokenSplits
from harness.metrics.timing import synchronize
from harness.models import GPTConfig, model_flops_per_token
from harness.techniques import Precision, apply_precision
from harness.techniques.optimizers import make_optimizer
from harness.train.loop import evaluate
from harness.train.step import make_train_step


def pretrain_precision(device: torch.device) -> str:
    """The precision of unmeasured preparatory training (an inference trial's weights): bf16
    autocast with fp32 master weights where the device has native bf16 (what such a model is
    trained in; strict fp32 is several times slower on tensor cores), else fp32. The same for
    every trial of a scenario on a device, so all of them load the same weights."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported(including_emulation=False):
        return "bf16"
    return "fp32"


@dataclass(frozen=True)
class FitSettings:
    steps: int
    micro_batch_size: int
    lr: float
    weight_decay: float
    grad_clip: float | None
    precision: str = "fp32"
    optimizer: str = "adamw"


@dataclass(frozen=True)
class FitResult:
    tokens: float
    seconds: float
    flops: float  # model FLOPs (6N + attention) over every token trained
    final_loss: float  # the last step's training loss
    eval_loss: float

    def metrics(self, prefix: str) -> dict[str, float]:
        return {f"{prefix}_tokens": self.tokens, f"{prefix}_time_s": self.seconds,
                f"{prefix}_flops": self.flops, f"{prefix}_eval_loss": self.eval_loss}


def fit(model: nn.Module, config: GPTConfig, splits: TokenSplits, device: torch.device,
        settings: FitSettings) -> FitResult:
    """Train `model` in place on splits' train batches 0..steps-1; returns what it cost."""
    precision: Precision = apply_precision(settings.precision, device)
    optimizer = make_optimizer(model, settings.optimizer, settings.lr, settings.weight_decay)
    step = make_train_step(model, optimizer, precision, settings.grad_clip)
    batch = settings.micro_batch_size
    synchronize(device)
    t0 = time.perf_counter()
    loss = torch.zeros(())
    for index in range(settings.steps):
        x, y = splits.train_batch(index, batch)
        loss = step([(x.to(device), y.to(device))])
    final = float(loss)  # synchronises
    seconds = time.perf_counter() - t0
    tokens = float(settings.steps * batch * splits.seq_len)
    eval_loss = evaluate(model, precision, splits.eval_batches(batch), device)
    return FitResult(tokens=tokens, seconds=seconds,
                     flops=tokens * model_flops_per_token(config, splits.seq_len),
                     final_loss=final, eval_loss=eval_loss)
