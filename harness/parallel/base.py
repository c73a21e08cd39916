"""What every data-parallel strategy shares: the rank's context, the result of parallelizing,
the Strategy protocol, and the capability checks common to all built-ins."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ContextManager, Protocol, runtime_checkable

import torch
from torch import nn

from harness.hardware import DeviceFacts
from harness.techniques.precision import Precision
from harness.train.step import TrainStep

Techniques = dict[str, Any]
MakeOptimizer = Callable[[nn.Module], torch.optim.Optimizer]


@dataclass(frozen=True)
class ParallelContext:
    """Where this process sits in the trial. The caller (the worker) has already initialised
    the default process group over all `world_size` ranks."""

    rank: int  # global rank
    local_rank: int
    world_size: int  # all ranks of the trial, all nodes
    device: torch.device  # this rank's device (cuda:local_rank or cpu)


@dataclass
class Parallelized:
    """A model made data-parallel, and what the training step needs to drive it."""

    model: nn.Module  # what the training step calls (wrapped or sharded)
    optimizer: torch.optim.Optimizer  # over the (possibly sharded) parameters
    # Only for strategies that run backward and the update themselves (DeepSpeed's engine);
    # None: the worker builds harness.train.step.make_train_step(model, optimizer, ...).
    step: TrainStep | None = None
    # A context in which backward does not synchronise gradients; the worker times
    # forward+backward with and without it to measure the communication compute does not
    # hide. None when the strategy has no such mode.
    no_sync: Callable[[], ContextManager] | None = None


@runtime_checkable
class Strategy(Protocol):
    """A way to spread one training step over the trial's ranks.

    `unsupported_reason` names why this trial cannot run on this hardware, or returns None: a
    built-in's runs in the runner before any process starts, a plug-in's in the worker before
    the model is built (the runner never builds a plug-in).
    `parallelize` runs in every rank, on the model after checkpointing and compile (torchtitan's
    order), and must leave every rank's copy ready for the same step.
    """

    name: str

    def unsupported_reason(self, techniques: Techniques, facts: DeviceFacts) -> str | None: ...

    def parallelize(self, model: nn.Module, techniques: Techniques, precision: Precision,
                    make_optimizer: MakeOptimizer, ctx: ParallelContext) -> Parallelized: ...


def total_ranks(techniques: Techniques) -> int:
    return techniques["world_size"] * techniques["nnodes"]


def ranks_reason(techniques: Techniques, facts: DeviceFacts) -> str | None:
    """What no built-in strategy can run: no ranks at all, or more CUDA ranks on a node than it
    has GPUs (NCCL wants one device per rank; CPU ranks share the host)."""
    if total_ranks(techniques) < 1:
        return (f"world_size {techniques['world_size']} x nnodes {techniques['nnodes']} "
                "leaves no rank to train on")
    gpus = getattr(facts, "device_count", None)
    if facts.type == "cuda" and gpus is not None and techniques["world_size"] > gpus:
        return (f"{techniques['world_size']} ranks per node need as many GPUs; "
                f"this node has {gpus}")
    return None


def bare_module(model: nn.Module) -> nn.Module:
    """The module torch.compile wrapped, or `model` itself: sharding and hooks go on the real
    modules, while the compiled wrapper keeps calling them."""
    return getattr(model, "_orig_mod", model)
