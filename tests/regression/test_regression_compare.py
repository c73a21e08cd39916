"""`harness compare`: the comparison frame (statuses, changes, tests) and the command (which
runs it resolves, its exit code, its markdown), on runs stored by hand with seeded step times."""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
import pytest
from regression_fixture_runs import TrialPlan, add_run, pair, repeats

from harness.errors import InputError
from harness.regression import compare_command
from harness.regression.arguments import add_compare_arguments
from harness.analysis.noise import noise_for_run
from harness.analysis.stats import DRIFT_UNKNOWN
from harness.regression.compare import compare_runs, regression_count
from harness.regression.rules import DEFAULT_RULES
from harness.regression.environment import environment_differences
from harness.store import ResultStore, export_trials, open_results


def compare(capsys, *argv: object) -> tuple[int, str]:
    parser = argparse.ArgumentParser(prog="harness compare")
    add_compare_arguments(parser)
    code = compare_command.run(parser.parse_args([str(a) for a in argv]))
    return code, capsys.readouterr().out


def frame_of(store, **options) -> pd.DataFrame:
    """The comparison `harness compare base cand` makes: with the run noise of the earlier runs."""
    options.setdefault("noise", noise_for_run(store, store.run("cand"), list(DEFAULT_RULES),
                                              exclude={"base"}, between_runs=True))
    return compare_runs(store.trials("base", with_series=True),
                        store.trials("cand", with_series=True), **options)


def status(frame: pd.DataFrame, trial: str, metric: str) -> str:
    rows = frame[(frame["trial"] == trial) & (frame["metric"] == metric)]
    assert len(rows) == 1, f"{trial}/{metric}: {len(rows)} rows"
    return rows["status"].iloc[0]


def slower(tmp_path: Path, factor: float, count: int = 5, run_cv: float = 0.02,
           drift_cv: float = 0.01, earlier: int = 6, **plan) -> Path:
    """One combination of `count` repeats per run, after `earlier` runs drifting by `drift_cv`;
    the candidate's steps `factor` times longer."""
    db = tmp_path / "results.db"
    pair(db, repeats("bf16", count, step_mean_s=0.1, run_cv=run_cv, seed=1, **plan),
         repeats("bf16", count, step_mean_s=0.1 * factor, run_cv=run_cv, seed=2, **plan),
         earlier=earlier, drift_cv=drift_cv)
    return db


def test_a_ten_percent_throughput_drop_regresses_and_fails_the_gate(tmp_path, capsys):
    db = slower(tmp_path, 1.10)
    frame = frame_of(ResultStore(db))
    assert status(frame, "bf16", "tokens_per_s") == "regressed"
    assert status(frame, "bf16", "step_time_s") == "regressed"
    row = frame[frame["metric"] == "tokens_per_s"].iloc[0]
    assert row["change"] == pytest.approx(1 - 1 / 1.10, abs=0.03)  # positive = worse
    assert row["p_value"] < 0.05 and row["high"] < 1.0
    assert row["note"].startswith("one run a side (5 vs 5 repeats), against how a run's "
                                  "figure varies over 6 earlier runs of nightly on this machine")
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
    db = slower(tmp_path, 1.08, drift_cv=0.10)  # runs drift by 10%: an 8% shift is noise
    row = frame_of(ResultStore(db)).set_index("metric").loc["step_time_s"]
    assert row["p_value"] > 0.05 and row["low"] < 1.0 < row["high"]
    assert row["status"] == "unchanged"
    assert compare(capsys, "base", "cand", "--results", db)[0] == 0


def test_without_earlier_runs_two_runs_are_not_tested_however_many_repeats(tmp_path, capsys):
    db = slower(tmp_path, 1.10, earlier=0)  # 5 vs 5 repeats, 10% apart: the drift is unknown
    row = frame_of(ResultStore(db)).set_index("metric").loc["tokens_per_s"]
    assert (row["status"], row["note"], bool(row["tested"])) == ("inconclusive", DRIFT_UNKNOWN, False)
    code, out = compare(capsys, "base", "cand", "--results", db)
    assert code == 0 and out.startswith("no regressions (2 inconclusive)")


def test_per_step_times_never_make_one_run_per_side_a_regression(tmp_path):
    db = slower(tmp_path, 1.10, count=1, earlier=0)  # 40 steps a side, 10% apart
    row = frame_of(ResultStore(db)).set_index("metric").loc["tokens_per_s"]
    assert (row["status"], bool(row["tested"])) == ("inconclusive", False)


