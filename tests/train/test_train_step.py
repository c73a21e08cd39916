"""The training step's arithmetic: gradient accumulation equals the full batch, the fp16
loss scaler skips overflowing steps and the trial records it, hfu follows recompute."""

from __future__ import annotations

import pytest
import torch

from harness import peaks
from harness.models import GPT, resolve_config
from harness.scenario import expand, load_scenario
from harness.techniques import apply_precision
from harness.train.step import make_train_step
from harness.train.worker import run_trial


def _update(micro_batches):
    """The parameter change of one SGD(lr=1) step: minus the step's gradient."""
    torch.manual_seed(0)
    model = GPT(resolve_config("tiny"))
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    step = make_train_step(model, optimizer, apply_precision("fp32", torch.device("cpu")), None)
    loss = step(micro_batches)
    return loss, [p.detach() - b for p, b in zip(model.parameters(), before)]


def test_accumulated_gradient_equals_the_full_batch_gradient():
    generator = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, 256, (16, 65), generator=generator)
    x, y = tokens[:, :-1], tokens[:, 1:]
    full_loss, full = _update([(x, y)])
    micro_loss, accumulated = _update([(x[i:i + 4], y[i:i + 4]) for i in range(0, 16, 4)])
    assert micro_loss.item() == pytest.approx(full_loss.item(), rel=1e-6)
    for a, b in zip(accumulated, full):
        assert torch.linalg.vector_norm(a - b) <= 1e-5 * torch.linalg.vector_norm(b)


def test_grad_accum_multiplies_the_tokens_of_a_step(write_scenario):
    spec = expand(load_scenario(write_scenario("accum", techniques={"grad_accum": 3})), "cpu")[0]
    result = run_trial(spec)
    assert result.notes["tokens_per_step"] == 3 * 4 * 32


def test_a_forced_fp16_overflow_skips_steps_and_the_trial_records_it(write_scenario):
    # a first loss scale of 2**40 overflows fp16 gradients (max 65504) at once; the scaler
    # skips the update and halves the scale until the gradients fit
    path = write_scenario("overflow", techniques={"precision": "fp16", "fp16_init_scale": 2.0**40},
                          train={"steps": 12, "warmup_steps": 2})
    result = run_trial(expand(load_scenario(path), "cpu")[0])
    metrics, scales = result.metrics, result.series["loss_scale"]
    assert result.status == "ok"
    assert metrics["skipped_steps"] >= 1
    assert metrics["overflow_fraction"] == metrics["skipped_steps"] / 12
    assert scales[0] == 2.0**39  # the first step overflowed: backed off by half
    assert metrics["loss_scale"] == scales[-1] < 2.0**40
    assert len(scales) == 12


@pytest.mark.parametrize("mode, recompute", [("none", False), ("full", True), ("every-2", True),
                                             ("selective", False)])
def test_hfu_exceeds_mfu_by_the_recomputed_forward(write_scenario, monkeypatch, mode, recompute):
    # a fixed peak: the ratio is the property, and a busy machine leaves a measured one unusable
    monkeypatch.setattr(peaks, "peak_for", lambda *args, **kwargs: peaks.Peak(0.1, "fp32", "fixed", True))
    path = write_scenario("hfu", techniques={"checkpointing": mode})
    m = run_trial(expand(load_scenario(path), "cpu")[0]).metrics
    ratio = m["hardware_flops_per_token"] / m["flops_per_token"]
    assert m["hfu"] / m["mfu"] == pytest.approx(ratio)
    assert (ratio > 1) == recompute
    if mode == "full":  # one more forward of every block: about 8N vs 6N, less the head
        assert 1.2 < ratio < 1.34


def test_memory_accounting_of_a_trial(write_scenario):
    result = run_trial(expand(load_scenario(write_scenario("memory")), "cpu")[0])
    m = result.metrics
    params = result.notes["parameters"]
    assert m["parameter_bytes"] == 4 * params  # fp32
    assert m["gradient_bytes"] == 4 * params  # one fp32 gradient per parameter
    assert m["optimizer_state_bytes"] >= 2 * 4 * params  # AdamW: two fp32 moments (+ steps)
    assert m["activation_bytes"] > 0
