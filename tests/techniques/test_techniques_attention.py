"""Attention kernels: each pinned backend computes what `sdpa` computes, actually dispatches
its own kernel (also inside checkpoint recompute and torch.compile), and the capability table
agrees with this machine and with the CUDA rules it encodes."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper
from torch.nn.attention import sdpa_kernel
from torch.profiler import ProfilerActivity, profile

from harness.hardware import DeviceFacts, device_facts
from harness.models import GPT, resolve_config
from harness.techniques.attention import (
    ATTENTION_BACKENDS,
    COMPUTE_DTYPES,
    PINNED,
    apply_attention,
    manual_attention,
    unsupported_reason,
)

CPU = device_facts("cpu")
RUNNABLE = [b for b in ATTENTION_BACKENDS if unsupported_reason(b, CPU, "fp32") is None]
UNRUNNABLE = [b for b in ATTENTION_BACKENDS if b not in RUNNABLE]
PRESETS = ("tiny", "tiny-llama")  # tiny-llama: 4 query heads share 2 k/v heads
# fp32 kernels differ only in summation order: observed max error ~1e-7 on logits of ~1e-1
TOLERANCE = {"rtol": 1e-4, "atol": 1e-5}

FLASH_CPU = "aten::_scaled_dot_product_flash_attention_for_cpu"
MATH = "aten::_scaled_dot_product_attention_math"


def build(preset: str) -> GPT:
    torch.manual_seed(0)
    return GPT(resolve_config(preset))


def tokens(model: GPT) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    return torch.randint(0, model.config.vocab_size, (2, 24), generator=generator)


def forward_backward(model: torch.nn.Module, idx: torch.Tensor):
    model.zero_grad(set_to_none=True)
    logits = model(idx)
    F.cross_entropy(logits.flatten(0, 1), idx.roll(-1, dims=1).flatten()).backward()
    # parameter names without the prefixes checkpoint_wrapper and torch.compile add
    bare = lambda name: name.replace("_checkpoint_wrapped_module.", "").replace("_orig_mod.", "")
    return logits.detach(), {bare(n): p.grad.clone() for n, p in model.named_parameters()}


def assert_same_step(reference, other) -> None:
    torch.testing.assert_close(other[0], reference[0], **TOLERANCE)
    assert reference[1].keys() == other[1].keys()
    for name, grad in reference[1].items():
        torch.testing.assert_close(other[1][name], grad, **TOLERANCE, msg=f"grad of {name}")


def profiled_step(model: torch.nn.Module, idx: torch.Tensor):
    """forward_backward, and the names of every SDPA aten op it ran, in order, with repeats."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step = forward_backward(model, idx)
    return step, [e.name for e in prof.events() if "scaled_dot_product" in e.name]


def test_cpu_table_has_flash_and_math_but_not_efficient_or_cudnn():
    assert set(RUNNABLE) == {"sdpa", "flash", "math", "manual"}
    assert set(UNRUNNABLE) == {"efficient", "cudnn"}


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("backend", RUNNABLE)
def test_runnable_backend_matches_sdpa(preset, backend):
    reference = build(preset)
    idx = tokens(reference)
    variant = apply_attention(copy.deepcopy(reference), backend)
    assert_same_step(forward_backward(reference, idx), forward_backward(variant, idx))


@pytest.mark.parametrize("backend", UNRUNNABLE)
def test_unrunnable_backend_raises_on_this_machine(backend):
    model = apply_attention(build("tiny"), backend)
    with pytest.raises(RuntimeError, match="No viable backend"):
        model(tokens(model))


@pytest.mark.parametrize("precision", sorted(COMPUTE_DTYPES))
@pytest.mark.parametrize("backend", list(PINNED))
def test_cpu_table_matches_the_kernels_for_every_precision(backend, precision):
    """The table says a pinned backend runs at this precision exactly when it does."""
    dtype = COMPUTE_DTYPES[precision]
    q = torch.randn(2, 4, 8, 16, dtype=dtype, requires_grad=True)
    k, v = (torch.randn(2, 2, 8, 16, dtype=dtype, requires_grad=True) for _ in range(2))

    def run():
        with sdpa_kernel(PINNED[backend]):
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
            y.sum().backward()

    if unsupported_reason(backend, CPU, precision) is None:
        run()
        assert q.grad is not None and k.grad.shape == k.shape
    else:
        with pytest.raises(RuntimeError):
            run()


