"""LiGO growth operator (harness.growth): exactness, stacking, width layout, validation,
learning and FLOPs accounting, on tiny GPTs of both flavours."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call
from torch.utils.flop_counter import FlopCounterMode

from harness.growth import GrowthOperator, grow, learn_operator, operator_flops_per_step, stack_grow
from harness.models import GPT, GPTConfig


def config(**overrides) -> GPTConfig:
    fields = dict(n_layer=2, n_head=4, d_model=32, vocab_size=61, max_seq_len=32)
    fields.update(overrides)
    return GPTConfig(**fields)


# small config overrides per variant; the large ones change n_layer / width on top
VARIANTS = {
    "gpt2": dict(flavour="gpt2"),
    "gpt2-gqa-untied": dict(flavour="gpt2", n_kv_head=2, tie_embeddings=False),
    "llama": dict(flavour="llama"),
    "llama-gqa": dict(flavour="llama", n_kv_head=2),
}


def pair(variant: str, **large) -> tuple[GPT, GPT]:
    torch.manual_seed(0)
    small_cfg = config(**VARIANTS[variant])
    small = GPT(small_cfg)
    with torch.no_grad():  # move norms off their ones/zeros init so copies are checkable
        for p in small.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return small, GPT(dataclasses.replace(small_cfg, **large))


def wider(variant: str) -> dict:
    # head_dim 8 kept, heads doubled (kv heads too), d_ff left to its default
    kv = VARIANTS[variant].get("n_kv_head")
    return dict(n_layer=3, n_head=8, d_model=64, n_kv_head=None if kv is None else 2 * kv)


@pytest.mark.parametrize("variant", VARIANTS)
def test_zero_new_layers_reproduce_the_small_models_logits(variant: str) -> None:
    """Same width, L 2 -> 4, depth_init "zero-new", noise 0: logits equal within atol 1e-5
    (fp32). The new blocks have all-zero weights, norm gains and biases, so each adds
    exactly zero to the residual stream; only summation order may differ."""
    small, large = pair(variant, n_layer=4)
    grow(small, large, GrowthOperator(small.config, large.config, "zero-new", 0.0))
    idx = torch.randint(0, small.config.vocab_size, (3, 20))
    with torch.no_grad():
        torch.testing.assert_close(large(idx), small(idx), rtol=0, atol=1e-5)
        # the new layers really are there and really are zero
        assert all(p.abs().max() == 0 for p in large.blocks[3].parameters())


@pytest.mark.parametrize("variant", VARIANTS)
def test_stack_grow_copies_layer_l_mod_l1_exactly(variant: str) -> None:
    small, large = pair(variant, n_layer=5)
    stack_grow(small, large)
    for l, block in enumerate(large.blocks):
        source = dict(small.blocks[l % 2].named_parameters())
        for name, p in block.named_parameters():
            assert torch.equal(p, source[name]), (l, name)
    for name in ("token_embedding", "position_embedding", "final_norm", "lm_head"):
        if getattr(small, name) is not None:
            for (n, a), b in zip(getattr(small, name).named_parameters(),
                                 getattr(large, name).parameters()):
                assert torch.equal(a, b), (name, n)
    assert (large.lm_head.weight is large.token_embedding.weight) == large.config.tie_embeddings


def test_stack_grow_equals_grow_with_the_initial_operator() -> None:
    small, large = pair("llama-gqa", **wider("llama-gqa"))
    stack_grow(small, large)
    expected = GrowthOperator(small.config, large.config, "stack", 0.0)(
        {n: p.detach() for n, p in small.named_parameters()})
    for name, p in large.named_parameters():
        assert torch.equal(p, expected[name]), name


def _stacked_source(name: str, small_layers: int) -> str:
    """The small parameter that stacking puts in large parameter `name`."""
    if not name.startswith("blocks."):
        return name
    _, layer, rest = name.split(".", 2)
    return f"blocks.{int(layer) % small_layers}.{rest}"


def _old_and_new(large: torch.Tensor, small: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The leading small-shaped block of large, and a mask of everything outside it."""
    block = large[tuple(slice(0, n) for n in small.shape)]
    outside = torch.ones_like(large, dtype=torch.bool)
    outside[tuple(slice(0, n) for n in small.shape)] = False
    return block, outside


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("noise_std", [0.0, 0.01])
def test_width_growth_embeds_the_small_weights_in_the_first_dims(variant: str, noise_std: float) -> None:
    """[I; 0] init with head_dim unchanged: each grown matrix's leading block is the small
    one (large layer l from small layer l mod L1); new dims are zero, or noise-driven."""
    small, large = pair(variant, **wider(variant))
    grow(small, large, GrowthOperator(small.config, large.config, "stack", noise_std))
    small_params = dict(small.named_parameters())
    large_params = dict(large.named_parameters())
    assert {n: p.shape for n, p in large_params.items()} == {
        n: p.shape for n, p in GPT(large.config).named_parameters()}

    def check(large_t: torch.Tensor, small_t: torch.Tensor, name: str) -> None:
        block, outside = _old_and_new(large_t, small_t)
        assert torch.equal(block, small_t), name
        if noise_std == 0.0:
            assert large_t[outside].abs().max() == 0, name
        elif name.endswith("weight") and "embedding" not in name and "lm_head" not in name:
            assert large_t[outside].abs().max() > 0, name  # noise reaches the new dims

    (H1, K1), (H2, K2), Q = (small.config.n_head, small.config.kv_heads), (
        large.config.n_head, large.config.kv_heads), small.config.head_dim
    for name, p in large_params.items():
        s = small_params[_stacked_source(name, small.config.n_layer)]
        if "qkv_proj" in name:  # rows are [q | k | v], each chunk embedded on its own
            for big, little in zip(p.split([H2 * Q, K2 * Q, K2 * Q]), s.split([H1 * Q, K1 * Q, K1 * Q])):
                check(big, little, name)
        else:
            check(p, s, name)


