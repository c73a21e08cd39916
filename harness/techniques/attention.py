"""Attention kernel: which implementation computes softmax(q kᵀ / sqrt(Q)) v in every block.

`sdpa` lets PyTorch's dispatcher pick a kernel; `flash`, `efficient`, `cudnn` and `math` pin
scaled_dot_product_attention to that one backend with `torch.nn.attention.sdpa_kernel`;
`manual` is the textbook composition of matmuls, the baseline a fused kernel is measured against.

The technique swaps the `attend(q, k, v)` hook of each attention module (see
harness.models.gpt.CausalSelfAttention), per instance, so the model class stays untouched.
The backend is chosen inside the hook on every call, which is what makes it hold in the
recompute of activation checkpointing (run during backward, outside any caller's context)
and under torch.compile (Dynamo traces `sdpa_kernel` in-graph, fullgraph, since torch 2.3).
"""

from __future__ import annotations

import math
import types

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from harness.hardware import DeviceFacts

PINNED = {"flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION,
          "cudnn": SDPBackend.CUDNN_ATTENTION, "math": SDPBackend.MATH}
ATTENTION_BACKENDS: tuple[str, ...] = ("sdpa", *PINNED, "manual")

# The dtype q, k, v have when they reach the kernel, per training precision. fp8 recipes
# (torchao float8) convert only the linear layers, so attention stays in bf16.
COMPUTE_DTYPES = {"fp32": torch.float32, "tf32": torch.float32, "bf16": torch.bfloat16,
                  "bf16-pure": torch.bfloat16, "fp8": torch.bfloat16, "fp16": torch.float16}
HALF = (torch.float16, torch.bfloat16)

# CPU: which pinned backends exist, and for which dtypes. Found empirically on torch
# 2.13.0+cpu (x86, AVX512): a causal q (2, 4, 8, 16) with k, v of 4 and of 2 heads
# (enable_gqa), forward and backward, in float32, bfloat16 and float16, under each
# sdpa_kernel. flash runs (aten._scaled_dot_product_flash_attention_for_cpu) and math runs;
# efficient and cudnn raise "No viable backend". Matches sdp_utils_cpp.cpp, whose CPU
# priority order lists only flash and math.
CPU_KERNELS: dict[str, frozenset[torch.dtype]] = {
    "flash": frozenset({torch.float32, torch.bfloat16, torch.float16}),
    "math": frozenset({torch.float32, torch.bfloat16, torch.float16}),
}


