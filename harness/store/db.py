"""The results database (SQLite). One row per run, one per trial, one per point of a series.

Each trial is committed the moment it ends, so a killed sweep loses at most the trial that
was running. Rows are self-describing: every trial carries its resolved spec, the scenario
hash, the harness version, the git state and the environment fingerprint.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import sys
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import SCHEMA_VERSION
from harness.errors import InputError
from harness.files import file_in_the_way
from harness.spec import TrialResult, TrialSpec, utc_now

DEFAULT_RESULTS = Path("results/harness.db")
# How long a finished trial waits for a database another process holds locked: SQLite's own
# busy wait per attempt, and the attempts' total, with backoff between them. Past it the trial
# goes to the journal beside the database, which the next ResultStore to open it takes in.
LOCK_TIMEOUT_S = 30.0
WRITE_PATIENCE_S = 300.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, scenario TEXT NOT NULL, description TEXT, scenario_path TEXT,
    scenario_hash TEXT NOT NULL, overrides_json TEXT, device TEXT, baseline_json TEXT,
    planned_trials INTEGER, started_at TEXT NOT NULL, finished_at TEXT,
    harness_version TEXT, git_commit TEXT, git_dirty INTEGER, env_json TEXT
);
CREATE TABLE IF NOT EXISTS trials (
    run_id TEXT NOT NULL REFERENCES runs(run_id), trial_id TEXT NOT NULL, position INTEGER,
    name TEXT, params_json TEXT, status TEXT NOT NULL, reason TEXT, metrics_json TEXT,
    unmeasured_json TEXT, notes_json TEXT, spec_json TEXT, env_json TEXT, traceback TEXT,
    started_at TEXT, finished_at TEXT, scenario_hash TEXT, harness_version TEXT,
    git_commit TEXT, git_dirty INTEGER, schema_version INTEGER NOT NULL, warnings_json TEXT,
    PRIMARY KEY (run_id, trial_id)
);
CREATE TABLE IF NOT EXISTS leases (
    run_id TEXT PRIMARY KEY, host TEXT NOT NULL, pid INTEGER NOT NULL, since TEXT NOT NULL,
    renewed REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS series (
    run_id TEXT NOT NULL, trial_id TEXT NOT NULL, series TEXT NOT NULL,
    step INTEGER NOT NULL, value REAL,
    PRIMARY KEY (run_id, trial_id, series, step)
);
"""
# Columns added since the first release of SCHEMA, by table: a database created before them gets
# them when it is opened (SQLite appends them; a row written before reads NULL there). Trial
# records keep schema_version 1: the new fields are additions with a default, not changes.
ADDED_COLUMNS = {"trials": (("warnings_json", "TEXT"),)}


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    scenario: str
    description: str
    scenario_path: str
    scenario_hash: str
    device: str
    baseline: dict[str, Any] | None
    planned_trials: int
    started_at: str
    finished_at: str | None
    env: dict[str, Any]
    overrides: list[str] = field(default_factory=list)


