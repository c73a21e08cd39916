"""A run as the JSON document pytest-benchmark's `--benchmark-json` writes, so that
`pytest-benchmark compare A.json B.json`, `--benchmark-compare` and dashboards built on that
format read harness results.

One benchmark per trial: group = the scenario, name = the trial's name, fullname =
"scenario::name" (what `compare --between` and `--benchmark-compare` match across files),
params = the trial's params, and stats over the measured steps' times (`series["step_time_s"]`,
warm-up excluded): one round per step, one iteration per round. `extra_info` carries the
harness metrics (tokens_per_s, memory, mfu, ...) and the trial's ids.

Left out: trials that are not ok (failed, oom, skipped, diverged: nothing comparable was
timed), and ok trials without a step-time series (kinds that time no training step). The
format has no place for them; the JSON and CSV exports keep every trial.

The statistics are pytest-benchmark's own `Stats` when the package is importable (it is a test
extra, not a runtime dependency of the harness); otherwise `_stats_like_pytest_benchmark`
computes the same fields by the same formulas, so a GPU box without the test extras still
exports. Tests hold the two equal.
"""

from __future__ import annotations

import math
import statistics
from bisect import bisect_left, bisect_right
from typing import Any

STEP_SERIES = "step_time_s"
FALLBACK_VERSION = "5.1.0"  # the format written when pytest-benchmark is not installed
STATS_FIELDS = ("min", "max", "mean", "stddev", "rounds", "median", "iqr", "q1", "q3",
                "iqr_outliers", "stddev_outliers", "outliers", "ld15iqr", "hd15iqr", "ops", "total")
# run-specific facts that would make every run's machine look different to pytest-benchmark
NOT_MACHINE = ("git_commit", "git_dirty", "harness_version")


def pytest_benchmark_json(trials: list[dict[str, Any]]) -> dict[str, Any]:
    """The `--benchmark-json` document for `trials` (`ResultStore.trials(run_id, with_series=True)`,
    one run): machine and commit from the first trial, datetime = the run's start."""
    timed = [(trial, times) for trial in trials
             if trial["status"] == "ok" and (times := step_times(trial))]
    first = trials[0] if trials else {}
    return {
        "machine_info": machine_info(first.get("env") or {}),
        "commit_info": commit_info(first),
        "benchmarks": [benchmark_entry(trial, times) for trial, times in timed],
        "datetime": (first.get("run") or {}).get("started_at") or first.get("started_at"),
        "version": pytest_benchmark_version(),
    }


def step_times(trial: dict[str, Any]) -> list[float]:
    """The measured steps' times in seconds; a step stored as NULL (NaN) has no time to count."""
    values = (trial.get("series") or {}).get(STEP_SERIES) or []
    return [float(value) for value in values if value is not None and math.isfinite(value)]


def benchmark_entry(trial: dict[str, Any], times: list[float]) -> dict[str, Any]:
    """One benchmark, keys in the order of pytest-benchmark's `Metadata.as_dict`."""
    params = trial.get("params") or {}
    return {
        "group": trial["scenario"],
        "name": trial["name"],
        "fullname": f"{trial['scenario']}::{trial['name']}",
        "params": params,
        "param": "-".join(str(value) for value in params.values()),  # pytest's parametrize id
        "extra_info": extra_info(trial),
        "options": run_options(trial),
        "stats": {**step_time_stats(times), "data": times, "iterations": 1},
    }


def step_time_stats(times: list[float]) -> dict[str, Any]:
    """pytest-benchmark's stats fields (seconds) over `times`, one round per step."""
    try:
        from pytest_benchmark.stats import Stats
    except ImportError:
        return _stats_like_pytest_benchmark(times)
    stats = Stats()
    for seconds in times:
        stats.update(seconds)
    return stats.as_dict()


