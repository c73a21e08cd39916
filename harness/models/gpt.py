"""A decoder-only transformer in two flavours, in the spirit of nanoGPT's model.py.

gpt2:  LayerNorm, GELU (tanh), learned position embeddings  (Radford et al. 2019)
llama: RMSNorm, SwiGLU, rotary position embeddings, optional grouped-query
       attention, no biases  (Touvron et al. 2023; Ainslie et al. 2023 for GQA)

Both are pre-norm: x = x + attn(norm(x)); x = x + mlp(norm(x)).
With cfg.n_experts > 0 the mlp is a routed Mixture of Experts (harness/models/moe.py)
whose experts are that flavour's MLP; each forward leaves its auxiliary loss on the layer.

Shape letters used in comments:
  B batch, T sequence length, C d_model, V vocab_size,
  H query heads, K key/value heads, Q head_dim, F feed-forward hidden size.

The model returns logits only; the loss is the caller's business so that it can
be computed in whatever precision the caller wants.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from harness.models.moe import RoutedExperts

if TYPE_CHECKING:  # kv_cache imports GPTConfig from here
    from harness.models.kv_cache import KVCache, LayerKV

Flavour = Literal["gpt2", "llama"]
FLAVOURS: tuple[str, ...] = ("gpt2", "llama")


@dataclass(frozen=True, kw_only=True)
class GPTConfig:
    flavour: Flavour = "gpt2"
    n_layer: int
    n_head: int
    d_model: int
    vocab_size: int
    max_seq_len: int  # context length; also the size of the gpt2 position table
    n_kv_head: int | None = None  # grouped-query attention; None means n_head
    d_ff: int | None = None  # None: 4*d_model (gpt2) or Llama's rounded 8/3*d_model
    tie_embeddings: bool = True
    bias: bool = True  # gpt2 only; forced to False for llama, which has no biases
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0  # llama only
    # Mixture of Experts (harness/models/moe.py): 0 = dense feed-forward. With n_experts > 0
    # every block's feed-forward is a routed expert layer; d_ff is then each expert's hidden size.
    n_experts: int = 0
    expert_top_k: int = 1  # experts per token
    capacity_factor: float = 1.25  # expert capacity = ceil(factor * tokens * top_k / n_experts)
    router_aux_loss_coef: float = 0.01  # Switch load-balancing loss weight (Fedus et al. 2021)
    router_z_loss_coef: float = 0.001  # router z-loss weight (Zoph et al. 2022, ST-MoE)

    def __post_init__(self) -> None:
        if self.flavour not in FLAVOURS:
            raise ValueError(f"flavour must be one of {FLAVOURS}, got {self.flavour!r}")
        for name in ("n_layer", "n_head", "d_model", "vocab_size", "max_seq_len"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.d_model % self.n_head != 0:
            raise ValueError(
                f"d_model ({self.d_model}) must be divisible by n_head ({self.n_head})"
            )
        if self.n_kv_head is not None and not 1 <= self.n_kv_head <= self.n_head:
            raise ValueError(
                f"n_kv_head must be in [1, n_head={self.n_head}], got {self.n_kv_head}"
            )
        if self.n_head % self.kv_heads != 0:
            raise ValueError(
                f"n_head ({self.n_head}) must be divisible by n_kv_head ({self.kv_heads})"
            )
        if self.d_ff is not None and self.d_ff < 1:
            raise ValueError(f"d_ff must be a positive int or None, got {self.d_ff!r}")
        if self.flavour == "llama" and self.head_dim % 2 != 0:
            raise ValueError(
                f"rotary embeddings need an even head_dim, got {self.head_dim} "
                f"(d_model {self.d_model} / n_head {self.n_head})"
            )
        if self.n_experts < 0 or (self.n_experts and not 1 <= self.expert_top_k <= self.n_experts):
            raise ValueError(f"expert_top_k must be in [1, n_experts={self.n_experts}], "
                             f"got {self.expert_top_k}")
        if self.capacity_factor <= 0 or self.router_aux_loss_coef < 0 or self.router_z_loss_coef < 0:
            raise ValueError("capacity_factor must be positive and router loss weights non-negative")
        if self.norm_eps <= 0 or self.rope_theta <= 0:
            raise ValueError("norm_eps and rope_theta must be positive")
        if self.flavour == "llama" and self.bias:
            # frozen dataclass: the config must describe the model that gets built
            object.__setattr__(self, "bias", False)

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head

    @property
    def kv_heads(self) -> int:
        return self.n_head if self.n_kv_head is None else self.n_kv_head

    @property
    def ff_hidden(self) -> int:
        if self.d_ff is not None:
            return self.d_ff
        if self.flavour == "gpt2":
            return 4 * self.d_model
        # Llama: two thirds of 4*d_model keeps SwiGLU's three matrices at the
        # parameter cost of a 4x GELU MLP; rounded up to a multiple of 256.
        hidden = int(2 * (4 * self.d_model) / 3)
        return 256 * math.ceil(hidden / 256)


class RotaryEmbedding(nn.Module):
    """Rotates pairs (x[i], x[i + Q/2]) of each head by position-dependent angles (Su et al. 2021)."""

    def __init__(self, head_dim: int, max_seq_len: int, theta: float) -> None:
        super().__init__()
        self.head_dim = head_dim
        self.max_seq_len = max_seq_len
        self.theta = theta
        # non-persistent: derived from the config, so checkpoints need not carry them
        self.register_buffer("cos", torch.empty(max_seq_len, head_dim // 2), persistent=False)
        self.register_buffer("sin", torch.empty(max_seq_len, head_dim // 2), persistent=False)
        self.reset_buffers()

    @torch.no_grad()
    def reset_buffers(self) -> None:
        device = self.cos.device
        inv_freq = 1.0 / (
            self.theta ** (torch.arange(0, self.head_dim, 2, device=device).float() / self.head_dim)
        )  # (Q/2,)
        positions = torch.arange(self.max_seq_len, device=device).float()  # (T_max,)
        angles = torch.outer(positions, inv_freq)  # (T_max, Q/2)
        self.cos.copy_(angles.cos())
        self.sin.copy_(angles.sin())

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        # x: (B, heads, T, Q) at positions offset .. offset + T - 1 (offset > 0 when decoding
        # after a KV-cached prefix); rotate in fp32 so low-precision inputs keep accurate angles
        T = x.size(-2)
        cos = self.cos[offset:offset + T].float()  # (T, Q/2)
        sin = self.sin[offset:offset + T].float()  # (T, Q/2)
        x1, x2 = x.float().chunk(2, dim=-1)  # (B, heads, T, Q/2) each
        rotated = torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)
        return rotated.type_as(x)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.n_head = cfg.n_head
        self.n_kv_head = cfg.kv_heads
        self.head_dim = cfg.head_dim
        # one fused projection for q, k and v: C -> (H + 2K) * Q
        self.qkv_proj = nn.Linear(
            cfg.d_model, (cfg.n_head + 2 * cfg.kv_heads) * cfg.head_dim, bias=cfg.bias
        )
        self.out_proj = nn.Linear(cfg.d_model, cfg.d_model, bias=cfg.bias)
        self.rotary = (
            RotaryEmbedding(cfg.head_dim, cfg.max_seq_len, cfg.rope_theta)
            if cfg.flavour == "llama"
            else None
        )

    def forward(self, x: torch.Tensor, kv: LayerKV | None = None) -> torch.Tensor:
        """x (B, T, C) -> (B, T, C). With kv, x holds the positions after those already cached:
        its keys and values are written into the cache and attention reads all of them."""
        B, T, C = x.shape
        q, k, v = self.qkv_proj(x).split(
            [self.n_head * self.head_dim, self.n_kv_head * self.head_dim, self.n_kv_head * self.head_dim],
            dim=-1,
        )
        q = q.view(B, T, self.n_head, self.head_dim).transpose(1, 2)  # (B, H, T, Q)
        k = k.view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)  # (B, K, T, Q)
        v = v.view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)  # (B, K, T, Q)
        if kv is None:
            if self.rotary is not None:
                q, k = self.rotary(q), self.rotary(k)
            y = self.attend(q, k, v)  # (B, H, T, Q)
        else:
            if self.rotary is not None:
                q, k = self.rotary(q, kv.start), self.rotary(k, kv.start)
            keys, values = kv.update(k, v)  # (B, K, start + T, Q) each
            y = self.attend_cached(q, keys, values, kv.start)  # (B, H, T, Q)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.out_proj(y)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Causal attention of q (B, H, T, Q) over k, v (B, K, T, Q) -> (B, H, T, Q).

        Kept as its own method so that an alternative attention kernel can replace
        exactly this computation and nothing else.
        """
        # enable_gqa lets each group of H/K query heads share one k/v head
        # without materialising repeated k/v (torch >= 2.5, CPU and CUDA).
        return F.scaled_dot_product_attention(
            q, k, v, is_causal=True, enable_gqa=self.n_kv_head != self.n_head
        )

    def attend_cached(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                      start: int) -> torch.Tensor:
        """Attention of q (B, H, T, Q), the positions start .. start + T - 1, over the cached
        k, v (B, K, start + T, Q) of positions 0 .. start + T - 1 -> (B, H, T, Q).

        Decoding only: always PyTorch's SDPA, whatever kernel replaced `attend`.
        """
        T = q.size(2)
        # a cache kept in another dtype than the one q is computed in (e.g. fp32 under autocast)
        k, v = k.to(q.dtype), v.to(q.dtype)
        mask = None
        if start == 0:
            causal = True  # prefill of an empty cache: the usual square causal mask
        elif T == 1:
            causal = False  # one new token sees every cached position, itself included
        else:
            # SDPA's is_causal aligns its mask top-left (query i sees keys 0..i), wrong once
            # `start` keys precede the queries; query start + i sees keys 0..start + i
            causal = False
            keys = torch.arange(start + T, device=q.device)  # (start + T,)
            queries = torch.arange(start, start + T, device=q.device)  # (T,)
            mask = keys[None, :] <= queries[:, None]  # (T, start + T), True = attend
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=causal, enable_gqa=self.n_kv_head != self.n_head
        )


