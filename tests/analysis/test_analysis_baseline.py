"""trial_frame and compare_to_baseline on hand-made trials: medians, ratios, NaN where due."""

from __future__ import annotations

import math

import pytest

from harness.analysis import (
    RATIO_COLUMNS,
    compare_to_baseline,
    memory_metric,
    ratios_to_baseline,
    trial_frame,
)


def trial(precision: str, repeat: int, status: str = "ok", **metrics: float) -> dict:
    name = f"precision={precision}" + (f" #{repeat}" if repeat is not None else "")
    return {"trial_id": f"t-{precision}-{repeat}", "name": name, "status": status,
            "reason": None if status == "ok" else "why",
            "params": {"precision": precision, "repeat": repeat}, "metrics": metrics}


BASE = {"precision": "fp32"}


def repeated_trials() -> list[dict]:
    return [
        trial("fp32", 0, tokens_per_s=90.0, step_time_s=0.4, peak_rss_bytes=100.0, activation_bytes=10.0),
        trial("fp32", 1, tokens_per_s=100.0, step_time_s=0.3, peak_rss_bytes=100.0, activation_bytes=10.0),
        trial("fp32", 2, tokens_per_s=130.0, step_time_s=0.2, peak_rss_bytes=100.0, activation_bytes=10.0),
        trial("bf16", 0, tokens_per_s=150.0, step_time_s=0.2, peak_rss_bytes=80.0, activation_bytes=5.0),
        trial("bf16", 1, tokens_per_s=1e9, status="failed"),  # a failed repeat never counts
        trial("bf16", 2, tokens_per_s=150.0, step_time_s=0.2, peak_rss_bytes=80.0),
        trial("fp8", 0, status="skipped"),
    ]


def test_trial_frame_has_one_row_per_trial_and_clean_columns():
    frame = trial_frame(repeated_trials())
    assert len(frame) == 7
    assert list(frame.columns[:7]) == ["trial_id", "name", "status", "reason", "repeat", "busy",
                                       "params.precision"]
    assert frame["repeat"].tolist() == [0, 1, 2, 0, 1, 2, 0]
    # every metric of DESIGN has a column, NaN where a trial did not measure it (never 0)
    assert math.isnan(frame.loc[6, "tokens_per_s"]) and math.isnan(frame.loc[0, "peak_memory_bytes"])
    assert "energy_j" in frame and frame["energy_j"].isna().all()


def test_median_over_ok_repeats_and_speedup():
    combos = compare_to_baseline(trial_frame(repeated_trials()), BASE)
    assert combos["combination"].tolist() == ["precision=fp32", "precision=bf16", "precision=fp8"]
    assert combos["repeats"].tolist() == [3, 3, 1]
    assert combos["ok_repeats"].tolist() == [3, 2, 0]
    assert combos["is_baseline"].tolist() == [True, False, False]
    assert combos.loc[0, "tokens_per_s"] == 100.0  # median of 90, 100, 130
    assert combos.loc[1, "speedup"] == pytest.approx(1.5)
    assert combos.loc[1, "step_time_ratio"] == pytest.approx(0.2 / 0.3)
    assert combos.loc[1, "memory_ratio"] == pytest.approx(0.8)
    assert combos.loc[1, "activation_ratio"] == pytest.approx(0.5)  # from the one repeat measuring it
    assert combos.loc[0, RATIO_COLUMNS].tolist() == [1.0, 1.0, 1.0, 1.0]


def test_no_value_on_either_side_gives_nan_not_a_number():
    combos = compare_to_baseline(trial_frame(repeated_trials()), BASE)
    assert combos.loc[2, RATIO_COLUMNS].isna().all()  # skipped: nothing measured


def test_a_baseline_that_never_finished_gives_no_ratios():
    trials = [trial("fp32", 0, status="failed"), trial("bf16", 0, tokens_per_s=150.0)]
    combos = compare_to_baseline(trial_frame(trials), BASE)
    assert combos["speedup"].isna().all()
    assert combos["is_baseline"].tolist() == [True, False]


def test_no_baseline_means_no_ratio_columns():
    frame = trial_frame(repeated_trials())
    combos = compare_to_baseline(frame, None)
    assert not set(RATIO_COLUMNS) & set(combos.columns)
    assert not combos["is_baseline"].any()
    assert not set(RATIO_COLUMNS) & set(ratios_to_baseline(frame, None).columns)


def test_per_trial_ratios_divide_by_the_baseline_median():
    out = ratios_to_baseline(trial_frame(repeated_trials()), BASE)
    assert out["speedup"].tolist()[:4] == pytest.approx([0.9, 1.0, 1.3, 1.5])
    assert math.isnan(out.loc[4, "speedup"])  # a failed trial gets no ratio, whatever it stored
    assert out["is_baseline"].tolist() == [True, True, True, False, False, False, False]


def test_memory_ratio_prefers_device_memory_when_the_run_has_it():
    trials = [trial("fp32", 0, tokens_per_s=1.0, peak_memory_bytes=200.0, peak_rss_bytes=10.0),
              trial("bf16", 0, tokens_per_s=1.0, peak_memory_bytes=100.0, peak_rss_bytes=10.0)]
    frame = trial_frame(trials)
    assert memory_metric(frame) == "peak_memory_bytes"
    assert compare_to_baseline(frame, BASE)["memory_ratio"].tolist() == [1.0, 0.5]
    cpu = trial_frame(repeated_trials())
    assert memory_metric(cpu) == "peak_rss_bytes"


def test_a_scenario_without_axes_is_one_combination():
    trials = [{"trial_id": f"t{r}", "name": f"default #{r}", "status": "ok", "reason": None,
               "params": {"repeat": r}, "metrics": {"tokens_per_s": float(10 * (r + 1))}}
              for r in range(3)]
    combos = compare_to_baseline(trial_frame(trials), {})
    assert combos["combination"].tolist() == ["default"]
    assert combos["repeats"].tolist() == [3] and combos["speedup"].tolist() == [1.0]


def test_timed_figures_of_busy_trials_are_left_out_of_medians_and_ratios():
    busy = [{"code": "machine-busy", "message": "load 7"}]
    trials = repeated_trials()
    trials[2]["warnings"] = busy  # fp32 #2, the fastest baseline repeat: 130 tokens/s
    trials[5]["warnings"] = busy  # bf16 #2
    frame = trial_frame(trials)
    assert frame["busy"].tolist() == [False, False, True, False, False, True, False]
    combos = compare_to_baseline(frame, BASE).set_index("combination")
    assert combos.loc["precision=fp32", "tokens_per_s"] == pytest.approx(95.0)  # 90 and 100
    assert combos.loc["precision=bf16", "busy_repeats"] == 1
    assert combos.loc["precision=bf16", "speedup"] == pytest.approx(150.0 / 95.0)
    # counted figures do not depend on the load: the busy repeats keep theirs
    assert combos.loc["precision=fp32", "activation_bytes"] == 10.0
    per_trial = ratios_to_baseline(frame, BASE).set_index("name")
    assert math.isnan(per_trial.loc["precision=bf16 #2", "speedup"])
    assert per_trial.loc["precision=bf16 #0", "speedup"] == pytest.approx(150.0 / 95.0)
    only_busy = trial_frame([dict(t, warnings=busy) for t in trials])
    fp32 = compare_to_baseline(only_busy, BASE).set_index("combination").loc["precision=fp32"]
    assert math.isnan(fp32["tokens_per_s"]) and fp32["busy_repeats"] == 3 and fp32["ok_repeats"] == 3
