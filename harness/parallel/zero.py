"""DeepSpeed ZeRO stages 1-3 (Rajbhandari et al. 2020): what each rank keeps 1/N of.

    zero1  optimizer state partitioned; gradients all-reduced, parameters replicated
    zero2  optimizer state and gradients partitioned (gradients reduce-scattered in backward)
    zero3  parameters too: each layer's weights are all-gathered before use and freed after

DeepSpeed wraps the model in its engine, which drives backward and the update itself
(`engine.backward(loss)`, `engine.step()`), so this strategy hands the worker its own
train step. DeepSpeed is optional: without it, or on a CPU, every zero trial is skipped with
the reason. The path below is written from DeepSpeed's documentation and engine source; the
test suite checks its config and its step against a stand-in engine, not DeepSpeed itself.

The config (`deepspeed_config`), decided against DeepSpeed's config documentation:
  batch      DeepSpeed requires train_batch_size = train_micro_batch_size_per_gpu x
             gradient_accumulation_steps x ranks, and gives only the last two a meaning here:
             the harness feeds the engine its own micro-batches (no DeepSpeed data loader), and
             `gradient_accumulation_steps` = the trial's grad_accum is what the engine's boundary
             bookkeeping counts. The step also marks each boundary explicitly
             (`set_gradient_accumulation_boundary`, DeepSpeed's documented pattern for client
             loops), so exactly one update happens per harness step whatever the counter says.
             The micro-batch size feeds only DeepSpeed's own throughput log, which is off; it is
             `techniques["micro_batch_size"]` when the caller provides it, else 1.
  loss       `engine.backward(loss, scale_wrt_gas=False)`: the step already divides each
             micro-batch's summed loss by the tokens of the whole step (as make_train_step
             does); DeepSpeed's default would divide by grad_accum a second time.
  precision  bf16 -> DeepSpeed's bf16 mode, fp16 -> its fp16 mode with dynamic loss scaling
             (first scale 2**round(log2(fp16_init_scale)); the scale and skipped steps go to the
             trial's loss-scale log). Both keep 16-bit weights in the model and fp32 master
             weights in the optimizer partitions (ZeRO's mixed precision, unlike autocast's fp32
             weights); the forward also runs under the trial's autocast, so norms and softmax
             stay in fp32 as in the other strategies. fp8 runs as bf16 with torchao's fp8
             Linear layers (not yet run against DeepSpeed). fp32 / tf32: no 16-bit section. bf16-pure is skipped: DeepSpeed's
             bf16 always keeps an fp32 master copy, so there is nothing pure to measure.
  clipping   `gradient_clipping` = techniques["grad_clip"] when the caller provides it (the
             engine clips; the harness step's clipping never runs here).
  optimizer  the trial's own optimizer, built before DeepSpeed partitions it
             (`zero_allow_untested_optimizer`, since DeepSpeed vets only its own list).
  compile    a torch.compile'd model is unwrapped and compiled again through `engine.compile`,
             DeepSpeed's way, so the compiled graph sees the engine's ZeRO hooks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from harness.hardware import DeviceFacts
from harness.parallel.base import (
    MakeOptimizer,
    ParallelContext,
    Parallelized,
    Techniques,
    bare_module,
    ranks_reason,
)
from harness.techniques.precision import Precision
from harness.train.step import Batch, TrainStep, next_token_loss

NOT_INSTALLED = "DeepSpeed is not installed (pip install deepspeed)"
NEEDS_CUDA = ("DeepSpeed ZeRO needs CUDA devices here: DeepSpeed's CPU accelerator "
              "(DS_ACCELERATOR=cpu, Intel CPUs, oneCCL) is set up by its own launcher, "
              "which the harness does not use")
QUIET = 2**31 - 1  # steps between DeepSpeed's progress prints: never, within a trial


def deepspeed_config(stage: int, techniques: Techniques) -> dict[str, Any]:
    """The DeepSpeed config of one trial (see the module docstring for each choice)."""
    config: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": int(techniques.get("micro_batch_size", 1)),
        "gradient_accumulation_steps": techniques["grad_accum"],
        "zero_optimization": {"stage": stage},
        "zero_allow_untested_optimizer": True,
        "gradient_clipping": float(techniques.get("grad_clip") or 0.0),
        "steps_per_print": QUIET,
        "wall_clock_breakdown": False,
    }
    precision = techniques["precision"]
    if precision in ("bf16", "fp8"):
        config["bf16"] = {"enabled": True}
    elif precision == "fp16":
        config["fp16"] = {
            "enabled": True,
            "loss_scale": 0,  # 0 = dynamic
            "initial_scale_power": round(math.log2(techniques["fp16_init_scale"])),
        }
    return config


class DeepSpeedZero:
    def __init__(self, stage: int):
        self.stage = stage
        self.name = f"zero{stage}"

    def unsupported_reason(self, techniques: Techniques, facts: DeviceFacts) -> str | None:
        if not facts.has("deepspeed"):
            return NOT_INSTALLED
        if facts.type != "cuda":
            return NEEDS_CUDA
        if techniques["precision"] == "bf16-pure":
            return ("DeepSpeed's bf16 mode always keeps fp32 master weights: bf16-pure has no "
                    "DeepSpeed counterpart (use bf16)")
        return ranks_reason(techniques, facts)

    def parallelize(self, model: nn.Module, techniques: Techniques, precision: Precision,
                    make_optimizer: MakeOptimizer, ctx: ParallelContext) -> Parallelized:
        if ctx.device.type != "cuda":
            raise RuntimeError(NEEDS_CUDA)
        import deepspeed  # optional: only trials that passed unsupported_reason get here

        module = bare_module(model)
        # the engine reuses the caller's process group (deepspeed.comm wraps torch.distributed)
        engine, optimizer, _, _ = deepspeed.initialize(
            model=module, optimizer=make_optimizer(module),
            config=deepspeed_config(self.stage, techniques))
        if module is not model:  # it was compiled: compile it again under the engine
            setting = techniques["compile"]
            mode = None if setting in (True, "default") else setting
            engine.compile(compile_kwargs={} if mode is None else {"mode": mode})
        # ZeRO-2/3 partition gradients during backward, which DeepSpeed's no_sync refuses
        return Parallelized(model=engine, optimizer=optimizer,
                            step=engine_train_step(engine, precision))


def engine_train_step(engine: Any, precision: Precision) -> TrainStep:
    """make_train_step's contract (micro-batches in, detached mean loss over all the step's
    tokens out) through the engine: one boundary and one engine.step() per call."""
    log = precision.scale_log

    def step(batches: Sequence[Batch]) -> torch.Tensor:
        tokens = sum(y.numel() for _, y in batches)
        total = torch.zeros((), device=batches[0][1].device)
        for index, (x, y) in enumerate(batches):
            engine.set_gradient_accumulation_boundary(index == len(batches) - 1)
            with precision.autocast():
                logits = engine(x)
            loss = next_token_loss(logits, y, reduction="sum") / tokens
            engine.backward(loss, scale_wrt_gas=False)
            total += loss.detach()
        engine.step()  # clips, steps (or skips on fp16 overflow) and zeroes the gradients
        if log is not None:
            log.scales.append(float(engine.optimizer.loss_scale))
            log.skipped_steps = engine.skipped_steps
        return total

    return step
