"""Data parallelism: the last technique applied to a model, in torchtitan's order.

    model, precision = apply_techniques(bare_model, techniques, device)  # ..., compile
    strategy = resolve_strategy(techniques["parallel"])
    parallel = strategy.parallelize(model, techniques, precision, make_optimizer, ctx)
    step = parallel.step or make_train_step(parallel.model, parallel.optimizer, precision, clip)

Sharding wraps the compiled, checkpointed blocks, and the optimizer is built last, over the
parameters the strategy left (FSDP2's DTensor shards), through `make_optimizer(model)`.
The caller keeps its handle on the bare model; strategies reach the real modules under a
torch.compile wrapper themselves.

Built-in strategies (the `parallel` axis):
    none               one rank, no wrapper (the baseline)
    ddp                DistributedDataParallel, bucketed all-reduce   (replicated.py)
    fsdp               FSDP2 fully_shard per block and at the root    (fsdp.py)
    zero1/zero2/zero3  DeepSpeed ZeRO, optional dependency            (zero.py)
Any other strategy plugs in by import path or entry point (registry.py); the worked example is
tests/fixtures/example_strategy.py.

What the caller (the worker) must provide: a default process group over all ranks (gloo on
CPU, NCCL on CUDA, after torch.cuda.set_device(local_rank)); the same torch seed on every rank
before building the model (FSDP2 shards each rank's own copy and broadcasts nothing); each
rank's own micro-batches; and every rank in every forward, evaluation included (FSDP and
ZeRO-3 all-gather parameters collectively).
"""

from harness.parallel.base import ParallelContext, Parallelized, Strategy
from harness.parallel.registry import (Unsupported, check_strategy_name, parallel_unsupported_reason,
                                      plugin_unsupported_reason, resolve_strategy)

__all__ = ["ParallelContext", "Parallelized", "Strategy", "Unsupported", "check_strategy_name",
           "parallel_unsupported_reason", "plugin_unsupported_reason", "resolve_strategy"]
