"""Trial warnings are stored, read back on every trial (always a list), exported and imported;
a database from before the warnings column opens and gains it; a malformed value in an export is
a one-line InputError."""

from __future__ import annotations

import json
import sqlite3

import pytest

from harness.cli import main
from harness.errors import InputError
from harness.spec import CPU_PEAK_UNDER_LOAD, MACHINE_BUSY, TrialResult, TrialSpec
from harness.store import ResultStore, export_trials, read_export
from harness.store.merge import import_trials

WARNINGS = [{"code": MACHINE_BUSY, "message": "other processes used 34% of the 2 CPUs during the "
             "measured window (load average 3.1 → 4.0)"},
            {"code": CPU_PEAK_UNDER_LOAD, "message": "the CPU peak could not be measured quietly"}]

# the trials table as the first release created it, before warnings_json
OLD_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE runs (
    run_id TEXT PRIMARY KEY, scenario TEXT NOT NULL, description TEXT, scenario_path TEXT,
    scenario_hash TEXT NOT NULL, overrides_json TEXT, device TEXT, baseline_json TEXT,
    planned_trials INTEGER, started_at TEXT NOT NULL, finished_at TEXT,
    harness_version TEXT, git_commit TEXT, git_dirty INTEGER, env_json TEXT
);
CREATE TABLE trials (
    run_id TEXT NOT NULL REFERENCES runs(run_id), trial_id TEXT NOT NULL, position INTEGER,
    name TEXT, params_json TEXT, status TEXT NOT NULL, reason TEXT, metrics_json TEXT,
    unmeasured_json TEXT, notes_json TEXT, spec_json TEXT, env_json TEXT, traceback TEXT,
    started_at TEXT, finished_at TEXT, scenario_hash TEXT, harness_version TEXT,
    git_commit TEXT, git_dirty INTEGER, schema_version INTEGER NOT NULL,
    PRIMARY KEY (run_id, trial_id)
);
CREATE TABLE series (
    run_id TEXT NOT NULL, trial_id TEXT NOT NULL, series TEXT NOT NULL,
    step INTEGER NOT NULL, value REAL,
    PRIMARY KEY (run_id, trial_id, series, step)
);
INSERT INTO meta VALUES ('schema_version', '1');
"""


def _spec(trial_id: str) -> TrialSpec:
    return TrialSpec(scenario="demo", trial_id=trial_id, name=trial_id, params={"repeat": 0},
                     model={"arch": "gpt"}, data={}, train={}, techniques={}, device="cpu",
                     timeout_s=60)


def _store(path) -> ResultStore:
    store = ResultStore(path)
    store.create_run("run-1", scenario="demo", description="", scenario_path="demo.yaml",
                     scenario_hash="h", overrides=[], device="cpu", baseline=None,
                     planned_trials=2, env={"device": "cpu"})
    store.save_trial("run-1", 0, _spec("busy"), TrialResult("busy", "ok", metrics={"tokens_per_s": 1.0},
                                                            warnings=WARNINGS), {}, "h")
    store.save_trial("run-1", 1, _spec("quiet"), TrialResult("quiet", "skipped", reason="needs CUDA"),
                     {}, "h")
    return store


def test_warnings_round_trip_through_the_store_export_and_import(tmp_path):
    store = _store(tmp_path / "a.db")
    busy, quiet = store.trials("run-1")
    assert busy["warnings"] == WARNINGS and quiet["warnings"] == []

    export = tmp_path / "a.json"
    export_trials(store.trials("run-1", with_series=True), "json", export)
    assert [t["warnings"] for t in json.loads(export.read_text())] == [WARNINGS, []]

    merged = ResultStore(tmp_path / "b.db")
    import_trials(merged, read_export(export))
    assert [t["warnings"] for t in merged.trials("run-1")] == [WARNINGS, []]


def test_an_export_without_warnings_imports_as_an_empty_list(tmp_path):
    export = tmp_path / "old.json"
    export_trials(_store(tmp_path / "a.db").trials("run-1"), "json", export)
    trials = json.loads(export.read_text())
    for trial in trials:
        del trial["warnings"]
    export.write_text(json.dumps(trials))
    merged = ResultStore(tmp_path / "b.db")
    import_trials(merged, read_export(export))
    assert [t["warnings"] for t in merged.trials("run-1")] == [[], []]


def test_a_database_from_before_warnings_opens_and_gains_the_column(tmp_path):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.executescript(OLD_SCHEMA)
        db.execute("INSERT INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                   ("run-0", "demo", "", "demo.yaml", "h", "[]", "cpu", "null", 1,
                    "2026-01-01T00:00:00+00:00", None, "0.1.0", "abc", 0, "{}"))
        db.execute("INSERT INTO trials VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                   ("run-0", "old", 0, "old", "{}", "ok", None, '{"tokens_per_s": 2.0}', "{}", "{}",
                    json.dumps(_spec("old").to_dict()), "{}", None, None, None, "h", "0.1.0",
                    "abc", 0, 1))
    old, = ResultStore(path, read_only=True).trials("run-0")  # read as it is: no column added
    assert old["warnings"] == [] and old["metrics"] == {"tokens_per_s": 2.0}
    store = ResultStore(path)
    store.save_trial("run-0", 1, _spec("new"), TrialResult("new", "ok", warnings=WARNINGS[:1]), {}, "h")
    assert [t["warnings"] for t in store.trials("run-0")] == [[], WARNINGS[:1]]
    ResultStore(path)  # opening it again: the column is there, nothing to add
    with sqlite3.connect(path) as db:
        columns = [row[1] for row in db.execute("PRAGMA table_info(trials)")]
    assert columns.count("warnings_json") == 1


@pytest.mark.parametrize("warnings, field", [
    ("machine-busy", "[0].warnings"),
    ({"code": "machine-busy", "message": "m"}, "[0].warnings"),
    (["machine-busy"], "[0].warnings[0]"),
    ([{"code": "machine-busy"}], "[0].warnings[0].message"),
    ([{"code": 3, "message": "m"}], "[0].warnings[0].code"),
])
def test_a_malformed_warnings_value_is_a_one_line_input_error(tmp_path, warnings, field):
    export = tmp_path / "bad.json"
    export_trials(_store(tmp_path / "a.db").trials("run-1"), "json", export)
    trials = json.loads(export.read_text())
    trials[0]["warnings"] = warnings
    export.write_text(json.dumps(trials))
    with pytest.raises(InputError) as caught:
        read_export(export)
    message = str(caught.value)
    assert message.startswith(f"{export}: {field}: ") and "\n" not in message


def test_harness_import_of_a_malformed_warnings_value_exits_2(tmp_path, capsys):
    export = tmp_path / "bad.json"
    export_trials(_store(tmp_path / "a.db").trials("run-1"), "json", export)
    trials = json.loads(export.read_text())
    trials[1]["warnings"] = [{"code": "machine-busy", "message": None}]
    export.write_text(json.dumps(trials))
    assert main(["import", str(export), "--results", str(tmp_path / "b.db")]) == 2
    assert "[1].warnings[0].message: Input should be a valid string (trial " in capsys.readouterr().err
