"""Batch access on TokenSplits, the train-size cap, and load_splits argument errors."""

from __future__ import annotations

import pytest
import torch

import harness.data.splits as splits_module
from harness.data import MAX_TRAIN_TOKENS, TokenSplits, load_splits
from harness.data.splits import capped_train_sequences


def _numbered_splits(train_rows: int = 10, eval_rows: int = 5, width: int = 5) -> TokenSplits:
    """Row r of train holds tokens r*width .. r*width + width - 1, so every row is recognisable."""
    train = torch.arange(train_rows * width, dtype=torch.int16).reshape(train_rows, width)
    evaluation = torch.arange(eval_rows * width, dtype=torch.int16).reshape(eval_rows, width)
    return TokenSplits(train, evaluation, vocab_size=train_rows * width, loss_floor=None,
                       entropy_rate=None, description="numbered rows")


def test_train_batch_shapes_dtype_and_shift() -> None:
    splits = load_splits("synthetic", seq_len=16, seed=0, train_sequences=64, eval_sequences=8)
    x, y = splits.train_batch(step=1, batch_size=8)
    assert x.shape == y.shape == (8, 16)
    assert x.dtype == y.dtype == torch.int64
    assert x.is_contiguous() and y.is_contiguous()
    assert torch.equal(x[:, 1:], y[:, :-1])
    assert torch.equal(torch.cat([x, y[:, -1:]], dim=1), splits.train[8:16].long())


def test_train_batch_cycles_over_whole_batches() -> None:
    splits = _numbered_splits(train_rows=10)
    batch_size = 3  # 3 whole batches per pass; row 9 is never served
    assert splits.batches_per_epoch(batch_size) == 3
    first_pass = [splits.train_batch(step, batch_size)[0] for step in range(3)]
    second_pass = [splits.train_batch(step, batch_size)[0] for step in range(3, 6)]
    for first, second in zip(first_pass, second_pass):
        assert torch.equal(first, second)
    served_rows = torch.cat(first_pass)[:, 0] // 5
    assert served_rows.tolist() == list(range(9))


def test_int64_storage_still_yields_contiguous_batches() -> None:
    splits = _numbered_splits()
    splits.train, splits.eval = splits.train.long(), splits.eval.long()
    x, y = splits.train_batch(0, 2)
    assert x.is_contiguous() and y.is_contiguous()


def test_eval_batches_cover_every_row_once_with_a_short_last_batch() -> None:
    splits = _numbered_splits(eval_rows=5)
    batches = splits.eval_batches(2)
    assert [x.shape[0] for x, _ in batches] == [2, 2, 1]
    rows = torch.cat([torch.cat([x, y[:, -1:]], dim=1) for x, y in batches])
    assert torch.equal(rows, splits.eval.long())
    assert all(x.dtype == torch.int64 and torch.equal(x[:, 1:], y[:, :-1]) for x, y in batches)


def test_bad_batch_requests_are_rejected() -> None:
    splits = _numbered_splits(train_rows=10)
    with pytest.raises(ValueError, match="exceeds"):
        splits.train_batch(0, 11)
    with pytest.raises(ValueError, match="step"):
        splits.train_batch(-1, 2)


def test_tokens_outside_the_vocabulary_are_rejected() -> None:
    with pytest.raises(ValueError, match="outside"):
        TokenSplits(torch.full((2, 3), 9), torch.zeros(2, 3, dtype=torch.long), vocab_size=9,
                    loss_floor=None, entropy_rate=None, description="bad")


def test_train_sequences_are_capped_at_the_token_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    assert capped_train_sequences(10**9, seq_len=127) == MAX_TRAIN_TOKENS // 128
    assert capped_train_sequences(100, seq_len=127) == 100
    # A small budget exercises the cap end to end without materialising 2**25 tokens.
    monkeypatch.setattr(splits_module, "MAX_TRAIN_TOKENS", 1000)
    splits = load_splits("synthetic", seq_len=9, seed=0, train_sequences=10**6, eval_sequences=3)
    assert splits.train.shape == (100, 10) and splits.eval.shape == (3, 10)


def test_load_splits_argument_errors() -> None:
    with pytest.raises(ValueError, match="unknown data kind 'bogus'"):
        load_splits("bogus", seq_len=8, seed=0, train_sequences=4, eval_sequences=4)
    for kind in ("text", "memmap"):
        with pytest.raises(ValueError, match="needs path"):
            load_splits(kind, seq_len=8, seed=0, train_sequences=4, eval_sequences=4)
    with pytest.raises(ValueError, match="eval_sequences"):
        load_splits("synthetic", seq_len=8, seed=0, train_sequences=4, eval_sequences=0)


def test_a_device_batch_is_the_train_batch_copied_in_the_narrow_dtype():
    from harness.data.splits import device_batch

    splits = load_splits("synthetic", seq_len=16, seed=0, train_sequences=12, eval_sequences=2, vocab_size=64)
    rows = splits.train_rows(4, 4)  # 3 batches per epoch: step 4 is rows 4-7
    assert rows.dtype == torch.uint8 and rows.data_ptr() == splits.train[4:8].data_ptr()  # a view
    x, y = device_batch(rows, torch.device("cpu"))
    expected_x, expected_y = splits.train_batch(4, 4)
    assert torch.equal(x, expected_x) and torch.equal(y, expected_y)
    assert x.dtype == y.dtype == torch.int64 and x.is_contiguous() and y.is_contiguous()


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_pinned_splits_copy_to_the_gpu_from_page_locked_memory():
    from harness.data.splits import device_batch

    splits = load_splits("synthetic", seq_len=16, seed=0, train_sequences=12, eval_sequences=2, vocab_size=64)
    pinned = splits.pinned()
    assert pinned.train.is_pinned() and pinned.train_rows(1, 4).is_pinned()
    x, _ = device_batch(pinned.train_rows(1, 4), torch.device("cuda"))
    assert torch.equal(x.cpu(), splits.train_batch(1, 4)[0])
