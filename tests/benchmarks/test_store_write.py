"""What storing one trial costs the sweep: `ResultStore.save_trial` of a trial with a 1000-point
series, into a fresh database each round.

    pytest tests/benchmarks/test_store_write.py --benchmark-enable     # times it, prints the table

The runner saves every trial the moment it ends, in its own connection and transaction (a
killed sweep loses at most the running trial), so the time includes opening the connection and
the commit; creating the database and the run row is set-up, not timed. With benchmarks
disabled (the default test run) one save runs; in either mode every saved trial is read back
and must equal what was written: timings are never a pass/fail test here.
"""

from __future__ import annotations

import itertools
from pathlib import Path

from harness.spec import TrialResult, TrialSpec
from harness.store import ResultStore

RUN_ID = "bench-store-write"
POINTS = 1000
ENV = {"device": "cpu", "host": "bench", "harness_version": "0.1.0", "git_commit": "abc",
       "git_dirty": False}
SPEC = TrialSpec(scenario="store-write", trial_id="t-write", name="precision=bf16 #0",
                 params={"precision": "bf16", "repeat": 0}, model={"arch": "gpt", "d_model": 32},
                 data={"kind": "synthetic"}, train={"steps": POINTS, "warmup_steps": 0},
                 techniques={"precision": "bf16"}, device="cpu", timeout_s=60.0)
RESULT = TrialResult(
    "t-write", "ok",
    metrics={"tokens_per_s": 12345.5, "step_time_s": 0.0123, "peak_rss_bytes": 3.5e8,
             "final_loss": 1.25},
    unmeasured={"mfu": "no peak FLOP/s table for this device yet"},
    series={"loss": [4.0 * 0.999**step for step in range(POINTS)]},
    notes={"parameters": 1234})


def test_save_trial_with_a_1000_point_series(benchmark, tmp_path: Path):
    stores: list[ResultStore] = []
    numbers = itertools.count()

    def fresh_store():
        store = ResultStore(tmp_path / f"round-{next(numbers)}.db")
        store.create_run(RUN_ID, scenario="store-write", description="", scenario_path="s.yaml",
                         scenario_hash="abc", overrides=[], device="cpu", baseline=None,
                         planned_trials=1, env=ENV)
        stores.append(store)
        return (store, RUN_ID, 0, SPEC, RESULT, ENV, "abc"), {}

    benchmark.extra_info.update({"series_points": POINTS})
    benchmark.pedantic(ResultStore.save_trial, setup=fresh_store, rounds=30, warmup_rounds=2)

    assert len(stores) == (1 if benchmark.disabled else 2 + 30)  # warm-up rounds save too
    for store in stores:
        (trial,) = store.trials(RUN_ID, with_series=True)
        assert (trial["trial_id"], trial["name"], trial["status"]) == ("t-write", SPEC.name, "ok")
        assert trial["params"] == SPEC.params
        assert trial["metrics"] == RESULT.metrics
        assert trial["unmeasured"] == RESULT.unmeasured
        assert len(trial["series"]["loss"]) == POINTS
        assert trial["series"]["loss"] == RESULT.series["loss"]  # REAL round-trips a double exactly