@pytest.mark.parametrize("backend, expected", [
    ("sdpa", {FLASH_CPU}),  # CPU's priority order puts flash first
    ("flash", {FLASH_CPU}),
    ("math", {MATH}),
    ("manual", set()),
])
def test_each_backend_dispatches_its_own_kernel(backend, expected):
    model = apply_attention(build("tiny-llama"), backend)
    _, ops = profiled_step(model, tokens(model))
    kernels = {op for op in ops if op in (FLASH_CPU, MATH)}
    assert kernels == expected
    if backend == "manual":
        assert ops == []


@pytest.mark.parametrize("order", ["attention-then-wrap", "wrap-then-attention"])
@pytest.mark.parametrize("backend", ["math", "manual"])
def test_kernel_holds_inside_checkpoint_recompute(backend, order):
    reference = build("tiny-llama")
    idx = tokens(reference)
    model = copy.deepcopy(reference)
    if order == "attention-then-wrap":
        apply_attention(model, backend)
    for i, block in enumerate(model.blocks):
        model.blocks[i] = checkpoint_wrapper(block, preserve_rng_state=False)
    if order == "wrap-then-attention":
        apply_attention(model, backend)

    step, ops = profiled_step(model, idx)
    assert_same_step(forward_backward(reference, idx), step)
    assert FLASH_CPU not in ops  # not even in the backward-time recompute
    # one call per layer in forward, and one more per layer when backward recomputes it
    assert ops.count(MATH) == (2 * model.config.n_layer if backend == "math" else 0)


def test_kernel_holds_under_torch_compile():
    """sdpa_kernel inside the hook is traced in-graph: no graph break, and the graph AOTAutograd
    records has math's matmuls instead of the flash op CPU dispatches by default."""
    graphs: list[set[str]] = []

    def record(gm, example_inputs):
        from torch._functorch.aot_autograd import aot_module_simplified
        from functorch.compile import make_boxed_func

        def compiler(graph, _):
            graphs.append({str(n.target) for n in graph.graph.nodes if n.op == "call_function"})
            return make_boxed_func(graph.forward)
        return aot_module_simplified(gm, example_inputs, fw_compiler=compiler, bw_compiler=compiler)

    reference = build("tiny-llama")
    idx = tokens(reference)
    model = apply_attention(copy.deepcopy(reference), "math")
    compiled = torch.compile(model, backend=record, fullgraph=True)
    assert_same_step(forward_backward(reference, idx), forward_backward(compiled, idx))
    forward_ops = graphs[0]
    assert not any("flash_attention" in op for op in forward_ops)
    assert "aten.bmm.default" in forward_ops and "aten._safe_softmax.default" in forward_ops


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_manual_attention_equals_sdpa_with_grouped_query_heads(dtype):
    torch.manual_seed(0)
    q = torch.randn(2, 6, 10, 8, dtype=dtype)
    k, v = torch.randn(2, 3, 10, 8, dtype=dtype), torch.randn(2, 3, 10, 8, dtype=dtype)
    expected = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    got = manual_attention(q, k, v)
    assert got.dtype == dtype
    # bf16 keeps 8 bits of mantissa: one rounding of the output is ~4e-3 relative
    tolerance = 1e-5 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(got, expected, rtol=tolerance, atol=tolerance)


def test_sdpa_leaves_model_untouched_and_reapplying_replaces():
    model = build("tiny")
    apply_attention(model, "sdpa")
    assert not any("attend" in vars(m) for m in model.modules())
    apply_attention(model, "flash")
    apply_attention(model, "math")  # replaces flash, does not nest inside it
    _, ops = profiled_step(model, tokens(model))
    assert MATH in ops and FLASH_CPU not in ops
    clone = copy.deepcopy(model)  # the hook follows the copy, not the original
    assert all(m.attend.__self__ is m for m in clone.modules() if "attend" in vars(m))


