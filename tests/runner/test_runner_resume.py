"""Kill -9 the runner in the middle of a sweep, rerun with --resume: no finished trial is
lost or run again, and no worker outlives the killed runner."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import psutil
import pytest

from harness.store import ResultStore

pytestmark = pytest.mark.slow


def _stored(db) -> list[dict]:
    if not db.exists():
        return []
    store = ResultStore(db)
    runs = store.runs()
    return store.trials(runs[-1]["run_id"]) if runs else []


def test_resume_after_kill_9_keeps_finished_trials_and_runs_only_the_rest(write_scenario, tmp_path):
    path = write_scenario("resume", train={"steps": 30},
                          matrix={"precision": ["fp32", "bf16"], "checkpointing": ["none", "full"]})
    db = tmp_path / "results.db"
    command = [sys.executable, "-m", "harness", "run", str(path), "--results", str(db),
               "--no-report", "-q"]
    runner = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while len(_stored(db)) < 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    workers = psutil.Process(runner.pid).children(recursive=True)
    runner.send_signal(signal.SIGKILL)
    runner.wait()

    before = _stored(db)
    assert 1 <= len(before) < 4, "the kill must land in the middle of the sweep"
    gone, alive = psutil.wait_procs(workers, timeout=10)
    assert not alive, "a worker outlived the killed runner"

    resumed = subprocess.run(command + ["--resume"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr

    after = _stored(db)
    assert len(after) == 4
    assert len({t["run_id"] for t in after}) == 1  # the same run, finished
    finished = {t["trial_id"]: t for t in after}
    for trial in before:  # untouched: same times, same figures
        assert finished[trial["trial_id"]]["finished_at"] == trial["finished_at"]
        assert finished[trial["trial_id"]]["metrics"] == trial["metrics"]
    assert f"resuming: {len(before)} of 4 trials already stored" in resumed.stderr
    assert resumed.stderr.count("] precision=") == 4 - len(before)
    assert all(t["status"] == "ok" for t in after)


def test_resume_refuses_a_changed_scenario(write_scenario, tmp_path):
    path = write_scenario("changed")
    db = tmp_path / "results.db"
    from harness.cli import main

    assert main(["run", str(path), "--results", str(db), "--no-report", "-q"]) == 0
    code = main(["run", str(path), "--results", str(db), "--no-report", "-q", "--resume",
                 "--set", "train.steps=7"])
    assert code == 2