@pytest.mark.parametrize("flavour", ["gpt2", "llama"])
def test_growing_head_dim_keeps_each_small_head_in_its_own_large_head(flavour: str) -> None:
    """head_dim 8 -> 16 with 4 heads: a flat [I; 0] would merge small heads 0 and 1 into
    large head 0; the per-head embedding puts small head h in large head h (and, for rotary,
    each half of the head in the matching half, keeping the rotated pairs (i, i + Q/2))."""
    small, large = pair(flavour, d_model=64)
    grow(small, large, GrowthOperator(small.config, large.config, "stack", 0.0))
    q_small = small.blocks[0].attn.qkv_proj.weight[:32]  # (H1 Q1, C1) = (4*8, 32)
    q_large = large.blocks[0].attn.qkv_proj.weight[:64]  # (H2 Q2, C2) = (4*16, 64)
    halves = 2 if flavour == "llama" else 1
    small_heads = q_small.reshape(4, halves, 8 // halves, 32)
    large_heads = q_large.reshape(4, halves, 16 // halves, 64)
    assert torch.equal(large_heads[:, :, : 8 // halves, :32], small_heads)
    assert large_heads[:, :, 8 // halves:].abs().max() == 0


@pytest.mark.parametrize("change, match", [
    (dict(n_layer=1), "n_layer"),
    (dict(d_model=16, n_head=2), "d_model"),
    (dict(vocab_size=62), "vocab_size"),
    (dict(flavour="llama"), "flavour"),
    (dict(tie_embeddings=False), "tie_embeddings"),
    (dict(n_experts=2), "mixture of experts"),
])
def test_incompatible_pairs_are_rejected(change: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        GrowthOperator(config(), config(**change))
    with pytest.raises(ValueError, match=match):
        operator_flops_per_step(config(), config(**change))


def test_bad_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="depth_init"):
        GrowthOperator(config(), config(n_layer=3), depth_init="interpolate")
    with pytest.raises(ValueError, match="noise_std"):
        GrowthOperator(config(), config(n_layer=3), noise_std=-1.0)
    small, large = pair("gpt2", n_layer=3)
    operator = GrowthOperator(small.config, large.config)
    with pytest.raises(ValueError, match="missing"):
        operator({n: p for n, p in small.named_parameters() if "final_norm" not in n})
    with pytest.raises(ValueError, match="config"):
        grow(large, small, operator)


def _fixed_batch(vocab: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, vocab, (4, 17), generator=generator)
    return tokens[:, :-1], tokens[:, 1:]


def _loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten())


@pytest.mark.parametrize("variant", ["gpt2", "llama-gqa"])
def test_learning_the_operator_lowers_the_large_models_loss(variant: str) -> None:
    small, large = pair(variant, **wider(variant))
    operator = GrowthOperator(small.config, large.config, "stack", noise_std=0.01)
    small_before = {n: p.detach().clone() for n, p in small.named_parameters()}
    large_before = {n: p.detach().clone() for n, p in large.named_parameters()}
    operator_before = {n: p.detach().clone() for n, p in operator.named_parameters()}
    x, y = _fixed_batch(small.config.vocab_size)

    losses = learn_operator(operator, small, large, lambda step: (x, y), steps=30, lr=1e-2,
                            loss_fn=_loss)
    assert len(losses) == 30 and all(isinstance(v, float) for v in losses)
    assert sum(losses[-5:]) / 5 < losses[0] - 0.1
    for name, p in operator.named_parameters():
        assert not torch.equal(p, operator_before[name]), f"{name} was not trained"
    for model, before in ((small, small_before), (large, large_before)):
        for name, p in model.named_parameters():
            assert torch.equal(p, before[name]) and p.grad is None, name

    # grow() writes what the functional path saw: the grown model's loss is the operator's
    with torch.no_grad():
        functional = _loss(functional_call(large, operator(dict(small.named_parameters())), (x,)), y)
        grow(small, large, operator)
        torch.testing.assert_close(_loss(large(x), y), functional, rtol=0, atol=1e-6)
        assert functional < losses[0]
    assert (large.lm_head.weight is large.token_embedding.weight) == large.config.tie_embeddings


def test_without_noise_new_width_dims_stay_identical_copies() -> None:
    """Why noise_std: at [I; 0] the new dims are interchangeable, so they receive the same
    gradient and learning never tells them apart; a little noise breaks the tie."""
    small, large = pair("gpt2", **wider("gpt2"))
    x, y = _fixed_batch(small.config.vocab_size)
    for noise_std, identical in ((0.0, True), (0.01, False)):
        operator = GrowthOperator(small.config, large.config, "stack", noise_std)
        learn_operator(operator, small, large, lambda step: (x, y), steps=5, lr=1e-2, loss_fn=_loss)
        new_rows = operator.width["resid"][32:]  # (C2 - C1, C1)
        moved = new_rows.abs().max() > 0
        spread = (new_rows - new_rows[0]).abs().max()
        assert moved and (spread < 1e-6) == identical, (noise_std, spread)


@pytest.mark.parametrize("variant", VARIANTS)
def test_operator_flops_match_a_flop_counter_and_grow_with_width(variant: str) -> None:
    small, large = pair(variant, **wider(variant))
    operator = GrowthOperator(small.config, large.config)
    with FlopCounterMode(display=False) as counter:
        operator({n: p.detach() for n, p in small.named_parameters()})
    flops = operator_flops_per_step(small.config, large.config)
    assert flops > 0
    assert flops == 3 * counter.get_total_flops()  # forward counted, times 3 for fwd + bwd
    wider_still = dataclasses.replace(large.config, d_model=96, n_head=12)
    assert operator_flops_per_step(small.config, wider_still) > flops
