"""Inference measurements of a model: the memory its weights take, prefill and decode
throughput, and perplexity.

Weight memory counts what the model holds after loading, each storage once:
  * parameters and persistent buffers (the state a checkpoint carries). Non-persistent
    buffers (the rotary cos/sin tables) are left out: they are derived from the config, the
    same for every precision, and not weights. So for a float model
    weight_bytes == element_size * parameter_count, a tied embedding counted once.
  * quantised weights: a PyTorch dynamic int8 Linear keeps its weight packed in an opaque
    object, not a parameter; it is unpacked and counted as its int8 values plus one scale and
    zero point per tensor (per channel for per-channel schemes). The engine's packed copy may
    add padding and per-row offsets (fbgemm: 4 bytes per output row); those are not counted.
    A bitsandbytes int8 Linear counts its int8 weight plus its fp32 row scales (SCB).
The KV cache and activations are not weights: see KVCache.nbytes for the cache.

Throughput: prefill is one forward over the prompts (B*T tokens per pass, median over
repeats); decode is greedy, with a KV cache, B tokens per step, all steps timed together.
Both run in eval mode under torch.inference_mode, the model's training flag restored after.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from typing import ContextManager

import torch
from torch import nn

from harness.metrics.timing import StepTimer, synchronize
from harness.models.kv_cache import KVCache
from harness.techniques.quantization import is_int8_linear

Autocast = Callable[[], ContextManager]
QPARAM_BYTES = 8 + 8  # a per-tensor scale (float64) and zero point (int64), as torch keeps them


# --- weight memory ---------------------------------------------------------------------------

def weight_bytes(model: nn.Module) -> int:
    """Bytes of every weight the model holds: parameters, persistent buffers and quantised
    packed weights, each storage counted once (see the module docstring)."""
    return _bytes_of(model, lambda module: True)


def linear_weight_bytes(model: nn.Module) -> int:
    """weight_bytes restricted to Linear layers (float or int8): their weights, biases and
    quantisation scales."""
    return _bytes_of(model, lambda module: isinstance(module, nn.Linear) or is_int8_linear(module))


def _bytes_of(model: nn.Module, include: Callable[[nn.Module], bool]) -> int:
    # keyed by address, holding each tensor so that a freshly unpacked one stays alive and no
    # later tensor can reuse its address while we count
    seen: dict[tuple[torch.device, int], tuple[torch.Tensor, int]] = {}
    for module in model.modules():
        if not include(module):
            continue
        for tensor, nbytes in _own_state(module):
            key = (tensor.device, tensor.data_ptr() or id(tensor))  # meta tensors: address 0
            seen.setdefault(key, (tensor, nbytes))
    return sum(nbytes for _, nbytes in seen.values())


def _own_state(module: nn.Module) -> Iterator[tuple[torch.Tensor, int]]:
    """(tensor, bytes) of the state held by this module itself, not by its children."""
    for param in module.parameters(recurse=False):
        yield param, _dense_bytes(param)
    for name, buffer in module.named_buffers(recurse=False):
        if name not in module._non_persistent_buffers_set:
            yield buffer, _dense_bytes(buffer)
    if isinstance(module, torch.ao.nn.quantized.dynamic.Linear):
        weight, bias = module._packed_params._weight_bias()  # unpacks a copy: (qint8, fp32)
        yield weight, _quantized_bytes(weight)
        if bias is not None:
            yield bias, _dense_bytes(bias)
    elif is_int8_linear(module):  # bitsandbytes Linear8bitLt: row scales live beside the weight
        # on the weight until the first forward, on the matmul state after it
        scales = getattr(module.weight, "SCB", None)
        if scales is None:
            scales = getattr(module.state, "SCB", None)
        if scales is not None:
            yield scales, _dense_bytes(scales)


def _dense_bytes(tensor: torch.Tensor) -> int:
    return tensor.numel() * tensor.element_size()


def _quantized_bytes(tensor: torch.Tensor) -> int:
    values = tensor.numel() * tensor.element_size()  # 1 byte per qint8 value
    if tensor.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric,
                            torch.per_channel_affine_float_qparams):
        return values + _dense_bytes(tensor.q_per_channel_scales()) \
            + _dense_bytes(tensor.q_per_channel_zero_points())
    return values + QPARAM_BYTES


# --- throughput ------------------------------------------------------------------------------

def prefill_tokens_per_s(model: nn.Module, prompts: torch.Tensor, device: torch.device,
                         repeats: int = 3, warmup: int = 1,
                         autocast: Autocast = contextlib.nullcontext) -> float:
    """Tokens per second of a forward pass over prompts (B, T): B*T / median pass time."""
    if repeats < 1:
        raise ValueError(f"repeats must be positive, got {repeats}")
    B, T = prompts.shape
    device = torch.device(device)
    prompts = prompts.to(device)
    with _eval(model), torch.inference_mode():
        for _ in range(warmup):
            with autocast():
                model(prompts)
        # StepTimer: CUDA events around each pass on CUDA, perf_counter plus a synchronise
        # elsewhere; the window synchronises the device before and after
        with StepTimer(device) as timer:
            for _ in range(repeats):
                with timer.step(), autocast():
                    model(prompts)
    return B * T / timer.result().median_s


def decode_tokens_per_s(model: nn.Module, prompts: torch.Tensor, new_tokens: int,
                        device: torch.device, dtype: torch.dtype, warmup: int = 1,
                        autocast: Autocast = contextlib.nullcontext) -> float:
    """Tokens per second of greedy decoding with a KV cache: B * new_tokens / seconds.

    The prompts (B, T) are prefilled untimed; then `new_tokens` single-token forward passes
    are timed together. dtype is the KV cache's: the dtype the model computes keys and values
    in (the autocast dtype under autocast, otherwise its float weights' dtype; fp32 for a CPU
    int8 model). T + new_tokens must fit in the model's max_seq_len.
    """
    if new_tokens < 1:
        raise ValueError(f"new_tokens must be positive, got {new_tokens}")
    B, T = prompts.shape
    device = torch.device(device)
    prompts = prompts.to(device)
    with _eval(model), torch.inference_mode():
        cache = KVCache.allocate(_config(model), B, T + new_tokens, device, dtype)
        for _ in range(warmup):  # the same shapes as the timed run, into the same cache memory
            _decode(model, cache, _prefill(model, prompts, cache, autocast), new_tokens, autocast)
            cache.reset()
        token = _prefill(model, prompts, cache, autocast)
        synchronize(device)
        start = time.perf_counter()
        _decode(model, cache, token, new_tokens, autocast)
        synchronize(device)
        seconds = time.perf_counter() - start
    return B * new_tokens / seconds


def greedy_decode(model: nn.Module, prompts: torch.Tensor, new_tokens: int, dtype: torch.dtype,
                  autocast: Autocast = contextlib.nullcontext) -> torch.Tensor:
    """prompts (B, T) followed by `new_tokens` greedily chosen tokens: (B, T + new_tokens)."""
    if new_tokens < 1:
        raise ValueError(f"new_tokens must be positive, got {new_tokens}")
    B, T = prompts.shape
    with _eval(model), torch.inference_mode():
        # the last token chosen is never fed back, so the cache needs one position less
        cache = KVCache.allocate(_config(model), B, T + new_tokens - 1, prompts.device, dtype)
        first = _prefill(model, prompts, cache, autocast)  # (B, 1)
        rest = _decode(model, cache, first, new_tokens - 1, autocast)  # (B, new_tokens - 1)
    return torch.cat([prompts, first, rest], dim=1)


def _prefill(model: nn.Module, prompts: torch.Tensor, cache: KVCache,
             autocast: Autocast) -> torch.Tensor:
    """Fill the cache with prompts (B, T); the greedy next token (B, 1)."""
    with autocast():
        logits = model(prompts, cache=cache)  # (B, T, V)
    return logits[:, -1:].argmax(dim=-1)


def _decode(model: nn.Module, cache: KVCache, token: torch.Tensor, steps: int,
            autocast: Autocast) -> torch.Tensor:
    """Feed token (B, 1), then each greedy choice, for `steps` forwards; the chosen (B, steps).
    No host synchronisation inside: the argmax stays on the device."""
    chosen = []
    for _ in range(steps):
        with autocast():
            logits = model(token, cache=cache)  # (B, 1, V)
        token = logits.argmax(dim=-1)  # (B, 1)
        chosen.append(token)
    return torch.cat(chosen, dim=1) if chosen else token[:, :0]


# --- quality ---------------------------------------------------------------------------------

def perplexity(eval_loss_nats: float) -> float:
    """exp of a mean cross-entropy in nats; inf where that overflows."""
    try:
        return math.exp(eval_loss_nats)
    except OverflowError:
        return math.inf


# --- helpers ---------------------------------------------------------------------------------

@contextlib.contextmanager
def _eval(model: nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _config(model: nn.Module):
    config = getattr(model, "config", None)
    if config is None:
        raise TypeError(f"KV-cached decoding needs a harness GPT (a `config` and "
                        f"forward(idx, cache=...)), got {type(model).__name__}")
    return config
