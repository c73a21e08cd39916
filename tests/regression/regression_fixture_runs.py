"""Runs written straight into a results database (no training) for the regression gate: each
trial's step times are a seeded normal sample around a mean, and its figures follow from them
as the training loop derives them (median step time, tokens per step over it). `repeats`
makes a combination's independent runs, each off by its own run-level jitter.

A uniquely named module (not conftest) so test modules can import its helpers."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from harness.spec import TrialResult, TrialSpec
from harness.store import ResultStore

TOKENS_PER_STEP = 4096
STEPS = 40
ENV = {"device": "cuda", "device_name": "NVIDIA H100 80GB HBM3", "device_count": 1,
       "host": "gpu-box", "driver": "550.54", "torch_cuda": "12.4",
       "libraries": {"torch": "2.5.0"}, "harness_version": "0.1.0",
       "git_commit": "0123456789abcdef", "git_dirty": False}


@dataclass(frozen=True)
class TrialPlan:
    """One trial to store: its combination, repeat, outcome and figures."""

    name: str
    step_mean_s: float = 0.1
    cv: float = 0.02
    seed: int = 0
    repeat: int = 0
    status: str = "ok"
    peak_memory_bytes: float | None = 8 * 2**30
    extra_metrics: dict[str, float] = field(default_factory=dict)
    reason: str | None = None
    busy: bool = False  # stored with a machine-busy warning


def repeats(name: str, count: int = 5, *, step_mean_s: float = 0.1, run_cv: float = 0.02,
            seed: int = 0, **plan) -> list[TrialPlan]:
    """`count` independent runs of one combination: each run's mean step time is off by a
    seeded log-normal run-level jitter of spread `run_cv`."""
    jitter = np.random.default_rng(seed).standard_normal(count) * run_cv
    return [TrialPlan(name, step_mean_s=step_mean_s * float(np.exp(j)), repeat=r,
                      seed=seed * 1000 + r, **plan) for r, j in enumerate(jitter)]


def step_times(mean_s: float, cv: float, seed: int, steps: int = STEPS) -> list[float]:
    rng = np.random.default_rng(seed)
    return (mean_s * (1 + cv * rng.standard_normal(steps))).tolist()


def result_of(plan: TrialPlan, trial_id: str) -> TrialResult:
    if plan.status != "ok":
        return TrialResult(trial_id, plan.status, reason=plan.reason or f"{plan.status} on purpose")
    steps = step_times(plan.step_mean_s, plan.cv, plan.seed)
    median = float(np.median(steps))
    metrics = {"step_time_s": median, "tokens_per_s": TOKENS_PER_STEP / median,
               **plan.extra_metrics}
    unmeasured = {}
    if plan.peak_memory_bytes is None:
        unmeasured["peak_memory_bytes"] = "no device allocator on cpu"
    else:
        metrics["peak_memory_bytes"] = plan.peak_memory_bytes
    warnings = ([{"code": "machine-busy", "message": "other processes used 45% of the 2 CPUs"}]
                if plan.busy else [])
    return TrialResult(trial_id, "ok", metrics=metrics, unmeasured=unmeasured,
                       series={"step_time_s": steps, "loss": [4.0 - 0.01 * i for i in range(STEPS)]},
                       warnings=warnings)


def spec_of(plan: TrialPlan, scenario: str) -> TrialSpec:
    return TrialSpec(
        scenario=scenario, trial_id=f"t-{plan.name}-{plan.repeat}".replace("=", "_"),
        name=f"{plan.name} #{plan.repeat}", params={"precision": plan.name, "repeat": plan.repeat},
        model={"arch": "gpt", "flavour": "gpt2", "n_layer": 2, "n_head": 2, "d_model": 32,
               "vocab_size": 64, "max_seq_len": 64},
        data={"kind": "synthetic", "seq_len": 16}, device="cuda", timeout_s=60.0,
        train={"micro_batch_size": 2, "steps": STEPS, "warmup_steps": 2, "lr": 1e-3, "seed": 0},
        techniques={"precision": plan.name, "compile": False})


def add_run(path: Path, run_id: str, plans: list[TrialPlan], *, scenario: str = "nightly",
            started_at: str = "2026-01-01T00:00:00+00:00", env: dict[str, Any] | None = None
            ) -> ResultStore:
    """Store one finished run of `plans` in the database at `path` (created if new)."""
    store = ResultStore(path)
    env = {**ENV, **(env or {})}
    store.create_run(run_id, scenario=scenario, description="nightly regression fixture",
                     scenario_path=f"scenarios/{scenario}.yaml", scenario_hash="abc", overrides=[],
                     device="cuda", baseline=None, planned_trials=len(plans), env=env,
                     started_at=started_at)
    for position, plan in enumerate(plans):
        spec = spec_of(plan, scenario)
        store.save_trial(run_id, position, spec, result_of(plan, spec.trial_id), env, "abc")
    store.finish_run(run_id, at=started_at)
    return store


def pair(path: Path, baseline: list[TrialPlan], candidate: list[TrialPlan],
         candidate_env: dict[str, Any] | None = None, *, earlier: int = 6,
         drift_cv: float = 0.01) -> ResultStore:
    """A baseline run 'base' and a later candidate run 'cand' in one database, after `earlier`
    runs of the baseline's plans ('early-0', ...) whose run-level figures drift by a seeded
    log-normal of spread `drift_cv`: what `harness compare` needs to judge drift between runs."""
    drift = np.random.default_rng(42).standard_normal(earlier) * drift_cv
    for k, shift in enumerate(drift):
        plans = [replace(plan, step_mean_s=plan.step_mean_s * float(np.exp(shift)),
                         seed=plan.seed + 1000 * (k + 1)) for plan in baseline]
        add_run(path, f"early-{k}", plans, started_at=f"2025-12-{20 + k:02d}T00:00:00+00:00")
    add_run(path, "base", baseline, started_at="2026-01-01T00:00:00+00:00")
    return add_run(path, "cand", candidate, started_at="2026-01-02T00:00:00+00:00",
                   env=candidate_env)
