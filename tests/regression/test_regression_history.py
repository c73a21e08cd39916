"""`harness history`: the K-consecutive regression policy against a window median, the
variance figures, environment changes between runs, the report files and the exit codes."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import pytest
from history_fixture_store import ENV, EVIL, add_run, run_id, series_store

from harness.errors import InputError
from harness.regression import history_command
from harness.regression.arguments import add_history_arguments
from harness.regression.history import HistoryAnalysis, analyse_history, choose_runs
from harness.regression.history_report import write_history
from harness.regression.rules import DEFAULT_RULES, rules_with
from harness.store import ResultStore

STEADY = [100.0] * 5


def analyse(store: ResultStore, *, window: int = 5, consecutive: int = 2, noise_k: float = 3.0,
            metrics: list[str] | None = None) -> HistoryAnalysis:
    scenario, runs = choose_runs(store.runs(), None, 30)
    records = history_command.load_records(store, [r["run_id"] for r in runs])
    return analyse_history(scenario, records, DEFAULT_RULES, window=window,
                           consecutive=consecutive, noise_k=noise_k,
                           metrics=metrics or ["tokens_per_s"])


def command(store: ResultStore, *extra: str) -> int:
    parser = argparse.ArgumentParser()
    add_history_arguments(parser)
    return history_command.run(parser.parse_args(["--results", str(store.path), *extra]))


def test_one_dip_then_recovery_is_suspect_not_regression(tmp_path: Path) -> None:
    store = series_store(tmp_path / "r.db", {"fp32": [*STEADY, 85.0, 100.0, 100.0]})
    flags = analyse(store).flags
    assert flags[["kind", "run_id", "runs"]].values.tolist() == [["suspect", run_id(5), 1]]
    assert flags["reference"].iloc[0] == pytest.approx(100.0)
    assert flags["change"].iloc[0] == pytest.approx(0.15)
    assert command(store) == 0


def test_two_consecutive_drops_are_a_regression_at_the_first_with_k2(tmp_path: Path) -> None:
    store = series_store(tmp_path / "r.db", {"fp32": [*STEADY, 90.0, 90.0]})
    flags = analyse(store, consecutive=2).flags
    assert flags[["kind", "run_id", "last_run_id", "runs", "ongoing"]].values.tolist() == [
        ["regression", run_id(5), run_id(6), 2, True]]
    assert flags[["reference", "value", "last_value", "change"]].iloc[0].tolist() == pytest.approx(
        [100.0, 90.0, 90.0, 0.10])
    assert command(store, "--metric", "tokens_per_s") == 1


def test_two_consecutive_drops_are_only_suspect_with_k3(tmp_path: Path) -> None:
    store = series_store(tmp_path / "r.db", {"fp32": [*STEADY, 90.0, 90.0]})
    flags = analyse(store, consecutive=3).flags
    assert flags[["kind", "run_id", "runs"]].values.tolist() == [["suspect", run_id(5), 2]]
    assert command(store, "--consecutive", "3") == 0


def test_a_lower_is_better_metric_regresses_upwards(tmp_path: Path) -> None:
    # step_time_s = 1000 / tokens_per_s: a 10% throughput drop is an 11.1% slower step
    store = series_store(tmp_path / "r.db", {"fp32": [*STEADY, 90.0, 90.0]})
    flags = analyse(store, metrics=["step_time_s"]).flags
    assert flags["kind"].tolist() == ["regression"]
    assert flags["change"].iloc[0] == pytest.approx(100 / 90 - 1)


def test_a_one_percent_wobble_never_flags(tmp_path: Path) -> None:
    wobble = [100.0, 101.0, 99.0, 100.0, 101.0, 99.0, 100.5, 99.5, 101.0, 99.0]
    store = series_store(tmp_path / "r.db", {"fp32": wobble, "bf16": [2 * v for v in wobble]})
    analysis = analyse(store, consecutive=1, metrics=["tokens_per_s", "step_time_s"])
    assert analysis.flags.empty
    assert not analysis.judged["violates"].any()
    assert command(store, "--consecutive", "1") == 0


def test_reference_is_the_window_median_not_the_previous_run(tmp_path: Path) -> None:
    # night 4 (100) is 16.7% below night 3 (120), but level with the median of nights 0-3
    store = series_store(tmp_path / "r.db", {"fp32": [100.0, 100.0, 100.0, 120.0, 100.0]})
    judged = analyse(store).judged.set_index("run_id")
    assert math.isnan(judged.loc[run_id(0), "reference"])  # no verdict for the first run
    assert judged.loc[run_id(1), "reference"] == pytest.approx(100.0)  # fewer at the start
    assert judged.loc[run_id(4), "reference"] == pytest.approx(100.0)
    assert not judged["violates"].any()
    # a window of 2 makes the reference median(100, 120) = 110: 9.1% worse, a violation
    narrow = analyse(store, window=2)
    assert narrow.judged.set_index("run_id").loc[run_id(4), "reference"] == pytest.approx(110.0)
    assert narrow.flags[["kind", "run_id"]].values.tolist() == [["suspect", run_id(4)]]


def test_a_finished_regression_is_reported_but_does_not_fail_the_run(tmp_path: Path) -> None:
    store = series_store(tmp_path / "r.db", {"fp32": [*STEADY, 90.0, 90.0, 100.0, 100.0]})
    flags = analyse(store).flags
    assert flags[["kind", "run_id", "ongoing"]].values.tolist() == [["regression", run_id(5), False]]
    assert command(store) == 0


def test_median_counts_only_ok_repeats(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "r.db")
    add_run(store, 0, {"fp32": 100.0}, failed_repeat=True)
    history = analyse(store).history
    assert history[["key", "value", "repeats"]].values.tolist() == [["fp32", 100.0, 3]]


def test_runs_of_the_latest_scenario_only_and_the_last_n(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "r.db")
    for night in range(4):
        add_run(store, night, {"fp32": 100.0})
    add_run(store, 10, {"fp32": 1.0}, scenario="other")
    scenario, runs = choose_runs(store.runs(), None, 30)
    assert (scenario, [r["run_id"] for r in runs]) == ("other", [run_id(10)])
    scenario, runs = choose_runs(store.runs(), "nightly", 2)
    assert [r["run_id"] for r in runs] == [run_id(2), run_id(3)]
    with pytest.raises(InputError, match="did you mean 'nightly'"):
        choose_runs(store.runs(), "nighlty", 30)


def test_environment_changes_appear_between_the_right_runs(tmp_path: Path) -> None:
    upgraded = {**ENV, "libraries": {"torch": "2.11.0", "numpy": "2.0.0"}, "driver": "575"}
    recommitted = {**upgraded, "git_commit": "fedcba9876543210"}
    store = series_store(tmp_path / "r.db", {"fp32": [100.0] * 5},
                         envs={3: upgraded, 4: recommitted})
    changes = analyse(store).changes
    assert changes[["previous_run_id", "run_id", "changes"]].values.tolist() == [
        [run_id(2), run_id(3), "driver 570 → 575; torch 2.10.0 → 2.11.0"],
        [run_id(3), run_id(4), "commit 0123456 → fedcba9"]]


def test_variance_figures_match_hand_computed_values(tmp_path: Path) -> None:
    store = series_store(tmp_path / "r.db", {"fp32": [100.0, 110.0, 90.0, 100.0, 120.0]})
    row = analyse(store).variance.iloc[0]
    values = np.array([100.0, 110.0, 90.0, 100.0, 120.0])
    mean = 104.0
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / 4)  # sample std: 11.40
    assert row["runs"] == 5
    assert row["mean"] == pytest.approx(mean)
    assert row["cv"] == pytest.approx(std / mean)
    # median 100; absolute deviations 0, 10, 10, 0, 20 -> median 10
    assert row["median"] == pytest.approx(100.0)
    assert row["mad_rel"] == pytest.approx(0.10)


def test_thresholds_and_metrics_from_the_command_line(tmp_path: Path) -> None:
    store = series_store(tmp_path / "r.db", {"fp32": [*STEADY, 90.0, 90.0]})
    assert command(store, "--threshold", "tokens_per_s=0.2", "--metric", "tokens_per_s") == 0
    assert rules_with(["tokens_per_s=0.2"])["tokens_per_s"].threshold == 0.2
    with pytest.raises(InputError, match="did you mean 'tokens_per_s'"):
        command(store, "--metric", "tokens_per_sec")


def test_report_files_escape_a_script_trial_name(tmp_path: Path) -> None:
    store = series_store(tmp_path / "r.db", {EVIL: [*STEADY, 90.0, 90.0], "bf16": [*STEADY, 100.0, 100.0]},
                         envs={6: {**ENV, "libraries": {"torch": "2.11.0"}}})
    html, markdown = write_history(analyse(store, metrics=["tokens_per_s", "step_time_s"]), tmp_path / "out")
    page = html.read_text()
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert page.count("data:image/png;base64,") == 2  # self-contained: one figure per metric
    text = markdown.read_text()
    assert "<script>" not in text and "&lt;script&gt;" in text
    assert "](history-tokens_per_s.png)" in text
    for metric in ("tokens_per_s", "step_time_s"):
        assert (tmp_path / "out" / f"history-{metric}.png").read_bytes()[:4] == b"\x89PNG"


def test_out_writes_the_report_and_markdown_prints_the_flags(tmp_path: Path, capsys) -> None:
    store = series_store(tmp_path / "r.db", {"fp32": [*STEADY, 90.0, 90.0]})
    code = command(store, "--out", str(tmp_path / "out"), "--format", "markdown",
                   "--metric", "tokens_per_s")
    out = capsys.readouterr().out
    assert code == 1
    assert (tmp_path / "out" / "index.html").exists() and (tmp_path / "out" / "history.md").exists()
    row = next(line for line in out.splitlines() if line.startswith("| regression"))
    assert run_id(5) in row and "+10.0%" in row


def test_table_output_prints_names_as_text_not_markup(tmp_path: Path, capsys) -> None:
    name = "precision=[bold]fp32[/bold]"
    store = series_store(tmp_path / "r.db", {name: [*STEADY, 90.0, 90.0]})
    assert command(store, "--metric", "tokens_per_s") == 1
    out = capsys.readouterr().out
    assert "precision=[bold]fp32[/bold]" in out  # the variance table's trial column
    assert "nightly: 7 runs, latest night-06: 1 regression(s), 1 still at the latest run" in out


NOISY = [100.0, 94.0, 103.0, 97.0, 104.0, 95.0, 101.0, 96.0]  # nights wander by about 4%


def test_a_drop_inside_the_series_own_noise_is_not_flagged(tmp_path: Path) -> None:
    store = series_store(tmp_path / "r.db", {"fp32": [*NOISY, 90.0, 90.0]})
    analysis = analyse(store)
    # 10% under the window median, but the nights wander by ~4%: not flagged (the first nights,
    # before the noise is known, are judged by the threshold alone)
    assert not (analysis.flags["run_id"].isin([run_id(8), run_id(9)])).any()
    assert "regression" not in analysis.flags["kind"].tolist()
    last = analysis.judged.iloc[-1]
    assert last["noise"] > 0.03 and last["limit"] > last["change"] > 0.05
    noise = analysis.variance.set_index("key").loc["fp32"]
    assert noise["flag_past"] == pytest.approx(1 - np.exp(-3 * noise["noise"]))
    assert command(store) == 0
    # with the noise ignored, the threshold alone flags the same nights
    plain = analyse(store, noise_k=0).flags
    assert plain[plain["kind"] == "regression"]["run_id"].tolist() == [run_id(8)]
    assert command(store, "--noise-k", "0") == 1


def test_a_drop_well_past_the_noise_is_still_a_regression(tmp_path: Path) -> None:
    store = series_store(tmp_path / "r.db", {"fp32": [*NOISY, 75.0, 75.0]})
    flags = analyse(store).flags
    regressions = flags[flags["kind"] == "regression"]
    assert regressions[["run_id", "runs"]].values.tolist() == [[run_id(8), 2]]
    assert regressions["noise"].iloc[0] > 0.03 and regressions["threshold"].iloc[0] > 0.05


def test_a_night_measured_on_a_busy_machine_is_passed_over_as_inconclusive(tmp_path: Path) -> None:
    store = series_store(tmp_path / "r.db", {"fp32": [*STEADY, 50.0, 100.0]}, busy={5})
    flags = analyse(store).flags
    assert flags[["kind", "run_id", "ongoing"]].values.tolist() == [["inconclusive", run_id(5), False]]
    assert analyse(store).history.set_index("run_id").loc[run_id(5), "busy_repeats"] == 3
    assert command(store) == 0
    busy_last = series_store(tmp_path / "b.db", {"fp32": [*STEADY, 100.0, 50.0]}, busy={6})
    assert command(busy_last) == 0  # a busy latest night is never a regression


@pytest.mark.parametrize(("argv", "message"), [
    (["--noise-k", "-1"], "argument --noise-k: must be a finite number at least 0, got -1"),
    (["--window", "0"], "argument --window: must be at least 1, got 0"),
    (["--threshold", "tokens_per_s=1.5"], "a threshold is a fraction between 0 and 1"),
    (["--metric", "tokens_per_sec"], "no rule for metric 'tokens_per_sec'"),
])
def test_nonsense_settings_are_one_line_errors(tmp_path: Path, capsys, argv, message) -> None:
    from harness.cli import main

    store = series_store(tmp_path / "r.db", {"fp32": STEADY})
    assert main(["history", "--results", str(store.path), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_a_streak_before_the_noise_is_known_is_only_suspect(tmp_path: Path) -> None:
    # nights 1 and 2 drop 12%: past the threshold twice, but no noise estimate exists yet
    store = series_store(tmp_path / "r.db", {"fp32": [100.0, 88.0, 88.0, 100.0, 100.0]})
    flags = analyse(store).flags
    assert flags[["kind", "run_id", "runs"]].values.tolist() == [["suspect", run_id(1), 2]]
    assert np.isnan(flags["noise"].iloc[0])


def test_runs_from_another_machine_form_their_own_series(tmp_path: Path) -> None:
    # five nights on one host, then two on a slower one: a different machine, not a regression
    store = series_store(tmp_path / "r.db", {"fp32": [*STEADY, 80.0, 80.0]},
                         envs={5: {**ENV, "host": "slower-box"}})
    analysis = analyse(store)
    assert analysis.flags.empty
    keys = analysis.history.drop_duplicates("key")["key"].tolist()
    assert keys == ["fp32 @ Test CPU", "fp32 @ slower-box"]  # no host recorded: the device
    assert command(store) == 0


def test_two_machines_on_one_host_are_told_apart(tmp_path: Path) -> None:
    cpu = {**ENV, "host": "box"}
    gpu = {**ENV, "host": "box", "device": "cuda", "device_name": "NVIDIA H200", "device_count": 2}
    store = series_store(tmp_path / "r.db", {"fp32": [100.0] * 5 + [5000.0] * 5}, envs={0: cpu, 5: gpu})
    analysis = analyse(store)
    assert analysis.flags.empty
    assert analysis.history.drop_duplicates("key")["key"].tolist() == [
        "fp32 @ box (cpu: Test CPU)", "fp32 @ box (cuda: 2 × NVIDIA H200)"]
