"""Models for the harness: a nanoGPT-style GPT/Llama, named presets, FLOPs accounting.

build_model turns an architecture name into a model. arch is "gpt", or
"package.module:callable", or "/abs/path/file.py:callable"; the callable
receives the GPTConfig and must return an nn.Module whose forward maps token
ids (B, T) to logits (B, T, vocab_size). This is how users plug in their own
models.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Callable

import torch.nn as nn

from harness.models.flops import (
    flops_parameter_count,
    forward_flops_per_token,
    model_flops_per_token,
    parameter_count,
    recompute_flops_per_token,
)
from harness.models.gpt import GPT, GPTConfig
from harness.models.presets import PRESETS, preset_names, resolve_config

__all__ = [
    "GPT",
    "GPTConfig",
    "PRESETS",
    "build_model",
    "flops_parameter_count",
    "forward_flops_per_token",
    "model_flops_per_token",
    "parameter_count",
    "preset_names",
    "recompute_flops_per_token",
    "resolve_config",
]

_ARCH_FORMS = "expected 'gpt', 'package.module:callable' or '/path/to/file.py:callable'"


def _load_file(path: Path, arch: str) -> ModuleType:
    if not path.is_absolute():
        raise ValueError(f"arch {arch!r}: file path must be absolute; {_ARCH_FORMS}")
    if not path.is_file():
        raise ValueError(f"arch {arch!r}: no such file {str(path)!r}")
    # one name per path, so two user files both called model.py do not collide
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:12]
    module_name = f"_harness_user_model_{path.stem}_{digest}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ValueError(f"arch {arch!r}: cannot load {str(path)!r} as a Python module")
    module = importlib.util.module_from_spec(spec)
    # registered before running it, so dataclasses and pickling inside it can find it
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


def _load_module(name: str, arch: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError as error:
        raise ValueError(f"arch {arch!r}: cannot import module {name!r}: {error}") from error


def _resolve_factory(arch: str) -> Callable[[GPTConfig], nn.Module]:
    location, sep, attribute = arch.rpartition(":")
    if not sep or not location or not attribute:
        raise ValueError(f"unknown arch {arch!r}; {_ARCH_FORMS}")
    if location.endswith(".py") or "/" in location:
        module = _load_file(Path(location), arch)
    else:
        module = _load_module(location, arch)
    factory = getattr(module, attribute, None)
    if factory is None:
        raise ValueError(f"arch {arch!r}: {location!r} has no attribute {attribute!r}")
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
