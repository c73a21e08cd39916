"""Preset sizes against published parameter counts, and resolve_config's rules."""

from __future__ import annotations


import pytest
import torch
import torch.nn.functional as F

from harness.models import (
    GPT,
    PRESETS,
    GPTConfig,
    flops_parameter_count,
    parameter_count,
    preset_names,
    resolve_config,
)

# Published sizes: GPT-2 (Radford et al. 2019, as reproduced by nanoGPT, position
# embeddings included, LM head tied) and TinyLlama-1.1B (untied, exact count).
PUBLISHED = {
    "gpt2-small": 124e6,
    "gpt2-medium": 355e6,
    "gpt2-large": 774e6,
    "gpt2-xl": 1558e6,
    "llama-1b": 1_100_048_384,
}


def meta_model(cfg: GPTConfig) -> GPT:
    with torch.device("meta"):
        return GPT(cfg)


@pytest.mark.parametrize("name", PUBLISHED)
def test_preset_matches_published_parameter_count(name: str) -> None:
    count = parameter_count(meta_model(PRESETS[name]))
    assert count == pytest.approx(PUBLISHED[name], rel=0.01)


def test_llama_1b_is_exactly_tinyllama() -> None:
    assert parameter_count(meta_model(PRESETS["llama-1b"])) == 1_100_048_384


def test_gpt2_small_is_exactly_nanogpt_count() -> None:
    # nanoGPT prints 124.44M for this config before subtracting position embeddings
    assert parameter_count(meta_model(PRESETS["gpt2-small"])) == 124_439_808


@pytest.mark.parametrize("name", [name for name, cfg in PRESETS.items() if cfg.n_experts == 0])
def test_flops_parameter_count_is_parameters_minus_lookup_only_tables(name: str) -> None:
    cfg = PRESETS[name]
    lookup_only = 0
    if cfg.flavour == "gpt2":
        lookup_only += cfg.max_seq_len * cfg.d_model  # position table
    if not cfg.tie_embeddings:
        lookup_only += cfg.vocab_size * cfg.d_model  # input token table
    assert parameter_count(meta_model(cfg)) - lookup_only == flops_parameter_count(cfg)


def test_preset_names_lists_every_preset() -> None:
    expected = {"tiny", "tiny-llama", "small", "gpt2-small", "gpt2-medium", "gpt2-large",
                "gpt2-xl", "llama-1b", "tiny-moe", "small-moe8-top1", "small-moe8-top2",
                "gpt2-small-moe8-top1", "gpt2-small-moe8-top2"}  # MoE: tests/models/test_moe.py
    assert set(preset_names()) == expected == set(PRESETS)


def test_tiny_llama_mirrors_tiny() -> None:
    tiny, tiny_llama = PRESETS["tiny"], PRESETS["tiny-llama"]
    assert (tiny_llama.flavour, tiny_llama.kv_heads) == ("llama", 2)
    for field in ("n_layer", "n_head", "d_model", "vocab_size", "max_seq_len"):
        assert getattr(tiny, field) == getattr(tiny_llama, field), field


def test_resolve_config_applies_non_none_overrides() -> None:
    cfg = resolve_config("tiny", n_layer=3, d_model=None, tie_embeddings=False)
    assert cfg.n_layer == 3
    assert cfg.d_model == PRESETS["tiny"].d_model
    assert cfg.tie_embeddings is False
    assert PRESETS["tiny"].n_layer == 2  # presets themselves are untouched
    assert resolve_config("small") == PRESETS["small"]


def test_resolve_config_revalidates_overrides() -> None:
    with pytest.raises(ValueError, match="divisible by n_head"):
        resolve_config("tiny", n_head=3)


def test_unknown_preset_lists_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown preset 'gpt5'.*gpt2-small.*llama-1b"):
        resolve_config("gpt5")


def test_unknown_field_is_rejected() -> None:
    with pytest.raises(ValueError, match="n_layers"):
        resolve_config("tiny", n_layers=4)


def test_no_preset_needs_complete_overrides() -> None:
    with pytest.raises(ValueError, match=r"\['max_seq_len', 'vocab_size'\]"):
        resolve_config(None, n_layer=1, n_head=2, d_model=8)
    cfg = resolve_config(None, n_layer=1, n_head=2, d_model=8, vocab_size=11, max_seq_len=16,
                         flavour="llama")
    assert (cfg.flavour, cfg.n_layer, cfg.vocab_size, cfg.bias) == ("llama", 1, 11, False)


@pytest.mark.parametrize("name", ["tiny", "tiny-llama"])
def test_tiny_training_step_learns(name: str) -> None:
    cfg = PRESETS[name]
    torch.manual_seed(0)
    model = GPT(cfg)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    batch = torch.randint(0, cfg.vocab_size, (8, 129))
    losses = []
    for _ in range(6):
        logits = model(batch[:, :-1])  # (8, 128, V)
        loss = F.cross_entropy(logits.float().flatten(0, 1), batch[:, 1:].flatten())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    assert losses[0] == pytest.approx(torch.log(torch.tensor(256.0)).item(), abs=0.1)
    assert losses[-1] < losses[0] - 0.1  # memorising one fixed batch
