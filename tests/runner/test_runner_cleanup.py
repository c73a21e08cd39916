"""A sweep's temporary folder is gone however the sweep ends: SIGTERM unwinds it (worker
stopped, folder removed, finished trials stored), and a runner killed outright has its folder
removed by the next runner."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import psutil
import pytest

from hanging_sweep import start_hanging_sweep, stored_trials

from harness.launch import remove_stale_worker_folders


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_folders_of_dead_runners_are_removed_and_no_other(tmp_path):
    dead, alive = tmp_path / f"harness-{dead_pid()}-abc", tmp_path / f"harness-{os.getpid()}-def"
    others = [tmp_path / "harness-results-xyz", tmp_path / "harness-", tmp_path / "mine-123-x"]
    for folder in (dead, alive, *others):
        folder.mkdir()
    (dead / "t.spec.json").write_text("{}")
    assert remove_stale_worker_folders(tmp_path) == [dead]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in (alive, *others))


@pytest.mark.slow
def test_sigterm_mid_trial_stops_the_worker_removes_the_folder_and_keeps_what_finished(
        tmp_path, write_scenario, faulty):
    temp = tmp_path / "tmp"
    temp.mkdir()
    path = write_scenario("term", timeout_s=300, matrix={"model.arch": ["gpt", faulty("hangs")]})
    db = tmp_path / "r.db"
    runner, workers = start_hanging_sweep(path, db, temp)
    assert list(temp.glob("harness-*"))
    runner.send_signal(signal.SIGTERM)
    _, err = runner.communicate(timeout=60)
    assert runner.returncode == 128 + signal.SIGTERM, err
    assert err.splitlines()[-1] == ("harness: terminated (SIGTERM); finished trials are stored "
                                    "(resume with --resume)")
    assert list(temp.iterdir()) == []
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in workers)
    assert stored_trials(db) == 1
