"""`harness export --format pytest-benchmark`: the files load in pytest-benchmark's own storage
and `pytest-benchmark compare` prints them, with stats equal to pytest-benchmark's."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
from pytest_benchmark.logger import Logger
from pytest_benchmark.stats import Stats
from pytest_benchmark.storage.file import FileStorage

from harness.cli import main
from harness.spec import TrialResult, TrialSpec
from harness.store import ResultStore
from harness.store.pytest_benchmark import (_stats_like_pytest_benchmark, pytest_benchmark_json,
                                            step_time_stats)

SCENARIO = "pb-fixture"
ENV = {"device": "cpu", "device_name": "Test CPU", "host": "box", "os": "Linux-6.1-x86_64",
       "python": "3.11.7", "cpu_model": "Test CPU", "cpu_cores_logical": 4,
       "libraries": {"torch": "2.5.0"}, "harness_version": "0.1.0",
       "git_commit": "0123456789abcdef", "git_dirty": True}
FP32_TIMES = [0.01, 0.02, 0.03]  # median 0.02 s: "20.0000" in milliseconds
BF16_TIMES = [0.010, 0.012, 0.011, 0.013, 0.030]  # an outlier past both fences
RUN_STARTS = {"run-a": "2026-01-01T00:00:00+00:00", "run-b": "2026-01-02T00:00:00+00:00"}


def _spec(name: str) -> TrialSpec:
    return TrialSpec(scenario=SCENARIO, trial_id=f"t-{name}", name=f"precision={name}",
                     params={"precision": name, "repeat": 0}, model={"arch": "gpt"},
                     data={"kind": "synthetic"}, train={"steps": 7, "warmup_steps": 2},
                     techniques={"precision": name}, device="cpu", timeout_s=60.0)


def _ok(name: str, times: list[float] | None, tokens_per_s: float) -> tuple[TrialSpec, TrialResult]:
    series = {"loss": [3.0, 2.0, 1.0]} | ({"step_time_s": times} if times else {})
    return _spec(name), TrialResult(f"t-{name}", "ok", series=series,
                                    metrics={"tokens_per_s": tokens_per_s, "mfu": 0.25,
                                             "peak_rss_bytes": 3e8})


def _build(path: Path) -> ResultStore:
    """Two runs of one scenario; the second is 10% slower. Each has a failed trial and an ok
    trial without step times, neither of which the format can hold."""
    store = ResultStore(path)
    for run_id, slowdown in (("run-a", 1.0), ("run-b", 1.1)):
        trials = [_ok("fp32", [t * slowdown for t in FP32_TIMES], 3200.0 / slowdown),
                  _ok("bf16", [t * slowdown for t in BF16_TIMES], 5000.0 / slowdown),
                  _ok("untimed", None, 1.0),
                  (_spec("broken"), TrialResult("t-broken", "failed", reason="RuntimeError: boom",
                                                series={"step_time_s": [0.5]}))]
        store.create_run(run_id, scenario=SCENARIO, description="", scenario_path="s.yaml",
                         scenario_hash="abc", overrides=[], device="cpu", baseline=None,
                         planned_trials=len(trials), env=ENV, started_at=RUN_STARTS[run_id])
        for position, (spec, result) in enumerate(trials):
            store.save_trial(run_id, position, spec, result, ENV, "abc")
    return store


@pytest.fixture
def exported(tmp_path: Path) -> dict[str, Path]:
    db = tmp_path / "results.db"
    _build(db)
    files = {}
    for run_id in RUN_STARTS:
        files[run_id] = tmp_path / "exports" / f"{run_id}.json"
        assert main(["export", "--results", str(db), "--run", run_id, "--format", "pytest-benchmark",
                     "--out", str(files[run_id])]) == 0
    return files


def _compare(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # cwd: the CLI creates its default storage folder (.benchmarks) where it runs
    return subprocess.run([sys.executable, "-m", "pytest_benchmark", "compare", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_document_holds_ok_timed_trials_with_hand_computed_stats(exported):
    document = json.loads(exported["run-a"].read_text())
    assert document["datetime"] == RUN_STARTS["run-a"]
    assert document["commit_info"]["id"] == "0123456789abcdef" and document["commit_info"]["dirty"]
    assert document["machine_info"]["node"] == "box"
    assert document["machine_info"]["cpu"]["brand_raw"] == "Test CPU"
    assert "git_commit" not in document["machine_info"]["harness_env"]
    # the failed trial and the ok trial without step times are left out
    assert [b["fullname"] for b in document["benchmarks"]] == [
        f"{SCENARIO}::precision=fp32", f"{SCENARIO}::precision=bf16"]

    fp32, bf16 = document["benchmarks"]
    assert fp32["group"] == SCENARIO and fp32["name"] == "precision=fp32"
    assert fp32["params"] == {"precision": "fp32", "repeat": 0}
    assert fp32["extra_info"] == {"trial_id": "t-fp32", "run_id": "run-a", "device": "cpu",
                                  "tokens_per_s": 3200.0, "mfu": 0.25, "peak_rss_bytes": 3e8}
    assert fp32["options"] == {"timer": "perf_counter", "warmup": 2}
    assert fp32["stats"]["median"] == pytest.approx(0.02)

    stats = bf16["stats"]
    assert stats["data"] == BF16_TIMES and stats["iterations"] == 1
    assert stats["rounds"] == 5
    assert stats["min"] == 0.010 and stats["max"] == 0.030 and stats["median"] == 0.012
    assert stats["mean"] == pytest.approx(0.0152)
    assert stats["stddev"] == pytest.approx((278.8e-6 / 4) ** 0.5)
    assert stats["q1"] == pytest.approx(0.25 * 0.010 + 0.75 * 0.011)  # method 3, n = 5
    assert stats["q3"] == pytest.approx(0.75 * 0.013 + 0.25 * 0.030)
    assert stats["iqr"] == pytest.approx(0.0065)
    assert (stats["iqr_outliers"], stats["stddev_outliers"], stats["outliers"]) == (1, 1, "1;1")
    assert stats["ld15iqr"] == 0.010 and stats["hd15iqr"] == 0.013  # 0.030 is past the fence
    assert stats["total"] == pytest.approx(0.076)
    assert stats["ops"] == pytest.approx(5 / 0.076)


def test_pytest_benchmark_compare_prints_both_files(exported, tmp_path):
    done = _compare(tmp_path, str(exported["run-a"]), str(exported["run-b"]))
    assert done.returncode == 0, done.stderr
    assert "Name (time in ms)" in done.stdout
    assert "broken" not in done.stdout and "untimed" not in done.stdout
    rows = [line for line in done.stdout.splitlines() if line.startswith("precision=")]
    assert sorted(row.split()[0] for row in rows) == ["precision=bf16"] * 2 + ["precision=fp32"] * 2
    fp32_a = next(row for row in rows if row.startswith("precision=fp32") and "run-a" in row)
    fp32_b = next(row for row in rows if row.startswith("precision=fp32") and "run-b" in row)
    # columns: min, max, mean, stddev, median, ...: the median is 20 ms, and 22 ms 10% slower
    assert "20.0000" in fp32_a and "22.0000" in fp32_b


def test_compare_between_matches_trials_across_runs_by_fullname(exported, tmp_path):
    done = _compare(tmp_path, "--between", "median", str(exported["run-a"]), str(exported["run-b"]))
    assert done.returncode == 0, done.stderr
    fp32_row = next(line for line in done.stdout.splitlines() if "precision=fp32" in line)
    assert "20.0000" in fp32_row and "22.0000" in fp32_row  # one row, both runs' medians
    assert "+10.0%" in fp32_row


def test_pytest_benchmark_storage_loads_the_exports(exported):
    storage = FileStorage(exported["run-a"].parent, logger=Logger(Logger.QUIET))
    loaded = list(storage.load(str(exported["run-a"]), str(exported["run-b"])))
    assert len(loaded) == 2  # a file that fails to load is only a warning: count them
    # what `--benchmark-compare` builds from each file: fullname -> benchmark
    mapping = {str(path): {bench["fullname"]: bench for bench in data["benchmarks"]}
               for path, data in loaded}
    for by_name in mapping.values():
        assert set(by_name) == {f"{SCENARIO}::precision=fp32", f"{SCENARIO}::precision=bf16"}
    flat = {(bench["source"], bench["fullname"]): bench["median"]
            for bench in storage.load_benchmarks(str(exported["run-a"]), str(exported["run-b"]))}
    assert flat[("run-a", f"{SCENARIO}::precision=fp32")] == pytest.approx(0.02)
    assert flat[("run-b", f"{SCENARIO}::precision=fp32")] == pytest.approx(0.022)


@pytest.mark.parametrize("rounds", range(1, 13))
def test_fallback_stats_equal_pytest_benchmark_stats(rounds):
    rng = random.Random(rounds)
    times = [rng.choice([0.01, 0.02]) if rounds % 3 == 0 else rng.lognormvariate(-4, 0.5)
             for _ in range(rounds)]  # ties on every third length
    stats = Stats()
    for seconds in times:
        stats.update(seconds)
    assert _stats_like_pytest_benchmark(times) == stats.as_dict()
    assert step_time_stats(times) == stats.as_dict()


def test_export_without_pytest_benchmark_installed(monkeypatch, tmp_path):
    trials = _build(tmp_path / "r.db").trials("run-a", with_series=True)
    installed = pytest_benchmark_json(trials)
    monkeypatch.setitem(sys.modules, "pytest_benchmark", None)  # import raises ImportError
    monkeypatch.setitem(sys.modules, "pytest_benchmark.stats", None)
    without = pytest_benchmark_json(trials)
    assert without["version"] == "5.1.0"
    assert {**without, "version": installed["version"]} == installed
