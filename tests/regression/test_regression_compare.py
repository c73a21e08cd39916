"""`harness compare`: the comparison frame (statuses, changes, tests) and the command (which
runs it resolves, its exit code, its markdown), on runs stored by hand with seeded step times."""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
import pytest
from regression_fixture_runs import TrialPlan, add_run, pair

from harness.errors import InputError
from harness.regression import compare_command
from harness.regression.arguments import add_compare_arguments
from harness.regression.compare import NO_TEST, compare_runs, regression_count
from harness.regression.environment import environment_differences
from harness.store import ResultStore, export_trials, open_results


def compare(capsys, *argv: object) -> tuple[int, str]:
    parser = argparse.ArgumentParser(prog="harness compare")
    add_compare_arguments(parser)
    code = compare_command.run(parser.parse_args([str(a) for a in argv]))
    return code, capsys.readouterr().out


def frame_of(store, **rules) -> pd.DataFrame:
    return compare_runs(store.trials("base", with_series=True),
                        store.trials("cand", with_series=True), **rules)


def status(frame: pd.DataFrame, trial: str, metric: str) -> str:
    rows = frame[(frame["trial"] == trial) & (frame["metric"] == metric)]
    assert len(rows) == 1, f"{trial}/{metric}: {len(rows)} rows"
    return rows["status"].iloc[0]


def slower(tmp_path: Path, factor: float, **plan) -> Path:
    """One trial, one repeat per run; the candidate's step times `factor` times longer."""
    db = tmp_path / "results.db"
    pair(db, [TrialPlan("bf16", step_mean_s=0.1, seed=1, **plan)],
         [TrialPlan("bf16", step_mean_s=0.1 * factor, seed=2, **plan)])
    return db


def test_a_ten_percent_throughput_drop_regresses_and_fails_the_gate(tmp_path, capsys):
    db = slower(tmp_path, 1.10)
    frame = frame_of(ResultStore(db))
    assert status(frame, "bf16", "tokens_per_s") == "regressed"
    assert status(frame, "bf16", "step_time_s") == "regressed"
    row = frame[frame["metric"] == "tokens_per_s"].iloc[0]
    assert row["change"] == pytest.approx(1 - 1 / 1.10, abs=0.015)  # positive = worse
    assert row["p_value"] < 1e-6 and row["high"] < 1.0  # 40 vs 40 step times: a clear call
    assert "40 vs 40 step times" in row["note"]
    assert status(frame, "bf16", "peak_memory_bytes") == "unchanged"
    code, out = compare(capsys, "base", "cand", "--results", db)
    assert code == 1
    assert out.startswith("2 regressions: baseline base vs candidate cand")


def test_a_one_percent_drop_within_the_noise_passes(tmp_path, capsys):
    db = slower(tmp_path, 1.01)
    code, out = compare(capsys, "base", "cand", "--results", db)
    assert code == 0
    assert out.startswith("no regressions")
    frame = frame_of(ResultStore(db))
    assert set(frame["status"]) == {"unchanged"}


def test_a_change_past_the_threshold_but_within_the_noise_is_unchanged(tmp_path, capsys):
    db = tmp_path / "results.db"  # CV 25%: a 10% median shift of 40 steps is not significant
    pair(db, [TrialPlan("bf16", step_mean_s=0.1, cv=0.25, seed=0)],
         [TrialPlan("bf16", step_mean_s=0.107, cv=0.25, seed=100)])
    row = frame_of(ResultStore(db)).set_index("metric").loc["step_time_s"]
    assert row["change"] > 0.10 and row["p_value"] > 0.05 and row["low"] < 1.0
    assert row["status"] == "unchanged"
    assert compare(capsys, "base", "cand", "--results", db)[0] == 0


def test_a_faster_candidate_is_improved_and_passes(tmp_path, capsys):
    db = slower(tmp_path, 0.90)
    frame = frame_of(ResultStore(db))
    assert status(frame, "bf16", "tokens_per_s") == "improved"
    assert compare(capsys, "base", "cand", "--results", db)[0] == 0


def test_a_threshold_override_moves_the_verdict_both_ways(tmp_path, capsys):
    three = slower(tmp_path / "three", 1.03)  # significant with 40 steps, under the default 5%
    assert compare(capsys, "base", "cand", "--results", three)[0] == 0
    code, out = compare(capsys, "base", "cand", "--results", three,
                        "--threshold", "tokens_per_s=0.02", "--threshold", "step_time_s=0.02")
    assert code == 1 and out.startswith("2 regressions")
    ten = slower(tmp_path / "ten", 1.10)
    assert compare(capsys, "base", "cand", "--results", ten, "--threshold", "tokens_per_s=0.15",
                   "--threshold", "step_time_s=0.15")[0] == 0


