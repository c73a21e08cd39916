"""Behaviour of the GPT model itself: shapes, causality, tying, init, meta device."""

from __future__ import annotations

import math

import pytest
import torch

from harness.models import GPT, GPTConfig, parameter_count
from harness.models.gpt import Block, CausalSelfAttention, RotaryEmbedding


def small_config(**overrides) -> GPTConfig:
    fields = dict(n_layer=2, n_head=4, d_model=32, vocab_size=97, max_seq_len=64)
    fields.update(overrides)
    return GPTConfig(**fields)


CONFIGS = {
    "gpt2": small_config(flavour="gpt2"),
    "gpt2-gqa": small_config(flavour="gpt2", n_kv_head=2),
    "llama": small_config(flavour="llama"),
    "llama-gqa": small_config(flavour="llama", n_kv_head=2),
    "llama-mqa-untied": small_config(flavour="llama", n_kv_head=1, tie_embeddings=False),
}


@pytest.mark.parametrize("name", CONFIGS)
def test_forward_returns_logits_of_shape_b_t_v(name: str) -> None:
    cfg = CONFIGS[name]
    torch.manual_seed(0)
    model = GPT(cfg)
    idx = torch.randint(0, cfg.vocab_size, (3, 17))
    logits = model(idx)
    assert logits.shape == (3, 17, cfg.vocab_size)
    assert logits.dtype == torch.float32
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("name", CONFIGS)
def test_changing_token_t_leaves_earlier_logits_unchanged(name: str) -> None:
    cfg = CONFIGS[name]
    torch.manual_seed(0)
    model = GPT(cfg).eval()
    idx = torch.randint(0, cfg.vocab_size, (2, 24))
    t = 10
    changed = idx.clone()
    changed[:, t] = (changed[:, t] + 1) % cfg.vocab_size
    with torch.no_grad():
        before, after = model(idx), model(changed)
    torch.testing.assert_close(after[:, :t], before[:, :t], rtol=0, atol=1e-6)
    # and the change is visible from t on, so the comparison above has teeth
    assert (after[:, t:] - before[:, t:]).abs().amax() > 1e-4


def test_sequence_longer_than_context_is_rejected() -> None:
    model = GPT(CONFIGS["gpt2"])
    with pytest.raises(ValueError, match="max_seq_len"):
        model(torch.zeros(1, 65, dtype=torch.long))


def test_tied_embeddings_share_storage_and_untied_do_not() -> None:
    tied = GPT(small_config(tie_embeddings=True))
    untied = GPT(small_config(tie_embeddings=False))
    assert tied.lm_head.weight is tied.token_embedding.weight
    assert tied.lm_head.weight.data_ptr() == tied.token_embedding.weight.data_ptr()
    assert untied.lm_head.weight.data_ptr() != untied.token_embedding.weight.data_ptr()
    # the shared matrix is counted once
    assert parameter_count(untied) - parameter_count(tied) == 97 * 32


@pytest.mark.parametrize("flavour", ["gpt2", "llama"])
def test_init_is_deterministic_under_the_same_seed(flavour: str) -> None:
    cfg = small_config(flavour=flavour, n_kv_head=2)
    torch.manual_seed(123)
    first = GPT(cfg).state_dict()
    torch.manual_seed(123)
    second = GPT(cfg).state_dict()
    torch.manual_seed(124)
    third = GPT(cfg).state_dict()
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), key
    assert not torch.equal(first["blocks.0.attn.qkv_proj.weight"], third["blocks.0.attn.qkv_proj.weight"])


def test_init_std_is_002_and_residual_projections_are_scaled_by_depth() -> None:
    cfg = GPTConfig(n_layer=8, n_head=4, d_model=256, vocab_size=512, max_seq_len=64)
    torch.manual_seed(0)
    model = GPT(cfg)
    residual_std = 0.02 / math.sqrt(2 * cfg.n_layer)
    block = model.blocks[3]
    assert block.attn.qkv_proj.weight.std().item() == pytest.approx(0.02, rel=0.02)
    assert block.mlp.in_proj.weight.std().item() == pytest.approx(0.02, rel=0.02)
    assert block.attn.out_proj.weight.std().item() == pytest.approx(residual_std, rel=0.02)
    assert block.mlp.out_proj.weight.std().item() == pytest.approx(residual_std, rel=0.02)
    assert model.token_embedding.weight.std().item() == pytest.approx(0.02, rel=0.02)
    assert torch.count_nonzero(block.attn.qkv_proj.bias) == 0
    assert torch.equal(block.attn_norm.weight, torch.ones(256))


