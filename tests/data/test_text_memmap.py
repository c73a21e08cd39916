"""Real-token sources: byte-level text files and nanoGPT uint16 memmaps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from harness.data import load_splits

SEQ_LEN = 16
WINDOW = SEQ_LEN + 1


def _offsets_of(rows: torch.Tensor, tokens: np.ndarray) -> list[int]:
    """Offset in ``tokens`` at which each row occurs (the test data makes every window unique)."""
    windows = np.lib.stride_tricks.sliding_window_view(tokens, WINDOW).astype(np.int64)
    offsets = []
    for row in rows.long().numpy():
        matches = np.flatnonzero((windows == row).all(axis=1))
        assert len(matches) == 1, "row is not a window of the source"
        offsets.append(int(matches[0]))
    return offsets


@pytest.fixture
def text_file(tmp_path: Path) -> tuple[Path, np.ndarray]:
    content = np.random.default_rng(0).integers(0, 256, size=4000, dtype=np.uint8)
    path = tmp_path / "corpus.txt"
    content.tofile(path)
    return path, content


def _text(path: Path, seed: int = 0, **overrides) -> object:
    arguments = dict(seq_len=SEQ_LEN, seed=seed, train_sequences=64, eval_sequences=32, path=str(path))
    arguments.update(overrides)
    return load_splits("text", **arguments)


def test_text_windows_are_file_bytes_from_the_right_region(text_file: tuple[Path, np.ndarray]) -> None:
    path, content = text_file
    splits = _text(path, eval_fraction=0.25)
    eval_start = len(content) - len(content) // 4
    assert splits.vocab_size == 256 and splits.loss_floor is None and splits.entropy_rate is None
    assert splits.train.shape == (64, WINDOW) and splits.eval.shape == (32, WINDOW)
    assert max(_offsets_of(splits.train, content)) + WINDOW <= eval_start
    assert min(_offsets_of(splits.eval, content)) >= eval_start
    x, y = splits.train_batch(0, 8)
    assert x.dtype == torch.int64 and torch.equal(x[:, 1:], y[:, :-1])


def test_text_is_deterministic_per_seed(text_file: tuple[Path, np.ndarray]) -> None:
    path, _ = text_file
    assert torch.equal(_text(path, seed=1).train, _text(path, seed=1).train)
    assert not torch.equal(_text(path, seed=1).train, _text(path, seed=2).train)


def test_text_window_order_is_not_file_order(text_file: tuple[Path, np.ndarray]) -> None:
    path, content = text_file
    offsets = _offsets_of(_text(path).train, content)
    assert offsets != sorted(offsets)


def test_too_short_text_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "tiny.txt"
    path.write_bytes(b"far too short")
    with pytest.raises(ValueError, match="tiny.txt"):
        _text(path)
    medium = tmp_path / "medium.txt"
    medium.write_bytes(bytes(100))  # the 10% eval region is 10 bytes, under one window
    with pytest.raises(ValueError, match=r"medium\.txt: eval region"):
        _text(medium)


def test_missing_text_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="absent.txt"):
        _text(tmp_path / "absent.txt")


def _write_uint16(path: Path, tokens: np.ndarray) -> None:
    np.memmap(path, dtype=np.uint16, mode="w+", shape=tokens.shape)[:] = tokens


def _unique_window_tokens(size: int, seed: int) -> np.ndarray:
    """Random ids spanning uint16 values above 2**15, where an int16 cast would wrap negative."""
    return np.random.default_rng(seed).integers(0, 60_000, size=size).astype(np.uint16)


def _memmap(path: Path, **overrides) -> object:
    arguments = dict(seq_len=SEQ_LEN, seed=0, train_sequences=48, eval_sequences=16, path=str(path))
    arguments.update(overrides)
    return load_splits("memmap", **arguments)


def test_memmap_directory_layout_reads_train_and_val(tmp_path: Path) -> None:
    train_tokens, val_tokens = _unique_window_tokens(3000, seed=1), _unique_window_tokens(500, seed=2)
    _write_uint16(tmp_path / "train.bin", train_tokens)
    _write_uint16(tmp_path / "val.bin", val_tokens)
    splits = _memmap(tmp_path)
    _offsets_of(splits.train, train_tokens)
    _offsets_of(splits.eval, val_tokens)
    seen_max = int(max(splits.train.max(), splits.eval.max()))
    assert seen_max > 2**15 and splits.vocab_size == seen_max + 1
    x, _ = splits.train_batch(0, 16)
    assert x.dtype == torch.int64 and int(x.min()) >= 0


def test_memmap_single_file_is_split_by_eval_fraction(tmp_path: Path) -> None:
    tokens = _unique_window_tokens(2000, seed=3)
    path = tmp_path / "tokens.bin"
    _write_uint16(path, tokens)
    splits = _memmap(path, eval_fraction=0.2)
    eval_start = len(tokens) - len(tokens) // 5
    assert max(_offsets_of(splits.train, tokens)) + WINDOW <= eval_start
    assert min(_offsets_of(splits.eval, tokens)) >= eval_start
    assert splits.vocab_size == int(max(splits.train.max(), splits.eval.max())) + 1


def test_memmap_directory_without_val_names_the_missing_file(tmp_path: Path) -> None:
    _write_uint16(tmp_path / "train.bin", _unique_window_tokens(500, seed=4))
    with pytest.raises(FileNotFoundError, match="val.bin"):
        _memmap(tmp_path)
