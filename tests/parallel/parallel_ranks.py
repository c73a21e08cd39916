"""Running 2 gloo ranks on the CPU from a test, and the training they do.

`spawn_ranks(fn, tmp_path, *args)` starts fn(rank, world, port, out_dir, *args) in fresh
processes and joins them under a deadline, so a bug that hangs a collective fails the test
instead of hanging CI; each rank saves what it measured with `save(out_dir, rank, obj)`.
The rank functions live here, not in the test modules, so a child process imports only this.
"""

from __future__ import annotations

import os
import socket
import time
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from harness.models import GPT, resolve_config
from harness.parallel import ParallelContext, Parallelized, resolve_strategy
from harness.techniques import apply_checkpointing, apply_precision
from harness.techniques.optimizers import make_optimizer
from harness.train.step import make_train_step, next_token_loss

WORLD = 2
MICRO_BATCH = 2  # sequences per rank per micro-batch
SEQ_LEN = 32
LR = 1e-3
GRAD_CLIP = 0.5  # small enough to clip: the norm must be the global one on every rank
JOIN_TIMEOUT_S = 90.0
STEPS = 3  # optimizer steps of every training comparison
# the worked plug-in example, by the file-path form a scenario would use
EXAMPLE = f"{Path(__file__).parent.parent / 'fixtures' / 'example_strategy.py'}:NaiveAllReduce"
TECHNIQUES = {"precision": "fp32", "checkpointing": "none", "compile": False, "grad_accum": 1,
              "optimizer": "adamw", "attention": "sdpa", "fp16_init_scale": 2.0**16,
              "parallel": "none", "world_size": WORLD, "nnodes": 1, "ddp_bucket_mb": 25.0,
              "ddp_grad_as_bucket_view": False, "fsdp_reshard_after_forward": True,
              "fsdp_cpu_offload": False}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def spawn_ranks(fn, tmp_path: Path, *args, world: int = WORLD) -> list:
    """Run fn in `world` ranks; return what each saved, by rank."""
    out_dir = tmp_path / "ranks"
    out_dir.mkdir(parents=True, exist_ok=True)
    context = mp.start_processes(fn, args=(world, free_port(), out_dir, *args), nprocs=world,
                                 join=False, start_method="spawn")
    deadline = time.monotonic() + JOIN_TIMEOUT_S
    try:
        while not context.join(timeout=max(0.1, deadline - time.monotonic())):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{fn.__name__}: ranks still running after {JOIN_TIMEOUT_S} s")
    finally:
        for process in context.processes:
            if process.is_alive():
                process.kill()
    return [torch.load(out_dir / f"rank{rank}.pt", weights_only=False) for rank in range(world)]


def save(out_dir: Path, rank: int, obj) -> None:
    torch.save(obj, out_dir / f"rank{rank}.pt")


def init_rank(rank: int, world: int, port: int) -> ParallelContext:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)  # two ranks on two cores
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=timedelta(seconds=60))
    return ParallelContext(rank, rank, world, torch.device("cpu"))


# ---- data and model, identical in the ranks and in the single-process reference


def global_batches(steps: int, grad_accum: int = 1, world: int = WORLD) -> list[list[tuple]]:
    """steps x grad_accum micro-batches of the whole trial: world x MICRO_BATCH sequences each."""
    generator = torch.Generator().manual_seed(1234)
    tokens = torch.randint(0, 256, (steps, grad_accum, world * MICRO_BATCH, SEQ_LEN + 1),
                           generator=generator)
    return [[(t[:, :-1], t[:, 1:]) for t in step] for step in tokens]


def rank_share(batches: list[list[tuple]], rank: int) -> list[list[tuple]]:
    """This rank's rows of every micro-batch: the ranks' shares concatenate to the global one."""
    rows = slice(rank * MICRO_BATCH, (rank + 1) * MICRO_BATCH)
    return [[(x[rows], y[rows]) for x, y in step] for step in batches]


def tiny_model(checkpointing: str = "none") -> torch.nn.Module:
    torch.manual_seed(0)  # the same initial weights in every rank and the reference
    return apply_checkpointing(GPT(resolve_config("tiny")), checkpointing)


def optimizer_factory(model: torch.nn.Module) -> torch.optim.Optimizer:
    return make_optimizer(model, "adamw", LR, 0.1)


def train_single_process(steps: int, grad_accum: int = 1) -> list[torch.Tensor]:
    """The reference: one process, no strategy, on the concatenation of the ranks' batches."""
    model = tiny_model()
    step = make_train_step(model, optimizer_factory(model),
                           apply_precision("fp32", torch.device("cpu")), GRAD_CLIP)
    for batches in global_batches(steps, grad_accum):
        step(batches)
    return [p.detach().clone() for p in model.parameters()]


def local_gradients(batch: tuple) -> list[torch.Tensor]:
    """One process's gradient of the mean loss on `batch`, from the initial weights."""
    model = tiny_model()
    x, y = batch
    next_token_loss(model(x), y).backward()
    return [p.grad.clone() for p in model.parameters()]


def local(tensor: torch.Tensor) -> torch.Tensor:
    """This rank's part of a tensor: a DTensor's local shard, or the tensor itself."""
    return tensor.to_local() if hasattr(tensor, "to_local") else tensor


def full(tensor: torch.Tensor) -> torch.Tensor:
    """A parameter or gradient as one whole tensor: gathered if it is a DTensor shard
    (a collective: every rank must call it)."""
    return tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor


