"""int8 weight quantisation for inference: the model's Linear layers keep int8 weights.

    CUDA  bitsandbytes LLM.int8() (Dettmers et al. 2022, "LLM.int8(): 8-bit Matrix
          Multiplication for Transformers at Scale"): `bnb.nn.Linear8bitLt` with int8
          row-wise quantised weights; input feature columns holding any |x| >= 6.0 (the outlier
          threshold) are multiplied in fp16, the rest in int8. Inputs are cast to fp16 inside
          the matmul, so run the model in fp16 (or under fp16 autocast) to avoid casts.
    CPU   PyTorch dynamic quantisation (`torch.ao.quantization.quantize_dynamic`): weights
          int8 with one per-tensor scale, activations quantised per batch on the fly; the
          layers take and return fp32, so the model must run in fp32 (no bf16 autocast).

What stays in floating point:
  * the LM head (`lm_head`). It is tied to the token embedding; quantising it would untie
    the two and keep a second, int8 copy of the (V, C) matrix next to the float embedding.
  * embeddings, norms, biases.
  * anything that is not an `nn.Linear`: e.g. a Mixture-of-Experts layer that keeps its
    experts' weights as stacked (E, C, F) parameters and multiplies them with bmm/einsum is
    left unquantised, and `quantized_linear_count` says how many layers were converted.

The result is for inference only: neither kind of quantised layer trains.
"""

from __future__ import annotations

import importlib.util
import sys
import warnings
from collections.abc import Collection

import torch
from torch import nn

OUTLIER_THRESHOLD = 6.0  # LLM.int8()'s |x| threshold for fp16 outlier features
LM_HEAD = "lm_head"
CPU_ENGINES = ("x86", "fbgemm", "onednn", "qnnpack")  # quantised CPU kernel backends


def int8_unsupported_reason(device_type: str,
                            libraries: Collection[str] | None = None) -> str | None:
    """Why int8 inference cannot run on this device type, or None when it can.

    libraries: the optional libraries importable here (DeviceFacts.libraries); None looks
    bitsandbytes up in this process.
    """
    if device_type == "cuda":
        installed = ("bitsandbytes" in libraries if libraries is not None
                     else importlib.util.find_spec("bitsandbytes") is not None)
        if not installed:
            return "bitsandbytes is not installed (pip install 'harness[int8]')"
        return None
    if device_type == "cpu":
        if not set(CPU_ENGINES) & set(torch.backends.quantized.supported_engines):
            return ("this PyTorch build has no quantised CPU engine "
                    f"({', '.join(CPU_ENGINES)}) for dynamic int8 Linear layers")
        return None
    return f"int8 inference runs on CPU (PyTorch dynamic quantisation) or CUDA " \
           f"(bitsandbytes), not on {device_type}"


def apply_int8(model: nn.Module, device: torch.device) -> nn.Module:
    """Replace the model's nn.Linear layers, except the LM head, with int8 ones for `device`.

    In place (the caller's handle stays valid); returns the model, on `device`.
    """
    if device.type == "cuda":
        return _apply_bitsandbytes(model, device)
    if device.type == "cpu":
        return _apply_dynamic(model.to(device))
    raise ValueError(int8_unsupported_reason(device.type, ()))


def quantized_linear_count(model: nn.Module) -> int:
    """How many of the model's layers hold int8 weights (either kind)."""
    return sum(1 for module in model.modules() if is_int8_linear(module))


def is_int8_linear(module: nn.Module) -> bool:
    if isinstance(module, torch.ao.nn.quantized.dynamic.Linear):
        return True
    bnb = sys.modules.get("bitsandbytes")  # never import it just to answer "no"
    return bnb is not None and isinstance(module, bnb.nn.Linear8bitLt)


KEPT_IN_FLOAT = (LM_HEAD, "router")  # the tied head; MoE routers, whose choice is precision-sensitive


def _quantizable(name: str, module: nn.Module) -> bool:
    return isinstance(module, nn.Linear) and name.rpartition(".")[2] not in KEPT_IN_FLOAT


def _apply_dynamic(model: nn.Module) -> nn.Module:
    names = {name for name, module in model.named_modules() if _quantizable(name, module)}
    if not names:
        return model
    with warnings.catch_warnings():
        # torch.ao.quantization is deprecated in favour of torchao (which has no CPU dynamic
        # int8 Linear in the versions we support); quantize_dynamic still works on torch 2.13
        # and warns on every call, as does the qint8 tensor creation inside it
        warnings.filterwarnings("ignore", message=r".*torch\.ao\.quantization is deprecated")
        warnings.filterwarnings("ignore", message=r".*quantized tensor creation functions")
        # a set of module names: quantise exactly those, with the default dynamic qconfig
        torch.ao.quantization.quantize_dynamic(model, names, dtype=torch.qint8, inplace=True)
    return model


def _apply_bitsandbytes(model: nn.Module, device: torch.device) -> nn.Module:
    import bitsandbytes as bnb  # optional: the `int8` extra, CUDA only

    model.to(device)  # everything that stays in floating point
    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            if not _quantizable(child_name, child) or isinstance(child, bnb.nn.Linear8bitLt):
                continue
            layer = bnb.nn.Linear8bitLt(child.in_features, child.out_features,
                                        bias=child.bias is not None, has_fp16_weights=False,
                                        threshold=OUTLIER_THRESHOLD)
            # Int8Params quantises (row-wise absmax -> int8 data plus fp32 scales `SCB`) when
            # it is moved from the host to a CUDA device, so the float weight goes through the
            # host even when the model was on the GPU already
            layer.weight = bnb.nn.Int8Params(child.weight.data.detach().to("cpu"),
                                             requires_grad=False, has_fp16_weights=False)
            if child.bias is not None:
                layer.bias = nn.Parameter(child.bias.data.detach().clone(), requires_grad=False)
            setattr(parent, child_name, layer.to(device))  # quantisation happens here
    return model
