"""A results path that is no harness database, and folders that cannot be written: every
command says so in one line naming the path (exit 2); reading commands never write the
database; report files appear whole or not at all."""

from __future__ import annotations

import hashlib
import re
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from harness import SCHEMA_VERSION
from harness.cli import main
from harness.errors import InputError
from harness.files import write_file
from harness.spec import TrialResult, TrialSpec
from harness.store import ResultStore

from stored_runs import export_of, stored

READING = [["runs"], ["report", "--out", "rep"], ["export", "--format", "json"],
           ["history", "--scenario", "s"], ["compare", "run-a", "run-a"]]
WRITING = [["import", "EXPORT"], ["run", "SCENARIO"]]


@pytest.fixture(autouse=True)
def _elsewhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def one_line(capsys, *argv) -> str:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("harness: error: "), err
    return lines[0]


def commands(tmp_path: Path, results: Path, write_scenario) -> list[list[str]]:
    export = tmp_path / "export.json"
    export.write_text(__import__("json").dumps(export_of(stored(tmp_path / "good.db"))))
    scenario = write_scenario("s", train={"steps": 2})
    fill = {"EXPORT": str(export), "SCENARIO": str(scenario)}
    return [[fill.get(a, a) for a in argv] + ["--results", str(results)] for argv in READING + WRITING]


def not_sqlite(tmp_path):
    path = tmp_path / "notes.db"
    path.write_text("these are my notes, not a database\n" * 100)
    return path


def other_sqlite(tmp_path):
    path = tmp_path / "other.db"
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("CREATE TABLE t (a)")
    return path


def newer_harness(tmp_path):
    path = tmp_path / "newer.db"
    ResultStore(path)
    with closing(sqlite3.connect(path)) as db, db:  # closed: the change is in the file itself
        db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION + 1),))
    return path


def a_folder(tmp_path):
    path = tmp_path / "a-folder"
    path.mkdir()
    return path


def under_a_file(tmp_path):
    (tmp_path / "a-file").write_text("")
    return tmp_path / "a-file" / "r.db"


# what the line says (a regex): history, compare and claims read a folder as one of JSON exports
CASES = {not_sqlite: "not an SQLite database", other_sqlite: "an SQLite database, but not a harness "
         "results database", newer_harness: fr"written by a newer harness \(schema "
         f"{SCHEMA_VERSION + 1}", a_folder: "a folder, not a results database file|no JSON exports",
         under_a_file: "no results database here|a-file is a file|no results database at"}


@pytest.mark.parametrize("make", CASES, ids=lambda make: make.__name__)
def test_every_command_on_an_unusable_results_path_is_one_line_naming_it(tmp_path, capsys, make,
                                                                          write_scenario):
    results = make(tmp_path)
    argvs = commands(tmp_path, results, write_scenario)
    before = digest(results) if results.is_file() else None
    for argv in argvs:
        line = one_line(capsys, *argv)
        assert str(results) in line and re.search(CASES[make], line), (argv, line)
    assert (digest(results) if results.is_file() else None) == before
    assert not (tmp_path / "rep").exists() and not (tmp_path / "reports").exists()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_reading_commands_open_the_database_read_only_and_leave_it_as_it_was(tmp_path, capsys):
    db = tmp_path / "r.db"
    stored(db)
    with closing(sqlite3.connect(db)) as conn:  # all in the one file, none in a -wal beside it
        conn.execute("PRAGMA journal_mode=DELETE")
    before, files = digest(db), sorted(p.name for p in tmp_path.iterdir())
    for argv in (["runs"], ["report", "--out", "rep"], ["export", "--format", "csv"], ["history", "--scenario", "s"]):
        assert main([*argv, "--results", str(db)]) in (0, 1), argv
    capsys.readouterr()
    assert digest(db) == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "rep" and p.name != "reports") == files
    reader = ResultStore(db, read_only=True)
    with pytest.raises(InputError, match=r"r\.db: opened read-only: this command does not write"):
        reader.save_trial("run-a", 9, TrialSpec(scenario="s", trial_id="x", name="x", params={},
                                                model={}, data={}, train={}, techniques={},
                                                device="cpu", timeout_s=1),
                          TrialResult("x", "ok"), {}, "h")
    assert digest(db) == before


def test_a_report_folder_that_cannot_be_written_is_one_line_after_the_trials_are_stored(
        tmp_path, capsys, write_scenario):
    (tmp_path / "a-file").write_text("")
    scenario = write_scenario("s", train={"steps": 2})
    code = main([str(a) for a in ("run", scenario, "--results", tmp_path / "r.db", "-q",
                                  "--report", tmp_path / "a-file" / "rep")])
    out, err = capsys.readouterr()
    assert code == 2 and "Traceback" not in err and "1 ok; results in" in out
    line = err.splitlines()[-1]  # after the trial's own line
    assert line.startswith("harness: error: ") and f"{tmp_path / 'a-file' / 'rep'}" in line and "a-file is a file, not a folder" in line
    store = ResultStore(tmp_path / "r.db", read_only=True)
    run, = store.runs()
    assert (run["trials"], run["planned_trials"]) == (1, 1) and run["finished_at"]


def test_a_file_is_replaced_whole_or_left_as_it_was(tmp_path, monkeypatch):
    page = tmp_path / "rep" / "index.html"
    write_file(page, "old report")
    real = Path.write_text

    def half_then_fail(self, data, *args, **kwargs):
        real(self, data[: len(data) // 2], *args, **kwargs)
        raise OSError(28, "No space left on device", str(self))

    monkeypatch.setattr(Path, "write_text", half_then_fail)
    with pytest.raises(InputError, match=r"rep/index.html: cannot write: No space left on device"):
        write_file(page, "new report, longer than the old one")
    assert page.read_text() == "old report"
    assert [p.name for p in page.parent.iterdir()] == ["index.html"]  # no temporary file left


def test_a_stored_trial_whose_json_was_damaged_is_one_line_naming_it(tmp_path, capsys):
    db = tmp_path / "r.db"
    stored(db)
    with closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("UPDATE trials SET metrics_json='{bad json' WHERE trial_id='t-bf16'")
    for argv in (["report", "--out", "rep"], ["export", "--format", "json"], ["export", "--format", "csv"]):
        line = one_line(capsys, *argv, "--results", db)
        assert line == (f"harness: error: {db}: trial t-bf16 of run run-a: metrics_json is not valid "
                        "JSON (was the database edited by hand?)"), argv


def test_an_export_with_an_integer_too_long_to_convert_is_one_line(tmp_path, capsys):
    export = tmp_path / "huge.json"
    export.write_text('[{"repeat": ' + "9" * 5000 + "}]")
    line = one_line(capsys, "import", export, "--results", tmp_path / "r.db")
    assert line.startswith(f"harness: error: {export}: not a JSON export: Exceeds the limit (4300 digits)")
