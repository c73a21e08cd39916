"""The ranks of a multi-process trial: the process group, exposed-communication probe, and how
each rank's figures merge into the trial's (DESIGN's stated meanings).

    tokens_per_s        global: every rank's tokens over the longest rank's measured window
    step_time_*         the slowest rank's (its median and percentiles)
    peak_*_bytes        the maximum over ranks (each rank's kept in notes.per_rank)
    *_bytes accounting  per rank, the largest rank's (sharded strategies split them)
    comm_fraction       the largest over ranks
    energy, power       summed over the ranks' GPUs; host (RAPL) figures once per node
    losses              averaged over ranks step by step (each rank trains on its own batches)
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any, ContextManager

import torch
import torch.distributed as dist
from torch import nn

from harness.metrics.timing import synchronize
from harness.techniques import Precision
from harness.train.step import next_token_loss

MAX_OVER_RANKS = ("peak_memory_bytes", "peak_reserved_bytes", "peak_rss_bytes", "activation_bytes",
                  "gradient_bytes", "parameter_bytes", "optimizer_state_bytes", "comm_fraction",
                  "alloc_retries")
SLOWEST_RANK = ("step_time_s", "step_time_p10_s", "step_time_p90_s", "step_time_cv")
PER_RANK_NOTES = ("step_time_s", "peak_memory_bytes", "peak_rss_bytes", "parameter_bytes",
                  "comm_fraction", "energy_j")


def init_process_group(device: torch.device, timeout_s: float) -> None:
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s),
                            device_id=device if device.type == "cuda" else None)


def average_over_ranks(values: list[float], device: torch.device) -> list[float]:
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return (tensor / dist.get_world_size()).tolist()


def gather_to_rank0(payload: dict[str, Any]) -> list[dict[str, Any]] | None:
    """Every rank's payload on rank 0 (None elsewhere)."""
    if not dist.is_initialized():
        return [payload]
    gathered: list[Any] | None = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object(payload, gathered, dst=0)
    return gathered


def merge_rank_metrics(per_rank: list[dict[str, float]]) -> tuple[dict[str, float], dict[str, list]]:
    """Rank 0's metrics with the multi-rank meanings above applied; and the per-rank notes.
    Every rank must carry `tokens_per_step`, `measured_steps` and `window_s` (from notes)."""
    merged = dict(per_rank[0])
    windows = [m["window_s"] for m in per_rank]
    tokens = sum(m["tokens_per_step"] * m["measured_steps"] for m in per_rank)
    merged["tokens_per_s"] = tokens / max(windows)
    slowest = max(per_rank, key=lambda m: m.get("step_time_s", 0.0))
    for name in SLOWEST_RANK:
        if name in slowest:
            merged[name] = slowest[name]
    for name in MAX_OVER_RANKS:
        values = [m[name] for m in per_rank if name in m]
        if values:
            merged[name] = max(values)
    notes = {name: [m.get(name) for m in per_rank] for name in (*PER_RANK_NOTES, "window_s")}
    return merged, notes


def exposed_comm_fraction(model: nn.Module, precision: Precision, no_sync: Callable[[], ContextManager],
                          x: torch.Tensor, y: torch.Tensor, step_time_s: float, repeats: int = 5) -> float:
    """Share of a step spent in gradient communication that compute does not hide: forward
    and backward timed with gradient synchronisation and inside `no_sync`, the difference
    over the measured step time. After the measured window; gradients are discarded."""

    def timed(context: Callable[[], ContextManager]) -> float:
        times = []
        for _ in range(repeats):
            synchronize(x.device)
            t0 = time.perf_counter()
            with context():
                with precision.autocast():
                    logits = model(x)
                next_token_loss(logits, y).backward()
            synchronize(x.device)
            times.append(time.perf_counter() - t0)
            model.zero_grad(set_to_none=True)
        return statistics.median(times)

    from contextlib import nullcontext

    synced, unsynced = timed(nullcontext), timed(no_sync)
    return max(0.0, synced - unsynced) / step_time_s
