"""Results databases of many runs written directly through the store (no training): one run
per night, each trial key with three repeats whose median is the value asked for.

A uniquely named module (not conftest) so that test modules import it whatever other
conftest.py files the tests tree holds."""

from __future__ import annotations

from pathlib import Path

from harness.spec import TrialResult, TrialSpec
from harness.store import ResultStore

EVIL = "<script>alert(1)</script>"
TOKENS = 1000  # tokens per step: step_time_s = TOKENS / tokens_per_s
ENV = {"device": "cpu", "device_name": "Test CPU", "driver": "570", "torch_cuda": None,
       "libraries": {"torch": "2.10.0", "numpy": "2.0.0"}, "harness_version": "0.1.0",
       "git_commit": "0123456789abcdef", "git_dirty": False}


def run_id(night: int) -> str:
    return f"night-{night:02d}"


def started_at(night: int) -> str:
    return f"2026-01-{night + 1:02d}T03:00:00+00:00"


def _spec(scenario: str, key: str, repeat: int) -> TrialSpec:
    return TrialSpec(
        scenario=scenario, trial_id=f"{key}-{repeat}", name=f"{key} #{repeat}",
        params={"precision": key, "repeat": repeat},
        model={"arch": "gpt", "preset": "tiny"}, data={"kind": "synthetic", "seq_len": 16},
        train={"micro_batch_size": 2, "steps": 6, "warmup_steps": 2, "lr": 1e-3, "seed": 0},
        techniques={"precision": key}, device="cpu", timeout_s=60.0)


def _result(trial_id: str, tokens_per_s: float, busy: bool = False) -> TrialResult:
    warnings = [{"code": "machine-busy", "message": "other processes used 60% of the CPUs"}] if busy else []
    return TrialResult(trial_id, "ok", metrics={"tokens_per_s": tokens_per_s,
                                                "step_time_s": TOKENS / tokens_per_s},
                       warnings=warnings)


def add_run(store: ResultStore, night: int, values: dict[str, float], *,
            scenario: str = "nightly", env: dict | None = None, failed_repeat: bool = False,
            busy: bool = False) -> None:
    """One run: for each key, repeats at 0.99x, 1x and 1.01x the value (median: the value);
    with `failed_repeat`, a fourth repeat that failed and would drag the median if counted."""
    env = env or ENV
    store.create_run(run_id(night), scenario=scenario, description="", scenario_path="",
                     scenario_hash="abc", overrides=[], device="cpu", baseline=None,
                     planned_trials=3 * len(values), env=env, started_at=started_at(night))
    position = 0
    for key, value in values.items():
        for repeat, factor in enumerate((0.99, 1.0, 1.01)):
            spec = _spec(scenario, key, repeat)
            store.save_trial(run_id(night), position, spec,
                             _result(spec.trial_id, value * factor, busy), env, "abc")
            position += 1
        if failed_repeat:
            spec = _spec(scenario, key, 3)
            store.save_trial(run_id(night), position,
                             spec, TrialResult(spec.trial_id, "failed", reason="boom",
                                               metrics={"tokens_per_s": 1.0}), env, "abc")
            position += 1
    store.finish_run(run_id(night), at=started_at(night))


def series_store(path: Path, series: dict[str, list[float]], *,
                 envs: dict[int, dict] | None = None, busy: set[int] = frozenset()) -> ResultStore:
    """A store with one run per night: `series[key][night]` is that key's tokens/s;
    `envs[night]` replaces the fingerprint from that night on; nights in `busy` were measured
    on a busy machine."""
    store = ResultStore(path)
    nights = len(next(iter(series.values())))
    env = ENV
    for night in range(nights):
        env = (envs or {}).get(night, env)
        add_run(store, night, {key: values[night] for key, values in series.items()}, env=env,
                busy=night in busy)
    return store