def test_peak_memory_of_one_repeat_counts_past_its_threshold_without_a_test(tmp_path, capsys):
    db = tmp_path / "results.db"
    pair(db, [TrialPlan("bf16", seed=1, peak_memory_bytes=10 * 2**30),
              TrialPlan("fp32", seed=3, peak_memory_bytes=10 * 2**30)],
         [TrialPlan("bf16", seed=1, peak_memory_bytes=12 * 2**30),  # +20%
          TrialPlan("fp32", seed=3, peak_memory_bytes=10.3 * 2**30)])  # +3%: under 5%
    frame = frame_of(ResultStore(db))
    memory = frame[frame["metric"] == "peak_memory_bytes"].set_index("trial")
    assert memory.loc["bf16", "status"] == "regressed"
    assert memory.loc["bf16", "change"] == pytest.approx(0.20)
    assert memory.loc["bf16", "note"] == NO_TEST and not memory.loc["bf16", "tested"]
    assert memory.loc["fp32", "status"] == "unchanged"
    # the same step times on both sides: only the memory row regresses
    text = tmp_path / "compare.txt"
    code, out = compare(capsys, "base", "cand", "--results", db, "--metric", "peak_memory_bytes",
                        "--out", text)
    assert code == 1 and out.startswith("1 regression:")
    assert "one value per side" in out
    assert "step_time_s" not in out  # --metric restricts the rows
    assert text.read_text().splitlines()[0] == out.splitlines()[0]  # the table, as plain text


def test_ok_in_the_baseline_and_failed_now_is_a_regression(tmp_path, capsys):
    db = tmp_path / "results.db"
    pair(db, [TrialPlan("bf16", seed=1), TrialPlan("fp8", seed=2), TrialPlan("fp16", seed=3)],
         [TrialPlan("bf16", seed=1), TrialPlan("fp8", status="oom", reason="CUDA out of memory"),
          TrialPlan("fp16", status="skipped", reason="needs sm_89")])
    frame = frame_of(ResultStore(db))
    assert frame.iloc[0]["status"] == "failed-now"  # what broke comes first
    assert status(frame, "fp8", "status") == "failed-now"
    assert "oom (CUDA out of memory)" in frame.iloc[0]["note"]
    assert status(frame, "fp16", "status") == "missing"  # skipped is not a failure
    assert regression_count(frame) == 1
    code, out = compare(capsys, "base", "cand", "--results", db)
    assert code == 1 and "failed-now" in out


def test_repeats_pool_under_the_combination_and_keys_of_one_run_are_listed_apart(tmp_path):
    db = tmp_path / "results.db"
    base = [TrialPlan("bf16", step_mean_s=0.1 + 0.001 * r, repeat=r, seed=r) for r in range(3)]
    cand = [TrialPlan("bf16", step_mean_s=0.12 + 0.001 * r, repeat=r, seed=r) for r in range(3)]
    pair(db, [*base, TrialPlan("fp32", seed=9)], [*cand, TrialPlan("fp8", seed=9)])
    frame = frame_of(ResultStore(db))
    throughput = frame[(frame["trial"] == "bf16") & (frame["metric"] == "step_time_s")].iloc[0]
    assert throughput["note"] == "bootstrap over 3 vs 3 repeats"
    assert throughput["baseline"] == pytest.approx(0.101, rel=0.01)
    assert throughput["status"] == "regressed"  # every candidate repeat slower: interval > 1
    assert frame.set_index("trial").loc["fp32", "status"] == "removed"
    assert frame.set_index("trial").loc["fp8", "status"] == "new"


def test_markdown_names_both_runs_and_counts_and_marks_regressions(tmp_path, capsys):
    db = slower(tmp_path, 1.10)
    summary = tmp_path / "summary" / "compare.md"
    code, out = compare(capsys, "base", "cand", "--results", db, "--format", "markdown",
                        "--out", summary)
    assert code == 1
    first = out.splitlines()[0]
    assert first == "### 2 regressions: baseline base vs candidate cand"
    assert "commit 0123456789" in out and "NVIDIA H100 80GB HBM3" in out
    assert out.count("**REGRESSED**") == 2
    assert "| bf16 " in out and "tokens\\_per\\_s" not in out  # inside a word: not escaped
    assert summary.read_text() == out


