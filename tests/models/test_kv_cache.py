"""KV-cached decoding computes what re-running the whole sequence computes: prefill, single
token steps and chunked prefill, for learned positions (gpt2) and rotary GQA (llama)."""

from __future__ import annotations

import pytest
import torch

from harness.models import GPT, GPTConfig
from harness.models.kv_cache import KVCache

CONFIGS = {
    "gpt2": GPTConfig(flavour="gpt2", n_layer=2, n_head=4, d_model=32, vocab_size=97,
                      max_seq_len=64),
    # 4 query heads share 2 k/v heads; rotary positions
    "llama-gqa": GPTConfig(flavour="llama", n_layer=2, n_head=4, n_kv_head=2, d_model=32,
                           vocab_size=97, max_seq_len=64),
}
# fp32; cached and full attention differ in summation order only (observed ~1e-7)
ATOL = 1e-5


def build(name: str) -> GPT:
    torch.manual_seed(0)
    return GPT(CONFIGS[name]).eval()


def prompt(cfg: GPTConfig, B: int = 2, T: int = 7) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    return torch.randint(0, cfg.vocab_size, (B, T), generator=generator)


def cache_for(model: GPT, B: int, max_len: int) -> KVCache:
    return KVCache.allocate(model.config, B, max_len, "cpu", torch.float32)


@pytest.mark.parametrize("name", CONFIGS)
@torch.no_grad()
def test_greedy_decode_with_cache_matches_full_recompute(name):
    model = build(name)
    seq = prompt(model.config)
    B, T = seq.shape
    cache = cache_for(model, B, T + 5)
    logits = model(seq, cache=cache)  # prefill
    torch.testing.assert_close(logits, model(seq), rtol=0, atol=ATOL)
    for step in range(5):
        token = logits[:, -1:].argmax(-1)  # (B, 1)
        seq = torch.cat([seq, token], dim=1)
        logits = model(token, cache=cache)  # (B, 1, V)
        assert cache.length == seq.size(1)
        full = model(seq)[:, -1:]  # no cache: the whole sequence again
        torch.testing.assert_close(logits, full, rtol=0, atol=ATOL, msg=f"decode step {step}")


@pytest.mark.parametrize("name", CONFIGS)
@torch.no_grad()
def test_chunked_prefill_into_a_non_empty_cache_matches_full_forward(name):
    model = build(name)
    seq = prompt(model.config, T=20)
    cache = cache_for(model, 2, 20)
    chunks = [model(part, cache=cache) for part in seq.split([6, 1, 8, 5], dim=1)]
    torch.testing.assert_close(torch.cat(chunks, dim=1), model(seq), rtol=0, atol=ATOL)
    assert cache.length == 20


@torch.no_grad()
def test_without_cache_outputs_are_unchanged_by_an_unused_cache_argument():
    model = build("llama-gqa")
    seq = prompt(model.config)
    assert torch.equal(model(seq), model(seq, cache=None))


@torch.no_grad()
def test_cache_shape_and_overflow_are_checked():
    model = build("llama-gqa")
    cache = cache_for(model, 2, 8)
    assert cache.keys.shape == (2, 2, 2, 8, 8)  # (L, B, K, T_max, Q)
    model(prompt(model.config, T=7), cache=cache)
    with pytest.raises(ValueError, match="exceed the cache"):
        model(prompt(model.config, T=2), cache=cache)
    assert cache.length == 7  # a refused forward leaves the cache as it was
    with pytest.raises(ValueError, match="max_len"):
        cache_for(model, 2, model.config.max_seq_len + 1)


def test_rotary_offset_rotates_as_the_same_positions_of_a_longer_sequence():
    model = build("llama-gqa")
    rotary = model.blocks[0].attn.rotary
    x = torch.randn(1, 2, 10, rotary.head_dim)
    torch.testing.assert_close(rotary(x[:, :, 4:], offset=4), rotary(x)[:, :, 4:], rtol=0, atol=0)