def test_unknown_backend_is_rejected():
    with pytest.raises(ValueError, match="unknown attention backend 'xformers'"):
        apply_attention(build("tiny"), "xformers")
    with pytest.raises(ValueError, match="unknown attention backend"):
        unsupported_reason("xformers", CPU, "fp32")


# --- CUDA rules, as data (the table is pure: fake DeviceFacts, no GPU needed) -------------

H100 = DeviceFacts("cuda", "NVIDIA H100 80GB HBM3", (9, 0), True, frozenset())
A10 = DeviceFacts("cuda", "NVIDIA A10", (8, 6), True, frozenset())
V100 = DeviceFacts("cuda", "Tesla V100-SXM2-16GB", (7, 0), False, frozenset())
PRECISIONS = ("fp32", "tf32", "bf16", "bf16-pure", "fp8", "fp16")
CUDNN_9_1 = 90100

# backend -> the precisions (in PRECISIONS order) it cannot run, and a word its reason names
CUDA_EXPECTED = {
    H100: {"sdpa": ((), ""), "math": ((), ""), "manual": ((), ""),
           "flash": (("fp32", "tf32"), "fp16/bf16"),
           "efficient": ((), ""),
           "cudnn": (("fp32", "tf32"), "fp16/bf16")},
    V100: {"sdpa": ((), ""), "math": ((), ""), "manual": ((), ""),
           "flash": (PRECISIONS, "sm80"),
           "efficient": (("bf16", "bf16-pure", "fp8"), "bf16 only on sm80+"),
           "cudnn": (PRECISIONS, "sm80")},
}


@pytest.mark.parametrize("facts", [H100, V100], ids=["H100", "V100"])
@pytest.mark.parametrize("backend", ATTENTION_BACKENDS)
def test_cuda_capability_table(facts, backend):
    failing, word = CUDA_EXPECTED[facts][backend]
    for precision in PRECISIONS:
        reason = unsupported_reason(backend, facts, precision, cudnn_version=CUDNN_9_1)
        if precision in failing:
            assert reason is not None and word in reason and "\n" not in reason, precision
        else:
            assert reason is None, (precision, reason)


@pytest.mark.parametrize("backend, facts, precision, shape, word", [
    ("efficient", H100, "bf16", {"gqa": True}, "grouped-query"),
    ("efficient", H100, "fp32", {"head_dim": 18}, "head_dim % 4"),
    ("efficient", H100, "bf16", {"head_dim": 20}, "head_dim % 8"),
    ("flash", H100, "bf16", {"head_dim": 320}, "<= 256"),
    ("flash", A10, "bf16", {"head_dim": 200}, "(192, 224]"),
    ("cudnn", H100, "bf16", {"head_dim": 256}, "<= 128"),  # cuDNN 9.1: no d256 yet
    ("cudnn", H100, "bf16", {"head_dim": 60}, "multiple of 8"),
    ("cudnn", H100, "bf16", {"cudnn_version": 8907}, "cuDNN >= 9.0"),
])
def test_cuda_shape_and_library_rules(backend, facts, precision, shape, word):
    shape = {"cudnn_version": CUDNN_9_1, **shape}
    reason = unsupported_reason(backend, facts, precision, **shape)
    assert reason is not None and word in reason


@pytest.mark.parametrize("backend, facts, shape", [
    ("flash", H100, {"head_dim": 256, "gqa": True}),  # flash takes GQA natively
    ("flash", H100, {"head_dim": 200}),  # sm90 has the shared memory A10 lacks
    ("cudnn", H100, {"head_dim": 128, "gqa": True}),
    ("cudnn", H100, {"head_dim": 256, "cudnn_version": 92300}),  # Hopper, recent cuDNN
    ("efficient", H100, {"head_dim": 64}),
])
def test_cuda_shapes_that_run(backend, facts, shape):
    shape = {"cudnn_version": CUDNN_9_1, **shape}
    assert unsupported_reason(backend, facts, "bf16", **shape) is None
