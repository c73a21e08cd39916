"""Windows of real tokens: a plain text file read as bytes, or a nanoGPT ``.bin`` memmap.

Both sources are flat token arrays split into a train region and an eval region; each window
is ``seq_len + 1`` consecutive tokens starting at a uniformly random offset inside its region,
drawn with a generator seeded from ``seed`` (train and eval use separate streams). Files are
memory-mapped, so only the pages under the chosen windows are read; the windows themselves
are copied into memory before any timing starts.

nanoGPT layout: ``train.bin`` and ``val.bin`` hold flat little-endian uint16 token ids
(GPT-2 BPE, vocab 50257), written with ``np.memmap(..., dtype=np.uint16)``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from harness.data.splits import TokenSplits, capped_train_sequences, compact_token_dtype

BYTE_VOCAB_SIZE = 256
NANOGPT_TOKEN_DTYPE = np.dtype(np.uint16)


def _require_file(path: Path) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"token file not found: {path}")
    return path


def _map_tokens(path: Path, dtype: np.dtype, window: int, what: str) -> np.ndarray:
    """Memory-map ``path`` as a flat array of ``dtype``, checking it holds at least one window.

    The size is checked before mapping because numpy refuses to map an empty file.
    """
    token_count = path.stat().st_size // dtype.itemsize
    if token_count < window:
        raise ValueError(f"{path}: {what} has {token_count} tokens, need at least seq_len + 1 = {window}")
    return np.memmap(path, dtype=dtype, mode="r", shape=(token_count,))


def _split_region(
    tokens: np.ndarray, eval_fraction: float, window: int, path: Path
) -> tuple[np.ndarray, np.ndarray]:
    """First ``1 - eval_fraction`` of ``tokens`` for training, the last ``eval_fraction`` for eval."""
    if not 0.0 < eval_fraction < 1.0:
        raise ValueError(f"eval_fraction must be in (0, 1), got {eval_fraction}")
    eval_start = len(tokens) - int(len(tokens) * eval_fraction)
    train_region, eval_region = tokens[:eval_start], tokens[eval_start:]
    for what, region in (("train region", train_region), ("eval region", eval_region)):
        if len(region) < window:
            raise ValueError(
                f"{path}: {what} has {len(region)} tokens (eval_fraction {eval_fraction:g} of {len(tokens)}), "
                f"need at least seq_len + 1 = {window}"
            )
    return train_region, eval_region


def sample_windows(region: np.ndarray, count: int, window: int, rng: np.random.Generator) -> np.ndarray:
    """``(count, window)`` copies of ``region[o : o + window]`` at offsets ``o ~ U{0, .., len - window}``.

    Offsets are visited in file order (better page locality on a memmap) and the rows are
    put back in draw order, so consecutive training batches do not come from nearby text.
    """
    offsets = rng.integers(0, len(region) - window + 1, size=count)
    all_windows = np.lib.stride_tricks.sliding_window_view(region, window)
    file_order = np.argsort(offsets, kind="stable")
    windows = np.empty((count, window), dtype=region.dtype)
    windows[file_order] = all_windows[offsets[file_order]]
    return windows


def _window_streams(seed: int) -> tuple[np.random.Generator, np.random.Generator]:
    train_seed, eval_seed = np.random.SeedSequence(seed).spawn(2)
    return np.random.default_rng(train_seed), np.random.default_rng(eval_seed)


def _materialise(
    train_region: np.ndarray,
    eval_region: np.ndarray,
    *,
    seq_len: int,
    seed: int,
    train_sequences: int,
    eval_sequences: int,
) -> tuple[np.ndarray, np.ndarray]:
    train_rng, eval_rng = _window_streams(seed)
    window = seq_len + 1
    train = sample_windows(train_region, capped_train_sequences(train_sequences, seq_len), window, train_rng)
    evaluation = sample_windows(eval_region, eval_sequences, window, eval_rng)
    return train, evaluation


def text_splits(
    path: str | Path,
    *,
    seq_len: int,
    seed: int,
    train_sequences: int,
    eval_sequences: int,
    eval_fraction: float = 0.1,
) -> TokenSplits:
    """Byte-level windows (vocab 256) of a plain text file; the last ``eval_fraction`` of it is the eval region."""
    file = _require_file(Path(path))
    window = seq_len + 1
    tokens = _map_tokens(file, np.dtype(np.uint8), window, "file")
    train_region, eval_region = _split_region(tokens, eval_fraction, window, file)
    train, evaluation = _materialise(
        train_region, eval_region, seq_len=seq_len, seed=seed,
        train_sequences=train_sequences, eval_sequences=eval_sequences,
    )
    return TokenSplits(
        train=torch.from_numpy(train),
        eval=torch.from_numpy(evaluation),
        vocab_size=BYTE_VOCAB_SIZE,
        loss_floor=None,
        entropy_rate=None,
        description=(
            f"text bytes of {file} ({len(tokens)} bytes, eval fraction {eval_fraction:g}), V={BYTE_VOCAB_SIZE}"
        ),
    )


def _memmap_regions(path: Path, eval_fraction: float, window: int) -> tuple[np.ndarray, np.ndarray, str]:
    """Train and eval regions of a nanoGPT directory (``train.bin`` + ``val.bin``) or of one ``.bin`` file."""
    if path.is_dir():
        train_file = _require_file(path / "train.bin")
        eval_file = _require_file(path / "val.bin")
        train_region = _map_tokens(train_file, NANOGPT_TOKEN_DTYPE, window, "train.bin")
        eval_region = _map_tokens(eval_file, NANOGPT_TOKEN_DTYPE, window, "val.bin")
        return train_region, eval_region, f"nanoGPT train.bin/val.bin in {path}"
    file = _require_file(path)
    tokens = _map_tokens(file, NANOGPT_TOKEN_DTYPE, window, "file")
    train_region, eval_region = _split_region(tokens, eval_fraction, window, file)
    return train_region, eval_region, f"nanoGPT uint16 tokens {file} (eval fraction {eval_fraction:g})"


def memmap_splits(
    path: str | Path,
    *,
    seq_len: int,
    seed: int,
    train_sequences: int,
    eval_sequences: int,
    eval_fraction: float = 0.1,
) -> TokenSplits:
    """Windows of a nanoGPT uint16 token memmap; ``vocab_size`` is the largest token in the windows + 1.

    Only the materialised windows are scanned for the vocabulary (a full scan of a multi-GB
    file would dominate load time), so ``vocab_size`` can fall short of the tokenizer's.
    """
    window = seq_len + 1
    train_region, eval_region, source = _memmap_regions(Path(path), eval_fraction, window)
    train, evaluation = _materialise(
        train_region, eval_region, seq_len=seq_len, seed=seed,
        train_sequences=train_sequences, eval_sequences=eval_sequences,
    )
    vocab_size = int(max(train.max(), evaluation.max())) + 1
    # uint16 ids above 2**15 do not fit torch's int16, hence the re-narrowing by vocab size.
    storage = compact_token_dtype(vocab_size)
    return TokenSplits(
        train=torch.from_numpy(train.astype(storage)),
        eval=torch.from_numpy(evaluation.astype(storage)),
        vocab_size=vocab_size,
        loss_floor=None,
        entropy_rate=None,
        description=f"{source}, V={vocab_size} (largest token seen + 1)",
    )
