"""Key/value cache for incremental decoding with harness.models.gpt.GPT.

Decoding one token at a time would otherwise recompute every earlier position's keys and
values on each step. The cache keeps them, preallocated for the whole generation so that a
step writes in place and allocates nothing:

    cache = KVCache.allocate(model.config, batch=B, max_len=T + new_tokens, device, dtype)
    logits = model(prompt, cache=cache)        # prefill: T positions written, length -> T
    logits = model(next_token, cache=cache)    # decode: one position written, length -> T + 1

Shape letters as in gpt.py: L layers, B batch, K key/value heads, Q head_dim, T_max = max_len.
The model advances `length` once per forward, after all of its layers have written.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from harness.models.gpt import GPTConfig


@dataclass
class LayerKV:
    """One layer's slice of a KVCache during one forward: where its new k/v go."""

    keys: torch.Tensor  # (B, K, T_max, Q), a view into the cache
    values: torch.Tensor  # (B, K, T_max, Q)
    start: int  # positions already cached, i.e. the position of the first new token

    def update(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write new k, v (B, K, T, Q) at [start, start + T); return the keys and values of
        all start + T positions, (B, K, start + T, Q) each, as views of the cache."""
        end = self.start + k.size(2)
        # copy_ casts to the cache dtype, so a cache narrower than k/v loses precision here
        self.keys[:, :, self.start:end].copy_(k)
        self.values[:, :, self.start:end].copy_(v)
        return self.keys[:, :, :end], self.values[:, :, :end]


class KVCache:
    """Preallocated keys and values of every layer, (L, B, K, T_max, Q) each, and the number
    of positions filled so far."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, length: int = 0) -> None:
        if keys.shape != values.shape or keys.dim() != 5:
            raise ValueError(f"keys and values must share one (L, B, K, T_max, Q) shape, "
                             f"got {tuple(keys.shape)} and {tuple(values.shape)}")
        self.keys = keys
        self.values = values
        self.length = length

    @classmethod
    def allocate(cls, cfg: GPTConfig, batch: int, max_len: int, device: torch.device | str,
                 dtype: torch.dtype) -> KVCache:
        """An empty cache for `batch` sequences of up to `max_len` positions in total.

        dtype should be the dtype the model computes k and v in (its weights' dtype, or the
        autocast dtype), so that writing and reading the cache converts nothing.
        """
        if not 1 <= max_len <= cfg.max_seq_len:
            raise ValueError(f"max_len must be in [1, max_seq_len={cfg.max_seq_len}], got {max_len}")
        if batch < 1:
            raise ValueError(f"batch must be a positive int, got {batch}")
        shape = (cfg.n_layer, batch, cfg.kv_heads, max_len, cfg.head_dim)
        # empty, not zeros: attention only ever reads positions below `length`
        return cls(torch.empty(shape, device=device, dtype=dtype),
                   torch.empty(shape, device=device, dtype=dtype))

    @property
    def max_len(self) -> int:
        return self.keys.size(3)

    @property
    def batch(self) -> int:
        return self.keys.size(1)

    @property
    def dtype(self) -> torch.dtype:
        return self.keys.dtype

    def layer(self, index: int) -> LayerKV:
        return LayerKV(self.keys[index], self.values[index], self.length)

    def advance(self, tokens: int) -> None:
        """Count `tokens` more positions as filled (GPT.forward calls this once per forward)."""
        if self.length + tokens > self.max_len:
            raise ValueError(f"cache of {self.max_len} positions cannot take {tokens} more "
                             f"after {self.length}")
        self.length += tokens

    def reset(self) -> None:
        """Start a new generation in the same memory."""
        self.length = 0

    def nbytes(self) -> int:
        return self.keys.nbytes + self.values.nbytes
