"""torch.compile of the whole model, in torch's default mode or a named one.

Compilation happens during the first (warm-up) step; the worker reports its cost as
`compile_time_s` and never lets it into a measured step. Graph breaks are counted from
dynamo's counters, which every compiled frame updates.
"""

from __future__ import annotations

import torch
from torch import nn


def apply_compile(model: nn.Module, setting: bool | str) -> nn.Module:
    if setting is False:
        return model
    mode = None if setting in (True, "default") else setting
    from harness.models.moe import routed_layers

    if routed_layers(model):
        # a routed layer stores its auxiliary loss on itself (a forward side effect); inside a
        # checkpointed block dynamo would otherwise break the graph there and run the block
        # eagerly. The recompute skips that store anyway (RoutedExperts checks for backward).
        torch._dynamo.config.skip_fwd_side_effects_in_bwd_under_checkpoint = True
    # this trial's counts alone (graphs, breaks, recompiles), also when trials share a process
    torch._dynamo.reset()
    from torch._dynamo.utils import counters

    counters.clear()
    return torch.compile(model, mode=mode)


# modes that capture CUDA graphs on a GPU (inductor's default for these modes): their second
# step runs the graphs' warm-up and records them
CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")


def compile_steps(setting: bool | str, device_type: str) -> int:
    """Steps that pay the compiler: the first, and under CUDA graphs the recording step."""
    return 2 if device_type == "cuda" and setting in CUDA_GRAPH_MODES else 1


def recompile_reasons() -> list[str]:
    """One reason per recompilation dynamo made in this process: on each recompile it records
    why every compiled version of the frame failed its guards ("0/0: ...", "0/1: ..."), so the
    k-th recompile of a frame adds k reasons, and the versions that ever failed, one per
    recompile, are what is counted (each with the first reason it failed for)."""
    from torch._dynamo.utils import guard_failures  # no public API carries these

    found = []
    for code, reasons in guard_failures.items():
        first: dict[str, str] = {}
        for reason in reasons:
            text = str(reason).strip()
            first.setdefault(text.split(":", 1)[0], text)
        found += [f"{getattr(code, 'co_name', code)}: {text}" for text in first.values()]
    return found


def graph_counts() -> dict[str, float]:
    """Graphs dynamo compiled and graph breaks it hit so far in this process."""
    from torch._dynamo.utils import counters  # no public API carries these counts

    return {"compiled_graphs": float(counters["stats"]["unique_graphs"]),
            "graph_breaks": float(sum(counters["graph_break"].values()))}
