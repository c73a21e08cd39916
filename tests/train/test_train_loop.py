"""The worker's training loop, in process, on the tiny model: it learns toward the synthetic
source's entropy floor, checkpointing changes memory but not the maths, failures classify."""

from __future__ import annotations

import math

import pytest

from harness.scenario import expand, load_scenario
from harness.train.worker import run_and_classify, run_trial


def _spec(write_scenario, name="loop", **sections):
    specs = expand(load_scenario(write_scenario(name, **sections)), "cpu")
    return specs if len(specs) > 1 else specs[0]


def test_200_steps_bring_eval_loss_most_of_the_way_to_the_entropy_floor(write_scenario):
    spec = _spec(write_scenario, data={"seq_len": 128},
                 train={"micro_batch_size": 8, "steps": 200, "warmup_steps": 5, "lr": 3e-3,
                        "eval_batches": 8})
    result = run_trial(spec)
    floor, start = result.notes["loss_floor"], result.series["loss"][0]
    eval_loss = result.metrics["eval_loss"]
    assert start == pytest.approx(math.log(256), abs=0.1)  # untrained: uniform over the vocab
    assert floor < math.log(64)  # the source is far from uniform over its 64 ids
    # 8192 eval tokens: the sampling error of a mean cross-entropy is ~0.02 nats
    assert eval_loss > floor - 0.1, "no model beats the source's entropy rate"
    assert (start - eval_loss) / (start - floor) > 0.8, (start, eval_loss, floor)


def test_full_checkpointing_saves_activations_without_changing_the_losses(write_scenario):
    none, full = _spec(write_scenario, matrix={"checkpointing": ["none", "full"]})
    plain, checkpointed = run_trial(none), run_trial(full)
    assert checkpointed.metrics["activation_bytes"] < 0.5 * plain.metrics["activation_bytes"]
    assert checkpointed.series["loss"] == pytest.approx(plain.series["loss"], rel=1e-5)
    assert checkpointed.metrics["eval_loss"] == pytest.approx(plain.metrics["eval_loss"], rel=1e-5)


def test_bf16_autocast_saves_fewer_activation_bytes_and_learns_like_fp32(write_scenario):
    fp32, bf16 = _spec(write_scenario, matrix={"precision": ["fp32", "bf16"]},
                       train={"steps": 30, "lr": 3e-3})
    a, b = run_trial(fp32), run_trial(bf16)
    assert b.metrics["activation_bytes"] < a.metrics["activation_bytes"]
    # bf16 keeps 8 significant bits (relative rounding 2**-9 = 0.2% per operation) while the
    # weights, the optimizer and the loss stay fp32, so the two runs see the same data and
    # drift apart only by rounding: measured 1.5e-4 nats in eval loss and 7e-4 at worst per
    # step here. 0.02 nats (0.5% of the loss) leaves room for other CPUs' bf16 kernels yet
    # fails if bf16 changed what is learned (the loss moves by ~1.4 nats over these steps).
    assert b.metrics["eval_loss"] == pytest.approx(a.metrics["eval_loss"], abs=0.02)


def test_a_trial_is_deterministic_on_cpu(write_scenario):
    spec = _spec(write_scenario)
    assert run_trial(spec).series["loss"] == run_trial(spec).series["loss"]


def test_metrics_are_consistent_with_each_other(write_scenario):
    result = run_trial(_spec(write_scenario))
    m, notes = result.metrics, result.notes
    assert m["tokens_per_s"] == pytest.approx(
        notes["tokens_per_step"] * notes["measured_steps"] / notes["window_s"])
    assert notes["tokens_per_step"] == 4 * 32
    assert m["step_time_p10_s"] <= m["step_time_s"] <= m["step_time_p90_s"]
    assert m["achieved_tflops"] == pytest.approx(m["flops_per_token"] * m["tokens_per_s"] / 1e12)
    assert len(result.series["step_time_s"]) == notes["measured_steps"] == 5
    assert len(result.series["loss"]) == 6
    assert "peak_memory_bytes" not in m and "allocator" in result.unmeasured["peak_memory_bytes"]
    # a CPU trial never reports GPU energy, not even as 0: it names why
    for name in ("energy_j", "energy_per_token_j", "avg_power_w"):
        assert name not in m and result.unmeasured[name].startswith("no GPU")
    assert m["peak_rss_bytes"] > 0


@pytest.mark.parametrize("builder, status, words", [
    ("raises", "failed", "injected failure"),
    ("goes_nan", "diverged", "nan at step 2"),
    ("out_of_memory", "oom", "out of memory"),
])
def test_failures_inside_the_worker_are_classified(write_scenario, faulty, builder, status, words):
    result = run_and_classify(_spec(write_scenario, model={"arch": faulty(builder)}))
    assert result.status == status
    assert words in result.reason
    assert not result.metrics


def test_with_no_warmup_the_first_measured_steps_are_the_first_steps(write_scenario):
    from harness.train.accounting import account_compile

    result = run_trial(_spec(write_scenario, train={"steps": 4, "warmup_steps": 0}))
    assert result.notes["first_step_s"] == result.series["step_time_s"][0]
    assert result.notes["first_steps_s"] == result.series["step_time_s"][:3]
    outcome = type("Outcome", (), {"notes": dict(result.notes), "metrics": dict(result.metrics)})()
    account_compile(outcome, True, "cpu")  # compile with warmup_steps 0 was a KeyError on first_step_s
    assert outcome.metrics["compile_time_s"] == max(
        0.0, result.series["step_time_s"][0] - result.metrics["step_time_s"])


def test_the_first_warmup_steps_are_timed_apart_from_the_window(write_scenario):
    result = run_trial(_spec(write_scenario, train={"steps": 6, "warmup_steps": 2}))
    first = result.notes["first_steps_s"]
    # two warm-up steps, then the measured window's first step
    assert len(first) == 3 and first[2] == result.series["step_time_s"][0]
    assert result.notes["first_step_s"] == first[0] > 0


@pytest.mark.parametrize("steps, device, every", [
    (30, "cuda", 25), (99, "cuda", 25), (5000, "cuda", 100),  # a GPU: never a look each step
    (30, "cpu", 1), (5000, "cpu", 100)])
def test_looks_at_the_losses_are_rare_on_a_gpu_and_free_on_a_cpu(steps, device, every):
    from harness.train.trial import look_every

    assert look_every(steps, device) == every
