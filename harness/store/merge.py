"""Bring exported trials into a results database, and open any results a user names.

`harness export --format json` writes self-describing trial objects (each carries its run's
facts and its series), so a database can be rebuilt from exports taken on other machines.
A trial already present (same run id, same trial id) is never changed: importing the same
export twice adds nothing, and an export holding another version of a stored trial is refused
whole. An import is one transaction and every trial is validated first (harness.store.validate).
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import InputError
from harness.spec import TrialResult, TrialSpec
from harness.store.db import ResultStore
from harness.store.validate import validate_trial

REQUIRED_KEYS = ("run_id", "scenario", "trial_id", "params", "status", "spec")
# what makes two copies of one trial the same trial: every figure and fact it recorded
COMPARED = ("name", "params", "status", "reason", "metrics", "unmeasured", "notes", "warnings",
            "traceback", "started_at", "finished_at", "spec", "series")


@dataclass(frozen=True)
class ImportSummary:
    runs_added: int
    trials_added: int
    trials_present: int  # already in the database, identical: left untouched


def read_export(path: Path) -> list[dict[str, Any]]:
    """The trial objects of one JSON export file, each validated (harness.store.validate)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("no such file", file=str(path)) from None
    except IsADirectoryError:
        raise InputError("a folder, not an export file", file=str(path)) from None
    except OSError as err:
        raise InputError(f"cannot read: {err.strerror or err}", file=str(path)) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        line = getattr(err, "lineno", None)
        raise InputError(f"not a JSON export: {err.__class__.__name__}", file=str(path),
                         line=line) from None
    except RecursionError:
        raise InputError("not a JSON export: nested too deeply", file=str(path)) from None
    except ValueError as err:  # an integer of more digits than Python converts (4,300)
        raise InputError(f"not a JSON export: {err}", file=str(path)) from None
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
        validate_trial(trial, str(path), index)
    return data


def import_trials(store: ResultStore, trials: list[dict[str, Any]], source: str = "") -> ImportSummary:
    """Add every trial the database lacks, creating its run first when the run is new, in one
    transaction. A trial already stored (same run, same trial id) is never changed: an
    identical copy is counted as present, a different one refuses the whole import (an
    InputError naming the trial), and the database stays exactly as it was."""
    runs_added = trials_added = present = 0
    known: dict[str, dict[str, str]] = {}  # run -> trial id -> its canonical form
    with store.batch():
        for index, trial in enumerate(trials):
            run_id, trial_id = trial["run_id"], trial["trial_id"]
            if run_id not in known:
                if store.has_run(run_id):
                    known[run_id] = {t["trial_id"]: canonical(t)
                                     for t in store.trials(run_id, with_series=True)}
                else:
                    _create_run(store, run_id, trial, [t for t in trials if t["run_id"] == run_id])
                    known[run_id] = {}
                    runs_added += 1
            if trial_id in known[run_id]:
                if known[run_id][trial_id] != canonical(trial):
                    raise InputError(
                        f"trial {trial_id!r} of run {run_id!r} is already stored with other "
                        "figures; an import never changes a stored trial (nothing was imported)",
                        file=source or None, field=f"[{index}]")
                present += 1
                continue
            spec = TrialSpec.from_dict(trial["spec"])
            result = TrialResult(
                trial_id, trial["status"], reason=trial.get("reason"),
                metrics=trial.get("metrics") or {}, unmeasured=trial.get("unmeasured") or {},
                series=trial.get("series") or {}, notes=trial.get("notes") or {},
                warnings=trial.get("warnings") or [], traceback=trial.get("traceback"),
                started_at=trial.get("started_at"), finished_at=trial.get("finished_at"),
                schema_version=trial.get("schema_version") or 1)
            position = trial.get("position")
            store.save_trial(run_id, len(known[run_id]) if position is None else position, spec,
                             result, trial.get("env") or {}, trial.get("scenario_hash") or "")
            known[run_id][trial_id] = canonical(trial)
            trials_added += 1
    return ImportSummary(runs_added, trials_added, present)


def canonical(trial: dict[str, Any]) -> str:
    """A trial's recorded facts as one string, the same for a stored trial and its export."""
    facts = {key: trial.get(key) for key in COMPARED}
    # a series as the store keeps it: NaN as None
    facts["series"] = {name: [None if isinstance(v, float) and math.isnan(v) else v for v in values]
                       for name, values in (trial.get("series") or {}).items()}
    for key in ("metrics", "unmeasured", "notes"):
        facts[key] = facts[key] or {}
    facts["warnings"] = facts["warnings"] or []
    # through JSON as the store does: tuples become lists, non-finite floats one spelling
    return json.dumps(json.loads(json.dumps(facts, default=str)), sort_keys=True, default=str)


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
        return ResultStore(path, read_only=True)
    folder = tempfile.mkdtemp(prefix="harness-results-")
    store = ResultStore(Path(folder) / "imported.db")
    weakref.finalize(store, shutil.rmtree, folder, ignore_errors=True)
    for file in files:
        import_trials(store, read_export(file), str(file))
    return store