class ResultStore:
    """The results database at `path`. Read-only (`read_only=True`, what reading commands use)
    it must exist, is opened with SQLite's mode=ro and is never written; otherwise it is created
    with its schema when absent. Any SQLite or file-system failure is an InputError naming the
    path: a folder, a file that is not SQLite, a database of a newer harness, no permission."""

    def __init__(self, path: str | Path = DEFAULT_RESULTS, *, read_only: bool = False):
        self.path = Path(path)
        self.read_only = read_only
        self._batch: sqlite3.Connection | None = None
        if read_only and not self.path.exists():
            raise InputError("no results database here (run a scenario first)", file=str(path))
        if self.path.is_dir():
            raise InputError("a folder, not a results database file", file=str(path))
        if self.path.is_file():
            self._check_existing()
        if not read_only:
            if (blocker := file_in_the_way(self.path)) is not None:
                raise InputError(f"cannot make its folder: {blocker} is a file", file=str(path))
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise InputError(f"cannot make the folder of the results database: "
                                 f"{err.strerror or err}", file=str(path)) from None
            with self._writing() as db:
                db.executescript(SCHEMA)
                _add_missing_columns(db)
                db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)",
                           (str(SCHEMA_VERSION),))
            self.take_in_journal()
        elif waiting := self.waiting_in_journal():
            print(f"harness: note: {waiting} trials wait in {self.journal} "
                  "(the database was locked); the next command that writes to it takes them in",
                  file=sys.stderr)

    def _check_existing(self) -> None:
        """Refuse, before anything is written, a file that is not SQLite, an SQLite database of
        another application (tables, none of them ours: never add ours to it), and one a newer
        harness wrote. Read-only, a database must have all of our tables."""
        with self._reading(read_only=True) as db:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            row = (db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
                   if "meta" in tables else None)
        missing = sorted({"meta", "runs", "trials", "series"} - tables)
        if (tables and "meta" not in tables) or (missing and self.read_only):
            listed = f"its tables: {', '.join(sorted(tables)[:5])}" if tables else "no tables"
            raise InputError(f"an SQLite database, but not a harness results database ({listed})",
                             file=str(self.path))
        stored = int(row[0]) if row and str(row[0]).isdigit() else SCHEMA_VERSION
        if stored > SCHEMA_VERSION:
            raise InputError(f"written by a newer harness (schema {stored}; this one reads up to "
                             f"{SCHEMA_VERSION}): upgrade harness to read it", file=str(self.path))

    @property
    def journal(self) -> Path:
        """Where trials wait that could not be written while the database was locked."""
        return self.path.with_name(self.path.name + ".journal")

    def waiting_in_journal(self) -> int:
        return len(list(self.journal.glob("*.json"))) if self.journal.is_dir() else 0

    def take_in_journal(self) -> int:
        """Store every journalled trial (oldest first) and remove its file; the count stored.
        A file the store cannot take in yet (still locked) stays for the next time."""
        if not self.journal.is_dir():
            return 0
        taken = 0
        for entry in sorted(self.journal.glob("*.json")):
            record = json.loads(entry.read_text(encoding="utf-8"))
            written = self._patiently(lambda: self._insert_trial(
                record["run_id"], record["position"], TrialSpec.from_dict(record["spec"]),
                TrialResult(**record["result"]), record["env"], record["scenario_hash"]),
                patience_s=0.0)
            if not written:
                break
            entry.unlink()
            taken += 1
        return taken

    def _connect(self, read_only: bool | None = None) -> sqlite3.Connection:
        if self.read_only if read_only is None else read_only:
            db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True,
                                 timeout=LOCK_TIMEOUT_S)
        else:
            db = sqlite3.connect(self.path, timeout=LOCK_TIMEOUT_S)
            db.execute("PRAGMA journal_mode=WAL")  # readers (a report) never block the sweep
            db.execute("PRAGMA synchronous=NORMAL")
        db.row_factory = sqlite3.Row
        return db

    @contextmanager
    def _reading(self, read_only: bool | None = None) -> Iterator[sqlite3.Connection]:
        """A connection (read-only when the store is, or when asked), closed after the block;
        SQLite's errors become InputErrors naming the path, except `database is locked`, which
        writers wait out (see _patiently), and a constraint, which is the caller's to handle."""
        try:
            with closing(self._connect(read_only)) as db:
                yield db
        except sqlite3.DatabaseError as err:
            if isinstance(err, sqlite3.IntegrityError) or (
                    isinstance(err, sqlite3.OperationalError) and _locked(err)):
                raise
            raise InputError(_unusable(err), file=str(self.path)) from None

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Every write inside happens in one transaction: all of it is stored, or, when the
        block raises, none of it. A batch inside a batch is part of it."""
        if self._batch is not None:
            yield
            return
        with self._reading() as db, db:
            self._batch = db
            try:
                yield
            finally:
                self._batch = None

    @contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        if self.read_only:
            raise InputError("opened read-only: this command does not write", file=str(self.path))
        if self._batch is not None:
            yield self._batch
            return
        with self._reading() as db, db:
            yield db

    # -- writing ------------------------------------------------------------------------
    def create_run(self, run_id: str, *, scenario: str, description: str, scenario_path: str,
                   scenario_hash: str, overrides: list[str], device: str,
                   baseline: dict[str, Any] | None, planned_trials: int, env: dict[str, Any],
                   started_at: str | None = None) -> None:
        with self._writing() as db:
            db.execute(
                "INSERT INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (run_id, scenario, description, scenario_path, scenario_hash, json.dumps(overrides),
                 device, json.dumps(baseline), planned_trials, started_at or utc_now(), None,
                 env.get("harness_version"), env.get("git_commit"), env.get("git_dirty"),
                 json.dumps(env)))

    def save_trial(self, run_id: str, position: int, spec: TrialSpec, result: TrialResult,
                   env: dict[str, Any], scenario_hash: str) -> bool:
        """Insert the trial and its series in one transaction, committed before returning.
        While another process holds the database locked it retries with backoff for
        WRITE_PATIENCE_S; then the trial is written to the journal beside the database (taken
        in by the next ResultStore that opens it) and False is returned: nothing is lost."""
        if self._patiently(lambda: self._insert_trial(run_id, position, spec, result, env,
                                                      scenario_hash)):
            return True
        self._journal_trial(run_id, position, spec, result, env, scenario_hash)
        return False

    def _patiently(self, write, patience_s: float | None = None) -> bool:
        """Run `write` (a function); while the database is locked, again with backoff for
        `patience_s` (WRITE_PATIENCE_S). False when it stayed locked. Inside a batch a lock is
        the batch's error: it is raised, so the whole batch rolls back."""
        patience_s = WRITE_PATIENCE_S if patience_s is None else patience_s
        deadline, pause = time.monotonic() + patience_s, 0.5
        while True:
            try:
                write()
                return True
            except sqlite3.OperationalError as err:
                if not _locked(err) or self._batch is not None:
                    raise
            if time.monotonic() + pause > deadline:
                return False
            time.sleep(pause)
            pause = min(pause * 2, 30.0)

    def _journal_trial(self, run_id: str, position: int, spec: TrialSpec, result: TrialResult,
                       env: dict[str, Any], scenario_hash: str) -> None:
        self.journal.mkdir(parents=True, exist_ok=True)
        record = {"run_id": run_id, "position": position, "spec": spec.to_dict(),
                  "result": dataclasses.asdict(result), "env": env, "scenario_hash": scenario_hash}
        name = f"{time.time_ns()}-{os.getpid()}-{position}.json"
        tmp = self.journal / f".{name}.tmp"
        tmp.write_text(json.dumps(record), encoding="utf-8")
        os.replace(tmp, self.journal / name)  # a reader sees the whole entry or none

    def _insert_trial(self, run_id: str, position: int, spec: TrialSpec, result: TrialResult,
                      env: dict[str, Any], scenario_hash: str) -> None:
        row = {
            "run_id": run_id, "trial_id": spec.trial_id, "position": position, "name": spec.name,
            "params_json": json.dumps(spec.params), "status": result.status, "reason": result.reason,
            "metrics_json": json.dumps(result.metrics), "unmeasured_json": json.dumps(result.unmeasured),
            "notes_json": json.dumps(result.notes), "warnings_json": json.dumps(result.warnings),
            "spec_json": json.dumps(spec.to_dict()), "env_json": json.dumps(env),
            "traceback": result.traceback, "started_at": result.started_at,
            "finished_at": result.finished_at, "scenario_hash": scenario_hash,
            "harness_version": env.get("harness_version"), "git_commit": env.get("git_commit"),
            "git_dirty": env.get("git_dirty"), "schema_version": result.schema_version,
        }
        with self._writing() as db:
            db.execute(f"INSERT OR REPLACE INTO trials ({', '.join(row)})"
                       f" VALUES ({', '.join(':' + column for column in row)})", row)
            db.execute("DELETE FROM series WHERE run_id=? AND trial_id=?", (run_id, spec.trial_id))
            db.executemany(
                "INSERT INTO series VALUES (?,?,?,?,?)",
                [(run_id, spec.trial_id, name, step, _finite_or_none(value))
                 for name, values in result.series.items() for step, value in enumerate(values)])

    def finish_run(self, run_id: str, at: str | None = None) -> bool:
        """Mark the run finished; False when the database stayed locked (the mark is only
        information: the trials are what matters, and they are stored or journalled)."""
        def mark() -> None:
            with self._writing() as db:
                db.execute("UPDATE runs SET finished_at=? WHERE run_id=?", (at or utc_now(), run_id))

        return self._patiently(mark)

    def has_run(self, run_id: str) -> bool:
        with self._reading() as db:
            return db.execute("SELECT 1 FROM runs WHERE run_id=?", (run_id,)).fetchone() is not None

    # -- reading ------------------------------------------------------------------------
    def run(self, run_id: str | None = None, scenario: str | None = None) -> RunInfo:
        """A run by id, or the latest run (of `scenario`, when given)."""
        query, args = "SELECT * FROM runs", []
        if run_id:
            query, args = query + " WHERE run_id=?", [run_id]
        elif scenario:
            query, args = query + " WHERE scenario=?", [scenario]
        with self._reading() as db:
            row = db.execute(query + " ORDER BY started_at DESC, rowid DESC LIMIT 1", args).fetchone()
        if row is None:
            what = f"run '{run_id}'" if run_id else f"run of scenario '{scenario}'" if scenario else "run"
            raise InputError(f"no {what} in this database", file=str(self.path))
        return RunInfo(
            run_id=row["run_id"], scenario=row["scenario"], description=row["description"] or "",
            scenario_path=row["scenario_path"], scenario_hash=row["scenario_hash"],
            device=row["device"], baseline=json.loads(row["baseline_json"] or "null"),
            planned_trials=row["planned_trials"], started_at=row["started_at"],
            finished_at=row["finished_at"], env=json.loads(row["env_json"] or "{}"),
            overrides=json.loads(row["overrides_json"] or "[]"))

    def runs(self) -> list[dict[str, Any]]:
        with self._reading() as db:
            rows = db.execute(
                "SELECT r.run_id, r.scenario, r.device, r.started_at, r.finished_at, r.planned_trials,"
                " COUNT(t.trial_id) AS trials FROM runs r LEFT JOIN trials t USING (run_id)"
                " GROUP BY r.run_id ORDER BY r.started_at, r.rowid").fetchall()
        return [dict(row) for row in rows]

    def trial_ids(self, run_id: str) -> set[str]:
        with self._reading() as db:
            return {row[0] for row in db.execute("SELECT trial_id FROM trials WHERE run_id=?", (run_id,))}

    def trials(self, run_id: str, *, with_series: bool = False) -> list[dict[str, Any]]:
        """Every trial of a run, in planned order, in the export's shape: with `run` (the run's
        own facts, so one trial object is self-describing) and, when asked, `series`."""
        with self._reading() as db:
            rows = db.execute("SELECT t.*, r.scenario FROM trials t JOIN runs r USING (run_id)"
                              " WHERE run_id=? ORDER BY position", (run_id,)).fetchall()
        run = self.run(run_id)
        facts = {"description": run.description, "scenario_path": run.scenario_path,
                 "device": run.device, "baseline": run.baseline,
                 "planned_trials": run.planned_trials, "started_at": run.started_at,
                 "finished_at": run.finished_at, "overrides": run.overrides}
        by_trial = self.trial_series(run_id) if with_series else {}
        trials = [{
            "schema_version": row["schema_version"], "run_id": row["run_id"],
            "scenario": row["scenario"], "trial_id": row["trial_id"], "name": row["name"],
            "params": _json(row, "params_json", self.path), "status": row["status"],
            "reason": row["reason"], "metrics": _json(row, "metrics_json", self.path),
            "unmeasured": _json(row, "unmeasured_json", self.path),
            "notes": _json(row, "notes_json", self.path),
            "warnings": _json(row, "warnings_json", self.path, []),
            "traceback": row["traceback"], "started_at": row["started_at"],
            "finished_at": row["finished_at"], "scenario_hash": row["scenario_hash"],
            "harness_version": row["harness_version"], "git_commit": row["git_commit"],
            "git_dirty": None if row["git_dirty"] is None else bool(row["git_dirty"]),
            "spec": _json(row, "spec_json", self.path), "env": _json(row, "env_json", self.path),
            "run": facts, "position": row["position"],
        } for row in rows]
        if with_series:
            for trial in trials:
                trial["series"] = by_trial.get(trial["trial_id"], {})
        return trials

    def trial_series(self, run_id: str) -> dict[str, dict[str, list[float | None]]]:
        """trial_id -> series name -> values in step order."""
        out: dict[str, dict[str, list[float | None]]] = {}
        for trial_id, name, _, value in self.series(run_id):
            out.setdefault(trial_id, {}).setdefault(name, []).append(value)
        return out

    def series(self, run_id: str) -> list[tuple[str, str, int, float | None]]:
        """(trial_id, series, step, value) rows of a run."""
        with self._reading() as db:
            return [tuple(row) for row in db.execute(
                "SELECT trial_id, series, step, value FROM series WHERE run_id=?"
                " ORDER BY trial_id, series, step", (run_id,))]


