"""Activation checkpointing: each transformer block's activations are dropped after the
forward pass and recomputed during backward (non-reentrant `torch.utils.checkpoint`, through
PyTorch's module wrapper, as torchtitan applies it)."""

from __future__ import annotations

from torch import nn
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper

MODES = ("none", "full")


def apply_checkpointing(model: nn.Module, mode: str) -> nn.Module:
    """Wrap every element of `model.blocks` in place; `model` must expose its blocks as an
    nn.ModuleList whose elements map one tensor to one tensor."""
    if mode == "none":
        return model
    if mode != "full":
        raise ValueError(f"unknown checkpointing mode '{mode}' ({', '.join(MODES)})")
    blocks = getattr(model, "blocks", None)
    if not isinstance(blocks, nn.ModuleList):
        raise ValueError(f"{type(model).__name__} has no `blocks` ModuleList to checkpoint")
    for index, block in enumerate(blocks):
        blocks[index] = checkpoint_wrapper(block, preserve_rng_state=False)
    return model
