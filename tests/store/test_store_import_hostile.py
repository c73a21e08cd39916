"""`harness import` against hostile exports: a stored trial is never changed, an import is
all or nothing, and every garbled export is a one-line exit 2 that leaves the database as it was.
"""

from __future__ import annotations

import copy
import json
import sqlite3


from harness.analysis import trial_frame
from harness.cli import main
from harness.claims.verdict import hardware_of
from harness.regression.compare import compare_runs
from harness.regression.history import RunRecord, history_frame
from harness.store import ResultStore, export_trials
from stored_runs import export_of, stored


def dump(db) -> list[tuple]:
    """Everything a database holds, to show an import left it exactly as it was."""
    with sqlite3.connect(db) as con:
        return [row for table in ("runs", "trials", "series")
                for row in con.execute(f"SELECT * FROM {table} ORDER BY 1, 2")]


def import_(tmp_path, capsys, trials, db) -> tuple[int, str]:
    path = tmp_path / "in.json"
    path.write_text(json.dumps(trials))
    code = main(["import", str(path), "--results", str(db)])
    captured = capsys.readouterr()
    return code, captured.err.strip() or captured.out.strip()


def test_an_export_round_trips_and_imports_again_as_already_present(tmp_path, capsys):
    source = stored(tmp_path / "a.db")
    db = tmp_path / "b.db"
    assert import_(tmp_path, capsys, export_of(source), db)[0] == 0
    code, out = import_(tmp_path, capsys, export_of(source), db)
    assert code == 0 and out.endswith("0 trials added (0 new runs), 2 already present")


def test_another_version_of_a_stored_trial_is_refused_and_nothing_changes(tmp_path, capsys):
    db = tmp_path / "b.db"
    stored(db)  # ok trials
    before = dump(db)
    failed = export_of(stored(tmp_path / "other.db", status="failed"))
    code, err = import_(tmp_path, capsys, failed, db)
    assert code == 2 and "\n" not in err
    assert "trial 't-fp32' of run 'run-a' is already stored with other figures" in err
    assert dump(db) == before


def test_an_export_whose_id_differs_from_its_specs_is_refused(tmp_path, capsys):
    db = tmp_path / "b.db"
    stored(db)
    before = dump(db)
    trials = export_of(stored(tmp_path / "other.db", status="failed"))
    trials[0]["trial_id"] = "brand-new"  # the spec still says t-fp32: the key the store uses
    code, err = import_(tmp_path, capsys, trials, db)
    assert code == 2 and "[0].trial_id" not in err and "differs from spec.trial_id 't-fp32'" in err
    assert dump(db) == before


def test_many_copies_of_one_trial_store_one_or_refuse(tmp_path, capsys):
    one = export_of(stored(tmp_path / "a.db"))[0]
    db = tmp_path / "b.db"
    code, out = import_(tmp_path, capsys, [one] * 200, db)
    assert code == 0 and out.endswith("1 trials added (1 new runs), 199 already present")
    changed = [copy.deepcopy(one) for _ in range(3)]
    changed[2]["metrics"]["tokens_per_s"] = 1.0
    changed[0]["run_id"] = changed[1]["run_id"] = changed[2]["run_id"] = "run-z"
    before = dump(db)
    code, err = import_(tmp_path, capsys, changed, db)
    assert code == 2 and "[2]" in err and dump(db) == before  # not even run-z's first copy


def test_an_import_of_several_files_is_all_or_nothing(tmp_path, capsys):
    db = tmp_path / "b.db"
    stored(db)
    before = dump(db)
    good, clash = tmp_path / "good.json", tmp_path / "clash.json"
    good.write_text(json.dumps(export_of(stored(tmp_path / "n.db", run_id="run-new"), "run-new")))
    clash.write_text(json.dumps(export_of(stored(tmp_path / "c.db", tokens=5.0))))
    assert main(["import", str(good), str(clash), "--results", str(db)]) == 2
    assert dump(db) == before  # the good file's run is not half in


BAD_VALUES = [None, 3, "x", [], {}, [[[]]], {"a": {"b": []}}, True, -1, 1e308]