def test_earlier_runs_give_even_one_repeat_per_run_a_test(tmp_path, capsys):
    db = tmp_path / "results.db"
    for night, plan in enumerate(repeats("bf16", 4, run_cv=0.02, seed=7)):
        add_run(db, f"night-{night}", [TrialPlan("bf16", step_mean_s=plan.step_mean_s, seed=night)],
                started_at=f"2026-01-0{night + 1}T00:00:00+00:00")
    add_run(db, "base", [TrialPlan("bf16", seed=11)], started_at="2026-01-05T00:00:00+00:00")
    add_run(db, "cand", [TrialPlan("bf16", step_mean_s=0.12, seed=12)],
            started_at="2026-01-06T00:00:00+00:00")
    add_run(db, "later", [TrialPlan("bf16", step_mean_s=0.5, seed=13)],  # after: never used
            started_at="2026-01-07T00:00:00+00:00")
    code, out = compare(capsys, "base", "cand", "--results", db)
    assert code == 1
    row = frame_of(ResultStore(db)).set_index("metric").loc["step_time_s"]
    assert row["status"] == "regressed" and row["tested"]
    assert row["note"].startswith("one run a side (1 vs 1 repeats), against how a run's "
                                  "figure varies over 4 earlier runs of nightly on this machine")


def test_a_busy_machine_makes_the_comparison_inconclusive_and_never_fails_the_gate(tmp_path, capsys):
    db = tmp_path / "results.db"
    pair(db, repeats("bf16", 5, seed=1), repeats("bf16", 5, step_mean_s=0.2, seed=2, busy=True))
    frame = frame_of(ResultStore(db))
    row = frame.set_index("metric").loc["tokens_per_s"]
    assert row["status"] == "inconclusive" and row["note"].startswith("inconclusive: machine busy")
    code, out = compare(capsys, "base", "cand", "--results", db)
    assert code == 0
    assert "inconclusive: machine busy" in out.splitlines()[0]
    assert "WARNING: 5 of the candidate run's trials were measured on a busy machine" in out
    assert "other processes used 45% of the 2 CPUs" in out


def test_busy_repeats_are_left_out_and_the_quiet_ones_still_decide(tmp_path):
    db = tmp_path / "results.db"
    cand = repeats("bf16", 5, step_mean_s=0.12, seed=2)
    cand[4] = TrialPlan("bf16", step_mean_s=0.05, repeat=4, seed=99, busy=True)  # would hide it
    pair(db, repeats("bf16", 5, seed=1), cand)
    row = frame_of(ResultStore(db)).set_index("metric").loc["step_time_s"]
    assert row["status"] == "regressed"
    assert row["note"].startswith("one run a side (4 vs 5 repeats)")
    assert row["note"].endswith("; 1 treatment run left out: machine busy")


def test_a_faster_candidate_is_improved_and_passes(tmp_path, capsys):
    db = slower(tmp_path, 0.90)
    frame = frame_of(ResultStore(db))
    assert status(frame, "bf16", "tokens_per_s") == "improved"
    assert compare(capsys, "base", "cand", "--results", db)[0] == 0


def test_a_threshold_override_moves_the_verdict_both_ways(tmp_path, capsys):
    three = slower(tmp_path / "three", 1.03, run_cv=0.003, drift_cv=0.003)  # under the default 5%
    assert compare(capsys, "base", "cand", "--results", three)[0] == 0
    code, out = compare(capsys, "base", "cand", "--results", three,
                        "--threshold", "tokens_per_s=0.02", "--threshold", "step_time_s=0.02")
    assert code == 1 and out.startswith("2 regressions")
    ten = slower(tmp_path / "ten", 1.10)
    assert compare(capsys, "base", "cand", "--results", ten, "--threshold", "tokens_per_s=0.15",
                   "--threshold", "step_time_s=0.15")[0] == 0


