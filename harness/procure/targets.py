"""Models whose training `harness procure` projects: parameters, tokens and shape."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    name: str
    params: float  # N, the parameters the FLOPs count (no position embeddings)
    tokens: float  # D, training tokens
    layers: int  # L
    d_model: int  # H·Q
    seq_len: int  # T

    @property
    def flops_per_token(self) -> float:
        return 6 * self.params + 12 * self.layers * self.d_model * self.seq_len

    @property
    def total_flops(self) -> float:
        return self.tokens * self.flops_per_token


# Touvron et al. 2023 (Llama 2, table 1 and the model card: 2T tokens, 4k context, 80 layers of
# width 8192); Brown et al. 2020 (GPT-3, table 2.1: 96 layers of 12288, 2048 context, 300B tokens).
TARGETS = {
    "llama-2-70b": Target("llama-2-70b", 70e9, 2e12, 80, 8192, 4096),
    "gpt-3-175b": Target("gpt-3-175b", 175e9, 300e9, 96, 12288, 2048),
}
