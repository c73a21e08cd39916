"""Trials of the model-level kinds, end to end in process on tiny models: an MoE training
trial, inference (fp32 vs int8), distillation (scratch vs distilled) and growth (scratch,
stack, LiGO). Real properties of each: what is reported, and how the figures relate."""

from __future__ import annotations

import math

import pytest

from harness.models import GPTConfig, forward_flops_per_token, model_flops_per_token
from harness.scenario import expand, load_scenario
from harness.spec import WARNING_CODES
from harness.train.worker import run_and_classify

FAST = {"steps": 8, "warmup_steps": 1, "lr": 1e-2}
CONTENTION_KEYS = {"foreign_cpu_share", "steal_share", "foreign_cpu_s", "cpus", "window_s",
                   "load_avg_before", "load_avg_after"}


def _trials(write_scenario, name, **sections):
    results = [run_and_classify(spec) for spec in expand(load_scenario(write_scenario(name, **sections)), "cpu")]
    for result in results:
        assert result.status == "ok", (result.reason, result.traceback)
        # every kind measures contention over its measured window and may carry warnings
        assert set(result.notes["contention"]) == CONTENTION_KEYS
        assert 0 <= result.notes["contention"]["foreign_cpu_share"] <= 1
        assert {w["code"] for w in result.warnings} <= set(WARNING_CODES)
    return results


def test_moe_trial_reports_routing_and_counts_active_flops(write_scenario):
    dense, moe = _trials(write_scenario, "moe", train=FAST,
                         matrix={"model.preset": ["tiny", "tiny-moe"]})
    m = moe.metrics
    # the router (C x E matmul) is the only FLOP difference between FLOP-matched twins
    assert m["flops_per_token"] - dense.metrics["flops_per_token"] == 6 * 2 * 64 * 4
    assert 0 <= m["dropped_token_fraction"] <= 1
    assert m["expert_load_imbalance"] >= 1 and 0 < m["router_entropy"] <= m["router_entropy_max"]
    assert m["router_entropy_max"] == pytest.approx(math.log(4))
    assert sum(moe.series["tokens_per_expert"]) == pytest.approx(1.0)
    assert "router_entropy" not in dense.metrics
    assert moe.notes["parameters"] > dense.notes["parameters"]  # 4 experts held, 1 active


def test_inference_trial_int8_holds_fewer_weight_bytes_and_keeps_perplexity_close(write_scenario):
    fp32, int8 = _trials(write_scenario, "int8", kind="inference", train={"steps": 20, "lr": 1e-2},
                         inference={"batch_size": 2, "prompt_len": 16, "decode_tokens": 4, "repeats": 2},
                         matrix={"quantization": ["none", "int8"]})
    assert int8.metrics["quantized_linear_layers"] == 4 * 2 and fp32.metrics["quantized_linear_layers"] == 0
    # 8 block matrices go to int8; the tied (V x C) embedding stays fp32
    assert int8.metrics["weight_bytes"] < 0.75 * fp32.metrics["weight_bytes"]
    for result in (fp32, int8):
        m = result.metrics
        assert m["perplexity"] == pytest.approx(math.exp(m["eval_loss"]))
        assert m["prefill_tokens_per_s"] > 0 and m["decode_tokens_per_s"] > 0
        assert "CUDA" in result.unmeasured["weight_memory_bytes"]
        assert "tokens_per_s" not in m
    assert fp32.metrics["pretrain_eval_loss"] == int8.metrics["pretrain_eval_loss"]  # same weights
    assert fp32.notes["pretrain_precision"] == int8.notes["pretrain_precision"] == "fp32"  # a CPU
    assert int8.metrics["eval_loss"] == pytest.approx(fp32.metrics["eval_loss"], rel=0.02)


@pytest.mark.parametrize("device, native_bf16, expected", [
    ("cuda", True, "bf16"), ("cuda", False, "fp32"), ("cpu", True, "fp32")])
def test_inference_weights_pretrain_in_bf16_where_the_gpu_has_it(monkeypatch, device, native_bf16, expected):
    import torch

    from harness.train.fit import pretrain_precision

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: native_bf16)
    assert pretrain_precision(torch.device(device)) == expected


def test_distilled_and_scratch_students_train_on_the_same_tokens(write_scenario):
    scratch, distilled = _trials(
        write_scenario, "distill", kind="distill", train={**FAST, "eval_every_tokens": 256},
        distillation={"student": {"n_layer": 1}, "teacher_steps": 10},
        matrix={"distillation.method": ["scratch", "distill"]})
    teacher = GPTConfig(flavour="gpt2", n_layer=2, n_head=4, d_model=64, vocab_size=256, max_seq_len=1024)
    student = GPTConfig(flavour="gpt2", n_layer=1, n_head=4, d_model=64, vocab_size=256, max_seq_len=1024)
    assert scratch.metrics["flops_per_token"] == model_flops_per_token(student, 32)
    assert distilled.metrics["flops_per_token"] == (model_flops_per_token(student, 32)
                                                    + forward_flops_per_token(teacher, 32))
    assert scratch.series["eval_tokens"] == distilled.series["eval_tokens"]
    assert distilled.metrics["teacher_train_tokens"] == 10 * 4 * 32
    assert "teacher_eval_loss" not in scratch.metrics
    assert distilled.notes["teacher_parameters"] > distilled.metrics["student_parameters"]
    for result in (scratch, distilled):
        assert result.metrics["perplexity"] == pytest.approx(math.exp(result.metrics["eval_loss"]))
        assert result.metrics["student_prefill_tokens_per_s"] > 0


def test_grown_models_start_from_what_the_small_model_learned(write_scenario):
    scratch, stack, ligo = _trials(
        write_scenario, "grow", kind="grow", train={**FAST, "eval_every_tokens": 256},
        growth={"small": {"n_layer": 1, "d_model": 32, "n_head": 2}, "small_steps": 30,
                "operator_steps": 5, "operator_lr": 1e-2},
        matrix={"growth.method": ["scratch", "stack", "ligo"]})
    untrained = scratch.series["eval_loss"][0]
    assert untrained == pytest.approx(math.log(256), abs=0.1)
    # before any training of the large model, the grown ones already model the source
    assert stack.series["eval_loss"][0] < untrained - 0.3
    assert ligo.series["eval_loss"][0] < untrained - 0.3
    assert ligo.metrics["operator_tokens"] == 5 * 4 * 32 and "operator_tokens" not in stack.metrics
    for grown in (stack, ligo):
        assert grown.metrics["small_train_tokens"] == 30 * 4 * 32
    assert "small_train_tokens" not in scratch.metrics
