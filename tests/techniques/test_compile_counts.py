"""A compiled model is compiled once: the loop's evaluation (no_grad, eval mode) must not make
dynamo compile it again, and if anything does, `compile_recompiles` counts it with its reason.
compile_time_s is the first steps' time beyond a steady step: one step, two under CUDA graphs."""

from __future__ import annotations

import pytest
import torch

from harness.models import GPT, resolve_config
from harness.techniques import Precision, apply_compile
from harness.techniques.compile import compile_steps, graph_counts, recompile_reasons
from harness.train.accounting import account_compile
from harness.train.loop import LoopOutcome, evaluate


def test_evaluation_does_not_recompile_and_a_no_grad_call_is_counted():
    torch.manual_seed(0)
    bare = GPT(resolve_config("tiny", n_layer=1, d_model=32, n_head=2, vocab_size=64))
    model = apply_compile(bare, True)
    x = torch.randint(0, 64, (2, 16))
    model(x).sum().backward()  # the training graph
    batches = [(x, torch.roll(x, -1, dims=1))]
    eager = evaluate(bare, Precision("fp32", torch.device("cpu")), batches, torch.device("cpu"))
    assert evaluate(model, Precision("fp32", torch.device("cpu")), batches, torch.device("cpu")) == pytest.approx(eager, rel=1e-5)
    assert recompile_reasons() == []
    assert graph_counts()["compiled_graphs"] == 1.0
    with torch.no_grad():  # what evaluation did before: a second compile, now counted
        model(x)
    assert recompile_reasons() == ["forward: 0/0: GLOBAL_STATE changed: grad_mode"]
    assert graph_counts()["compiled_graphs"] == 2.0
    # a second recompile: dynamo records a failure of both versions (0/0 and 0/1), one recompile
    with torch._dynamo.config.patch(automatic_dynamic_shapes=False), torch.no_grad():
        model(x[:, :8])
    reasons = recompile_reasons()
    assert len(reasons) == 2 and reasons[1].startswith("forward: 0/1: tensor") and "size mismatch" in reasons[1]


@pytest.mark.parametrize("setting, device, expected_s, steps", [
    (True, "cpu", 9.0, 1), ("reduce-overhead", "cpu", 9.0, 1),  # no CUDA graphs on a CPU
    ("default", "cuda", 9.0, 1), ("reduce-overhead", "cuda", 13.0, 2), ("max-autotune", "cuda", 13.0, 2),
    ("max-autotune-no-cudagraphs", "cuda", 9.0, 1)])
def test_compile_time_counts_the_recording_step_under_cuda_graphs(monkeypatch, setting, device,
                                                                  expected_s, steps):
    monkeypatch.setattr("harness.techniques.compile.recompile_reasons", lambda: ["forward: 0/0: x"])
    out = LoopOutcome(metrics={"step_time_s": 1.0}, notes={"first_steps_s": [10.0, 5.0, 0.5]})
    account_compile(out, setting, device)
    assert compile_steps(setting, device) == steps
    assert out.metrics["compile_time_s"] == expected_s
    assert out.notes["compile_time_steps"] == steps
    assert out.metrics["compile_recompiles"] == 1.0
    assert out.notes["compile_recompile_reasons"] == ["forward: 0/0: x"]


def test_an_eager_trial_has_no_compile_figures():
    out = LoopOutcome(metrics={"step_time_s": 1.0}, notes={"first_steps_s": [3.0]})
    account_compile(out, False, "cuda")
    assert set(out.metrics) == {"step_time_s"}
