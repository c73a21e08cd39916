"""A GPU run: the memory column and ratio use the device allocator's peak, labelled so."""

from __future__ import annotations

from report_fixture_store import ENV, spec

from harness.report.content import build_content
from harness.spec import TrialResult
from harness.store import ResultStore


def test_device_memory_is_the_memory_column_of_a_gpu_run(tmp_path):
    store = ResultStore(tmp_path / "gpu.db")
    env = {**ENV, "device": "cuda", "device_name": "NVIDIA H100", "device_count": 1,
           "device_memory_bytes": 80 * 2**30}
    store.create_run("gpu", scenario="gpu", description="", scenario_path="", scenario_hash="h",
                     overrides=[], device="cuda", baseline={"precision": "fp32", "checkpointing": "none"},
                     planned_trials=2, env=env)
    for position, (precision, peak) in enumerate((("fp32", 4 * 2**30), ("bf16", 3 * 2**30))):
        trial_spec = spec(precision, "none", 0)
        result = TrialResult(trial_spec.trial_id, "ok", metrics={
            "tokens_per_s": 1e6, "peak_memory_bytes": float(peak), "peak_rss_bytes": 2.0 * 2**30})
        store.save_trial("gpu", position, trial_spec, result, env, "h")
    content = build_content(store, "gpu")
    headers = content.trials.headers
    assert "peak device memory" in headers and "peak host RSS" not in headers
    rows = [dict(zip(headers, row)) for row in content.trials.rows]
    assert [r["peak device memory"] for r in rows] == ["4.00 GiB", "3.00 GiB"]
    assert [r["memory vs baseline"] for r in rows] == ["1.00×", "0.75×"]
    assert dict(content.facts)["device"] == "1 × NVIDIA H100 (cuda)"
    assert dict(content.environment.rows)["device_memory_bytes"] == "80.00 GiB"