class GELUMLP(nn.Module):
    """GPT-2's feed-forward: C -> F -> GELU -> C."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.in_proj = nn.Linear(cfg.d_model, cfg.ff_hidden, bias=cfg.bias)
        self.gelu = nn.GELU(approximate="tanh")  # the approximation GPT-2 was trained with
        self.out_proj = nn.Linear(cfg.ff_hidden, cfg.d_model, bias=cfg.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out_proj(self.gelu(self.in_proj(x)))  # (B, T, F) inside, (B, T, C) out


class SwiGLUMLP(nn.Module):
    """Llama's feed-forward: silu(x W_gate) * (x W_up), projected back to C (Shazeer 2020)."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(cfg.d_model, cfg.ff_hidden, bias=False)
        self.up_proj = nn.Linear(cfg.d_model, cfg.ff_hidden, bias=False)
        self.out_proj = nn.Linear(cfg.ff_hidden, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))  # (B, T, C)


def make_norm(cfg: GPTConfig) -> nn.Module:
    if cfg.flavour == "llama":
        return nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)
    return nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps, bias=cfg.bias)


class Block(nn.Module):
    """One pre-norm transformer layer. forward takes and returns a single (B, T, C) tensor."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.attn_norm = make_norm(cfg)
        self.attn = CausalSelfAttention(cfg)
        self.mlp_norm = make_norm(cfg)
        if cfg.n_experts > 0:
            self.mlp = RoutedExperts(cfg)
        else:
            self.mlp = SwiGLUMLP(cfg) if cfg.flavour == "llama" else GELUMLP(cfg)

    def forward(self, x: torch.Tensor, kv: LayerKV | None = None) -> torch.Tensor:
        # kv: this layer's slice of a KV cache, only when decoding (harness.models.kv_cache)
        x = x + self.attn(self.attn_norm(x), kv=kv)
        x = x + self.mlp(self.mlp_norm(x))
        return x


class GPT(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.token_embedding = nn.Embedding(config.vocab_size, config.d_model)
        self.position_embedding = (
            nn.Embedding(config.max_seq_len, config.d_model) if config.flavour == "gpt2" else None
        )
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.final_norm = make_norm(config)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        if config.tie_embeddings:
            # one (V, C) matrix both embeds tokens and scores them (Press & Wolf 2017)
            self.lm_head.weight = self.token_embedding.weight
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """(Re)initialise every parameter and derived buffer, nanoGPT-style.

        Deterministic given the caller's torch.manual_seed. Safe to call again after
        materialising a model that was built on the meta device.
        """
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
            elif isinstance(module, (nn.LayerNorm, nn.RMSNorm)):
                module.reset_parameters()
            elif isinstance(module, RotaryEmbedding):
                module.reset_buffers()
            elif isinstance(module, RoutedExperts):  # its router is an nn.Linear, done above
                module.reset_parameters()
                module.reset_statistics()
        # Each block adds two projections to the residual stream, so its variance
        # grows with depth; GPT-2 scales those projections by 1/sqrt(2 * n_layer).
        residual_std = 0.02 / math.sqrt(2 * self.config.n_layer)
        for block in self.blocks:
            nn.init.normal_(block.attn.out_proj.weight, mean=0.0, std=residual_std)
            mlp = block.mlp
            mlp_out = mlp.w_out if isinstance(mlp, RoutedExperts) else mlp.out_proj.weight
            nn.init.normal_(mlp_out, mean=0.0, std=residual_std)

    def forward(self, idx: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """Token ids (B, T) -> next-token logits (B, T, V).

        With a KV cache (harness.models.kv_cache), idx holds the T positions that follow the
        cache.length already cached; their keys and values are added to the cache.
        """
        B, T = idx.shape
        start = 0 if cache is None else cache.length
        if start + T > self.config.max_seq_len:
            raise ValueError(
                f"sequence length {start + T} exceeds max_seq_len {self.config.max_seq_len}"
            )
        if cache is not None and start + T > cache.max_len:
            raise ValueError(f"{T} tokens after {start} cached exceed the cache's {cache.max_len}")
        x = self.token_embedding(idx)  # (B, T, C)
        if self.position_embedding is not None:
            positions = torch.arange(start, start + T, device=idx.device)  # (T,)
            x = x + self.position_embedding(positions)  # (B, T, C) + (T, C)
        if cache is None:
            for block in self.blocks:
                x = block(x)  # (B, T, C); one tensor in, as wrappers of blocks expect
        else:
            for i, block in enumerate(self.blocks):
                x = block(x, kv=cache.layer(i))  # (B, T, C)
            cache.advance(T)  # once all layers have written positions start .. start + T - 1
        x = self.final_norm(x)
        return self.lm_head(x)  # (B, T, V)