def test_blocks_are_a_modulelist_of_single_tensor_blocks() -> None:
    cfg = CONFIGS["llama-gqa"]
    model = GPT(cfg)
    assert isinstance(model.blocks, torch.nn.ModuleList)
    assert len(model.blocks) == cfg.n_layer
    assert all(isinstance(block, Block) for block in model.blocks)
    x = torch.randn(2, 9, cfg.d_model)
    assert model.blocks[0](x).shape == x.shape
    assert model.config is cfg


def test_gqa_groups_consecutive_query_heads_onto_one_kv_head() -> None:
    # Llama's convention: query head h reads kv head h // (n_head / n_kv_head)
    attn = CausalSelfAttention(small_config(flavour="llama", n_head=8, n_kv_head=2))
    q = torch.randn(2, 8, 11, 4)
    k, v = torch.randn(2, 2, 11, 4), torch.randn(2, 2, 11, 4)
    expected = torch.nn.functional.scaled_dot_product_attention(
        q, k.repeat_interleave(4, dim=1), v.repeat_interleave(4, dim=1), is_causal=True
    )
    torch.testing.assert_close(attn.attend(q, k, v), expected)
    assert attn.qkv_proj.out_features == (8 + 2 * 2) * 4


def test_rotary_scores_depend_only_on_relative_position() -> None:
    rope = RotaryEmbedding(head_dim=16, max_seq_len=32, theta=10000.0)
    q, k = torch.randn(16), torch.randn(16)
    # put the same q and k at every position, rotate, and compare q_m . k_n
    rotated_q = rope(q.expand(1, 1, 32, 16))[0, 0]  # (T, Q)
    rotated_k = rope(k.expand(1, 1, 32, 16))[0, 0]
    scores = rotated_q @ rotated_k.T  # (T, T): scores[m, n] = q_m . k_n
    torch.testing.assert_close(scores[5, 2], scores[25, 22])
    torch.testing.assert_close(scores[7, 7], q @ k)  # zero offset: no rotation left
    assert not torch.allclose(scores[5, 2], scores[5, 4])


def test_llama_has_no_biases_and_no_position_table() -> None:
    cfg = small_config(flavour="llama", bias=True)
    assert cfg.bias is False
    model = GPT(cfg)
    names = [name for name, _ in model.named_parameters()]
    assert not any(name.endswith("bias") for name in names)
    assert model.position_embedding is None
    assert isinstance(model.final_norm, torch.nn.RMSNorm)


def test_builds_on_meta_device_and_materialises() -> None:
    cfg = small_config(flavour="llama", n_kv_head=2)
    with torch.device("meta"):
        model = GPT(cfg)
    assert all(p.is_meta for p in model.parameters())
    model.to_empty(device="cpu")
    model.init_weights()
    reference = GPT(cfg)
    rope, reference_rope = model.blocks[1].attn.rotary, reference.blocks[1].attn.rotary
    assert torch.equal(rope.cos, reference_rope.cos) and torch.equal(rope.sin, reference_rope.sin)
    assert model.blocks[0].attn.out_proj.weight.std().item() == pytest.approx(
        reference.blocks[0].attn.out_proj.weight.std().item(), rel=0.2
    )
    assert torch.isfinite(model(torch.zeros(1, 8, dtype=torch.long))).all()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (dict(d_model=30, n_head=4), "divisible by n_head"),
        (dict(n_head=4, n_kv_head=3), "divisible by n_kv_head"),
        (dict(n_head=4, n_kv_head=8), "n_kv_head must be in"),
        (dict(n_layer=0), "n_layer must be a positive int"),
        (dict(flavour="bert"), "flavour must be one of"),
        (dict(flavour="llama", d_model=12, n_head=4), "even head_dim"),
    ],
)
def test_invalid_configs_raise_value_error(fields: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        small_config(**fields)


def test_feed_forward_hidden_sizes() -> None:
    assert small_config(flavour="gpt2").ff_hidden == 4 * 32
    # Llama-7B: d_model 4096 -> 11008; TinyLlama: 2048 -> 5632 (256-rounded 8/3 d_model)
    assert small_config(flavour="llama", d_model=4096, n_head=32).ff_hidden == 11008
    assert small_config(flavour="llama", d_model=2048, n_head=32).ff_hidden == 5632
    assert small_config(flavour="llama", d_ff=100).ff_hidden == 100
    cfg = small_config(n_head=8, n_kv_head=2)
    assert (cfg.head_dim, cfg.kv_heads) == (4, 2)
    assert small_config(n_head=8).kv_heads == 8
