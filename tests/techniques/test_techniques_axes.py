"""Every value of every technique axis either trains the tiny model or is skipped with a
stated reason; the capability table says which, per device."""

from __future__ import annotations

import pytest

from harness.hardware import DeviceFacts, device_facts
from harness.scenario import expand, load_scenario
from harness.techniques.capabilities import unsupported_reason
from harness.train.worker import run_trial

CPU = device_facts("cpu")
H100 = DeviceFacts("cuda", "NVIDIA H100 80GB HBM3", (9, 0), True, frozenset({"torchao", "bitsandbytes"}))
A100 = DeviceFacts("cuda", "NVIDIA A100-SXM4-80GB", (8, 0), True, frozenset({"torchao"}))
V100 = DeviceFacts("cuda", "Tesla V100-SXM2-32GB", (7, 0), False, frozenset())

AXES = {
    "precision": ["fp32", "tf32", "bf16", "fp16", "bf16-pure", "fp8"],
    "checkpointing": ["none", "full", "every-2", "selective", "offload"],
    "grad_accum": [1, 3],
    "optimizer": ["adamw", "adamw-fused", "sgd", "adamw8bit"],
    "attention": ["sdpa", "flash", "efficient", "cudnn", "math", "manual"],
    "compile": [False, True],
}
CASES = [(axis, value) for axis, values in AXES.items() for value in values]


@pytest.mark.parametrize("axis, value", CASES, ids=[f"{a}={v}" for a, v in CASES])
def test_each_axis_value_trains_or_is_skipped_with_a_reason(write_scenario, axis, value):
    path = write_scenario("axes", matrix={axis: [value]}, train={"steps": 3, "warmup_steps": 1})
    spec = expand(load_scenario(path), "cpu")[0]
    reason = unsupported_reason(spec.techniques, CPU, spec.model)
    if reason is not None:
        assert len(reason) > 20 and "\n" not in reason  # one readable line
        return
    result = run_trial(spec)
    assert result.status == "ok"
    assert result.metrics["tokens_per_s"] > 0
    assert result.metrics["eval_loss"] < 6.0  # ln 256 = 5.55 untrained; no blow-up


def _techniques(**changes):
    from harness.scenario.schema import TechniquesSection

    base = TechniquesSection().model_dump()
    return {**base, **changes}


@pytest.mark.parametrize("facts, changes, expected", [
    (CPU, {"precision": "tf32"}, "CUDA tensor-core mode"),
    (CPU, {"precision": "fp8"}, "compute capability 8.9"),
    (A100, {"precision": "fp8"}, "compute capability 8.9"),
    (H100, {"precision": "fp8"}, None),
    (DeviceFacts("cuda", "NVIDIA H100 80GB HBM3", (9, 0), True, frozenset()), {"precision": "fp8"},
     "needs torchao"),
    (V100, {"precision": "tf32"}, "compute capability 8.0"),
    (V100, {"precision": "bf16"}, "no native bf16"),
    (CPU, {"optimizer": "adamw8bit"}, "CUDA"),
    (A100, {"optimizer": "adamw8bit"}, "needs bitsandbytes"),
    (H100, {"optimizer": "adamw8bit"}, None),
    (CPU, {"checkpointing": "offload"}, "host memory"),
    (H100, {"checkpointing": "offload"}, None),
    (H100, {"precision": "bf16", "compile": True, "checkpointing": "full"}, None),
    (H100, {"precision": "fp32", "attention": "flash"}, "fp16"),
    (CPU, {"attention": "efficient"}, "CPU"),
    (CPU, {"world_size": 2}, "need a data-parallel strategy"),
    (CPU, {"world_size": 2, "parallel": "ddp"}, None),
    (H100, {"world_size": 2, "parallel": "ddp"}, "need as many GPUs; this node has 1"),
    (CPU, {"parallel": "zero2"}, "DeepSpeed"),
])
def test_capability_table(facts, changes, expected):
    reason = unsupported_reason(_techniques(**changes), facts, {"n_head": 12, "d_model": 768})
    if expected is None:
        assert reason is None
    else:
        assert expected in reason