def _json(row: sqlite3.Row, column: str, path: Path, default: Any = None) -> Any:
    """A JSON column of a stored trial; a value that is not JSON (a database edited or
    damaged by hand) is an InputError naming the trial and the column, not a traceback."""
    text = row[column] if column in row.keys() else None
    if text is None and default is not None:
        return default
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        raise InputError(f"trial {row['trial_id']} of run {row['run_id']}: {column} is not valid "
                         "JSON (was the database edited by hand?)", file=str(path)) from None


def _unusable(err: sqlite3.DatabaseError) -> str:
    text = str(err)
    if "not a database" in text:
        return "not an SQLite database (file is not a database)"
    if "readonly" in text:
        return "cannot write the results database: it is read-only (check its permissions)"
    if "unable to open" in text:
        return "cannot open the results database (check the path and its permissions)"
    return f"cannot use the results database: {text}"


def _locked(err: sqlite3.OperationalError) -> bool:
    return "locked" in str(err) or "busy" in str(err)


def _add_missing_columns(db: sqlite3.Connection) -> None:
    for table, columns in ADDED_COLUMNS.items():
        present = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        for name, kind in columns:
            if name in present:
                continue
            try:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
            except sqlite3.OperationalError as err:  # another process added it first
                if "duplicate column" not in str(err):
                    raise


def _finite_or_none(value: float | None) -> float | None:
    # SQLite stores NaN as NULL anyway; infinities are kept (a diverged loss is information)
    if value is None or value != value:
        return None
    return float(value)
