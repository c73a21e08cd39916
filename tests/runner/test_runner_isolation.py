"""Each trial runs in its own worker: a failure of any kind becomes that trial's status while
the sweep goes on, and every trial is committed to the store."""

from __future__ import annotations

import pytest

from harness.runner import run_scenario
from harness.scenario import load_scenario
from harness.store import ResultStore

pytestmark = pytest.mark.slow


def test_every_failure_becomes_a_status_and_the_sweep_goes_on(write_scenario, faulty, tmp_path):
    archs = {
        "raises": "failed", "goes_nan": "diverged", "out_of_memory": "oom",
        "cpu_out_of_memory": "oom", "hangs": "timeout", "killed": "failed",
    }
    path = write_scenario("faults", timeout_s=12,
                          matrix={"model.arch": [faulty(a) for a in archs] + ["gpt"]})
    store = ResultStore(tmp_path / "results.db")

    summary = run_scenario(load_scenario(path), store, "cpu")

    trials = store.trials(summary.run_id)
    by_arch = {t["params"]["model.arch"].rpartition(":")[2]: t for t in trials}
    assert {arch: by_arch[arch]["status"] for arch in archs} == archs
    assert by_arch["gpt"]["status"] == "ok"  # the last trial still ran after six failures
    assert "injected failure in forward" in by_arch["raises"]["reason"]
    assert "RuntimeError" in by_arch["raises"]["traceback"]
    assert "SIGKILL" in by_arch["killed"]["reason"]
    assert "12 s" in by_arch["hangs"]["reason"]
    assert "out of memory" in by_arch["out_of_memory"]["reason"]
    assert "DefaultCPUAllocator: can't allocate memory" in by_arch["cpu_out_of_memory"]["reason"]
    for trial in trials:  # a worker that never wrote a result (timed out, killed) has its times too
        assert trial["started_at"] and trial["finished_at"] >= trial["started_at"], trial["name"]
    # diverged at the 3rd forward (step index 2): the loss history ends with the NaN
    losses = [value for (trial, name, _, value) in store.series(summary.run_id)
              if name == "loss" and trial == by_arch["goes_nan"]["trial_id"]]
    assert len(losses) == 3 and losses[-1] is None
    assert summary.statuses == {"failed": 2, "diverged": 1, "oom": 2, "timeout": 1, "ok": 1}
    assert summary.exit_code == 0


def test_a_run_where_no_trial_succeeds_exits_1(write_scenario, faulty, tmp_path):
    path = write_scenario("all-fail", model={"arch": faulty("raises")})
    summary = run_scenario(load_scenario(path), ResultStore(tmp_path / "r.db"), "cpu")
    assert summary.statuses == {"failed": 1}
    assert summary.exit_code == 1


def test_a_combination_the_device_cannot_run_is_skipped_with_its_reason(write_scenario, tmp_path):
    path = write_scenario("skips", matrix={"precision": ["tf32", "fp32"]})
    store = ResultStore(tmp_path / "r.db")
    summary = run_scenario(load_scenario(path), store, "cpu")
    trials = {t["params"]["precision"]: t for t in store.trials(summary.run_id)}
    assert trials["tf32"]["status"] == "skipped"
    assert "CUDA" in trials["tf32"]["reason"]
    assert trials["fp32"]["status"] == "ok"
    assert summary.ran == 1
