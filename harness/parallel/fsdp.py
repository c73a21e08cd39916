"""FSDP2: every parameter sharded over the ranks, as torchtitan's `apply_fsdp` does.

`torch.distributed.fsdp.fully_shard` goes on each transformer block, then on the root (for the
embeddings, final norm and head). Each call makes one group whose parameters are all-gathered
in one collective before its forward and backward, and whose gradients are reduce-scattered in
one collective after its backward; per-block groups bound the memory held unsharded at once and
let one block's communication overlap another's compute. The sharded parameters are DTensors
(dim-0 shards), so the optimizer is built after sharding and keeps only this rank's shard of
every state tensor: parameters, gradients and optimizer state all take about 1/N per rank.

Settings (techniques):
  fsdp_reshard_after_forward  True: blocks free their gathered parameters after forward and
                              gather them again in backward (ZeRO-3's memory); False: keep them
                              until backward (one all-gather fewer per block, ZeRO-2's memory).
                              The root keeps FSDP2's default (no reshard): backward needs its
                              parameters (the tied head) first thing.
  fsdp_cpu_offload            sharded parameters, gradients and optimizer state live in host
                              memory; the optimizer steps on the CPU.

Mixed precision follows the trial's precision axis (MIXED_PRECISION below). fp16 runs: the
GradScaler's unscale_ on DTensor gradients all-reduces its found-inf flag over the mesh (DTensor's
handler for `_amp_foreach_non_finite_check_and_unscale_`, torch >= 2.5), so an overflow in one
rank's shard makes every rank skip the same step (tests/parallel checks it with 2 gloo ranks).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.distributed.fsdp import (
    CPUOffloadPolicy,
    MixedPrecisionPolicy,
    OffloadPolicy,
    fully_shard,
)

from harness.hardware import DeviceFacts
from harness.parallel.base import (
    MakeOptimizer,
    ParallelContext,
    Parallelized,
    Techniques,
    bare_module,
    ranks_reason,
)
from harness.techniques.precision import Precision

# precision -> (dtype of the gathered parameters the blocks compute with, dtype gradients are
# reduced in). Absent: no policy, everything stays in the parameters' own dtype.
#   bf16, fp8  gather in bf16 (half the all-gather bytes; autocast computes in bf16 anyway,
#              fp8's non-Linear ops too), reduce in fp32 so the averaged gradient is as exact
#              as the fp32 master weights it updates (torchtitan's defaults)
#   fp16       gather in fp16; reduce in fp32, where the sum of N ranks' loss-scaled gradients
#              cannot overflow although each rank's alone fits in fp16
#   fp32, tf32 the parameters are fp32 and so is every collective; tf32 is a matmul mode only
#   bf16-pure  the parameters are already bf16 (convert_model cast them): gathers, gradients and
#              reduction in bf16, which is what "pure" means; an fp32 reduction would be a mixed
#              precision the other strategies do not have
MIXED_PRECISION: dict[str, tuple[torch.dtype, torch.dtype]] = {
    "bf16": (torch.bfloat16, torch.float32),
    "fp8": (torch.bfloat16, torch.float32),
    "fp16": (torch.float16, torch.float32),
}


def mixed_precision_policy(precision: str) -> MixedPrecisionPolicy:
    dtypes = MIXED_PRECISION.get(precision)
    if dtypes is None:
        return MixedPrecisionPolicy()  # casts nothing
    return MixedPrecisionPolicy(param_dtype=dtypes[0], reduce_dtype=dtypes[1])


class FSDP:
    name = "fsdp"

    def unsupported_reason(self, techniques: Techniques, facts: DeviceFacts) -> str | None:
        if techniques["fsdp_cpu_offload"] and facts.type == "cpu":
            return ("fsdp_cpu_offload moves shards to host memory, where a CPU trial keeps "
                    "them already")
        if techniques["optimizer"] == "adamw8bit":
            # its state buffers and kernels take plain tensors, not DTensor shards
            # (bitsandbytes issue #1633)
            return "bitsandbytes' 8-bit AdamW does not handle FSDP2's sharded (DTensor) parameters"
        return ranks_reason(techniques, facts)

    def parallelize(self, model: nn.Module, techniques: Techniques, precision: Precision,
                    make_optimizer: MakeOptimizer, ctx: ParallelContext) -> Parallelized:
        # Shard the modules themselves; a torch.compile wrapper compiles lazily, at its first
        # call, so it traces the sharded modules. Every rank must hold the same initial weights
        # here: unlike DDP, fully_shard keeps each rank's own slice and broadcasts nothing.
        root = bare_module(model)
        blocks = getattr(root, "blocks", None)
        if not isinstance(blocks, nn.ModuleList):
            raise ValueError(f"fsdp shards per block: {type(root).__name__} has no `blocks` "
                             "ModuleList")
        settings = {
            "mp_policy": mixed_precision_policy(precision.name),
            "offload_policy": (CPUOffloadPolicy() if techniques["fsdp_cpu_offload"]
                               else OffloadPolicy()),
        }
        for block in blocks:  # a checkpoint wrapper is sharded as the block it wraps
            fully_shard(block, reshard_after_forward=techniques["fsdp_reshard_after_forward"],
                        **settings)
        fully_shard(root, **settings)
        return Parallelized(model=model, optimizer=make_optimizer(model),
                            no_sync=lambda: _gradient_sync_off(root))


@contextmanager
def _gradient_sync_off(root: nn.Module) -> Iterator[None]:
    """Backward inside keeps unsharded gradients on each rank instead of reduce-scattering
    them; leaving turns synchronisation back on for every group (recurse is the default)."""
    root.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        root.set_requires_gradient_sync(True)
