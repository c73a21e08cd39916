"""int8 quantisation: which layers it converts and which it leaves, that the quantised model
computes nearly what the float one does, and when it cannot run."""

from __future__ import annotations

import copy
import importlib.util
import warnings

import pytest
import torch
from torch import nn

from harness.models import GPT, resolve_config
from harness.techniques import quantization
from harness.techniques.quantization import (
    apply_int8,
    int8_unsupported_reason,
    is_int8_linear,
    quantized_linear_count,
)

CPU = torch.device("cpu")
# Linear layers per block besides the LM head: qkv + out, then the MLP's two or three
PER_BLOCK = {"tiny": 4, "tiny-llama": 5}


def build(preset: str) -> GPT:
    torch.manual_seed(0)
    return GPT(resolve_config(preset)).eval()


def tokens(model: GPT) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    return torch.randint(0, model.config.vocab_size, (2, 32), generator=generator)


@pytest.mark.parametrize("preset", PER_BLOCK)
def test_cpu_int8_converts_every_linear_but_the_tied_lm_head(preset):
    model = build(preset)
    assert apply_int8(model, CPU) is model  # in place
    assert quantized_linear_count(model) == PER_BLOCK[preset] * model.config.n_layer
    assert type(model.lm_head) is nn.Linear
    assert model.lm_head.weight is model.token_embedding.weight  # still tied, not duplicated
    assert all(is_int8_linear(m) for m in model.blocks.modules()
               if isinstance(m, nn.Linear) or is_int8_linear(m))


@pytest.mark.parametrize("preset", PER_BLOCK)
def test_cpu_int8_logits_are_close_to_fp32(preset):
    reference = build(preset)
    quantized = apply_int8(copy.deepcopy(reference), CPU)
    idx = tokens(reference)
    with torch.no_grad():
        expected, actual = reference(idx), quantized(idx)
    # per-tensor int8 weights and per-batch int8 activations: observed ~1.5% on these models
    relative = (actual - expected).norm() / expected.norm()
    assert 0 < relative < 0.05
    assert (actual.argmax(-1) == expected.argmax(-1)).float().mean() > 0.9


def test_cpu_int8_does_not_leak_torch_ao_deprecation_warnings():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        apply_int8(build("tiny"), CPU)
    assert not [w for w in caught if "deprecated" in str(w.message)], \
        [str(w.message)[:80] for w in caught]


class StackedExperts(nn.Module):
    """A stand-in for a Mixture-of-Experts layer that keeps its experts as one (E, C, F)
    parameter: not an nn.Linear, so int8 leaves it alone."""

    def __init__(self) -> None:
        super().__init__()
        self.router = nn.Linear(8, 4)
        self.proj = nn.Linear(8, 4)
        self.w = nn.Parameter(torch.randn(4, 8, 16))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (torch.einsum("bc,ecf->bef", x, self.w) + self.router(x)[..., None]
                + self.proj(x)[..., None])


def test_modules_that_are_not_linear_stay_unquantised_and_routers_stay_float():
    model = apply_int8(StackedExperts(), CPU)
    assert quantized_linear_count(model) == 1  # proj only: a router's choice is precision-sensitive
    assert type(model.router) is nn.Linear and model.router.weight.dtype == torch.float32
    assert model.w.dtype == torch.float32
    assert model(torch.randn(3, 8)).shape == (3, 4, 16)


def test_cuda_without_bitsandbytes_names_the_extra(monkeypatch):
    message = "bitsandbytes is not installed (pip install 'harness[int8]')"
    assert int8_unsupported_reason("cuda", libraries=frozenset()) == message
    assert int8_unsupported_reason("cuda", libraries={"bitsandbytes"}) is None
    # and looked up in this process when not given
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "bitsandbytes" else real(name, *a))
    assert int8_unsupported_reason("cuda") == message


def test_cpu_support_follows_the_quantised_engines(monkeypatch):
    assert int8_unsupported_reason("cpu") is None  # x86 / fbgemm / qnnpack on this build
    monkeypatch.setattr(quantization, "CPU_ENGINES", ("no-such-engine",))
    assert "no quantised CPU engine" in int8_unsupported_reason("cpu")
    assert "not on mps" in int8_unsupported_reason("mps")


def _bitsandbytes_cuda() -> bool:
    return torch.cuda.is_available() and importlib.util.find_spec("bitsandbytes") is not None


@pytest.mark.cuda
@pytest.mark.skipif(not _bitsandbytes_cuda(), reason="needs a CUDA device and bitsandbytes")
def test_cuda_int8_uses_bitsandbytes_and_stays_close_to_fp16():
    import bitsandbytes as bnb

    from harness.inference import weight_bytes

    cuda = torch.device("cuda")
    reference = build("tiny-llama").to(cuda, torch.float16)
    quantized = apply_int8(copy.deepcopy(reference), cuda)
    layers = [m for m in quantized.modules() if isinstance(m, bnb.nn.Linear8bitLt)]
    assert len(layers) == quantized_linear_count(quantized) == 5 * reference.config.n_layer
    assert all(layer.weight.dtype == torch.int8 for layer in layers)
    assert quantized.lm_head.weight is quantized.token_embedding.weight
    idx = tokens(reference).to(cuda)
    with torch.no_grad():
        expected, actual = reference(idx).float(), quantized(idx).float()
    assert (actual - expected).norm() / expected.norm() < 0.05
    assert weight_bytes(quantized) < weight_bytes(reference)