def manual_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Causal attention of q (B, H, T, Q) over k, v (B, K, T, Q) from plain ops -> (B, H, T, Q)."""
    H, K, T = q.size(1), k.size(1), q.size(2)
    if K != H:  # grouped-query: query head h reads k/v head h // (H/K), as enable_gqa does
        k, v = k.repeat_interleave(H // K, dim=1), v.repeat_interleave(H // K, dim=1)
    # q kᵀ / sqrt(Q), scaled before the product so that fp16 cannot overflow inside it
    scores = (q / math.sqrt(q.size(-1))) @ k.transpose(-2, -1)  # (B, H, T, T)
    causal = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()
    scores = scores.masked_fill(~causal, float("-inf"))
    # softmax in fp32: a bf16/fp16 exp-sum over T keys loses the small probabilities
    weights = torch.softmax(scores.float(), dim=-1).to(v.dtype)
    return weights @ v  # (B, H, T, Q)


Tensor = torch.Tensor


def _pinned_attend(backend: SDPBackend):
    def attend(self: nn.Module, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        with sdpa_kernel(backend):
            return type(self).attend(self, q, k, v)  # the class's own SDPA call
    return attend


def _manual_attend(self: nn.Module, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    return manual_attention(q, k, v)


def apply_attention(model: nn.Module, backend: str) -> nn.Module:
    """Give every module with an `attend` hook the chosen kernel; returns `model`.

    Bound to the instance (types.MethodType) rather than closing over it, so that a deepcopy
    of the model rebinds the hook to the copy. Calls the class's `attend`, so applying a second
    time replaces the first choice instead of nesting inside it.
    """
    if backend not in ATTENTION_BACKENDS:
        raise ValueError(f"unknown attention backend '{backend}' ({', '.join(ATTENTION_BACKENDS)})")
    if backend == "sdpa":
        return model
    hook = _manual_attend if backend == "manual" else _pinned_attend(PINNED[backend])
    for module in model.modules():
        if callable(getattr(type(module), "attend", None)):
            module.attend = types.MethodType(hook, module)
    return model


def unsupported_reason(backend: str, facts: DeviceFacts, precision: str, *,
                       head_dim: int | None = None, gqa: bool = False,
                       cudnn_version: int | None = None) -> str | None:
    """Why `backend` cannot run on this device at this precision, or None when it can.

    head_dim and gqa (n_kv_head < n_head) add the shape rules when the caller knows the model;
    cudnn_version (e.g. 90100) defaults to the cuDNN this torch loads, if any.
    """
    if backend not in ATTENTION_BACKENDS:
        raise ValueError(f"unknown attention backend '{backend}' ({', '.join(ATTENTION_BACKENDS)})")
    if precision not in COMPUTE_DTYPES:
        raise ValueError(f"unknown precision '{precision}' ({', '.join(COMPUTE_DTYPES)})")
    if backend in ("sdpa", "manual", "math"):  # the math fallback has no device or dtype limits
        return None
    dtype = COMPUTE_DTYPES[precision]
    if facts.type == "cpu":
        if dtype not in CPU_KERNELS.get(backend, ()):
            return f"{backend} attention has no CPU kernel for {_name(dtype)} " \
                   "(on CPU torch has flash and math)"
        return None
    if facts.type != "cuda":
        return f"no {backend} attention kernel on device type '{facts.type}'"
    return _cuda_reason(backend, facts.compute_capability or (0, 0), dtype, head_dim, gqa,
                        _cudnn_version() if cudnn_version is None else cudnn_version)


# CUDA gates, as torch's own dispatcher applies them: can_use_flash_attention,
# can_use_mem_efficient_attention and can_use_cudnn_attention in
# aten/src/ATen/native/transformers/cuda/sdp_utils.cpp.
def _cuda_reason(backend: str, cc: tuple[int, int], dtype: torch.dtype, head_dim: int | None,
                 gqa: bool, cudnn: int | None) -> str | None:
    sm = f"sm{cc[0]}{cc[1]}"
    if backend == "flash":
        if not (8, 0) <= cc <= (12, 1):
            return f"flash attention needs an sm80-sm121 GPU (Ampere or newer); this is {sm}"
        if dtype not in HALF:
            return f"flash attention takes fp16/bf16 only; this precision gives it {_name(dtype)}"
        if head_dim is not None and head_dim > 256:
            return f"flash attention needs head_dim <= 256, got {head_dim}"
        # FA2's backward for these head sizes needs more shared memory than sm86-89 and
        # sm120-121 have (training always runs backward)
        small_smem = (8, 6) <= cc <= (8, 9) or (12, 0) <= cc <= (12, 1)
        if head_dim is not None and 192 < head_dim <= 224 and small_smem:
            return f"flash attention backward on {sm} rejects head_dim in (192, 224], " \
                   f"got {head_dim}"
        return None
    if backend == "efficient":
        if not (5, 0) <= cc <= (12, 1):
            return f"memory-efficient attention needs an sm50-sm121 GPU; this is {sm}"
        if dtype == torch.bfloat16 and cc < (8, 0):
            return f"memory-efficient attention takes bf16 only on sm80+; this is {sm}"
        # the CUTLASS GEMMs need the head dimension in whole 128-bit tensor-core tiles
        align = 8 if dtype in HALF else (4 if cc >= (8, 0) else 1)
        if head_dim is not None and head_dim % align:
            return f"memory-efficient attention needs head_dim % {align} == 0 for " \
                   f"{_name(dtype)} on {sm}, got {head_dim}"
        # torch 2.13 documents enable_gqa for flash and math only; the efficient kernel
        # gains grouped-query k/v later (pytorch#191085)
        if gqa:
            return "memory-efficient attention takes no grouped-query k/v (enable_gqa)"
        return None
    # cudnn
    if not (8, 0) <= cc <= (12, 1):
        return f"cuDNN attention needs an sm80-sm121 GPU (Ampere or newer); this is {sm}"
    if dtype not in HALF:
        return f"cuDNN attention takes fp16/bf16 only; this precision gives it {_name(dtype)}"
    if cudnn is not None and cudnn < 90000:
        return f"cuDNN attention needs cuDNN >= 9.0, this torch loads {cudnn}"
    # d <= 256 needs Hopper/Blackwell (sm90, sm10x) and a cuDNN after 9.22; else d <= 128
    wide = (cc == (9, 0) or cc[0] == 10) and cudnn is not None and cudnn > 92200
    limit = 256 if wide else 128
    if head_dim is not None and (head_dim % 8 or head_dim > limit):
        return f"cuDNN attention needs head_dim a multiple of 8 and <= {limit} on {sm}, " \
               f"got {head_dim}"
    return None


def _cudnn_version() -> int | None:
    """The cuDNN this torch build loads; None for a CPU-only build."""
    return torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None


def _name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")
