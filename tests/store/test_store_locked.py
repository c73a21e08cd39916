"""A database another process holds locked: a finished trial waits with backoff, then goes to
the journal beside the database, and the next store to open it takes it in. Nothing is lost."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from harness.spec import TrialResult, TrialSpec
from harness.store import ResultStore
from harness.store import db as store_db


def spec(name: str) -> TrialSpec:
    return TrialSpec(scenario="s", trial_id=f"t-{name}", name=name, params={"repeat": 0}, model={},
                     data={}, train={"steps": 1}, techniques={}, device="cpu", timeout_s=5)


def fresh(path) -> ResultStore:
    store = ResultStore(path)
    store.create_run("run-a", scenario="s", description="", scenario_path="", scenario_hash="h",
                     overrides=[], device="cpu", baseline=None, planned_trials=2, env={})
    return store


def hold_lock(path) -> sqlite3.Connection:
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # another process's write transaction
    return other


@pytest.fixture
def impatient(monkeypatch):
    monkeypatch.setattr(store_db, "LOCK_TIMEOUT_S", 0.05)
    monkeypatch.setattr(store_db, "WRITE_PATIENCE_S", 0.3)


def test_a_trial_finished_while_the_database_stays_locked_is_journalled_then_taken_in(tmp_path, impatient):
    path = tmp_path / "r.db"
    store = fresh(path)
    other = hold_lock(path)
    result = TrialResult("t-a", "ok", metrics={"tokens_per_s": 5.0}, series={"loss": [2.0, 1.5]})
    assert store.save_trial("run-a", 0, spec("a"), result, {"device": "cpu"}, "h") is False
    assert store.finish_run("run-a") is False
    assert len(list(store.journal.glob("*.json"))) == 1
    other.rollback()
    other.close()
    reopened = ResultStore(path)  # the next command to open it takes the journal in
    (trial,) = reopened.trials("run-a", with_series=True)
    assert (trial["status"], trial["metrics"], trial["series"]) == ("ok", {"tokens_per_s": 5.0},
                                                                     {"loss": [2.0, 1.5]})
    assert list(reopened.journal.glob("*.json")) == []


def test_a_reading_command_leaves_the_journal_for_a_writer_and_says_so(tmp_path, impatient, capsys):
    path = tmp_path / "r.db"
    store = fresh(path)
    other = hold_lock(path)
    assert store.save_trial("run-a", 0, spec("a"), TrialResult("t-a", "ok"), {}, "h") is False
    other.rollback()
    other.close()
    reader = ResultStore(path, read_only=True)
    assert reader.trials("run-a") == [] and reader.waiting_in_journal() == 1
    assert capsys.readouterr().err == (f"harness: note: 1 trials wait in {store.journal} (the database "
                                       "was locked); the next command that writes to it takes them in\n")
    assert [t["trial_id"] for t in ResultStore(path).trials("run-a")] == ["t-a"]


def test_a_lock_released_while_waiting_lets_the_write_through(tmp_path, monkeypatch):
    monkeypatch.setattr(store_db, "LOCK_TIMEOUT_S", 0.05)
    monkeypatch.setattr(store_db, "WRITE_PATIENCE_S", 10.0)
    path = tmp_path / "r.db"
    store = fresh(path)
    other = hold_lock(path)
    release = threading.Timer(0.4, lambda: (other.rollback(), other.close()))
    release.start()
    assert store.save_trial("run-a", 0, spec("a"), TrialResult("t-a", "ok"), {}, "h") is True
    release.join()
    assert [t["trial_id"] for t in store.trials("run-a")] == ["t-a"] and not store.journal.exists()


def test_a_sweep_goes_on_while_the_database_is_locked_and_loses_nothing(tmp_path, impatient,
                                                                        write_scenario, monkeypatch):
    import harness.runner as runner
    from harness.scenario import load_scenario

    path = tmp_path / "r.db"
    store = ResultStore(path)
    loaded = load_scenario(write_scenario("locked", repeats=2, matrix={"precision": ["fp32", "bf16"]}))
    held: list[sqlite3.Connection] = []

    def worker(spec, *args):
        if not held:  # the lock is taken once the run row exists
            held.append(hold_lock(path))
        return TrialResult(spec.trial_id, "ok", metrics={"tokens_per_s": 1.0})

    monkeypatch.setattr(runner, "run_worker", worker)
    summary = runner.run_scenario(loaded, store, "cpu")
    assert summary.ran == 4
    held[0].rollback()
    held[0].close()
    reopened = ResultStore(path)
    assert sorted(t["status"] for t in reopened.trials(summary.run_id)) == ["ok"] * 4
