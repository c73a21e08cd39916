"""Exports carry their run and series, so `harness import` rebuilds a database from them;
importing the same export twice adds nothing."""

from __future__ import annotations


import pytest

from harness.cli import main
from harness.errors import InputError
from harness.spec import TrialResult, TrialSpec
from harness.store import ResultStore, open_results, read_export


def make_store(path):
    store = ResultStore(path)
    store.create_run("run-a", scenario="s", description="d", scenario_path="s.yaml", scenario_hash="h",
                     overrides=["train.steps=5"], device="cpu", baseline={"precision": "fp32"},
                     planned_trials=2, env={"device": "cpu", "git_commit": "abc"},
                     started_at="2026-01-02T03:04:05+00:00")
    for position, precision in enumerate(("fp32", "bf16")):
        spec = TrialSpec(scenario="s", trial_id=f"t-{precision}", name=f"precision={precision}",
                         params={"precision": precision, "repeat": 0}, model={}, data={}, train={},
                         techniques={"precision": precision}, device="cpu", timeout_s=5)
        store.save_trial("run-a", position, spec, TrialResult(
            spec.trial_id, "ok", metrics={"tokens_per_s": 100.0 + position},
            series={"step_time_s": [0.1, 0.2]}), {"device": "cpu"}, "h")
    store.finish_run("run-a", at="2026-01-02T04:00:00+00:00")
    return store


def test_importing_an_export_twice_adds_nothing_and_keeps_the_run(tmp_path, capsys):
    make_store(tmp_path / "a.db")
    export = tmp_path / "a.json"
    assert main(["export", "--results", str(tmp_path / "a.db"), "--format", "json", "--out", str(export)]) == 0
    merged = tmp_path / "merged.db"
    assert main(["import", str(export), "--results", str(merged)]) == 0
    assert main(["import", str(export), "--results", str(merged)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-2].endswith("2 trials added (1 new runs), 0 already present")
    assert lines[-1].endswith("0 trials added (0 new runs), 2 already present")
    store = ResultStore(merged)
    run = store.run("run-a")
    assert (run.baseline, run.started_at, run.finished_at, run.overrides) == (
        {"precision": "fp32"}, "2026-01-02T03:04:05+00:00", "2026-01-02T04:00:00+00:00", ["train.steps=5"])
    original = ResultStore(tmp_path / "a.db").trials("run-a", with_series=True)
    assert store.trials("run-a", with_series=True) == original


def test_open_results_reads_a_folder_of_exports(tmp_path):
    make_store(tmp_path / "a.db")
    folder = tmp_path / "ref"
    folder.mkdir()
    main(["export", "--results", str(tmp_path / "a.db"), "--format", "json", "--out", str(folder / "x.json")])
    store = open_results(folder)
    assert [r["run_id"] for r in store.runs()] == ["run-a"]
    assert store.trial_series("run-a")["t-bf16"]["step_time_s"] == [0.1, 0.2]


@pytest.mark.parametrize(("text", "message"), [
    ("{not json", "bad.json:1: not a JSON export: JSONDecodeError"),
    ('[{"run_id": "r"}]', "bad.json: [0]: missing scenario, trial_id, params, status, spec (is this a harness JSON export?)"),
    ('"text"', "bad.json: a JSON export is a list of trial objects"),
])
def test_a_file_that_is_not_an_export_is_one_line(tmp_path, text, message):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(InputError) as caught:
        read_export(path)
    assert str(caught.value).endswith(message)
