"""Checkpointing modes: same numbers as the bare model, fewer saved bytes, the recompute
they claim (counted with forward hooks and torch's dispatcher), and the FLOPs it costs.

What SavedTensorMeter (a saved-tensor pack hook) can see: only the innermost pack hook
sees a tensor. Inside a checkpointed block that is the checkpoint's own hook, so the meter
sees each checkpointed block's input; selective checkpointing keeps its matmul outputs in
a dispatcher cache that no hook sees, so the meter reports the same bytes as full; under
offload `save_on_cpu` is innermost, so the meter sees only what is saved outside the blocks.
"""

from __future__ import annotations

from collections import Counter

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from harness.metrics import SavedTensorMeter
from harness.models import GPT, resolve_config
from harness.models.flops import recompute_flops_per_token
from harness.models.gpt import Block
from harness.techniques.checkpointing import (
    MODES_HELP,
    SAVE_OPS,
    apply_checkpointing,
    parse_mode,
    recomputed_blocks,
)

aten = torch.ops.aten
WRAPPING_MODES = ["full", "every-2", "every-3", "selective", "offload"]
MATMULS = {aten.mm.default, aten.addmm.default}


def build(mode: str, preset: str = "tiny", n_layer: int = 4) -> tuple[GPT, nn.Module]:
    """(bare model, model with `mode` applied); same seed, so the same weights every call."""
    torch.manual_seed(0)
    bare = GPT(resolve_config(preset, n_layer=n_layer))
    return bare, apply_checkpointing(bare, mode)


