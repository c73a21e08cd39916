"""Named model sizes, from CPU-test toys to the published GPT-2 family and a 1B Llama.

Parameter counts in the comments are the published figures; tests/models checks
that the configs below reproduce them (embeddings tied and counted once,
position embeddings included).

Mixture-of-Experts presets sit next to their dense twins and are FLOP-matched to them:
a token passes through top_k experts of hidden size d_ff, and top_k * d_ff is the twin's
4 * d_model, so a token meets as many feed-forward weights as in the dense model. Only
the router (d_model x n_experts per layer) and, for gpt2-flavour top-2, a second expert's
output bias are extra: under 0.5% of model_flops_per_token. Their total parameters, and
so their memory, are about n_experts / top_k times the twin's feed-forward.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from harness.models.gpt import GPTConfig

PRESETS: dict[str, GPTConfig] = {
    # Toys: a training step (batch 8, seq 128) takes milliseconds on a laptop CPU. Their
    # context matches GPT-2's so that any shipped scenario runs with --set model.preset=tiny.
    "tiny": GPTConfig(
        flavour="gpt2", n_layer=2, n_head=4, d_model=64, vocab_size=256, max_seq_len=1024
    ),
    "tiny-moe": GPTConfig(
        flavour="gpt2", n_layer=2, n_head=4, d_model=64, vocab_size=256, max_seq_len=1024,
        n_experts=4, expert_top_k=1, d_ff=256,
    ),
    "tiny-llama": GPTConfig(
        flavour="llama", n_layer=2, n_head=4, n_kv_head=2, d_model=64, vocab_size=256,
        max_seq_len=1024,
    ),
    "small": GPTConfig(
        flavour="gpt2", n_layer=4, n_head=4, d_model=128, vocab_size=256, max_seq_len=1024
    ),
    "small-moe8-top1": GPTConfig(
        flavour="gpt2", n_layer=4, n_head=4, d_model=128, vocab_size=256, max_seq_len=1024,
        n_experts=8, expert_top_k=1, d_ff=512,
    ),
    "small-moe8-top2": GPTConfig(
        flavour="gpt2", n_layer=4, n_head=4, d_model=128, vocab_size=256, max_seq_len=1024,
        n_experts=8, expert_top_k=2, d_ff=256,
    ),
    # GPT-2 (Radford et al. 2019), sizes as released by OpenAI and reproduced by nanoGPT.
    "gpt2-small": GPTConfig(  # 124M
        flavour="gpt2", n_layer=12, n_head=12, d_model=768, vocab_size=50257, max_seq_len=1024
    ),
    "gpt2-small-moe8-top1": GPTConfig(  # 124M active like gpt2-small, 521M in all
        flavour="gpt2", n_layer=12, n_head=12, d_model=768, vocab_size=50257, max_seq_len=1024,
        n_experts=8, expert_top_k=1, d_ff=3072,
    ),
    "gpt2-small-moe8-top2": GPTConfig(  # 124M active like gpt2-small, 295M in all
        flavour="gpt2", n_layer=12, n_head=12, d_model=768, vocab_size=50257, max_seq_len=1024,
        n_experts=8, expert_top_k=2, d_ff=1536,
    ),
    "gpt2-medium": GPTConfig(  # 355M
        flavour="gpt2", n_layer=24, n_head=16, d_model=1024, vocab_size=50257, max_seq_len=1024
    ),
    "gpt2-large": GPTConfig(  # 774M
        flavour="gpt2", n_layer=36, n_head=20, d_model=1280, vocab_size=50257, max_seq_len=1024
    ),
    "gpt2-xl": GPTConfig(  # 1558M
        flavour="gpt2", n_layer=48, n_head=25, d_model=1600, vocab_size=50257, max_seq_len=1024
    ),
    # TinyLlama-1.1B (Zhang et al. 2024): 1,100,048,384 parameters.
    "llama-1b": GPTConfig(
        flavour="llama", n_layer=22, n_head=32, n_kv_head=4, d_model=2048, d_ff=5632,
        vocab_size=32000, max_seq_len=2048, tie_embeddings=False, rope_theta=10000.0,
    ),
}


def preset_names() -> list[str]:
    return list(PRESETS)


def resolve_config(preset: str | None, **overrides: Any) -> GPTConfig:
    """A preset's config with every non-None override applied.

    With preset None the overrides alone must name every required GPTConfig field.
    Raises ValueError for an unknown preset, an unknown field, or missing fields.
    """
    field_names = {f.name for f in dataclasses.fields(GPTConfig)}
    unknown = sorted(set(overrides) - field_names)
    if unknown:
        raise ValueError(f"unknown GPTConfig fields {unknown}; known: {sorted(field_names)}")
    given = {name: value for name, value in overrides.items() if value is not None}

    if preset is None:
        required = sorted(
            f.name for f in dataclasses.fields(GPTConfig)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        )
        missing = [name for name in required if name not in given]
        if missing:
            raise ValueError(
                f"no preset given, so these GPTConfig fields must be set: {missing}"
            )
        return GPTConfig(**given)

    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; known presets: {', '.join(PRESETS)}")
    return dataclasses.replace(PRESETS[preset], **given)
