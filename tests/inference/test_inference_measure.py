"""Inference measurements: weight bytes (tied weights once, int8 about a quarter of fp32),
decode with a quantised model, throughput arithmetic on a fake clock, perplexity."""

from __future__ import annotations

import copy
import math
import time

import pytest
import torch

from harness.inference import (
    decode_tokens_per_s,
    greedy_decode,
    linear_weight_bytes,
    perplexity,
    prefill_tokens_per_s,
    weight_bytes,
)
from harness.models import GPT, parameter_count, resolve_config
from harness.techniques.quantization import apply_int8

CPU = torch.device("cpu")
PRESETS = ("tiny", "tiny-llama")  # d_model 64; gpt2 with biases, llama GQA without


def build(preset: str, **overrides) -> GPT:
    torch.manual_seed(0)
    return GPT(resolve_config(preset, **overrides)).eval()


def int8(model: GPT) -> GPT:
    return apply_int8(copy.deepcopy(model), CPU)


def prompts(model: GPT, B: int = 2, T: int = 16) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    return torch.randint(0, model.config.vocab_size, (B, T), generator=generator)


@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("preset", PRESETS)
def test_fp32_weight_bytes_are_four_per_parameter_tied_embedding_once(preset, tied):
    model = build(preset, tie_embeddings=tied)
    # parameter_count counts a tied matrix once; the rotary tables (non-persistent) are left out
    assert weight_bytes(model) == 4 * parameter_count(model)
    bf16 = copy.deepcopy(model).to(torch.bfloat16)
    assert weight_bytes(bf16) == 2 * parameter_count(model)


@pytest.mark.parametrize("preset", PRESETS)
def test_int8_linear_weights_take_about_a_quarter_of_fp32(preset):
    model = build(preset)
    quantized = int8(model)
    # the blocks only: the LM head stays fp32 (tied to the embedding) in both
    ratio = linear_weight_bytes(quantized.blocks) / linear_weight_bytes(model.blocks)
    # 1 byte per weight against 4, plus what stays fp32: biases (gpt2: 0.259 here) and one
    # scale and zero point per layer (16 bytes against >= 16 KiB: llama 0.2503 here)
    assert 0.24 <= ratio <= 0.30
    assert weight_bytes(quantized) < weight_bytes(model)
    # the saving is exactly the quantised layers': embeddings and norms are untouched
    assert weight_bytes(model) - weight_bytes(quantized) == \
        linear_weight_bytes(model.blocks) - linear_weight_bytes(quantized.blocks)


@pytest.mark.parametrize("preset", PRESETS)
def test_int8_decode_with_cache_matches_uncached_argmax(preset):
    model = int8(build(preset))
    seq = prompts(model)
    decoded = greedy_decode(model, seq, new_tokens=6, dtype=torch.float32)
    expected = seq
    with torch.no_grad():
        for _ in range(6):  # no cache: the whole sequence again for every token
            expected = torch.cat([expected, model(expected)[:, -1:].argmax(-1)], dim=1)
    assert torch.equal(decoded, expected)


class FakeClock:
    """time.perf_counter that advances one second per call."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def test_decode_counts_batch_times_new_tokens_over_the_timed_steps(monkeypatch):
    model = build("tiny")
    seq = prompts(model, B=3, T=5)
    monkeypatch.setattr(time, "perf_counter", FakeClock())
    # one perf_counter call either side of the 4 timed steps: 1 s for 3 * 4 tokens
    assert decode_tokens_per_s(model, seq, 4, CPU, torch.float32) == 12.0


def test_prefill_counts_batch_times_length_over_the_median_pass(monkeypatch):
    model = build("tiny")
    seq = prompts(model, B=3, T=5)
    monkeypatch.setattr(time, "perf_counter", FakeClock())
    assert prefill_tokens_per_s(model, seq, CPU, repeats=3) == 15.0


def test_throughput_runs_for_real_quantised_and_under_autocast():
    model = build("tiny-llama").train()
    seq = prompts(model)
    assert prefill_tokens_per_s(int8(model), seq, CPU) > 0
    assert decode_tokens_per_s(int8(model), seq, 4, CPU, torch.float32) > 0
    bf16 = lambda: torch.autocast("cpu", dtype=torch.bfloat16)  # noqa: E731
    assert decode_tokens_per_s(model, seq, 4, CPU, torch.bfloat16, autocast=bf16) > 0
    assert model.training  # measured in eval mode, then given back as it was


def test_decode_rejects_a_generation_longer_than_the_context():
    model = build("tiny", max_seq_len=16)
    with pytest.raises(ValueError, match="max_len"):
        decode_tokens_per_s(model, prompts(model, T=12), 8, CPU, torch.float32)


def test_perplexity_is_exp_of_the_loss():
    assert perplexity(0.0) == 1.0
    assert perplexity(math.log(50.0)) == pytest.approx(50.0)
    assert perplexity(1e6) == math.inf
