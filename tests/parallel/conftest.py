"""Session fixtures of the parallel tests: each group of 2-rank runs starts its processes once
(a rank's start, importing torch, is most of a run's time), and the tests read what it saved."""

from __future__ import annotations

import pytest
from parallel_ranks import (
    EXAMPLE,
    STEPS,
    fp16_overflow_rank,
    no_sync_rank,
    spawn_ranks,
    train_each_rank,
    train_single_process,
)


@pytest.fixture(scope="session")
def reference() -> dict[int, list]:
    """Single-process parameters after STEPS steps on the global batch, by grad_accum."""
    return {accum: train_single_process(STEPS, accum) for accum in (1, 2)}


@pytest.fixture(scope="session")
def replicated_runs(tmp_path_factory) -> dict[str, list[dict]]:
    """DDP and the example plug-in, STEPS steps each: strategy -> what each rank saved."""
    ranks = spawn_ranks(train_each_rank, tmp_path_factory.mktemp("replicated"), ("ddp", EXAMPLE),
                        STEPS)
    return {strategy: [saved[strategy] for saved in ranks] for strategy in ("ddp", EXAMPLE)}


@pytest.fixture(scope="session")
def no_sync_runs(tmp_path_factory) -> dict[str, list[dict]]:
    strategies = ("ddp", "fsdp", EXAMPLE)
    ranks = spawn_ranks(no_sync_rank, tmp_path_factory.mktemp("no_sync"), strategies)
    return {strategy: [saved[strategy] for saved in ranks] for strategy in strategies}


@pytest.fixture(scope="session")
def fp16_runs(tmp_path_factory) -> dict[str, list[dict]]:
    """3 fp16 steps, the second with an inf in rank 0's gradient."""
    strategies = ("ddp", "fsdp")
    ranks = spawn_ranks(fp16_overflow_rank, tmp_path_factory.mktemp("fp16"), strategies, 1)
    return {strategy: [saved[strategy] for saved in ranks] for strategy in strategies}
