"""DDP and FSDP2 on 2 gloo ranks: the same training as one process on the global batch, FSDP's
shards take half the bytes, no_sync keeps gradients local, an fp16 overflow in one rank skips
the step on every rank."""

from __future__ import annotations

import pytest
import torch
from parallel_ranks import (
    EXAMPLE,
    STEPS,
    compiled_rank,
    global_batches,
    local_gradients,
    rank_share,
    spawn_ranks,
    train_rank,
)


def assert_same_training(params, reference):
    """All parameters, as one vector, equal within 1e-5 relative. fp32 on both sides: the only
    difference is the order of floating-point sums (a batch of 4 against two of 2, and the
    all-reduce), ~3e-7 here; a real mistake (a rank's data lost, a gradient not averaged,
    clipping by a local norm) moves the weights by 1e-3 relative or more. Not tensor by tensor:
    attention's key bias has a gradient that is zero in exact arithmetic (softmax ignores a
    constant added to every score), so both runs hold rounding noise there, and AdamW's
    lr * g / (|g| + eps) turns that noise into weights that differ by all of their ~1e-7 size."""
    assert len(params) == len(reference)
    got = torch.cat([p.flatten() for p in params])
    want = torch.cat([p.flatten() for p in reference])
    error = torch.linalg.vector_norm(got - want) / torch.linalg.vector_norm(want)
    assert error <= 1e-5, f"relative difference {error:.2e}"


def test_ddp_replicas_stay_identical_and_train_like_one_process_on_the_global_batch(
        replicated_runs, reference):
    ranks = replicated_runs["ddp"]
    for a, b in zip(ranks[0]["params"], ranks[1]["params"], strict=True):
        assert torch.equal(a, b)  # bit-identical: every rank applies the same averaged gradient
    assert_same_training(ranks[0]["params"], reference[1])


def test_fsdp_trains_like_one_process_and_each_rank_holds_half_the_bytes(tmp_path, reference):
    # with gradient accumulation and checkpoint-wrapped blocks, sharded as the blocks they wrap
    ranks = spawn_ranks(train_rank, tmp_path, "fsdp", STEPS, 2, "full")
    for rank in ranks:
        assert_same_training(rank["params"], reference[2])
        assert rank["local_bytes"] == pytest.approx(rank["unsharded_bytes"] / 2, rel=0.03)


def test_fsdp_shards_the_modules_under_a_torch_compile_wrapper(tmp_path, reference):
    ranks = spawn_ranks(compiled_rank, tmp_path, "fsdp", STEPS)
    assert all(ranks[0]["sharded"])
    assert_same_training(ranks[0]["params"], reference[1])


@pytest.mark.parametrize("strategy", ["ddp", "fsdp", EXAMPLE], ids=["ddp", "fsdp", "example"])
def test_no_sync_keeps_gradients_local_and_the_next_backward_averages_them(no_sync_runs, strategy):
    batch = global_batches(1)[0][0]
    own = [local_gradients(rank_share([[batch]], rank)[0][0]) for rank in range(2)]
    differs = [not torch.allclose(a, b) for a, b in zip(own[0], own[1])]
    assert sum(differs) > len(differs) // 2  # the ranks' batches really differ
    for rank, saved in enumerate(no_sync_runs[strategy]):
        if strategy == "fsdp":  # the unreduced gradient stays inside FSDP: no shard has one yet
            assert all(grad is None for grad in saved["inside"])
        else:  # each rank's gradient is its own batch's, not averaged
            for got, want in zip(saved["inside"], own[rank], strict=True):
                torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)
        # then: the local sum of both backward passes (2 x own), averaged over the two ranks
        for got, g0, g1 in zip(saved["outside"], own[0], own[1], strict=True):
            torch.testing.assert_close(got, g0 + g1, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_fp16_overflow_in_one_rank_skips_the_step_on_every_rank(fp16_runs, strategy):
    # FSDP: the inf sits in rank 0's shard only; GradScaler's found-inf flag must be reduced
    # over the ranks (DTensor's unscale handler does it), or rank 1 would step while rank 0
    # skipped, and the replicas would part. DDP: the all-reduce spreads rank 0's inf.
    for rank in fp16_runs[strategy]:
        assert rank["changed"] == [True, False, True]
        assert rank["skipped"] == 1
        assert rank["scales"] == [256.0, 128.0, 128.0]
