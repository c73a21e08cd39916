"""The harness must not distort what it measures: its training loop, meters included, against a
bare loop a user would write for the same model, data and optimizer.

    pytest tests/benchmarks --benchmark-enable -s     # prints the overhead, stores it

Rounds alternate bare and harness windows in one process, so drift of the machine (clock,
other tenants) hits both alike; the overhead is the median over rounds of the ratio of wall
time per step. With benchmarks disabled (the default test run) one short round runs and only
the equality of the two loops' losses is asserted: timings are never a pass/fail test here.
"""

from __future__ import annotations

import statistics
import time

import torch
import torch.nn.functional as F

from harness.data import load_splits
from harness.models import GPT, resolve_config
from harness.techniques import apply_techniques
from harness.train.loop import LoopSettings, run_training
from harness.train.step import make_optimizer, make_train_step

TECHNIQUES = {"precision": "fp32", "checkpointing": "none", "compile": False}
BATCH, SEQ_LEN, WARMUP = 8, 128, 5


def _splits(steps: int):
    return load_splits("synthetic", seq_len=SEQ_LEN, seed=0, train_sequences=steps * BATCH,
                       eval_sequences=BATCH, vocab_size=64)


def _model() -> GPT:
    torch.manual_seed(0)
    return GPT(resolve_config("tiny"))


def bare_loop(splits, steps: int) -> tuple[float, list[float]]:
    """Wall seconds per measured step, and the loss of every step."""
    model = _model()
    optimizer = make_optimizer(model, 3e-3, 0.1, torch.device("cpu"))
    losses = []
    for step in range(steps):
        if step == WARMUP:
            t0 = time.perf_counter()
        x, y = splits.train_batch(step, BATCH)
        logits = model(x)
        loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.detach())
    seconds = (time.perf_counter() - t0) / (steps - WARMUP)
    return seconds, torch.stack(losses).tolist()


def harness_loop(splits, steps: int) -> tuple[float, list[float]]:
    device = torch.device("cpu")
    bare = _model()
    model, precision = apply_techniques(bare, TECHNIQUES, device)
    optimizer = make_optimizer(bare, 3e-3, 0.1, device)
    step = make_train_step(model, optimizer, precision, 1.0)
    settings = LoopSettings(steps=steps, warmup_steps=WARMUP, micro_batch_size=BATCH,
                            eval_batches=1, progress_every=max(1, steps // 50))
    outcome = run_training(step, model, bare, precision, splits, device, settings)
    return outcome.notes["window_s"] / outcome.notes["measured_steps"], outcome.series["loss"]


def test_harness_loop_overhead_against_a_bare_loop(benchmark):
    rounds, steps = (1, 15) if benchmark.disabled else (9, 80)
    splits = _splits(steps)
    ratios = []
    for _ in range(rounds):
        bare_s, bare_losses = bare_loop(splits, steps)
        harness_s, harness_losses = harness_loop(splits, steps)
        ratios.append(harness_s / bare_s)
    assert harness_losses == bare_losses  # the same computation, step for step

    overhead = statistics.median(ratios) - 1
    benchmark.extra_info.update({"overhead_pct": 100 * overhead, "rounds": rounds, "steps": steps,
                                 "ratios": ratios})
    print(f"\nharness loop vs bare loop, tiny GPT on CPU: overhead {100 * overhead:+.2f}% "
          f"(median of {rounds} rounds; ratios {[round(r, 4) for r in ratios]})")
    benchmark.pedantic(harness_loop, args=(splits, steps), rounds=1, iterations=1)
