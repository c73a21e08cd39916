"""Bytes saved for backward in one step, counted as autograd saves them.

Every tensor that autograd keeps for the backward pass goes through the pack hook of
`torch.autograd.graph.saved_tensors_hooks`, including the inputs a non-reentrant
`torch.utils.checkpoint` keeps while it discards the rest. What a technique keeps outside
autograd's hooks (selective checkpointing's cache of matmul outputs) it reports through
`note_saved` while a meter is counting. Distinct storages are counted
once (views of one buffer share it) and the parameters themselves are left out: they are
held whether or not anything is saved. Works on any device, so the effect of checkpointing
is visible on a CPU too.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch


_COUNTING: list[SavedTensorMeter] = []  # meters inside their `with` block, innermost last


def counting_saved_tensors() -> bool:
    return bool(_COUNTING)


def note_saved(tensors: Iterable[torch.Tensor]) -> None:
    """Report tensors kept for backward outside autograd's saved-tensor hooks (selective
    checkpointing keeps matmul outputs in a cache of its own) to every counting meter."""
    for meter in _COUNTING:
        for tensor in tensors:
            meter._pack(tensor)


class SavedTensorMeter:
    """`with SavedTensorMeter(model.parameters()) as meter: loss = forward(...)`;
    then `meter.bytes`."""

    def __init__(self, parameters: Iterable[torch.Tensor]):
        self._exclude = {_storage_key(_local(p)) for p in parameters}
        self._storages: dict[tuple[str, int], int] = {}
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, _unpack)

    @property
    def bytes(self) -> int:
        return sum(self._storages.values())

    def __enter__(self) -> SavedTensorMeter:
        self._hooks.__enter__()
        _COUNTING.append(self)
        return self

    def __exit__(self, *exc) -> None:
        _COUNTING.remove(self)
        self._hooks.__exit__(*exc)

    def _pack(self, tensor: torch.Tensor) -> torch.Tensor:
        # a Parameter (or a view of one) saved for backward is a weight, not an activation: the model's own, or
        # one FSDP gathered for this forward (freed after it, gathered again in backward)
        if isinstance(tensor, torch.nn.Parameter) or isinstance(tensor._base, torch.nn.Parameter):
            return tensor
        local = _local(tensor)
        key = _storage_key(local)
        if key not in self._exclude and key[1] != 0:
            self._storages[key] = local.untyped_storage().nbytes()
        return tensor


def _unpack(tensor: torch.Tensor) -> torch.Tensor:
    return tensor


def _local(tensor: torch.Tensor) -> torch.Tensor:
    """This rank's shard of a DTensor (FSDP2's parameters); any other tensor itself."""
    return tensor.to_local() if hasattr(tensor, "to_local") else tensor


def _storage_key(tensor: torch.Tensor) -> tuple[str, int]:
    if tensor.layout != torch.strided:
        return (str(tensor.device), id(tensor))
    return (str(tensor.device), tensor.untyped_storage().data_ptr())
