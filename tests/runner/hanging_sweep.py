"""A real sweep in a subprocess whose second trial hangs: for tests of what happens to a
sweep that is still running (a second runner, a SIGTERM)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from contextlib import closing

import psutil


def stored_trials(db) -> int:
    try:
        with closing(sqlite3.connect(db)) as conn:
            return conn.execute("SELECT COUNT(*) FROM trials").fetchone()[0]
    except sqlite3.OperationalError:  # not created yet
        return 0


def start_hanging_sweep(scenario, db, temp) -> tuple[subprocess.Popen, list[psutil.Process]]:
    """Start `harness run scenario` (its trials: one that finishes, then one that hangs) and
    return once the first is stored and the hanging one's worker runs: (runner, workers)."""
    runner = subprocess.Popen([sys.executable, "-m", "harness", "run", str(scenario), "--results",
                               str(db), "-q", "--no-report", "--device", "cpu"],
                              stderr=subprocess.PIPE, text=True, env={**os.environ, "TMPDIR": str(temp)})
    deadline = time.monotonic() + 120
    while stored_trials(db) < 1 and runner.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    workers: list[psutil.Process] = []
    while not workers and runner.poll() is None and time.monotonic() < deadline:
        workers = [p for p in psutil.Process(runner.pid).children(recursive=True)
                   if "harness.train.worker" in " ".join(p.cmdline())]
        time.sleep(0.2)
    assert workers, runner.communicate(timeout=5)[1] if runner.poll() is not None else "no worker"
    return runner, workers
