"""A trial's fixed costs, measured where a results database has seen this device, else assumed.

Measured, from the newest finished runs on a device of the same type and name (the run's
stored fingerprint):
    per trial    what a run's wall time (created to finished) leaves once its trials' measured
                 windows and compile times are taken out, per trial it ran: the worker's start
                 (interpreter, torch, CUDA context), data, model build, warm-up steps,
                 evaluation, accounting and storing. Only runs whose every trial that ran is an
                 ok train trial count (a timeout's wait is no fixed cost); the median over
                 their trials. A trial's own timestamps would not do: they start once the
                 worker has imported torch, and they are whole seconds.
    per compile  the median compile_time_s of ok trials compiled in that mode.
A figure needs at least MIN_SAMPLES trials; with fewer it stays assumed (harness.suite.estimate).
The warm-up steps and evaluations inside the measured per-trial figure are also in the
estimate's compute time: on a large model that counts them twice, a small overestimate.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from harness.suite.estimate import FixedCosts, assumed_costs, compile_mode

MIN_SAMPLES = 2
MAX_RUNS_READ = 200  # the newest runs are enough for a median


@dataclass(frozen=True)
class CostBasis:
    costs: FixedCosts
    sources: dict[str, str]  # "trial_s", "compile_s.<mode>" -> "assumed" or "measured: ..."


@dataclass
class _Seen:
    per_trial: list[float]  # one value per trial that ran, from its run
    compile_s: dict[str, list[float]]  # mode -> compile_time_s of its trials


def fixed_costs(results: Path | None, device_type: str, device_name: str) -> CostBasis:
    costs = assumed_costs(device_type)
    sources = {"trial_s": "assumed", **{f"compile_s.{mode}": "assumed" for mode in costs.compile_s}}
    seen = _seen_on(results, device_type, device_name) if results is not None else _Seen([], {})
    where = f"on {device_name} in {results}"
    trial_s = costs.trial_s
    if len(seen.per_trial) >= MIN_SAMPLES:
        trial_s = statistics.median(seen.per_trial)
        sources["trial_s"] = (f"measured: median over {len(seen.per_trial)} trials of their runs' "
                              f"wall time outside the measured windows and compiles {where}")
    compile_s = dict(costs.compile_s)
    for mode, values in seen.compile_s.items():
        if mode in compile_s and len(values) >= MIN_SAMPLES:
            compile_s[mode] = statistics.median(values)
            sources[f"compile_s.{mode}"] = f"measured: median compile_time_s of {len(values)} trials {where}"
    return CostBasis(FixedCosts(trial_s, compile_s), sources)


def _seen_on(results: Path, device_type: str, device_name: str) -> _Seen:
    """What the newest runs in `results` on this device measured; nothing when the database is
    absent or unreadable (an estimate never fails for want of history)."""
    from harness.errors import InputError
    from harness.store import ResultStore

    seen = _Seen([], {})
    if not Path(results).is_file():
        return seen
    try:
        store = ResultStore(results, read_only=True)
        runs = [r for r in reversed(store.runs()) if r["device"] == device_type and r["finished_at"]]
        for run in runs[:MAX_RUNS_READ]:
            info = store.run(run["run_id"])
            if str(info.env.get("device_name", "")).casefold() != device_name.casefold():
                continue
            trials = store.trials(run["run_id"])
            for trial in trials:
                value = (trial.get("metrics") or {}).get("compile_time_s")
                mode = compile_mode((trial.get("spec") or {}).get("techniques") or {})
                if trial["status"] == "ok" and mode is not None and isinstance(value, (int, float)):
                    seen.compile_s.setdefault(mode, []).append(float(value))
            per_trial = _per_trial(info.started_at, info.finished_at, trials)
            if per_trial is not None:
                seen.per_trial += [per_trial[0]] * per_trial[1]
    except InputError:
        return _Seen([], {})
    return seen


def _per_trial(started_at: str, finished_at: str | None, trials: list[dict]) -> tuple[float, int] | None:
    """(fixed seconds per trial, trials that ran) of one run, or None when it does not count."""
    ran = [t for t in trials if t["status"] != "skipped"]
    if not ran or not finished_at:
        return None
    busy = 0.0
    for trial in ran:
        window = (trial.get("notes") or {}).get("window_s")
        if (trial["status"] != "ok" or (trial.get("spec") or {}).get("kind", "train") != "train"
                or not isinstance(window, (int, float))):
            return None
        busy += window + float((trial.get("metrics") or {}).get("compile_time_s") or 0.0)
    try:
        wall = (datetime.fromisoformat(finished_at) - datetime.fromisoformat(started_at)).total_seconds()
    except (TypeError, ValueError):
        return None
    return max(0.0, wall - busy) / len(ran), len(ran)
