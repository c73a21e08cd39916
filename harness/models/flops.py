"""Parameter counts and model FLOPs, computed from a GPTConfig alone.

The FLOPs formula is PaLM's (Chowdhery et al. 2022, "PaLM: Scaling Language
Modeling with Pathways", appendix B), the one behind MFU:

    model FLOPs per token = 6N + 12 * L * H * Q * T

N: parameters taking part in matmuls (see flops_parameter_count), L layers,
H query heads, Q head dimension, T sequence length. 6N is 2N for the forward
matmuls plus 4N for the backward (gradients of activations and of weights).
12LHQT is the attention score (q k^T) and value (scores v) matmuls, 2 each in
forward and 4 each in backward, counted over the full T x T matrix, i.e. as if
non-causal, and with no activation recompute.

Mixture of Experts (cfg.n_experts > 0): N counts the parameters a token is processed by,
its ACTIVE parameters: per block attention, norms, the router (C*E) and k of the E experts.
This is what a token costs; the extra slots the capacity factor reserves (computed on
padding, or on nothing) are hardware work, not model FLOPs, as MFU leaves out recompute.
total_parameter_count counts all experts: the memory the model occupies.
"""

from __future__ import annotations

import torch.nn as nn

from harness.models.gpt import GPTConfig


def parameter_count(model: nn.Module) -> int:
    """Number of distinct parameter elements; a tied weight is counted once."""
    # nn.Module.parameters() already yields each shared Parameter only once
    return sum(p.numel() for p in model.parameters())


def _mlp_parameter_count(cfg: GPTConfig) -> int:
    """One feed-forward network: the dense MLP, or one expert (the same shapes, F = d_ff)."""
    C, F = cfg.d_model, cfg.ff_hidden
    if cfg.flavour == "llama":
        return 3 * C * F  # gate, up and down projections
    bias = 1 if cfg.bias else 0
    return C * F + bias * F + F * C + bias * C


def _block_parameter_count(cfg: GPTConfig, active: bool = True) -> int:
    """One block's parameters; of an MoE block, the active ones (router and top_k experts)
    unless active is False (router and every expert)."""
    C, Q = cfg.d_model, cfg.head_dim
    qkv_out = (cfg.n_head + 2 * cfg.kv_heads) * Q
    if cfg.flavour == "llama":
        attention = C * qkv_out + C * C
        norms = 2 * C  # RMSNorm gains
    else:
        bias = 1 if cfg.bias else 0
        attention = C * qkv_out + bias * qkv_out + C * C + bias * C
        norms = 2 * (C + bias * C)  # LayerNorm gains and biases
    if cfg.n_experts == 0:
        return attention + norms + _mlp_parameter_count(cfg)
    experts = cfg.expert_top_k if active else cfg.n_experts
    router = C * cfg.n_experts
    return attention + norms + router + experts * _mlp_parameter_count(cfg)


def _final_norm_and_head(cfg: GPTConfig) -> int:
    final_norm = cfg.d_model * (2 if cfg.flavour == "gpt2" and cfg.bias else 1)
    return final_norm + cfg.vocab_size * cfg.d_model


def total_parameter_count(cfg: GPTConfig) -> int:
    """Every parameter of GPT(cfg), as parameter_count(GPT(cfg)) counts them, without
    building it: all experts, the embedding tables, a tied embedding once."""
    position_table = cfg.max_seq_len * cfg.d_model if cfg.flavour == "gpt2" else 0
    input_table = 0 if cfg.tie_embeddings else cfg.vocab_size * cfg.d_model
    blocks = cfg.n_layer * _block_parameter_count(cfg, active=False)
    return blocks + _final_norm_and_head(cfg) + position_table + input_table


def flops_parameter_count(cfg: GPTConfig) -> int:
    """N of the FLOPs formula, computed analytically from the config.

    N is every parameter of the model except the ones used only by an
    embedding lookup, which costs no FLOPs:
      - the position-embedding table (gpt2 flavour) is excluded;
      - the token-embedding table is excluded when embeddings are untied;
      - the LM head's V x d_model weight is included exactly once, whether or
        not it is tied to the token embedding, because the output projection
        is a matmul;
      - norm gains and biases are included (they are not matmul weights, but
        they are a negligible fraction and keep N a simple parameter count);
      - of a Mixture of Experts, the router and top_k experts per block, not all E
        (the active parameters; see the module docstring).
    Equivalently, for a dense model:
    N = parameter_count(model) - position table - (untied input table).
    """
    return cfg.n_layer * _block_parameter_count(cfg) + _final_norm_and_head(cfg)


def _attention_flops_per_token(cfg: GPTConfig, seq_len: int) -> int:
    # one forward pass: q k^T and scores v, 2 FLOPs per multiply-add, full T x T
    return 4 * cfg.n_layer * cfg.n_head * cfg.head_dim * seq_len


def model_flops_per_token(cfg: GPTConfig, seq_len: int) -> float:
    """Training FLOPs (forward + backward) per token: 6N + 12*L*H*Q*T.

    PaLM (Chowdhery et al. 2022, appendix B). Attention is counted as full,
    non-causal T x T matmuls; activation recompute is not counted, so this is
    "model FLOPs" as in MFU, not hardware FLOPs.
    """
    if seq_len < 1:
        raise ValueError(f"seq_len must be positive, got {seq_len}")
    return float(6 * flops_parameter_count(cfg) + 3 * _attention_flops_per_token(cfg, seq_len))


def forward_flops_per_token(cfg: GPTConfig, seq_len: int) -> float:
    """FLOPs of one forward pass per token: 2N + 4*L*H*Q*T, a third of model_flops_per_token."""
    if seq_len < 1:
        raise ValueError(f"seq_len must be positive, got {seq_len}")
    return float(2 * flops_parameter_count(cfg) + _attention_flops_per_token(cfg, seq_len))


def recompute_flops_per_token(cfg: GPTConfig, seq_len: int, blocks: int) -> float:
    """FLOPs per token of re-running the forward pass of `blocks` transformer blocks, as
    activation checkpointing does in backward: 2 x each block's (active) parameters plus its attention
    score and value matmuls, 4*H*Q*T, i.e. the per-layer forward part of the PaLM formula.

    Model FLOPs (MFU) leave recompute out; hardware FLOPs (HFU) are
    model_flops_per_token(cfg, T) + recompute_flops_per_token(cfg, T, recomputed blocks).
    The embeddings, final norm and LM head are never recomputed by per-block checkpointing.
    This is the conventional count (PaLM, Megatron), an upper bound on what torch runs: its
    non-reentrant checkpoint stops recomputing once backward has what it needs, so a block's
    last matmul (the MLP down-projection, 2*F*C per token) is never re-run in eager mode.
    """
    if seq_len < 1:
        raise ValueError(f"seq_len must be positive, got {seq_len}")
    if not 0 <= blocks <= cfg.n_layer:
        raise ValueError(f"blocks must be in [0, n_layer={cfg.n_layer}], got {blocks}")
    attention = 4 * cfg.n_head * cfg.head_dim * seq_len
    return float(blocks * (2 * _block_parameter_count(cfg) + attention))
