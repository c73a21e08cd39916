"""A results database written directly through the store (no training): every status, a
combination with repeats, an unmeasured metric and a trial name that is an HTML attack.

A uniquely named module (not conftest) so that test modules can import its constants
whatever other conftest.py files the tests tree holds."""

from __future__ import annotations

import math
from pathlib import Path

from harness.spec import TrialResult, TrialSpec
from harness.store import ResultStore

EVIL = "<script>alert(1)</script>"
RUN_ID = "20260101-000000-fixture"
BASELINE = {"precision": "fp32", "checkpointing": "none"}
ENV = {"device": "cpu", "device_name": "Test CPU", "device_count": 1, "host": "box",
       "os": "Linux", "python": "3.11", "cpu_model": "Test CPU", "cpu_cores_logical": 4,
       "torch_threads": 4, "host_memory_bytes": 8 * 2**30, "torch_cuda": None,
       "libraries": {"torch": "2.5.0", "numpy": "2.0.0"}, "harness_version": "0.1.0",
       "git_commit": "0123456789abcdef", "git_dirty": True}
WARMUP, STEPS, FLOOR = 2, 6, 1.25
CPU_UNMEASURED = {"peak_memory_bytes": "no device allocator on cpu; the host peak is peak_rss_bytes",
                  "mfu": "no peak FLOP/s table for this device yet"}
ACTIVATION_REASON = "saved-tensor hooks failed: RuntimeError: nope"


def spec(precision: str, checkpointing: str, repeat: int) -> TrialSpec:
    params = {"precision": precision, "checkpointing": checkpointing, "repeat": repeat}
    return TrialSpec(
        scenario="fixture", trial_id=f"t-{precision}-{checkpointing}-{repeat}",
        name=f"precision={precision} checkpointing={checkpointing} #{repeat}", params=params,
        model={"arch": "gpt", "flavour": "gpt2", "n_layer": 2, "n_head": 2, "d_model": 32,
               "vocab_size": 64, "max_seq_len": 64},
        data={"kind": "synthetic", "seq_len": 16}, device="cpu", timeout_s=60.0,
        train={"micro_batch_size": 2, "steps": STEPS, "warmup_steps": WARMUP, "lr": 1e-3, "seed": 0},
        techniques={"precision": precision, "checkpointing": checkpointing, "compile": False})


def ok(trial_id: str, tokens_per_s: float, activation: float | None = 1000.0) -> TrialResult:
    metrics = {"tokens_per_s": tokens_per_s, "step_time_s": 32 / tokens_per_s,
               "step_time_p10_s": 0.9 * 32 / tokens_per_s, "step_time_p90_s": 1.1 * 32 / tokens_per_s,
               "peak_rss_bytes": 300 * 2**20, "final_loss": 2.0, "eval_loss": 2.1}
    unmeasured = dict(CPU_UNMEASURED)
    if activation is None:
        unmeasured["activation_bytes"] = ACTIVATION_REASON
    else:
        metrics["activation_bytes"] = activation
    loss = [4.0 - 0.3 * step for step in range(STEPS)]
    return TrialResult(trial_id, "ok", metrics=metrics, unmeasured=unmeasured,
                       series={"loss": loss, "step_time_s": [0.01] * (STEPS - WARMUP)},
                       notes={"loss_floor": FLOOR, "data": "synthetic test source", "parameters": 1234})


def fixture_trials() -> list[tuple[TrialSpec, TrialResult]]:
    trials = []
    for repeat, tokens in enumerate((90.0, 100.0, 130.0)):  # baseline median: 100
        s = spec("fp32", "none", repeat)
        trials.append((s, ok(s.trial_id, tokens, activation=1000.0)))
    for repeat, tokens in enumerate((150.0, 140.0, 160.0)):  # median 150: speedup 1.5
        s = spec("bf16", "none", repeat)
        trials.append((s, ok(s.trial_id, tokens, activation=None if repeat == 1 else 500.0)))
    failed = spec("bf16", "full", 0)
    trials.append((failed, TrialResult(failed.trial_id, "failed", reason="RuntimeError: boom",
                                       traceback="Traceback (most recent call last):\n  boom")))
    oom = spec("bf16", "full", 1)
    trials.append((oom, TrialResult(oom.trial_id, "oom", reason="CUDA out of memory")))
    skipped = spec("fp8", "none", 0)
    trials.append((skipped, TrialResult(skipped.trial_id, "skipped",
                                        reason="fp8 needs compute capability 8.9+ (this device: cpu)")))
    evil = spec(EVIL, "none", 0)
    trials.append((evil, TrialResult(evil.trial_id, "diverged", reason="loss became inf at step 3",
                                     series={"loss": [4.0, 3.5, 3.0, math.inf]})))
    return trials


def build_store(path: Path) -> ResultStore:
    store = ResultStore(path)
    trials = fixture_trials()
    store.create_run(RUN_ID, scenario="fixture", description="Does a <b>fixture</b> render?",
                     scenario_path="scenarios/fixture.yaml", scenario_hash="abc", overrides=[],
                     device="cpu", baseline=BASELINE, planned_trials=len(trials) + 1, env=ENV)
    for position, (trial_spec, result) in enumerate(trials):
        store.save_trial(RUN_ID, position, trial_spec, result, ENV, "abc")
    store.finish_run(RUN_ID)
    return store