def batch(cfg, B: int, T: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    x = torch.randint(0, cfg.vocab_size, (B, T), generator=generator)
    y = torch.randint(0, cfg.vocab_size, (B, T), generator=generator)
    return x, y


def loss_of(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(model(x).float().flatten(0, 1), y.flatten())


def meter_bytes(mode: str, B: int = 8, T: int = 128) -> int:
    """What harness/train/loop.py::saved_bytes measures: a forward and an fp32 loss."""
    bare, model = build(mode)
    x, y = batch(bare.config, B, T)
    with SavedTensorMeter(bare.parameters()) as meter:
        loss = loss_of(model, x, y)
    del loss
    return meter.bytes


# --- parsing ---------------------------------------------------------------------------

@pytest.mark.parametrize("mode, parsed", [
    ("none", ("none", 0)), ("full", ("full", 1)), ("every-1", ("full", 1)),
    ("every-2", ("every", 2)), ("every-12", ("every", 12)),
    ("selective", ("selective", 0)), ("offload", ("offload", 0)),
])
def test_parse_mode_accepts_every_form(mode: str, parsed: tuple[str, int]) -> None:
    assert parse_mode(mode) == parsed


@pytest.mark.parametrize("mode", ["every-0", "every-x", "sometimes", "every-", "every-2 ", "Full"])
def test_parse_mode_rejects_with_the_accepted_forms(mode: str) -> None:
    with pytest.raises(ValueError) as error:
        parse_mode(mode)
    message = str(error.value)
    assert message == f"unknown checkpointing mode {mode!r}; expected one of: {MODES_HELP}"
    assert "\n" not in message
    with pytest.raises(ValueError):
        apply_checkpointing(GPT(resolve_config("tiny")), mode)


# --- numbers unchanged -----------------------------------------------------------------

@pytest.mark.parametrize("preset", ["tiny", "tiny-llama"])
@pytest.mark.parametrize("mode", WRAPPING_MODES)
def test_outputs_and_gradients_equal_the_bare_model(mode: str, preset: str) -> None:
    reference, _ = build("none", preset)
    bare, model = build(mode, preset)
    x, y = batch(bare.config, 2, 32)
    logits_ref, logits = reference(x), model(x)
    torch.testing.assert_close(logits, logits_ref, rtol=0, atol=1e-6)
    F.cross_entropy(logits_ref.flatten(0, 1), y.flatten()).backward()
    F.cross_entropy(logits.flatten(0, 1), y.flatten()).backward()
    # wrapping keeps the parameters and their order (only the names gain a wrapper prefix)
    for (name, ref), param in zip(reference.named_parameters(), bare.parameters(), strict=True):
        torch.testing.assert_close(param.grad, ref.grad, rtol=0, atol=1e-6, msg=name)


@pytest.mark.parametrize("mode", WRAPPING_MODES)
def test_wrapped_model_keeps_the_bare_state_dict_keys(mode: str) -> None:
    bare, _ = build("none")
    _, wrapped = build(mode)
    assert list(wrapped.state_dict()) == list(bare.state_dict())
    wrapped.load_state_dict(bare.state_dict())  # and loads a bare checkpoint


def test_every_k_wraps_the_last_block_of_each_group_of_k() -> None:
    _, model = build("every-2", n_layer=5)
    wrapped = [i for i, block in enumerate(model.blocks) if not isinstance(block, Block)]
    assert wrapped == [1, 3]  # torchtitan's ac_freq: (i + 1) % K == 0


# --- saved bytes -----------------------------------------------------------------------

def test_saved_bytes_ordered_full_every2_none() -> None:
    full, every2, none = meter_bytes("full"), meter_bytes("every-2"), meter_bytes("none")
    assert full < every2 < none
    # every-2 keeps all of two blocks' saves where full keeps only their inputs: exactly
    # half of what full saves over none
    assert every2 - full == (none - full) // 2


def saved_op_output_bytes(mode: str, B: int = 8, T: int = 128) -> int:
    """Bytes of the outputs of SAVE_OPS that a forward produces inside the blocks: what
    selective checkpointing keeps in its cache, out of the meter's sight."""
    bare, model = build(mode)
    x, y = batch(bare.config, B, T)
    storages: dict[int, int] = {}

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if func in SAVE_OPS:
                for t in out if isinstance(out, tuple) else (out,):
                    storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return out

    recording = Record()

    def start(module: nn.Module, args: tuple) -> None:
        recording.__enter__()  # a pre-hook's return value would replace the block's input

    for block in bare.blocks:
        block.register_forward_pre_hook(start)
        block.register_forward_hook(lambda module, args, out: recording.__exit__(None, None, None))
    with SavedTensorMeter(bare.parameters()):
        loss = loss_of(model, x, y)
    del loss
    return sum(storages.values())


def test_the_meter_counts_the_block_inputs_and_the_matmul_outputs_selective_keeps() -> None:
    full, selective, none = meter_bytes("full"), meter_bytes("selective"), meter_bytes("none")
    # SAC holds every matmul and attention output outside autograd's hooks, per block fp32
    # (B, T, .): qkv 3C, attention C and its logsumexp H, attention projection C, MLP F and C;
    # it reports them to the meter, which also sees the block inputs, as for full
    cached = saved_op_output_bytes("selective")
    B, T, C, H, F_ = 8, 128, 64, 4, 256
    assert cached == 4 * B * T * (3 * C + C + H + C + F_ + C) * 4
    assert selective == full + cached
    assert full < selective < none


def test_offload_hides_every_block_save_from_the_meter() -> None:
    """On CPU save_on_cpu moves nothing (the tensors are already there), but its pack hook is
    the innermost one in each block, so the outer meter sees exactly what is saved outside
    the blocks: on a GPU, what stays in device memory."""
    bare, model = build("none")
    x, y = batch(bare.config, 8, 128)
    # an innermost no-op hook around each bare block hides its saves from the meter
    hide = torch.autograd.graph.saved_tensors_hooks(lambda t: t, lambda t: t)

    def start(module: nn.Module, args: tuple) -> None:
        hide.__enter__()

    for block in bare.blocks:
        block.register_forward_pre_hook(start)
        block.register_forward_hook(lambda module, args, out: hide.__exit__(None, None, None))
    with SavedTensorMeter(bare.parameters()) as meter:
        loss = loss_of(model, x, y)
    del loss
    outside_blocks = meter.bytes
    offload = meter_bytes("offload")
    assert offload == outside_blocks
    assert offload < meter_bytes("full")  # full keeps the block inputs on the device too


# --- recompute -------------------------------------------------------------------------

def block_forward_counts(mode: str) -> list[int]:
    """Calls of each bare Block's forward during one training step."""
    bare, model = build("none")
    counts = [0] * len(bare.blocks)
    for i, block in enumerate(bare.blocks):  # hooks on the unwrapped blocks, before wrapping
        block.register_forward_pre_hook(lambda m, a, i=i: counts.__setitem__(i, counts[i] + 1))
    apply_checkpointing(bare, mode)
    x, y = batch(bare.config, 2, 32)
    loss_of(model, x, y).backward()
    return counts


@pytest.mark.parametrize("mode, counts", [
    ("none", [1, 1, 1, 1]), ("offload", [1, 1, 1, 1]), ("full", [2, 2, 2, 2]),
    ("every-2", [1, 2, 1, 2]), ("every-3", [1, 1, 2, 1]), ("selective", [2, 2, 2, 2]),
])
def test_blocks_run_forward_again_in_backward(mode: str, counts: list[int]) -> None:
    assert block_forward_counts(mode) == counts


class OpCounter(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.counts[func] += 1
        return func(*args, **(kwargs or {}))


def backward_matmuls(mode: str) -> int:
    bare, model = build(mode)
    x, y = batch(bare.config, 2, 32)
    loss = loss_of(model, x, y)
    with OpCounter() as counter:
        loss.backward()
    return sum(counter.counts[op] for op in MATMULS)


def test_selective_recomputes_no_matmul() -> None:
    none = backward_matmuls("none")
    assert backward_matmuls("selective") == none
    # full re-runs 3 of the 4 linear layers of each of the 4 blocks: non-reentrant
    # checkpoint stops recomputing once backward has every tensor it needs ("early stop"),
    # and nothing needs the output of a block's last matmul, the MLP down-projection
    assert backward_matmuls("full") == none + 3 * 4


@pytest.mark.parametrize("mode, blocks", [
    ("none", 0), ("full", 4), ("every-1", 4), ("every-2", 2), ("every-3", 1), ("every-5", 0),
    ("selective", 0), ("offload", 0),
])
def test_recomputed_blocks(mode: str, blocks: int) -> None:
    assert recomputed_blocks(mode, 4) == blocks
    assert block_forward_counts(mode).count(2) == (4 if mode == "selective" else blocks)


# --- FLOPs -----------------------------------------------------------------------------
# FlopCounterMode has no entry for the CPU SDPA kernel; count it as tests/models/test_flops.py
# does: torch's full (non-causal) T x T forward formula, and a backward of twice that.

CPU_SDPA = aten._scaled_dot_product_flash_attention_for_cpu
CPU_SDPA_BACKWARD = aten._scaled_dot_product_flash_attention_for_cpu_backward


def flop_counter() -> FlopCounterMode:
    def forward(q, k, v, *args, out_shape=None, **kwargs) -> int:
        return sdpa_flop_count(q, k, v)

    def backward(grad_out, q, k, v, *args, out_shape=None, **kwargs) -> int:
        return 2 * sdpa_flop_count(q, k, v)

    return FlopCounterMode(display=False, custom_mapping={CPU_SDPA: forward, CPU_SDPA_BACKWARD: backward})


@pytest.mark.parametrize("preset", ["tiny", "tiny-llama"])
def test_recompute_flops_match_the_forward_of_the_blocks(preset: str) -> None:
    bare, _ = build("none", preset)
    cfg, (B, T) = bare.config, (2, 64)
    h = torch.randn(B, T, cfg.d_model)
    with flop_counter() as counter, torch.no_grad():
        for block in bare.blocks:
            h = block(h)
    counted = counter.get_total_flops() / (B * T)
    assert counted / recompute_flops_per_token(cfg, T, cfg.n_layer) == pytest.approx(1.0, abs=0.05)


@pytest.mark.parametrize("mode", ["full", "every-2", "selective"])
def test_step_flops_grow_by_the_recompute(mode: str) -> None:
    """A step costs the recompute of recomputed_blocks(mode) blocks, less each one's MLP
    down-projection, which torch's early-stopping checkpoint never re-runs (see above):
    recompute_flops_per_token is the conventional (PaLM / Megatron HFU) upper bound."""
    def step_flops(mode: str) -> float:
        bare, model = build(mode)
        x, y = batch(bare.config, 2, 64)
        with flop_counter() as counter:
            loss_of(model, x, y).backward()
        return counter.get_total_flops() / (2 * 64)

    cfg = resolve_config("tiny", n_layer=4)
    extra = step_flops(mode) - step_flops("none")
    blocks = recomputed_blocks(mode, 4)
    expected = recompute_flops_per_token(cfg, 64, blocks) - blocks * 2 * cfg.ff_hidden * cfg.d_model
    assert extra == pytest.approx(expected, rel=0.05, abs=1.0)


def test_recompute_flops_by_hand() -> None:
    cfg = resolve_config("tiny")  # gpt2, C 64, 4 heads, F 256, biases
    block_params = 64 * 192 + 192 + 64 * 64 + 64 + 64 * 256 + 256 + 256 * 64 + 64 + 2 * 128
    assert recompute_flops_per_token(cfg, 128, 1) == 2 * block_params + 4 * 4 * 16 * 128
    assert recompute_flops_per_token(cfg, 128, 0) == 0
    with pytest.raises(ValueError, match="blocks"):
        recompute_flops_per_token(cfg, 128, cfg.n_layer + 1)


# --- GPU -------------------------------------------------------------------------------

@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_offload_moves_block_activations_off_the_device() -> None:
    def resident_after_forward(mode: str) -> tuple[int, dict[str, torch.Tensor]]:
        bare, model = build(mode)
        bare.cuda()
        x, y = (t.cuda() for t in batch(bare.config, 8, 128))
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        loss = loss_of(model, x, y)
        torch.cuda.synchronize()
        resident = torch.cuda.memory_allocated() - before
        loss.backward()
        return resident, [p.grad.cpu() for p in bare.parameters()]

    none, grads_none = resident_after_forward("none")
    offload, grads_offload = resident_after_forward("offload")
    assert offload < none / 2
    for grad_offload, grad in zip(grads_offload, grads_none, strict=True):
        torch.testing.assert_close(grad_offload, grad, rtol=0, atol=1e-5)
