"""Activation checkpointing and offloading, applied per transformer block as torchtitan's
`apply_ac` does: each element of `model.blocks` is replaced by a wrapper module.

Modes (the value of a scenario's `checkpointing` axis):
  none       keep every activation in device memory (the baseline)
  full       every block's activations dropped after forward, the block recomputed in backward
  every-K    every K-th block checkpointed, torchtitan's `ac_freq`: block i (0-based) is
             wrapped when (i + 1) % K == 0, so n_layer // K blocks are wrapped and the last
             block of each group of K is the one recomputed; every-1 is full
  selective  op-level selective checkpointing (SAC): a block is re-run in backward, but the
             outputs of its matmuls and attention are kept, so only the cheap ops (norms,
             activations, adds, views) are recomputed
  offload    nothing recomputed; each block's saved activations are copied to host memory in
             forward and brought back in backward (`torch.autograd.graph.save_on_cpu`)

All recomputing modes use non-reentrant `torch.utils.checkpoint` through PyTorch's
`checkpoint_wrapper`; the wrappers strip their prefix from `state_dict` keys, so a wrapped
model saves and loads like the bare one.

Measuring them: `harness.metrics.SavedTensorMeter` counts tensors through a saved-tensor
pack hook, and only the innermost such hook sees a tensor. Inside a checkpointed block the
checkpoint's own hook is innermost, so the meter sees a checkpointed block's input only;
SAC keeps its saved matmul outputs in a cache no hook sees, and reports them to a counting
meter itself (`_selective_contexts`). Under offload `save_on_cpu` is innermost, so the meter sees only what is saved
outside the blocks: the bytes left in device memory, not the host copies.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from contextlib import ExitStack
from functools import partial
from typing import ContextManager

import torch
from torch import nn
from torch.autograd.graph import save_on_cpu
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import (
    ActivationWrapper,
    checkpoint_wrapper,
)
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.checkpoint import create_selective_checkpoint_contexts

from harness.metrics.activations import counting_saved_tensors, note_saved

MODES = ("none", "full", "every-K", "selective", "offload")
MODES_HELP = "none, full, every-K (K a positive integer, e.g. every-2), selective, offload"

aten = torch.ops.aten

# Ops whose outputs selective checkpointing keeps. Matmuls and attention are where the
# FLOPs are, so recomputing them would cost most of a forward; everything else is
# elementwise or a view, cheap to redo but as large to store. Each attention kernel is listed
# because which one SDPA dispatches to depends on device, dtype and shape. torchtitan's
# list saves `mm` and the SDPA kernels too; this one also saves `addmm` (nn.Linear with a
# bias), the batched matmuls and `_scaled_mm` (fp8 linears). The cache also holds each
# block's last projection output, which backward never reads (B*T*C per block): the price
# of a policy that needs no knowledge of the block.
SAVE_OPS: list[torch._ops.OpOverload] = [
    aten.mm.default,
    aten.addmm.default,
    aten.bmm.default,
    aten.baddbmm.default,
    aten._scaled_mm.default,
    aten._scaled_dot_product_flash_attention.default,
    aten._scaled_dot_product_efficient_attention.default,
    aten._scaled_dot_product_cudnn_attention.default,
    aten._scaled_dot_product_fused_attention_overrideable.default,
    aten._scaled_dot_product_flash_attention_for_cpu.default,
]

_EVERY = re.compile(r"every-(\d+)")


def parse_mode(mode: str) -> tuple[str, int]:
    """`mode` -> (kind, K), kind in none|full|every|selective|offload; K is the checkpointing
    period: 1 for full (every-1 parses as full), 0 for the modes without one. Raises
    ValueError naming the accepted forms."""
    if mode in ("none", "selective", "offload"):
        return mode, 0
    if mode == "full":
        return "full", 1
    match = _EVERY.fullmatch(mode)
    if match and int(match.group(1)) >= 1:
        k = int(match.group(1))
        return ("full", 1) if k == 1 else ("every", k)
    raise ValueError(f"unknown checkpointing mode {mode!r}; expected one of: {MODES_HELP}")


def _is_checkpointed(index: int, k: int) -> bool:
    return (index + 1) % k == 0  # torchtitan's ac_freq counter starts at 1


def recomputed_blocks(mode: str, n_layer: int) -> int:
    """Blocks whose forward matmuls run again in backward: the extra work that hardware
    FLOPs (HFU) count and model FLOPs (MFU) do not. Selective keeps the matmul outputs and
    offload recomputes nothing, so both are 0."""
    kind, k = parse_mode(mode)
    if kind in ("full", "every"):
        return sum(_is_checkpointed(i, k) for i in range(n_layer))
    return 0


class OffloadWrapper(ActivationWrapper):
    """Runs the wrapped block with its saved activations kept in host memory.

    torch's own `offload_wrapper` always asks for pinned memory, which on a CPU-only machine
    means a useless extra copy of every saved tensor; here pinning (for asynchronous copies)
    is used only when the activations are on CUDA, and CPU tensors are saved as they are.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with save_on_cpu(pin_memory=x.is_cuda):
            return self._checkpoint_wrapped_module(x)


def _selective_contexts() -> tuple[ContextManager, ContextManager]:
    """A fresh pair of SAC contexts (so a fresh cache) for every checkpointed call. While a
    SavedTensorMeter counts (the probe step, never a timed one), the forward also reports
    the outputs SAC caches, which no saved-tensor hook sees."""
    forward, recompute = create_selective_checkpoint_contexts(SAVE_OPS)
    if not counting_saved_tensors():
        return forward, recompute
    return _Nested(forward, _ReportSavedOutputs()), recompute


class _ReportSavedOutputs(TorchDispatchMode):
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func in SAVE_OPS:
            note_saved(t for t in tree_leaves(out) if isinstance(t, torch.Tensor))
        return out


class _Nested:
    """Enter context managers in order, leave them in reverse."""

    def __init__(self, *contexts: ContextManager):
        self._stack = ExitStack()
        self._contexts = contexts

    def __enter__(self) -> None:
        for context in self._contexts:
            self._stack.enter_context(context)

    def __exit__(self, *exc) -> None:
        self._stack.__exit__(*exc)


def _wrapper(kind: str) -> Callable[[nn.Module], nn.Module]:
    if kind == "offload":
        return OffloadWrapper
    if kind == "selective":
        return partial(checkpoint_wrapper, preserve_rng_state=False, context_fn=_selective_contexts)
    # the blocks have no dropout, so there is no RNG state to replay in the recompute
    return partial(checkpoint_wrapper, preserve_rng_state=False)


def apply_checkpointing(model: nn.Module, mode: str) -> nn.Module:
    """Wrap elements of `model.blocks` in place according to `mode`; `model` must expose
    its blocks as an nn.ModuleList whose elements map one tensor to one tensor."""
    kind, k = parse_mode(mode)
    if kind == "none":
        return model
    blocks = getattr(model, "blocks", None)
    if not isinstance(blocks, nn.ModuleList):
        raise ValueError(f"{type(model).__name__} has no `blocks` ModuleList to checkpoint")
    wrap = _wrapper(kind)
    for index, block in enumerate(blocks):
        if kind in ("full", "every") and not _is_checkpointed(index, k):
            continue
        blocks[index] = wrap(block)
    return model