def parallelize(strategy: str, ctx: ParallelContext, checkpointing: str = "none",
                precision: str = "fp32", **settings) -> tuple[Parallelized, object]:
    techniques = {**TECHNIQUES, "parallel": strategy, "checkpointing": checkpointing,
                  "precision": precision, **settings}
    policy = apply_precision(precision, ctx.device, techniques["fp16_init_scale"])
    parallel = resolve_strategy(strategy).parallelize(
        tiny_model(checkpointing), techniques, policy, optimizer_factory, ctx)
    return parallel, policy


# ---- rank functions


def train_rank(rank, world, port, out_dir, strategy, steps, grad_accum=1, checkpointing="none"):
    """Train `steps` steps on this rank's share; save the full parameters and the bytes of
    parameters this rank holds against their unsharded bytes."""
    init_rank(rank, world, port)
    save(out_dir, rank, _train(rank, world, strategy, steps, grad_accum, checkpointing))
    dist.destroy_process_group()


def train_each_rank(rank, world, port, out_dir, strategies, steps):
    """train_rank for several strategies one after the other (one process start for all)."""
    init_rank(rank, world, port)
    save(out_dir, rank, {strategy: _train(rank, world, strategy, steps) for strategy in strategies})
    dist.destroy_process_group()


def _train(rank, world, strategy, steps, grad_accum=1, checkpointing="none") -> dict:
    ctx = ParallelContext(rank, rank, world, torch.device("cpu"))
    parallel, policy = parallelize(strategy, ctx, checkpointing)
    step = parallel.step or make_train_step(parallel.model, parallel.optimizer, policy, GRAD_CLIP)
    for batches in rank_share(global_batches(steps, grad_accum), rank):
        step(batches)
    params = list(parallel.model.parameters())
    held = sum(local(p).numel() * p.element_size() for p in params)
    whole = sum(p.numel() * p.element_size() for p in params)  # a DTensor's numel is global
    return {"params": [full(p).detach().clone() for p in params],
            "local_bytes": held, "unsharded_bytes": whole}


def no_sync_rank(rank, world, port, out_dir, strategies):
    """For each strategy: backward on this rank's batch inside no_sync, then the same backward
    outside it; save the gradients each left (None where a parameter has none)."""
    ctx = init_rank(rank, world, port)
    x, y = rank_share(global_batches(1), rank)[0][0]
    saved = {}
    for strategy in strategies:
        parallel, _ = parallelize(strategy, ctx)

        def backward() -> list:
            next_token_loss(parallel.model(x), y).backward()
            return [None if p.grad is None else full(p.grad).clone()
                    for p in parallel.model.parameters()]

        with parallel.no_sync():
            inside = backward()
        outside = backward()  # accumulates onto what no_sync left, then synchronises
        saved[strategy] = {"inside": inside, "outside": outside}
    save(out_dir, rank, saved)
    dist.destroy_process_group()


def fp16_overflow_rank(rank, world, port, out_dir, strategies, poisoned_step):
    """For each strategy, fp16 training where, at `poisoned_step`, one element of rank 0's
    gradient is inf, put where an overflow really shows: in DDP, rank 0's own gradient before
    the all-reduce; in FSDP, rank 0's shard after the reduce-scatter (the other rank's shard
    stays finite). Save each step's loss scale, skipped steps and whether the weights changed."""
    ctx = init_rank(rank, world, port)
    save(out_dir, rank, {strategy: _train_fp16_poisoned(ctx, strategy, poisoned_step)
                         for strategy in strategies})
    dist.destroy_process_group()


def _train_fp16_poisoned(ctx: ParallelContext, strategy: str, poisoned_step: int) -> dict:
    parallel, policy = parallelize(strategy, ctx, precision="fp16", fp16_init_scale=2.0**8)
    current = {"step": 0}

    def poison(grad: torch.Tensor) -> torch.Tensor:
        if current["step"] == poisoned_step and ctx.rank == 0:
            local(grad).view(-1)[0] = float("inf")
        return grad

    first = next(iter(parallel.model.parameters()))
    if strategy == "fsdp":
        scaler, unscale = policy.scaler, policy.scaler.unscale_

        def unscale_poisoned(optimizer):
            poison(first.grad)
            return unscale(optimizer)

        scaler.unscale_ = unscale_poisoned  # the step looks the method up on every call
    else:
        first.register_hook(lambda grad: poison(grad.clone()))
    step = make_train_step(parallel.model, parallel.optimizer, policy, GRAD_CLIP)
    changed = []
    for index, batches in enumerate(rank_share(global_batches(STEPS), ctx.rank)):
        current["step"] = index
        before = [local(p).detach().clone() for p in parallel.model.parameters()]
        step(batches)
        changed.append(any(not torch.equal(b, local(p).detach())
                           for b, p in zip(before, parallel.model.parameters())))
    return {"scales": policy.scale_log.scales, "changed": changed,
            "skipped": policy.scale_log.skipped_steps}


def compiled_rank(rank, world, port, out_dir, strategy, steps):
    """train_rank on a torch.compile'd, checkpointed model (aot_eager: dynamo traces the
    wrapped, sharded modules without inductor's C++ build, ~30 s more on a CPU)."""
    ctx = init_rank(rank, world, port)
    techniques = {**TECHNIQUES, "parallel": strategy, "checkpointing": "full"}
    policy = apply_precision("fp32", ctx.device)
    compiled = torch.compile(tiny_model("full"), backend="aot_eager")
    parallel = resolve_strategy(strategy).parallelize(compiled, techniques, policy,
                                                      optimizer_factory, ctx)
    step = make_train_step(parallel.model, parallel.optimizer, policy, GRAD_CLIP)
    for batches in rank_share(global_batches(steps), rank):
        step(batches)
    params = list(parallel.model.parameters())
    save(out_dir, rank, {"params": [full(p).detach().clone() for p in params],
                         "sharded": [hasattr(p, "to_local") for p in params]})
    dist.destroy_process_group()
