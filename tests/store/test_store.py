"""The results database keeps every trial self-describing, commits each one at once, and
exports the shape DESIGN.md promises."""

from __future__ import annotations

import json
import sqlite3

import pandas as pd
import pytest

from harness import SCHEMA_VERSION
from harness.spec import TrialResult, TrialSpec
from harness.store import ResultStore, export_trials

ENV = {"device": "cpu", "device_name": "test cpu", "harness_version": "0.1.0",
       "git_commit": "abc123", "git_dirty": True}


def _spec(trial_id: str, precision: str) -> TrialSpec:
    return TrialSpec(scenario="demo", trial_id=trial_id, name=f"precision={precision}",
                     params={"precision": precision, "repeat": 0}, model={"arch": "gpt"},
                     data={"kind": "synthetic"}, train={"steps": 3}, techniques={"precision": precision},
                     device="cpu", timeout_s=60)


@pytest.fixture
def store(tmp_path):
    store = ResultStore(tmp_path / "results.db")
    store.create_run("run-1", scenario="demo", description="d", scenario_path="demo.yaml",
                     scenario_hash="h", overrides=[], device="cpu",
                     baseline={"precision": "fp32"}, planned_trials=2, env=ENV)
    store.save_trial("run-1", 0, _spec("t1", "fp32"), TrialResult(
        "t1", "ok", metrics={"tokens_per_s": 100.0}, unmeasured={"energy_j": "no NVML device"},
        series={"loss": [5.0, 4.0, float("nan")]}, notes={"loss_floor": 2.0}), ENV, "h")
    store.save_trial("run-1", 1, _spec("t2", "tf32"),
                     TrialResult("t2", "skipped", reason="needs CUDA"), ENV, "h")
    return store


def test_a_saved_trial_is_committed_and_visible_to_another_connection(store):
    with sqlite3.connect(store.path) as other:
        assert other.execute("SELECT COUNT(*) FROM trials").fetchone()[0] == 2


def test_trials_round_trip_with_provenance(store):
    first, second = store.trials("run-1")
    assert first["metrics"] == {"tokens_per_s": 100.0}
    assert first["unmeasured"] == {"energy_j": "no NVML device"}
    assert first["spec"]["techniques"] == {"precision": "fp32"}
    assert (first["git_commit"], first["git_dirty"], first["scenario_hash"]) == ("abc123", True, "h")
    assert first["schema_version"] == SCHEMA_VERSION
    assert (second["status"], second["reason"]) == ("skipped", "needs CUDA")
    assert store.trial_ids("run-1") == {"t1", "t2"}
    assert store.run().baseline == {"precision": "fp32"}


def test_a_nan_point_of_a_series_is_stored_as_null(store):
    assert store.series("run-1") == [("t1", "loss", 0, 5.0), ("t1", "loss", 1, 4.0), ("t1", "loss", 2, None)]


def test_json_export_has_the_documented_shape(store, tmp_path):
    out = tmp_path / "export.json"
    export_trials(store.trials("run-1"), "json", out)
    trials = json.loads(out.read_text())
    assert len(trials) == 2
    documented = {"schema_version", "run_id", "scenario", "trial_id", "params", "status", "reason",
                  "metrics", "unmeasured", "spec", "env"}
    assert documented <= set(trials[0])
    assert trials[0]["params"] == {"precision": "fp32", "repeat": 0}
    assert "energy_j" not in trials[0]["metrics"]  # unmeasured is never written as 0


def test_csv_and_parquet_exports_are_one_flat_row_per_trial(store, tmp_path):
    csv_text = export_trials(store.trials("run-1"), "csv", None)
    frame = pd.read_csv(pd.io.common.StringIO(csv_text))
    assert list(frame["trial_id"]) == ["t1", "t2"]
    assert frame.loc[0, "tokens_per_s"] == 100.0 and pd.isna(frame.loc[1, "tokens_per_s"])
    assert list(frame["params.precision"]) == ["fp32", "tf32"]
    pytest.importorskip("pyarrow")
    export_trials(store.trials("run-1"), "parquet", tmp_path / "t.parquet")
    parquet = pd.read_parquet(tmp_path / "t.parquet")
    assert list(parquet["trial_id"]) == ["t1", "t2"]
    assert parquet.loc[0, "tokens_per_s"] == 100.0 and pd.isna(parquet.loc[1, "tokens_per_s"])
