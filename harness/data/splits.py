"""Materialised train/eval token windows and the per-step batch access used by trials.

Every window is stored as one row of ``seq_len + 1`` tokens: the model reads the first
``seq_len`` tokens (``x``) and predicts the last ``seq_len`` (``y = x`` shifted by one).
All rows are built before any timing starts, so fetching a batch during a timed step costs
only a slice and an integer widening to int64; a harness step and a bare training loop
therefore pay the same data cost.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

# Caps the training set so that a long run cannot ask for gigabytes of tokens; a run that
# needs more steps than the capped set holds cycles through it (see TokenSplits.train_batch).
MAX_TRAIN_TOKENS = 2**25


def capped_train_sequences(requested: int, seq_len: int) -> int:
    """Number of training windows to materialise: ``min(requested, MAX_TRAIN_TOKENS // (seq_len + 1))``."""
    return max(1, min(requested, MAX_TRAIN_TOKENS // (seq_len + 1)))


def compact_token_dtype(vocab_size: int) -> np.dtype:
    """Smallest numpy integer dtype that holds every token id in ``[0, vocab_size)``.

    Storing windows narrowly keeps a capped training set at 32-128 MiB instead of 256 MiB;
    the widening to int64 happens per batch. int16 (not uint16) is used below 2**15 because
    torch supports signed 16-bit tensors fully, and int32 above that.
    """
    if vocab_size <= 2**8:
        return np.dtype(np.uint8)
    if vocab_size <= 2**15:
        return np.dtype(np.int16)
    return np.dtype(np.int32)


def _check_windows(name: str, windows: torch.Tensor, vocab_size: int) -> None:
    if windows.ndim != 2 or windows.shape[0] < 1 or windows.shape[1] < 2:
        raise ValueError(f"{name} windows must have shape (N >= 1, seq_len + 1 >= 2), got {tuple(windows.shape)}")
    if windows.dtype.is_floating_point or windows.dtype.is_complex or windows.dtype == torch.bool:
        raise ValueError(f"{name} windows must be an integer dtype, got {windows.dtype}")
    if windows.device.type != "cpu":
        raise ValueError(f"{name} windows must live on the CPU, got {windows.device}")
    lowest, highest = int(windows.min()), int(windows.max())
    if lowest < 0 or highest >= vocab_size:
        raise ValueError(f"{name} tokens span [{lowest}, {highest}], outside [0, {vocab_size})")


def rows_to_batch(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) of stored rows, int64 on the rows' device. .contiguous() is a no-op after widening
    a narrow dtype; it only copies when the rows are already int64, where .long() is a view."""
    wide = rows.long()
    return wide[:, :-1].contiguous(), wide[:, 1:].contiguous()


def device_batch(rows: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Stored rows copied to `device` in their narrow dtype (asynchronously from pinned rows),
    then widened and shifted there: one small copy per micro-batch, no host sync."""
    return rows_to_batch(rows.to(device, non_blocking=True))


@dataclass
class TokenSplits:
    """Train and eval windows of one data source, plus what is known about its difficulty.

    ``loss_floor`` is the lowest achievable expected mean cross-entropy (nats/token) over the
    ``seq_len`` predicted positions of a window, when the source is known (synthetic data);
    ``entropy_rate`` is the source's entropy rate in nats/token. Both are ``None`` for real text.
    """

    train: torch.Tensor
    eval: torch.Tensor
    vocab_size: int
    loss_floor: float | None
    entropy_rate: float | None
    description: str

    def __post_init__(self) -> None:
        _check_windows("train", self.train, self.vocab_size)
        _check_windows("eval", self.eval, self.vocab_size)
        if self.train.shape[1] != self.eval.shape[1]:
            raise ValueError(
                f"train windows have {self.train.shape[1]} tokens but eval windows {self.eval.shape[1]}"
            )

    @property
    def seq_len(self) -> int:
        """Tokens the model reads per window (one less than the stored row width)."""
        return self.train.shape[1] - 1

    def batches_per_epoch(self, batch_size: int) -> int:
        """Whole batches in one pass over ``train``; the trailing ``N_train % batch_size`` rows are never used."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        batches = self.train.shape[0] // batch_size
        if batches == 0:
            raise ValueError(f"batch_size {batch_size} exceeds the {self.train.shape[0]} training windows")
        return batches

    def train_batch(self, step: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows ``[i*B, (i+1)*B)`` of ``train`` with ``i = step mod (N_train // B)``, as ``(x, y)``.

        Both are contiguous int64 of shape ``(B, seq_len)`` with ``y[:, t] = row[:, t + 1]``,
        so ``y[:, :-1] == x[:, 1:]``. Cycling over whole batches (instead of wrapping a batch
        across the end of ``train``) keeps every access a single slice; when the caller asks
        for ``steps * B`` windows and the token cap is not hit, step ``s`` simply gets rows
        ``[s*B, (s+1)*B)`` and no row repeats.
        """
        return rows_to_batch(self.train_rows(step, batch_size))

    def train_rows(self, step: int, batch_size: int) -> torch.Tensor:
        """The stored rows of `train_batch(step, batch_size)`: a view of `train`, in its narrow
        dtype (a copy to a device moves these bytes, not int64's)."""
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        start = (step % self.batches_per_epoch(batch_size)) * batch_size
        return self.train[start : start + batch_size]

    def pinned(self) -> TokenSplits:
        """These splits with the training windows in page-locked host memory (needs CUDA): a
        view of them then copies to the GPU asynchronously, where from pageable memory a
        `non_blocking` copy is a synchronous one. Pinned once per trial, before any timing."""
        return replace(self, train=self.train.pin_memory())

    def eval_batches(self, batch_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """All of ``eval`` as ``(x, y)`` int64 batches in row order.

        The last batch holds the remaining ``N_eval % batch_size`` rows when that is non-zero,
        so a mean over the eval set must weight each batch by its number of rows.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        return [
            (rows[:, :-1].long().contiguous(), rows[:, 1:].long().contiguous())
            for rows in torch.split(self.eval, batch_size)
        ]
