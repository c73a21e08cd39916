"""Bring exported trials into a results database, and open any results a user names.

`harness export --format json` writes self-describing trial objects (each carries its run's
facts and its series), so a database can be rebuilt from exports taken on other machines.
A trial already present (same run id, same trial id) is left as it is: importing the same
export twice adds nothing.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import InputError
from harness.spec import STATUSES, TrialResult, TrialSpec
from harness.store.db import ResultStore

REQUIRED_KEYS = ("run_id", "scenario", "trial_id", "params", "status", "spec")


@dataclass(frozen=True)
class ImportSummary:
    runs_added: int
    trials_added: int
    trials_present: int  # already in the database: left untouched


def read_export(path: Path) -> list[dict[str, Any]]:
    """The trial objects of one JSON export file, checked enough to import."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("no such file", file=str(path)) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        line = getattr(err, "lineno", None)
        raise InputError(f"not a JSON export: {err.__class__.__name__}", file=str(path),
                         line=line) from None
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise InputError("a JSON export is a list of trial objects", file=str(path))
    for index, trial in enumerate(data):
        if not isinstance(trial, dict):
            raise InputError("not a trial object", file=str(path), field=f"[{index}]")
        missing = [key for key in REQUIRED_KEYS if key not in trial]
        if missing:
            raise InputError(f"missing {', '.join(missing)} (is this a harness JSON export?)",
                             file=str(path), field=f"[{index}]")
        if trial["status"] not in STATUSES:
            raise InputError(f"unknown status {trial['status']!r}", file=str(path),
                             field=f"[{index}].status")
        _check_warnings(trial.get("warnings", []), path, index)
    return data


def _check_warnings(warnings: Any, path: Path, index: int) -> None:
    """An export written before trials carried `warnings` has none: that reads as []."""
    if not isinstance(warnings, list):
        raise InputError("warnings must be a list of {code, message} objects", file=str(path),
                         field=f"[{index}].warnings")
    for number, warning in enumerate(warnings):
        if not (isinstance(warning, dict) and isinstance(warning.get("code"), str)
                and isinstance(warning.get("message"), str)):
            raise InputError("a warning is an object with a string code and message",
                             file=str(path), field=f"[{index}].warnings[{number}]")


def import_trials(store: ResultStore, trials: list[dict[str, Any]]) -> ImportSummary:
    """Add every trial the database lacks; create its run first when the run is new."""
    runs_added = trials_added = present = 0
    known: dict[str, set[str]] = {}
    for trial in trials:
        run_id = trial["run_id"]
        if run_id not in known:
            if store.has_run(run_id):
                known[run_id] = store.trial_ids(run_id)
            else:
                _create_run(store, run_id, trial, [t for t in trials if t["run_id"] == run_id])
                known[run_id] = set()
                runs_added += 1
        if trial["trial_id"] in known[run_id]:
            present += 1
            continue
        spec = TrialSpec.from_dict(trial["spec"])
        result = TrialResult(
            trial["trial_id"], trial["status"], reason=trial.get("reason"),
            metrics=trial.get("metrics") or {}, unmeasured=trial.get("unmeasured") or {},
            series=trial.get("series") or {}, notes=trial.get("notes") or {},
            warnings=trial.get("warnings") or [], traceback=trial.get("traceback"),
            started_at=trial.get("started_at"), finished_at=trial.get("finished_at"),
            schema_version=trial.get("schema_version") or 1)
        position = trial.get("position")
        store.save_trial(run_id, len(known[run_id]) if position is None else position, spec,
                         result, trial.get("env") or {}, trial.get("scenario_hash") or "")
        known[run_id].add(trial["trial_id"])
        trials_added += 1
    return ImportSummary(runs_added, trials_added, present)


def _create_run(store: ResultStore, run_id: str, first: dict[str, Any],
                trials: list[dict[str, Any]]) -> None:
    # an export written before trials carried `run` has no run facts: rebuild what it can
    facts = first.get("run") or {}
    env = first.get("env") or {}
    started = [t["started_at"] for t in trials if t.get("started_at")]
    finished = [t["finished_at"] for t in trials if t.get("finished_at")]
    store.create_run(
        run_id, scenario=first["scenario"], description=facts.get("description") or "",
        scenario_path=facts.get("scenario_path") or "", scenario_hash=first.get("scenario_hash") or "",
        overrides=facts.get("overrides") or [], device=facts.get("device") or env.get("device") or "",
        baseline=facts.get("baseline"), planned_trials=facts.get("planned_trials") or len(trials),
        env=env, started_at=facts.get("started_at") or (min(started) if started else None))
    end = facts.get("finished_at") or (max(finished) if finished and not facts else None)
    if end:
        store.finish_run(run_id, at=end)


def open_results(path: str | Path) -> ResultStore:
    """A results database as named: an SQLite file as it is; a JSON export file, or a folder
    of them (e.g. results/reference/<hardware>/), imported into a temporary database that is
    removed when the store is garbage-collected."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.json"))
        if not files:
            raise InputError("no JSON exports (*.json) in this folder", file=str(path))
    elif path.suffix.lower() == ".json":
        files = [path]
    else:
        return ResultStore(path, create=False)
    folder = tempfile.mkdtemp(prefix="harness-results-")
    store = ResultStore(Path(folder) / "imported.db")
    weakref.finalize(store, shutil.rmtree, folder, ignore_errors=True)
    for file in files:
        import_trials(store, read_export(file))
    return store
