"""The compute and memory-breakdown tables: figures in the reader's units, the sum of the
parts beside the peak, a dash (never 0) where a part was not measured."""

from __future__ import annotations

import math

import pandas as pd

from harness.report.tables import compute_table, memory_breakdown_table


def _frame():
    return pd.DataFrame([
        {"name": "a", "status": "ok", "is_baseline": True, "micro_batch": 8, "grad_accum": 2,
         "ranks": 2, "flops_per_token": 8.5e8,
         "hardware_flops_per_token": 1.1e9, "achieved_tflops": 412.7, "mfu": 0.4171, "hfu": 0.55,
         "parameter_bytes": 2**20, "gradient_bytes": 2**20, "optimizer_state_bytes": 2**21,
         "activation_bytes": 4 * 2**20, "peak_memory_bytes": 10 * 2**20},
        {"name": "b", "status": "skipped", "is_baseline": False, "micro_batch": math.nan,
         "grad_accum": 1, "ranks": 1, "flops_per_token": math.nan,
         "hardware_flops_per_token": math.nan, "achieved_tflops": math.nan, "mfu": math.nan,
         "hfu": math.nan, "parameter_bytes": math.nan, "gradient_bytes": math.nan,
         "optimizer_state_bytes": math.nan, "activation_bytes": math.nan,
         "peak_memory_bytes": math.nan},
    ])


def test_compute_table_in_gflop_and_percent():
    table = compute_table(_frame())
    assert table.headers[:7] == ["trial", "global batch (micro x accum x ranks)", "model GFLOP/token",
                                 "hardware GFLOP/token", "achieved TFLOP/s", "MFU", "HFU"]
    assert table.rows[0] == ["a", "32 (8 x 2 x 2)", "0.85", "1.1", "413", "41.7%", "55.0%"]
    assert table.rows[1][1:] == ["—"] * 6
    assert "fp16 skipped steps" not in table.headers  # no trial used the loss scaler


def test_compute_table_adds_loss_scaler_columns_when_a_trial_has_them():
    frame = _frame().assign(skipped_steps=[3.0, math.nan], loss_scale=[32768.0, math.nan])
    table = compute_table(frame)
    assert table.headers[-2:] == ["fp16 skipped steps", "final loss scale"]
    assert table.rows[0][-2:] == ["3", "32,768"]


def test_memory_breakdown_sums_the_parts_beside_the_peak():
    table = memory_breakdown_table(_frame(), "peak_memory_bytes")
    assert table.headers == ["trial", "parameters", "gradients", "optimizer state", "activations",
                             "sum", "peak device memory"]
    assert table.rows[0] == ["a", "1.0 MiB", "1.0 MiB", "2.0 MiB", "4.0 MiB", "8.0 MiB", "10.0 MiB"]
    assert table.rows[1][1:] == ["—"] * 6


def test_scaling_frame_gives_strong_scaling_efficiency_per_strategy():
    from harness.analysis import scaling_frame

    frame = pd.DataFrame([
        {"trial_id": f"t{i}", "name": n, "status": "ok", "params.parallel": p,
         "params.world_size": w, "micro_batch": 32 // w, "grad_accum": 1, "ranks": w,
         "tokens_per_s": tps}
        for i, (n, p, w, tps) in enumerate([("a", "ddp", 1, 100.0), ("b", "ddp", 2, 150.0),
                                            ("c", "fsdp", 1, 90.0), ("d", "fsdp", 2, 180.0)])])
    scaling = scaling_frame(frame)
    by = {(r["params.parallel"], r["ranks"]): r for r in scaling.to_dict("records")}
    assert by[("ddp", 2)]["tokens_per_s_per_device"] == 75.0
    assert by[("ddp", 2)]["efficiency"] == 0.75 and by[("fsdp", 2)]["efficiency"] == 1.0
    assert set(scaling["kind"]) == {"strong"}  # the global batch (32) is held
    assert scaling_frame(frame.drop(columns=["params.world_size"])) is None  # nothing swept


def test_energy_section_names_the_method_and_warns_of_throttling(tmp_path):
    from harness.report import write_report
    from harness.spec import TrialResult, TrialSpec
    from harness.store import ResultStore

    store = ResultStore(tmp_path / "r.db")
    env = {"device": "cuda", "device_name": "NVIDIA H100 80GB HBM3"}
    store.create_run("run", scenario="energy", description="", scenario_path="s.yaml",
                     scenario_hash="h", overrides=[], device="cuda", baseline=None,
                     planned_trials=2, env=env)
    for index, (name, throttled) in enumerate([("cool", False), ("hot", True)]):
        spec = TrialSpec(scenario="energy", trial_id=name, name=name, params={"repeat": 0},
                         model={}, data={}, train={"micro_batch_size": 8}, techniques={},
                         device="cuda", timeout_s=60)
        notes = {"energy_method": "nvml-energy-counter", "gpu_throttled": throttled,
                 "gpu_throttle_reasons": {"thermal": 0.4} if throttled else {},
                 "gpu_foreign_processes": []}
        store.save_trial("run", index, spec, TrialResult(
            name, "ok", metrics={"tokens_per_s": 1000.0, "energy_j": 1500.0,
                                 "energy_per_token_j": 0.015, "avg_power_w": 300.0},
            notes=notes, series={"power_t_s": [0.0, 1.0, 2.0], "power_w": [290.0, 310.0, 300.0]}),
            env, "h")
    html, markdown = write_report(store, "run", tmp_path / "out")
    text = markdown.read_text()
    assert "## Energy" in text and "nvml-energy-counter" in text and "1,500 J" in text
    assert "WARNING: hot: the GPU throttled during the measured window (thermal)" in text
    assert "WARNING: cool" not in text
    assert (tmp_path / "out" / "power.png").exists()
