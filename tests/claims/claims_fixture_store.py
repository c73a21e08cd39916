"""Result sets built by hand (no training) whose data warrant a known verdict.

A uniquely named module (not conftest) so the claims tests can import it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from harness.claims import LoadedClaim
from harness.claims.schema import Claim
from harness.spec import TrialResult, TrialSpec
from harness.store import ResultStore

TOKENS_PER_STEP = 1024
STEPS = 40


def trial(name: str, params: dict[str, Any], *, step_s: float | None = None, cv: float = 0.02,
          seed: int = 0, metrics: dict[str, float] | None = None, status: str = "ok",
          reason: str | None = None, device: str = "cuda", train_seed: int = 0,
          busy: bool = False) -> tuple[TrialSpec, TrialResult]:
    """One trial; with `step_s`, a step-time series of STEPS normal draws (coefficient of
    variation `cv`) and the tokens/s and step time that follow from it."""
    techniques = {"precision": "fp32", "checkpointing": "none", "world_size": 1, "nnodes": 1}
    techniques.update({k: v for k, v in params.items() if k != "repeat" and "." not in k})
    spec = TrialSpec(scenario="fixture", trial_id=f"t-{name}", name=name, params=params,
                     model={"arch": "gpt", "n_layer": 2, "n_experts": 0}, data={"seq_len": 16},
                     train={"steps": STEPS, "seed": train_seed}, techniques=techniques,
                     device=device, timeout_s=60)
    figures = dict(metrics or {})
    series: dict[str, list[float]] = {}
    if step_s is not None and status == "ok":
        times = np.random.default_rng(seed).normal(step_s, cv * step_s, STEPS).clip(1e-6)
        series["step_time_s"] = times.tolist()
        figures.setdefault("step_time_s", float(np.median(times)))
        figures.setdefault("tokens_per_s", TOKENS_PER_STEP / float(np.median(times)))
    warnings = [{"code": "machine-busy", "message": "other processes used 45% of the CPUs"}] if busy else []
    result = TrialResult(spec.trial_id, status, reason=reason,
                         metrics=figures if status == "ok" else {}, series=series, warnings=warnings)
    return spec, result


def runs(name: str, params: dict[str, Any], *, step_s: float, count: int = 5, run_cv: float = 0.02,
         seed: int = 0, **options: Any) -> list[tuple[TrialSpec, TrialResult]]:
    """`count` independent repeats of one combination ("name #r"), each run's mean step time
    off by a seeded log-normal jitter of spread `run_cv`."""
    jitter = np.exp(np.random.default_rng(seed).standard_normal(count) * run_cv)
    return [trial(f"{name} #{r}", {**params, "repeat": r}, step_s=step_s * float(j),
                  seed=seed * 100 + r, **options) for r, j in enumerate(jitter)]


def seeds(name: str, params: dict[str, Any], values: dict[str, list[float]],
          **options: Any) -> list[tuple[TrialSpec, TrialResult]]:
    """One trial per seed (axis train.seed), seed i with the i-th of each metric's values."""
    count = len(next(iter(values.values())))
    return [trial(f"{name} train.seed={i}", {**params, "train.seed": i, "repeat": 0},
                  metrics={m: v[i] for m, v in values.items()}, train_seed=i, **options)
            for i in range(count)]


def store_with(path: Path, trials: list[tuple[TrialSpec, TrialResult]], *, device: str = "cuda",
               run_id: str = "run-1", scenario: str = "fixture", started_at: str | None = None,
               baseline: dict[str, Any] | None = None, store: ResultStore | None = None) -> ResultStore:
    store = store or ResultStore(path)
    env = {"device": device, "device_name": "NVIDIA H100 80GB HBM3" if device == "cuda" else "Test CPU",
           "device_count": 1}
    store.create_run(run_id, scenario=scenario, description="", scenario_path="", scenario_hash="h",
                     overrides=[], device=device, baseline=baseline, planned_trials=len(trials),
                     env=env, started_at=started_at)
    for position, (spec, result) in enumerate(trials):
        store.save_trial(run_id, position, spec, result, env, "h")
    store.finish_run(run_id)
    return store


def claim(**fields: Any) -> LoadedClaim:
    """A testable claim of bf16 against fp32 throughput unless `fields` say otherwise."""
    data: dict[str, Any] = {
        "id": "test-claim", "claim": "bf16 is 2-6x faster", "conditions": "V100",
        "confirmed_when": "2-6x", "source": {"primary": "A paper"}, "scenario": "s.yaml",
        "baseline": {"precision": "fp32"}, "treatment": {"precision": "bf16"},
        "metric": "tokens_per_s", "measure": "ratio", "expect": {"min": 2.0, "max": 6.0}}
    data.update(fields)
    return LoadedClaim(Claim.model_validate(data), "fixture", "scenarios/s.yaml")
