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
          reason: str | None = None, device: str = "cuda") -> tuple[TrialSpec, TrialResult]:
    """One trial; with `step_s`, a step-time series of STEPS normal draws (coefficient of
    variation `cv`) and the tokens/s and step time that follow from it."""
    techniques = {"precision": "fp32", "checkpointing": "none", "world_size": 1, "nnodes": 1}
    techniques.update({k: v for k, v in params.items() if k != "repeat" and "." not in k})
    spec = TrialSpec(scenario="fixture", trial_id=f"t-{name}", name=name, params=params,
                     model={"arch": "gpt", "n_layer": 2, "n_experts": 0}, data={"seq_len": 16},
                     train={"steps": STEPS}, techniques=techniques, device=device, timeout_s=60)
    figures = dict(metrics or {})
    series: dict[str, list[float]] = {}
    if step_s is not None and status == "ok":
        times = np.random.default_rng(seed).normal(step_s, cv * step_s, STEPS).clip(1e-6)
        series["step_time_s"] = times.tolist()
        figures.setdefault("step_time_s", float(np.median(times)))
        figures.setdefault("tokens_per_s", TOKENS_PER_STEP / float(np.median(times)))
    result = TrialResult(spec.trial_id, status, reason=reason,
                         metrics=figures if status == "ok" else {}, series=series)
    return spec, result


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
