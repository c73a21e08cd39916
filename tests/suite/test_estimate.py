"""The time estimate's arithmetic, by hand on the tiny model (2 layers, 4 heads, d_model 64,
vocabulary 256, tied embeddings, biases), and its fixed costs: assumed or measured."""

from __future__ import annotations

import pytest

from harness.scenario import expand, load_scenario
from harness.suite import estimate
from harness.suite.costs import fixed_costs
from harness.suite.estimate import FixedCosts, Rates

# N of the FLOPs formula: per block 12C² + 13C (qkv 3C²+3C, projection C²+C, two LayerNorms
# 4C, MLP 8C²+5C) = 49,984 at C = 64; two blocks, the final LayerNorm 2C and the head V·C
N = 2 * 49_984 + 128 + 256 * 64  # 116,480
ATTENTION = 4 * 2 * 4 * 16 * 32  # forward q kᵀ and scores·v at T = 32: 4·L·H·Q·T per token
TRAIN_PER_TOKEN = 6 * N + 3 * ATTENTION  # 748,032
FORWARD_PER_TOKEN = 2 * N + ATTENTION  # 249,344
RECOMPUTE_PER_TOKEN = 2 * (2 * 49_984 + 4 * 4 * 16 * 32)  # full: both blocks' forward again


def tiny_spec(write_scenario, **techniques):
    path = write_scenario("est", data={"seq_len": 32},
                          train={"micro_batch_size": 4, "steps": 10, "warmup_steps": 2, "eval_batches": 2},
                          techniques={"grad_accum": 2, **techniques})
    (spec,) = expand(load_scenario(path), "cpu")
    return spec


SLOW = Rates("cpu", {"fp32": 0.001}, {"fp32": 0.5, "bf16": 0.5}, 0.001)  # 5e8 FLOP/s at MFU 0.5


def test_flops_of_a_training_trial_by_hand(write_scenario):
    spec = tiny_spec(write_scenario, checkpointing="full")
    train, evaluation = estimate.trial_parts(spec, "cpu")
    tokens = 10 * 4 * 2 * 32  # steps x micro-batch x grad_accum x seq_len, warm-up included
    assert train.flops == tokens * (TRAIN_PER_TOKEN + RECOMPUTE_PER_TOKEN) == 2_468_741_120
    assert train.passes == 20  # micro-batches
    assert evaluation.flops == 2 * 4 * 32 * FORWARD_PER_TOKEN == 63_832_064  # one final evaluation
    assert evaluation.passes == 2


def test_time_of_a_training_trial_by_hand(write_scenario):
    spec = tiny_spec(write_scenario, checkpointing="full")
    found = estimate.estimate_trial(spec, None, SLOW, FixedCosts(5.0, {"default": 30.0}))
    assert found.compute_s == pytest.approx(2_468_741_120 / 5e8 + 63_832_064 / 5e8)  # 5.0651 s
    assert found.total_s == pytest.approx(found.compute_s + 5.0)
    compiled = estimate.estimate_trial(tiny_spec(write_scenario, compile=True), None, SLOW,
                                       FixedCosts(5.0, {"default": 30.0}))
    assert compiled.compile_s == 30.0 and compiled.flops == 1_914_961_920 + 63_832_064  # no recompute


def test_a_fast_device_is_held_to_the_minimum_pass_time(write_scenario):
    fast = Rates("cuda", {"fp32": 1000.0}, {"fp32": 0.5}, 0.005)
    found = estimate.estimate_trial(tiny_spec(write_scenario), None, fast, FixedCosts(8.0, {}))
    assert found.compute_s == pytest.approx((20 + 2) * 0.005)


def test_a_skipped_trial_costs_nothing(write_scenario):
    skipped = estimate.estimate_trial(tiny_spec(write_scenario), "no GPU", SLOW, FixedCosts(5.0, {}))
    assert skipped.total_s == 0 and skipped.flops == 0


def test_an_inference_trial_counts_pretraining_and_its_passes(write_scenario):
    path = write_scenario("inf", kind="inference", data={"seq_len": 32},
                          train={"micro_batch_size": 2, "steps": 5, "warmup_steps": 0, "eval_batches": 1},
                          inference={"batch_size": 1, "prompt_len": 32, "decode_tokens": 4, "repeats": 2})
    (spec,) = expand(load_scenario(path), "cpu")
    parts = {p.what: p for p in estimate.trial_parts(spec, "cpu")}
    assert parts["pretrain"].flops == 5 * 2 * 32 * TRAIN_PER_TOKEN
    assert parts["eval"].flops == 1 * 2 * 32 * FORWARD_PER_TOKEN
    # prefill: one warm-up, two repeats, and the prefill before each of decode's two runs
    assert (parts["prefill"].passes, parts["prefill"].flops) == (5, 5 * 32 * FORWARD_PER_TOKEN)
    assert parts["decode"].passes == 8  # a warm-up run and the timed one, 4 tokens each


def test_fixed_costs_are_assumed_without_a_database(tmp_path):
    basis = fixed_costs(tmp_path / "none.db", "cuda", "NVIDIA H200")
    assert basis.costs.trial_s == estimate.ASSUMED_TRIAL_S["cuda"] == 8.0
    assert basis.costs.compile_s["reduce-overhead"] == 45.0
    assert set(basis.sources.values()) == {"assumed"}


def test_a_runs_fixed_cost_per_trial_is_its_wall_time_outside_windows_and_compiles():
    from harness.suite.costs import _per_trial

    def trial(status="ok", window=3.0, compile_s=None):
        metrics = {} if compile_s is None else {"compile_time_s": compile_s}
        return {"status": status, "notes": {"window_s": window}, "metrics": metrics,
                "spec": {"kind": "train", "techniques": {"compile": compile_s is not None}}}

    start, end = "2026-01-01T00:00:00+00:00", "2026-01-01T00:00:20+00:00"
    skipped = {"status": "skipped", "notes": {}, "metrics": {}, "spec": {}}
    assert _per_trial(start, end, [trial(), trial(window=5.0, compile_s=4.0), skipped]) == (4.0, 2)
    assert _per_trial(start, end, [trial(), trial(status="timeout")]) is None  # its wait is no fixed cost
    assert _per_trial(start, None, [trial()]) is None  # unfinished
