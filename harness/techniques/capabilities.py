"""The one capability table: which technique settings cannot run on which hardware, and why.

The runner asks it about every planned trial; a setting it names becomes a `skipped` trial
carrying the reason, never a silently dropped one and never a crash in the middle of a sweep.
Each rule is a small function of the trial's techniques and the device's facts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from harness.hardware import DeviceFacts
from harness.parallel import parallel_unsupported_reason
from harness.techniques import attention

Techniques = dict[str, Any]
Model = dict[str, Any]  # the resolved model section of a trial spec
Rule = Callable[[Techniques, DeviceFacts, Model], "str | None"]


def _cuda_capability(facts: DeviceFacts, major: int, minor: int = 0) -> bool:
    return facts.type == "cuda" and facts.compute_capability is not None \
        and facts.compute_capability >= (major, minor)


def precision_rule(t: Techniques, facts: DeviceFacts, model: Model) -> str | None:
    name = t["precision"]
    if name == "tf32" and facts.type != "cuda":
        return "tf32 is a CUDA tensor-core mode; on a CPU it would be plain fp32"
    if name == "tf32" and not _cuda_capability(facts, 8):
        return "tf32 needs an NVIDIA GPU of compute capability 8.0 (Ampere) or newer"
    if name in ("bf16", "bf16-pure") and not facts.bf16_supported:
        return f"{facts.name} has no native bf16 support"
    if name == "fp8":
        if not _cuda_capability(facts, 8, 9):
            return "fp8 training needs an NVIDIA GPU of compute capability 8.9 (Ada, Hopper) or newer"
        if not facts.has("torchao"):
            return "fp8 training needs torchao (pip install torchao)"
    return None


def optimizer_rule(t: Techniques, facts: DeviceFacts, model: Model) -> str | None:
    if t["optimizer"] == "adamw8bit":
        if facts.type != "cuda":
            return "bitsandbytes' 8-bit AdamW runs on CUDA devices"
        if not facts.has("bitsandbytes"):
            return "8-bit AdamW needs bitsandbytes (pip install bitsandbytes)"
    return None


def checkpointing_rule(t: Techniques, facts: DeviceFacts, model: Model) -> str | None:
    if t["checkpointing"] == "offload" and facts.type == "cpu":
        return "offload moves saved activations to host memory, where a CPU trial keeps them already"
    return None


def attention_rule(t: Techniques, facts: DeviceFacts, model: Model) -> str | None:
    heads, kv_heads = model.get("n_head"), model.get("n_kv_head")
    head_dim = model["d_model"] // heads if heads and model.get("d_model") else None
    return attention.unsupported_reason(t["attention"], facts, t["precision"], head_dim=head_dim,
                                        gqa=kv_heads is not None and kv_heads < heads)


def parallel_rule(t: Techniques, facts: DeviceFacts, model: Model) -> str | None:
    """Rank counts and each strategy's own needs (harness.parallel: built-ins and plug-ins)."""
    return parallel_unsupported_reason(t, facts)


def quantization_rule(t: Techniques, facts: DeviceFacts, model: Model) -> str | None:
    if t.get("quantization", "none") == "none":
        return None
    from harness.techniques.quantization import int8_unsupported_reason

    return int8_unsupported_reason(facts.type, facts.libraries)


RULES: tuple[Rule, ...] = (precision_rule, optimizer_rule, attention_rule, checkpointing_rule,
                           parallel_rule, quantization_rule)


def unsupported_reason(techniques: Techniques, facts: DeviceFacts, model: Model | None = None) -> str | None:
    """Why this combination cannot run on this device (with this model's attention shape),
    or None when it can."""
    for rule in RULES:
        reason = rule(techniques, facts, model or {})
        if reason:
            return reason
    return None
