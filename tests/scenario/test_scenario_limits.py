"""A matrix is counted before anything is built: past `max_trials` validate, --dry-run and run
stop with a one-line exit 2 naming the count and the setting that allows it. A scenario's name
is a safe folder name."""

from __future__ import annotations

import time

import pytest

from harness.cli import main

HUGE = {"train.steps": list(range(20, 1020)), "train.micro_batch_size": list(range(1, 1001))}
HUGE["train.seed"] = list(range(1000))  # 10^9 combinations


@pytest.mark.parametrize("argv", [["validate"], ["run", "--dry-run"], ["run"]])
def test_a_matrix_past_max_trials_is_refused_before_it_is_built(write_scenario, capsys, tmp_path, argv):
    path = write_scenario("huge", matrix=HUGE, repeats=1000)
    started = time.perf_counter()
    code = main([argv[0], str(path), *argv[1:], "--results", str(tmp_path / "r.db")]
                if argv[0] == "run" else [*argv, str(path)])
    assert code == 2 and time.perf_counter() - started < 10
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(path) in err
    assert ("the matrix and repeats plan 1,000,000,000,000 trials, more than max_trials (10,000); "
            "--set max_trials=1000000000000 if you mean it") in err


def test_max_trials_can_be_raised_for_a_matrix_that_is_meant(write_scenario, capsys):
    path = write_scenario("meant", matrix={"train.seed": list(range(30))}, repeats=2)
    assert main(["validate", str(path), "--set", "max_trials=50"]) == 2
    assert "plan 60 trials, more than max_trials (50)" in capsys.readouterr().err
    assert main(["validate", str(path), "--set", "max_trials=60"]) == 0


@pytest.mark.parametrize("name, why", [
    ("..", "a name of only dots is no folder of its own"),
    (".", "a name of only dots is no folder of its own"),
    ("a/b", "the name is a folder name (reports/<name>/): no '/'"),
    ("tab\there", "the name is a folder name (reports/<name>/): no '\\t'"),
])
def test_a_name_that_is_no_safe_folder_is_refused(write_scenario, capsys, name, why):
    path = write_scenario("x")
    path.write_text(path.read_text().replace("name: x", f"name: {name!r}" if name != "tab\there"
                                             else 'name: "tab\\there"'))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"harness: error: {path}:1: name: {why}"


def test_a_large_dry_run_streams_a_line_per_trial_while_the_plan_is_built(write_scenario, monkeypatch):
    import contextlib
    import io

    from harness import cli, runner

    path = write_scenario("wide", matrix={"train.seed": list(range(cli.PLAN_TABLE_ROWS + 50))})
    out, lines_seen = io.StringIO(), []
    real = runner.iter_plan

    def watched(*args, **kwargs):
        for item in real(*args, **kwargs):
            lines_seen.append(out.getvalue().count("\n"))  # what was printed before this trial
            yield item

    monkeypatch.setattr(runner, "iter_plan", watched)
    with contextlib.redirect_stdout(out):
        assert main(["run", str(path), "--dry-run", "--device", "cpu"]) == 0
    lines = out.getvalue().splitlines()
    count = cli.PLAN_TABLE_ROWS + 50
    assert lines[0] == f"wide: {count} trials on cpu" and lines[1].split("\t")[:3] == ["#", "trial", "name"]
    assert len(lines) == count + 2 and lines[-1].split("\t")[2] == f"train.seed={count - 1}"
    assert lines_seen == list(range(2, count + 2))  # trial k is built after k lines are out
