"""A small stored run (two trials, one series with a NaN point) for the store's tests."""

from __future__ import annotations

import json

from harness.spec import TrialResult, TrialSpec
from harness.store import ResultStore, export_trials


def stored(path, run_id="run-a", status="ok", tokens=100.0):
    store = ResultStore(path)
    store.create_run(run_id, scenario="s", description="", scenario_path="s.yaml", scenario_hash="h",
                     overrides=[], device="cpu", baseline={"precision": "fp32"}, planned_trials=2,
                     env={"device": "cpu"}, started_at="2026-01-02T03:04:05+00:00")
    for position, precision in enumerate(("fp32", "bf16")):
        spec = TrialSpec(scenario="s", trial_id=f"t-{precision}", name=f"precision={precision}",
                         params={"precision": precision, "repeat": 0}, model={}, data={}, train={},
                         techniques={"precision": precision}, device="cpu", timeout_s=5)
        store.save_trial(run_id, position, spec, TrialResult(
            spec.trial_id, status, reason=None if status == "ok" else "boom",
            metrics={"tokens_per_s": tokens + position} if status == "ok" else {},
            series={"step_time_s": [0.1, float("nan"), 0.2]}), {"device": "cpu"}, "h")
    store.finish_run(run_id, at="2026-01-02T04:00:00+00:00")
    return store


def export_of(store, run_id="run-a") -> list[dict]:
    return json.loads(export_trials(store.trials(run_id, with_series=True), "json", None))