def test_memory_of_one_repeat_per_side_is_inconclusive_past_its_threshold(tmp_path, capsys):
    db = tmp_path / "results.db"
    pair(db, [TrialPlan("bf16", seed=1, peak_memory_bytes=10 * 2**30),
              TrialPlan("fp32", seed=3, peak_memory_bytes=10 * 2**30)],
         [TrialPlan("bf16", seed=1, peak_memory_bytes=12 * 2**30),  # +20%
          TrialPlan("fp32", seed=3, peak_memory_bytes=10.3 * 2**30)], earlier=0)  # +3%
    frame = frame_of(ResultStore(db))
    memory = frame[frame["metric"] == "peak_memory_bytes"].set_index("trial")
    assert memory.loc["bf16", "status"] == "inconclusive"
    assert memory.loc["bf16", "change"] == pytest.approx(0.20)
    assert memory.loc["bf16", "note"] == DRIFT_UNKNOWN and not memory.loc["bf16", "tested"]
    assert memory.loc["fp32", "status"] == "unchanged"
    text = tmp_path / "compare.txt"
    code, out = compare(capsys, "base", "cand", "--results", db, "--metric", "peak_memory_bytes",
                        "--out", text)
    assert code == 0 and out.startswith("no regressions (1 inconclusive):")
    assert "two runs made at different times: no test" in out
    assert "step_time_s" not in out  # --metric restricts the rows
    assert text.read_text().splitlines()[0] == out.splitlines()[0]  # the table, as plain text


def test_memory_measured_the_same_in_every_repeat_is_exact(tmp_path):
    db = tmp_path / "results.db"
    pair(db, repeats("bf16", 3, seed=1, peak_memory_bytes=10 * 2**30),
         repeats("bf16", 3, seed=2, peak_memory_bytes=12 * 2**30))
    row = frame_of(ResultStore(db)).set_index("metric").loc["peak_memory_bytes"]
    assert row["status"] == "regressed" and row["low"] == row["high"] == pytest.approx(1.2)
    assert row["note"] == ("one run a side (3 vs 3 repeats); 6 earlier runs of nightly on this "
                           "machine, where it never varied: exact")


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
    assert throughput["note"].startswith("one run a side (3 vs 3 repeats)")
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
    for night in range(3):  # earlier nights: how much a night drifts on this machine
        add_run(db, f"night-0{night}", repeats("bf16", step_mean_s=0.1 * (1 + 0.01 * night),
                                               seed=10 + night),
                started_at=f"2025-12-2{night}T00:00:00+00:00")
    add_run(db, "night-1", repeats("bf16", seed=1), started_at="2026-01-01T00:00:00+00:00")
    add_run(db, "night-2", repeats("bf16", step_mean_s=0.12, seed=2),
            started_at="2026-01-02T00:00:00+00:00")
    add_run(db, "other", repeats("bf16", seed=3), scenario="weekly",
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
    add_run(after, "b", repeats("bf16", step_mean_s=0.2, seed=1), scenario="weekly")
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
    with pytest.raises(InputError, match="--threshold tokens_per_s: a threshold is a fraction "
                                         "between 0 and 1 such as 0.05, got 5"):
        compare(capsys, "base", "cand", "--results", db, "--threshold", "tokens_per_s=5")
    with pytest.raises(InputError, match="got -0.1"):
        compare(capsys, "base", "cand", "--results", db, "--threshold", "tokens_per_s=-0.1")
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


def test_runs_on_different_machines_are_not_tested_against_one_machines_drift(tmp_path, capsys):
    db = tmp_path / "results.db"
    pair(db, repeats("bf16", 5, step_mean_s=0.1, seed=1, peak_memory_bytes=10 * 2**30),
         repeats("bf16", 5, step_mean_s=0.13, seed=2, peak_memory_bytes=12 * 2**30),
         candidate_env={"host": "other-box", "device_name": "NVIDIA H200"})
    code, out = compare(capsys, "base", "cand", "--results", db)
    assert code == 0  # a 30% slowdown and 20% more memory, but no test: never a regression
    store = ResultStore(db)
    frame = compare_runs(store.trials("base"), store.trials("cand"), other_machines=True)
    memory = frame.set_index("metric").loc["peak_memory_bytes"]
    assert memory["status"] == "inconclusive" and not memory["tested"]  # identical, yet no test
    assert "WARNING: two runs on different machines: no test" in out
    assert "harness procure compares hardware" in out
    assert "1 inconclusive" not in out.splitlines()[0] and "inconclusive" in out.splitlines()[0]


def test_a_metric_no_trial_measured_and_an_unwritable_out_are_one_line_errors(tmp_path, capsys):
    db = slower(tmp_path, 1.0)
    with pytest.raises(InputError, match="--metric: no trial the runs base and cand have in common "
                                         "measured energy_per_token_j"):
        compare(capsys, "base", "cand", "--results", db, "--metric", "energy_per_token_j")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(InputError, match=r"a-file/out.md: --out: cannot write: .*a-file is a file, not a folder"):
        compare(capsys, "base", "cand", "--results", db, "--out", blocker / "out.md")