def extra_info(trial: dict[str, Any]) -> dict[str, Any]:
    info: dict[str, Any] = {"trial_id": trial["trial_id"], "run_id": trial["run_id"],
                            "device": (trial.get("env") or {}).get("device")}
    for name, value in (trial.get("metrics") or {}).items():
        # strict JSON for dashboards: a non-finite number travels as text, as in the JSON export
        info[name] = str(value) if isinstance(value, float) and not math.isfinite(value) else value
    return info


def run_options(trial: dict[str, Any]) -> dict[str, Any]:
    """How the rounds were taken, in pytest-benchmark's option names."""
    spec = trial.get("spec") or {}
    device = spec.get("device") or (trial.get("env") or {}).get("device")
    warmup = (spec.get("train") or {}).get("warmup_steps")
    return {"timer": "cuda events" if device == "cuda" else "perf_counter",
            "warmup": warmup if warmup else False}


def machine_info(env: dict[str, Any]) -> dict[str, Any]:
    """pytest-benchmark's machine_info keys the fingerprint knows, and the fingerprint itself."""
    return {
        "node": env.get("host"),
        "processor": env.get("cpu_model"),
        "python_version": env.get("python"),
        "platform": env.get("os"),
        "cpu": {"brand_raw": env.get("cpu_model"), "count": env.get("cpu_cores_logical")},
        "harness_env": {key: value for key, value in env.items() if key not in NOT_MACHINE},
    }


def commit_info(trial: dict[str, Any]) -> dict[str, Any]:
    env = trial.get("env") or {}
    commit = trial.get("git_commit") or env.get("git_commit")
    dirty = trial.get("git_dirty", env.get("git_dirty"))
    return {"id": commit or "unversioned", "time": None, "author_time": None,
            "dirty": bool(dirty), "project": "harness", "branch": "(unknown)"}


def pytest_benchmark_version() -> str:
    try:
        from pytest_benchmark import __version__
    except ImportError:
        return FALLBACK_VERSION
    return __version__


def _stats_like_pytest_benchmark(times: list[float]) -> dict[str, Any]:
    """`pytest_benchmark.stats.Stats.as_dict()` (5.3.1 and later: earlier ones returned the first
    datum past the upper fence as hd15iqr) without the package: the same quartile methods
    (Wikipedia's method 3 for an odd count, method 2 for an even one) and Tukey fences."""
    data, rounds = sorted(times), len(times)
    mean = statistics.mean(data)
    stddev = statistics.stdev(data) if rounds > 1 else 0
    q1, q3 = _quartiles(data)
    iqr = q3 - q1
    low_fence, high_fence = q1 - 1.5 * iqr, q3 + 1.5 * iqr
    total = sum(times)
    stddev_outliers = sum(1 for value in data if value < mean - stddev or value > mean + stddev)
    iqr_outliers = sum(1 for value in data if value < low_fence or value > high_fence)
    values = {
        "min": data[0], "max": data[-1], "mean": mean, "stddev": stddev, "rounds": rounds,
        "median": statistics.median(data), "iqr": iqr, "q1": q1, "q3": q3,
        "iqr_outliers": iqr_outliers, "stddev_outliers": stddev_outliers,
        "outliers": f"{stddev_outliers};{iqr_outliers}",
        "ld15iqr": data[bisect_left(data, low_fence)] if rounds > 1 else data[0],
        "hd15iqr": data[bisect_right(data, high_fence) - 1],
        "ops": rounds / total if total else 0, "total": total,
    }
    return {name: values[name] for name in STATS_FIELDS}


def _quartiles(data: list[float]) -> tuple[float, float]:
    rounds = len(data)
    if rounds == 1:
        return data[0], data[0]
    if rounds % 2 == 0:
        return statistics.median(data[:rounds // 2]), statistics.median(data[rounds // 2:])
    n, remainder = rounds // 4, rounds % 4
    if remainder == 1:
        return (0.25 * data[n - 1] + 0.75 * data[n],
                0.75 * data[3 * n] + 0.25 * data[3 * n + 1])
    return (0.75 * data[n] + 0.25 * data[n + 1],
            0.25 * data[3 * n + 1] + 0.75 * data[3 * n + 2])
