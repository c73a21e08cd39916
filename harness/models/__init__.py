"""Models for the harness: a nanoGPT-style GPT/Llama (optionally Mixture of Experts),
named presets, FLOPs accounting.

build_model turns an architecture name into a model. arch is "gpt", or
"package.module:callable", or "/abs/path/file.py:callable"; the callable
receives the GPTConfig and must return an nn.Module whose forward maps token
ids (B, T) to logits (B, T, vocab_size). This is how users plug in their own
models.
"""

from __future__ import annotations

from typing import Callable

import torch.nn as nn

from harness.models.flops import (
    flops_parameter_count,
    forward_flops_per_token,
    model_flops_per_token,
    parameter_count,
    recompute_flops_per_token,
    total_parameter_count,
)
from harness.models.gpt import GPT, GPTConfig
from harness.models.moe import (
    RoutedExperts,
    Routing,
    auxiliary_loss,
    expert_capacity,
    load_balancing_loss,
    route,
    routed_layers,
    router_z_loss,
)
from harness.models.presets import PRESETS, preset_names, resolve_config
from harness.plugins import load_attribute

__all__ = [
    "GPT",
    "GPTConfig",
    "PRESETS",
    "RoutedExperts",
    "Routing",
    "auxiliary_loss",
    "build_model",
    "expert_capacity",
    "flops_parameter_count",
    "forward_flops_per_token",
    "load_balancing_loss",
    "model_flops_per_token",
    "parameter_count",
    "preset_names",
    "recompute_flops_per_token",
    "resolve_config",
    "route",
    "routed_layers",
    "router_z_loss",
    "total_parameter_count",
]

_ARCH_FORMS = "expected 'gpt', 'package.module:callable' or '/path/to/file.py:callable'"


def _resolve_factory(arch: str) -> Callable[[GPTConfig], nn.Module]:
    location, sep, attribute = arch.rpartition(":")
    if not sep or not location or not attribute:
        raise ValueError(f"unknown arch {arch!r}; {_ARCH_FORMS}")
    factory = load_attribute(location, attribute, f"arch {arch!r}")
    if not callable(factory):
        raise ValueError(f"arch {arch!r}: {attribute!r} in {location!r} is not callable")
    return factory


def build_model(arch: str, cfg: GPTConfig) -> nn.Module:
    """Build the model named by arch from cfg; see the module docstring for the forms of arch.

    Raises ValueError for an unknown arch or a location that cannot be loaded,
    TypeError when the callable returns something other than an nn.Module.
    """
    if arch == "gpt":
        return GPT(cfg)
    model = _resolve_factory(arch)(cfg)
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"arch {arch!r} returned {type(model).__name__}, expected a torch.nn.Module"
        )
    return model
