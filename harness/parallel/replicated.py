"""Strategies that keep a whole copy of the model on every rank.

    none  one rank, the model as it is: the single-device baseline every strategy is compared to
    ddp   torch DistributedDataParallel: gradients averaged by bucketed all-reduces that start
          during backward, as soon as a bucket's gradients are ready (Li et al. 2020)

DDP on one rank still runs: it then measures the wrapper's own overhead (the reducer's hooks and
bucket copies) with no communication to hide.
"""

from __future__ import annotations

from torch import nn
from torch.nn.parallel import DistributedDataParallel

from harness.hardware import DeviceFacts
from harness.parallel.base import (
    MakeOptimizer,
    ParallelContext,
    Parallelized,
    Techniques,
    ranks_reason,
    total_ranks,
)
from harness.techniques.precision import Precision


class NoParallel:
    name = "none"

    def unsupported_reason(self, techniques: Techniques, facts: DeviceFacts) -> str | None:
        if total_ranks(techniques) > 1:
            # every rank would train its own replica and the figures would add up unrelated runs
            return (f"parallel 'none' trains one rank; {total_ranks(techniques)} ranks need a "
                    "data-parallel strategy (ddp, fsdp, zero1-3)")
        return ranks_reason(techniques, facts)

    def parallelize(self, model: nn.Module, techniques: Techniques, precision: Precision,
                    make_optimizer: MakeOptimizer, ctx: ParallelContext) -> Parallelized:
        return Parallelized(model=model, optimizer=make_optimizer(model))


class DDP:
    name = "ddp"

    def unsupported_reason(self, techniques: Techniques, facts: DeviceFacts) -> str | None:
        return ranks_reason(techniques, facts)

    def parallelize(self, model: nn.Module, techniques: Techniques, precision: Precision,
                    make_optimizer: MakeOptimizer, ctx: ParallelContext) -> Parallelized:
        # DDP broadcasts rank 0's parameters and buffers here, so every replica starts equal
        # even if the ranks seeded differently. A torch.compile'd model is wrapped as it is
        # (torchtitan's order: compile, then data parallel); the reducer's hooks sit on the
        # parameters, which the compiled module shares with the bare one. A whole-model compile
        # runs backward as one graph, so every bucket is ready only at its end: the all-reduces
        # then overlap nothing, which the exposed-communication figure shows.
        wrapped = DistributedDataParallel(
            model,
            device_ids=[ctx.local_rank] if ctx.device.type == "cuda" else None,
            bucket_cap_mb=techniques["ddp_bucket_mb"],
            # True: gradients are views into the all-reduce buckets, saving one gradient-sized
            # copy per step (and its memory) at the price of gradients that alias the buckets
            gradient_as_bucket_view=techniques["ddp_grad_as_bucket_view"],
        )
        # the optimizer over the parameters DDP's reducer writes the averaged gradients into
        return Parallelized(model=wrapped, optimizer=make_optimizer(model), no_sync=wrapped.no_sync)
