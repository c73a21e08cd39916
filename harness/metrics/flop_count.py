"""FLOPs one training step actually dispatches, counted by PyTorch's FlopCounterMode.

The model FLOPs of the report come from a formula (6N + attention); this counts the matmul
and attention FLOPs that really run in one forward and backward, recomputation included, so
a claim such as "full recomputation costs 33% more FLOPs" is measured, not assumed. Counted
after the measured window, on one micro-batch, outside any timing.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode

COMPILED_REASON = ("FlopCounterMode sees eager aten operators; a compiled model runs fused "
                   "kernels it cannot count")


def _count_cpu_attention() -> None:
    """PyTorch registers FLOP formulas for the CUDA attention kernels only; its CPU flash kernel
    would count as zero. Register the same formulas for it (the registry is PyTorch's own)."""
    aten = torch.ops.aten
    forward = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    backward = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu_backward", None)
    if forward is not None and forward not in flop_counter.flop_registry:
        @flop_counter.register_flop_formula(forward)
        def _forward(query, key, value, *args, out_shape=None, **kwargs) -> int:
            return flop_counter.sdpa_flop_count(query, key, value)
    if backward is not None and backward not in flop_counter.flop_registry:
        @flop_counter.register_flop_formula(backward)
        def _backward(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
            return flop_counter.sdpa_backward_flop_count(grad_out, query, key, value)


def _broadcast_heads(query_shape, shape):
    """k/v shape with as many heads as the query's, as a grouped-query kernel broadcasts them."""
    b, heads, s, d = shape
    query_heads = query_shape[1]
    return (b, query_heads, s, d) if heads != query_heads and heads and query_heads % heads == 0 else shape


def _count_grouped_query_attention() -> None:
    """torch before 2.12 asserts equal head counts in its attention FLOP formulas, so a step of
    a grouped-query model (llama flavour, n_kv_head < n_head) could not be counted. Where the
    installed formula refuses such shapes, count k/v broadcast to the query's heads (the FLOPs
    the kernel does, and what later torch counts). The registered formulas look the two
    functions up in their module when called, so replacing them there covers every kernel."""
    forward, backward = flop_counter.sdpa_flop_count, flop_counter.sdpa_backward_flop_count
    try:
        forward((1, 4, 8, 16), (1, 2, 8, 16), (1, 2, 8, 16))
        return  # this torch counts grouped-query attention itself
    except AssertionError:
        pass

    def sdpa_flop_count(query_shape, key_shape, value_shape):
        return forward(query_shape, _broadcast_heads(query_shape, key_shape),
                       _broadcast_heads(query_shape, value_shape))

    def sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape):
        return backward(grad_out_shape, query_shape, _broadcast_heads(query_shape, key_shape),
                        _broadcast_heads(query_shape, value_shape))

    flop_counter.sdpa_flop_count = sdpa_flop_count
    flop_counter.sdpa_backward_flop_count = sdpa_backward_flop_count


_count_cpu_attention()
_count_grouped_query_attention()


def is_compiled(model: nn.Module) -> bool:
    return isinstance(model, torch._dynamo.eval_frame.OptimizedModule) or any(
        isinstance(m, torch._dynamo.eval_frame.OptimizedModule) for m in model.modules())


def count_step_flops(model: nn.Module, bare_model: nn.Module, run_step: Callable[[], torch.Tensor]
                     ) -> int:
    """FLOPs of `run_step()` (which returns the loss) plus its backward; the gradients it
    produces are discarded."""
    with FlopCounterMode(display=False) as counter:
        run_step().backward()
    bare_model.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())