def hostile_exports(trial: dict) -> list[tuple[str, dict]]:
    """The trial with one key (top-level, in its spec, or a figure) given each BAD_VALUE,
    with one key removed, and with unusual but legal values."""
    cases = []
    for key in [*trial, *(f"{outer}.{k}" for outer in ("spec", "run", "env") for k in trial[outer]),
                "metrics.tokens_per_s", "series.step_time_s", "warnings.0", "env.device_count",
                "params.repeat", "env.host", "env.libraries"]:
        for value in BAD_VALUES:
            mutated = copy.deepcopy(trial)
            if key == "warnings.0":
                mutated["warnings"] = [value]
            elif "." in key:
                outer, inner = key.split(".")
                mutated[outer][inner] = value
            else:
                mutated[key] = value
            cases.append((f"{key}={value!r}", mutated))
    for key in trial:
        cases.append((f"without {key}", {k: v for k, v in trial.items() if k != key}))
    deep: list = []
    for _ in range(5000):
        deep = [deep]
    cases.append(("notes nested 5000 deep", {**copy.deepcopy(trial), "notes": {"x": deep}}))
    return cases


def test_every_hostile_export_is_stored_readably_or_refused_in_one_line(tmp_path, capsys):
    trial = export_of(stored(tmp_path / "a.db"))[1]
    db = tmp_path / "b.db"
    stored(db, run_id="run-kept")
    accepted = refused = 0
    for label, mutated in hostile_exports(trial):
        before = dump(db)
        path = tmp_path / "in.json"
        try:
            path.write_text(json.dumps(mutated))
        except (RecursionError, ValueError):  # json cannot even write it: nothing to import
            continue
        code = main(["import", str(path), "--results", str(db)])
        err = capsys.readouterr().err.strip()
        assert code in (0, 2), label
        if code == 2:
            refused += 1
            assert err.startswith("harness: error: ") and "\n" not in err, label
            assert dump(db) == before, label
            continue
        accepted += 1  # then every reader must read it back
        store = ResultStore(db)
        for run in store.runs():
            trials = store.trials(run["run_id"], with_series=True)
            trial_frame(trials)
            compare_runs(trials, trials)
            history_frame([RunRecord(run["run_id"], run["started_at"], store.run(run["run_id"]).env,
                                     trials)], ["tokens_per_s"])
            hardware_of(store.run(run["run_id"]).env, None)
            export_trials(trials, "json", None)
        # make the next case start from the same database
        with sqlite3.connect(db) as con:
            for table in ("series", "trials", "runs"):
                con.execute(f"DELETE FROM {table} WHERE run_id != 'run-kept'")
    assert refused >= 60 and accepted >= 10  # the figures the note quotes come from here
    print(f"hostile exports: {accepted + refused} tried, {refused} refused, {accepted} stored")


def test_an_export_is_strict_json_and_its_non_finite_figures_round_trip(tmp_path, capsys):
    """JSON has no NaN or Infinity: they are exported as the strings import reads back."""
    from harness.spec import TrialResult, TrialSpec

    store = stored(tmp_path / "a.db")
    spec = TrialSpec(scenario="s", trial_id="t-inf", name="precision=fp16", params={"precision": "fp16", "repeat": 0},
                     model={}, data={}, train={}, techniques={"precision": "fp16"}, device="cpu", timeout_s=5)
    store.save_trial("run-a", 2, spec, TrialResult("t-inf", "ok", metrics={"loss_scale": float("inf")},
                                                   notes={"ratio": float("nan"), "deep": [{"x": float("-inf")}]}),
                     {"device": "cpu"}, "h")
    text = export_trials(store.trials("run-a", with_series=True), "json", None)

    def refuse(constant):
        raise ValueError(f"bare {constant} in an export")

    trials = json.loads(text, parse_constant=refuse)
    exported = next(t for t in trials if t["trial_id"] == "t-inf")
    assert exported["metrics"]["loss_scale"] == "inf"
    assert exported["notes"] == {"ratio": "nan", "deep": [{"x": "-inf"}]}
    (tmp_path / "a.json").write_text(text)
    assert main(["import", str(tmp_path / "a.json"), "--results", str(tmp_path / "b.db")]) == 0
    again = ResultStore(tmp_path / "b.db", read_only=True)
    assert json.loads(export_trials(again.trials("run-a", with_series=True), "json", None)) == trials
