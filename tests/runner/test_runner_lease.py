"""One runner per run: a second runner on a run that a live one holds is a one-line exit 2
naming the holder; a dead holder's lease (its pid gone, or its heartbeat stale on another
host) is taken over; the lease goes when the sweep ends."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

import pytest
from hanging_sweep import start_hanging_sweep, stored_trials

from harness.cli import main
from harness.errors import InputError
from harness.store import ResultStore
from harness.store import lease
from harness.store.lease import holder_of, run_lease


def lease_row(store: ResultStore, run_id: str, host: str, pid: int, renewed: float) -> None:
    with store._writing() as db:
        db.execute("INSERT INTO leases VALUES (?,?,?,?,?)",
                   (run_id, host, pid, "2026-12-02T10:00:00+00:00", renewed))


@pytest.fixture
def store(tmp_path):
    return ResultStore(tmp_path / "r.db")


@pytest.fixture
def live_pid():
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield sleeper.pid
    sleeper.kill()
    sleeper.wait()


def test_a_run_held_by_a_live_runner_on_this_host_is_refused_naming_it(store, live_pid):
    lease_row(store, "run-a", socket.gethostname(), live_pid, time.time() - 10**6)  # old beat: pid decides
    with pytest.raises(InputError) as refused:
        with run_lease(store, "run-a", stale_after_s=60):
            pass
    assert str(refused.value) == (f"--resume: run run-a is being run by pid {live_pid} on "
                                  f"{socket.gethostname()} (since 2026-12-02T10:00:00+00:00): two "
                                  "runners would run the same trials; wait for it to end")
    assert holder_of(store, "run-a").pid == live_pid  # the holder keeps it


def test_a_dead_holders_lease_is_taken_over_and_released_at_the_end(store, monkeypatch):
    monkeypatch.setattr(lease, "HEARTBEAT_S", 0.0)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lease_row(store, "run-a", socket.gethostname(), dead.pid, time.time())  # fresh beat: pid decides
    with run_lease(store, "run-a", stale_after_s=60) as renew:
        assert holder_of(store, "run-a").pid != dead.pid
        before = holder_of(store, "run-a").renewed
        time.sleep(0.01)
        renew()
        assert holder_of(store, "run-a").renewed > before
    assert holder_of(store, "run-a") is None


@pytest.mark.parametrize("age_s, refused", [(30, True), (120, False)])
def test_another_hosts_lease_is_alive_while_its_heartbeat_is_fresh(store, age_s, refused):
    lease_row(store, "run-a", "node-elsewhere", 1, time.time() - age_s)
    if refused:
        with pytest.raises(InputError, match="being run by pid 1 on node-elsewhere"):
            with run_lease(store, "run-a", stale_after_s=60):
                pass
    else:
        with run_lease(store, "run-a", stale_after_s=60):
            assert holder_of(store, "run-a").host == socket.gethostname()


@pytest.mark.slow
def test_resume_while_the_run_is_still_being_swept_is_one_line_exit_2_and_runs_nothing(
        tmp_path, write_scenario, faulty, capsys):
    path = write_scenario("busy", timeout_s=300, matrix={"model.arch": ["gpt", faulty("hangs")]})
    db, temp = tmp_path / "r.db", tmp_path / "tmp"
    temp.mkdir()
    runner, _ = start_hanging_sweep(path, db, temp)
    try:
        code = main(["run", str(path), "--resume", "--results", str(db), "-q", "--no-report"])
        err = capsys.readouterr().err
        assert code == 2 and len(err.splitlines()) == 1, err
        assert err.startswith("harness: error: --resume: run ") and f"by pid {runner.pid} on " in err
        assert stored_trials(db) == 1
    finally:
        runner.send_signal(signal.SIGTERM)
        runner.communicate(timeout=60)
    run, = ResultStore(db, read_only=True).runs()
    assert holder_of(ResultStore(db, read_only=True), run["run_id"]) is None  # released on SIGTERM


def test_the_heartbeat_is_written_at_most_once_a_minute(store, monkeypatch):
    with run_lease(store, "run-a", stale_after_s=60) as renew:
        taken = holder_of(store, "run-a").renewed
        renew()
        assert holder_of(store, "run-a").renewed == taken  # too soon: nothing written
        monkeypatch.setattr(lease.time, "time", lambda: taken + lease.HEARTBEAT_S + 1)
        renew()
        assert holder_of(store, "run-a").renewed == taken + lease.HEARTBEAT_S + 1