def test_markdown_says_when_the_environments_differ(tmp_path, capsys):
    db = tmp_path / "results.db"
    pair(db, [TrialPlan("bf16", seed=1)], [TrialPlan("bf16", seed=1)],
         candidate_env={"driver": "560.28", "libraries": {"torch": "2.6.0"}})
    code, out = compare(capsys, "base", "cand", "--results", db, "--format", "markdown")
    assert code == 0
    assert "driver 550.54 → 560.28" in out and "torch 2.5.0 → 2.6.0" in out
    assert "a driver or torch upgrade often explains a step" in out
    assert environment_differences({"git_commit": "a" * 40}, {"git_commit": "a" * 40}) == []


def test_a_run_against_its_own_json_export_is_all_unchanged(tmp_path, capsys):
    db = tmp_path / "results.db"
    store = add_run(db, "base", [TrialPlan("bf16", seed=1), TrialPlan("fp32", seed=2,
                                                                      peak_memory_bytes=None)])
    export = tmp_path / "base.json"
    export_trials(store.trials("base", with_series=True), "json", export)
    code, out = compare(capsys, "base", export, "--results", db, "--format", "markdown")
    assert code == 0 and out.startswith("### no regressions")
    frame = compare_runs(store.trials("base", with_series=True),
                         open_results(export).trials(
                             "base", with_series=True))
    assert set(frame["status"]) == {"unchanged"}
    assert frame["ratio"].tolist() == pytest.approx([1.0] * len(frame))


def test_no_arguments_compare_the_latest_run_of_a_scenario_with_the_one_before(tmp_path, capsys):
    db = tmp_path / "results.db"
    add_run(db, "night-1", [TrialPlan("bf16", seed=1)], started_at="2026-01-01T00:00:00+00:00")
    add_run(db, "night-2", [TrialPlan("bf16", step_mean_s=0.11, seed=2)],
            started_at="2026-01-02T00:00:00+00:00")
    add_run(db, "other", [TrialPlan("bf16", seed=3)], scenario="weekly",
            started_at="2026-01-03T00:00:00+00:00")
    code, out = compare(capsys, "--results", db, "--scenario", "nightly")
    assert code == 1
    assert out.startswith("2 regressions: baseline night-1 vs candidate night-2")
    # one positional: that baseline against the latest run of its scenario
    code, out = compare(capsys, "night-1", "--results", db)
    assert out.startswith("2 regressions: baseline night-1 vs candidate night-2")
    with pytest.raises(InputError, match="scenario 'weekly' has 1 run here"):
        compare(capsys, "--results", db)  # the latest run is weekly's only one


def test_a_path_wins_and_takes_its_latest_run_of_the_scenario(tmp_path, capsys):
    before, after = tmp_path / "before.db", tmp_path / "after.db"
    add_run(before, "a", [TrialPlan("bf16", seed=1)])
    add_run(after, "b", [TrialPlan("bf16", step_mean_s=0.2, seed=1)], scenario="weekly")
    add_run(after, "c", [TrialPlan("bf16", seed=2)], started_at="2026-01-01T00:00:00+00:00")
    code, out = compare(capsys, before, after, "--scenario", "nightly",
                        "--results", tmp_path / "absent.db")
    assert code == 0 and out.startswith("no regressions: baseline a vs candidate c")


def test_bad_input_is_one_line_errors(tmp_path, capsys):
    db = slower(tmp_path, 1.0)
    with pytest.raises(InputError, match="'cnad' is neither an existing path nor a run id in "
                                         r".*results.db \(did you mean 'cand'\?\)"):
        compare(capsys, "base", "cnad", "--results", db)
    with pytest.raises(InputError, match=r"--metric: no rule for metric 'tokens_per_sec' "
                                         r"\(did you mean 'tokens_per_s'\?\)"):
        compare(capsys, "base", "cand", "--results", db, "--metric", "tokens_per_sec")
    with pytest.raises(InputError, match="--threshold: expected METRIC=FRACTION"):
        compare(capsys, "base", "cand", "--results", db, "--threshold", "0.03")
    with pytest.raises(InputError, match="no results database at"):
        compare(capsys, "base", "cand", "--results", tmp_path / "absent.db")
    other = tmp_path / "other.db"
    add_run(other, "x", [TrialPlan("fp64", seed=1)])
    with pytest.raises(InputError, match="no trial in common"):
        compare(capsys, "base", other, "--results", db)


def test_the_command_line_gates_on_compare_and_history(tmp_path, capsys):
    from harness.cli import main

    db = slower(tmp_path, 1.10)
    assert main(["compare", "base", "cand", "--results", str(db)]) == 1
    # one bad night after one good one: suspect under the K=2 policy, not yet a regression
    assert main(["history", "--results", str(db), "--scenario", "nightly"]) == 0
    assert "suspect" in capsys.readouterr().out
