"""Which strategy settings each device can run, and the DeepSpeed path as far as it goes
without DeepSpeed: its config, and its train step against a stand-in engine."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from parallel_ranks import TECHNIQUES, global_batches, optimizer_factory, tiny_model

from harness.hardware import DeviceFacts, device_facts
from harness.parallel import parallel_unsupported_reason
from harness.parallel.fsdp import mixed_precision_policy
from harness.parallel.zero import NEEDS_CUDA, NOT_INSTALLED, deepspeed_config, engine_train_step
from harness.techniques import apply_precision
from harness.train.step import make_train_step

CPU = DeviceFacts("cpu", "a CPU")
CPU_WITH_DEEPSPEED = DeviceFacts("cpu", "a CPU", libraries=frozenset({"deepspeed"}))
H100_X8 = DeviceFacts("cuda", "NVIDIA H100", (9, 0), True, frozenset({"deepspeed"}), device_count=8)


def reason(facts: DeviceFacts, **techniques) -> str | None:
    return parallel_unsupported_reason({**TECHNIQUES, "world_size": 1, **techniques}, facts)


@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is not None,
                    reason="DeepSpeed is installed here")
@pytest.mark.parametrize("stage", ["zero1", "zero2", "zero3"])
def test_zero_without_deepspeed_is_skipped_with_the_install_command(stage):
    assert reason(device_facts("cpu"), parallel=stage) == NOT_INSTALLED
    assert "pip install deepspeed" in NOT_INSTALLED


def test_zero_runs_on_cuda_only():
    assert reason(CPU_WITH_DEEPSPEED, parallel="zero2") == NEEDS_CUDA
    assert reason(H100_X8, parallel="zero2", world_size=8) is None
    assert "bf16-pure has no DeepSpeed counterpart" in reason(H100_X8, parallel="zero3",
                                                              precision="bf16-pure")


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_ddp_and_fsdp_run_on_one_rank_and_on_several(strategy):
    assert reason(CPU, parallel=strategy, world_size=1) is None
    assert reason(CPU, parallel=strategy, world_size=2, nnodes=2) is None
    assert reason(H100_X8, parallel=strategy, world_size=8, precision="fp16") is None


def test_rank_counts_no_strategy_can_run():
    assert "need a data-parallel strategy" in reason(CPU, parallel="none", world_size=2)
    assert reason(CPU, parallel="none", world_size=1) is None
    assert "leaves no rank" in reason(CPU, parallel="ddp", world_size=0)
    assert "this node has 8" in reason(H100_X8, parallel="fsdp", world_size=16)


def test_fsdp_settings_the_device_cannot_take():
    assert "host memory" in reason(CPU, parallel="fsdp", fsdp_cpu_offload=True)
    assert reason(H100_X8, parallel="fsdp", fsdp_cpu_offload=True) is None
    assert "8-bit AdamW" in reason(H100_X8, parallel="fsdp", optimizer="adamw8bit")
    assert reason(H100_X8, parallel="ddp", optimizer="adamw8bit") is None


@pytest.mark.parametrize("precision, param_dtype, reduce_dtype", [
    ("bf16", torch.bfloat16, torch.float32),
    ("fp8", torch.bfloat16, torch.float32),
    ("fp16", torch.float16, torch.float32),
    ("fp32", None, None),
    ("tf32", None, None),
    ("bf16-pure", None, None),  # the parameters are bf16 already; nothing to cast
])
def test_fsdp_mixed_precision_follows_the_precision_axis(precision, param_dtype, reduce_dtype):
    policy = mixed_precision_policy(precision)
    assert (policy.param_dtype, policy.reduce_dtype) == (param_dtype, reduce_dtype)


def test_the_deepspeed_config_follows_the_trial():
    config = deepspeed_config(3, {**TECHNIQUES, "grad_accum": 4, "precision": "fp16",
                                  "fp16_init_scale": 2.0**12, "grad_clip": 1.0,
                                  "micro_batch_size": 8})
    assert config["zero_optimization"] == {"stage": 3}
    # DeepSpeed derives train_batch_size = micro x accumulation x ranks from these two
    assert config["train_micro_batch_size_per_gpu"] == 8
    assert config["gradient_accumulation_steps"] == 4
    assert "train_batch_size" not in config
    assert config["fp16"] == {"enabled": True, "loss_scale": 0, "initial_scale_power": 12}
    assert config["gradient_clipping"] == 1.0
    assert config["zero_allow_untested_optimizer"]  # sgd and 8-bit AdamW are the trial's choice
    bf16 = deepspeed_config(1, {**TECHNIQUES, "precision": "bf16"})
    assert bf16["bf16"] == {"enabled": True} and "fp16" not in bf16
    fp32 = deepspeed_config(2, TECHNIQUES)
    assert "bf16" not in fp32 and "fp16" not in fp32 and fp32["gradient_clipping"] == 0.0


class StandInEngine(torch.nn.Module):
    """What engine_train_step uses of a DeepSpeed engine, on one process: the engine's
    documented contract for client loops (backward without GAS scaling, one step per
    boundary), so the step's own arithmetic can be checked without DeepSpeed."""

    def __init__(self, model, optimizer):
        super().__init__()
        self.module, self.optimizer, self.skipped_steps = model, optimizer, 0
        self.boundaries, self.backward_scaled, self.steps = [], [], 0

    def forward(self, x):
        return self.module(x)

    def set_gradient_accumulation_boundary(self, is_boundary):
        self.boundaries.append(is_boundary)

    def backward(self, loss, scale_wrt_gas=True):
        self.backward_scaled.append(scale_wrt_gas)
        loss.backward()

    def step(self):
        assert self.boundaries[-1], "engine.step() off a boundary would not update"
        self.steps += 1
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


def test_the_engine_step_updates_once_per_step_like_the_harness_step():
    batches = [(x[:2], y[:2]) for x, y in global_batches(1, grad_accum=3)[0]]
    fp32 = apply_precision("fp32", torch.device("cpu"))
    model = tiny_model()
    expected_loss = make_train_step(model, optimizer_factory(model), fp32, None)(batches)
    expected = [p.detach().clone() for p in model.parameters()]

    model = tiny_model()
    engine = StandInEngine(model, optimizer_factory(model))
    loss = engine_train_step(engine, fp32)(batches)
    assert engine.boundaries == [False, False, True] and engine.steps == 1
    assert engine.backward_scaled == [False] * 3  # the step divides by the step's tokens itself
    assert loss.item() == pytest.approx(expected_loss.item(), rel=1e-6)
    for got, want in zip(model.parameters(), expected, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
