"""One runner per run: a lease row in the results database while a sweep runs a run's trials.

Two runners on one run (a second `--resume` while the first still runs, or `--resume` of a run
still being swept) would both run the trials it lacks. The lease is a row keyed by run id, so
taking it is one INSERT, atomic in SQLite: the second runner's fails, and it is told who holds
the run. A holder that died without releasing it (SIGKILL, a lost node) is recognised as dead:
on its own host by its pid, elsewhere by a heartbeat older than `stale_after_s` (the runner
renews after a trial, at most once a minute, and no trial outlives its timeout).
"""

from __future__ import annotations

import os
import socket
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from harness.errors import InputError
from harness.processes import pid_alive
from harness.spec import utc_now
from harness.store.db import ResultStore


@dataclass(frozen=True)
class Holder:
    host: str
    pid: int
    since: str
    renewed: float  # time.time() of the last heartbeat

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host} (since {self.since})"


def me() -> Holder:
    return Holder(socket.gethostname(), os.getpid(), utc_now(), time.time())


@contextmanager
def run_lease(store: ResultStore, run_id: str, stale_after_s: float, field: str = "--resume"
              ) -> Iterator[Callable[[], None]]:
    """Hold run `run_id` for the block; yields a function that renews the heartbeat. A run held
    by a live runner is an InputError (exit 2) naming it."""
    holder = me()
    _take(store, run_id, holder, stale_after_s, field)
    try:
        last = [holder.renewed]
        yield lambda: _renew(store, run_id, holder, last)
    finally:
        _release(store, run_id, holder)


def holder_of(store: ResultStore, run_id: str) -> Holder | None:
    with store._reading() as db:
        row = db.execute("SELECT host, pid, since, renewed FROM leases WHERE run_id=?",
                         (run_id,)).fetchone()
    return Holder(row["host"], row["pid"], row["since"], row["renewed"]) if row else None


def _take(store: ResultStore, run_id: str, holder: Holder, stale_after_s: float, field: str) -> None:
    for _ in range(3):  # insert; if a dead holder's row is there, remove that row and insert again
        try:
            with store._writing() as db:
                db.execute("INSERT INTO leases VALUES (?,?,?,?,?)",
                           (run_id, holder.host, holder.pid, holder.since, holder.renewed))
            return
        except sqlite3.IntegrityError:  # a row is there: whose?
            pass
        other = holder_of(store, run_id)
        if other is None:
            continue  # released in between
        if _alive(other, stale_after_s):
            raise InputError(f"run {run_id} is being run by {other.describe()}: two runners would "
                             "run the same trials; wait for it to end", field=field)
        with store._writing() as db:  # only that dead holder's row: a new holder's stays
            db.execute("DELETE FROM leases WHERE run_id=? AND host=? AND pid=? AND since=?",
                       (run_id, other.host, other.pid, other.since))
    raise InputError(f"run {run_id}: could not take its lease (other runners keep taking it)",
                     field=field)


def _alive(holder: Holder, stale_after_s: float) -> bool:
    if holder.host == socket.gethostname():
        return pid_alive(holder.pid)
    return time.time() - holder.renewed < stale_after_s


HEARTBEAT_S = 60.0  # at most one heartbeat a minute: a sweep of 1-second trials writes little


def _renew(store: ResultStore, run_id: str, holder: Holder, last: list[float]) -> None:
    if time.time() - last[0] < HEARTBEAT_S:
        return

    def beat() -> None:
        with store._writing() as db:
            db.execute("UPDATE leases SET renewed=? WHERE run_id=? AND pid=? AND host=?",
                       (time.time(), run_id, holder.pid, holder.host))

    # one try: a database another process holds locked costs a beat, not the sweep's time
    # (a holder is dead only after two trials' timeouts without one)
    if store._patiently(beat, patience_s=0.0):
        last[0] = time.time()


def _release(store: ResultStore, run_id: str, holder: Holder) -> None:
    def release() -> None:
        with store._writing() as db:
            db.execute("DELETE FROM leases WHERE run_id=? AND pid=? AND host=?",
                       (run_id, holder.pid, holder.host))

    try:
        store._patiently(release, patience_s=0.0)
    except (InputError, sqlite3.Error):  # a lease left behind is recognised as dead later
        pass
