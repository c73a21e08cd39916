"""Launch one trial's worker in its own process (and process group), with a timeout.

The worker is a fresh Python process so that a crash, a CUDA OOM, leaked memory or a global
setting (TF32, thread counts, compile caches) of one trial cannot touch the next. On Linux
the worker dies with the runner (see `worker.die_with_parent`), so a killed sweep leaves no orphan
training in the background; a timeout kills the worker's whole process group.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.spec import TrialResult, TrialSpec
from harness.train.worker import PROGRESS_PREFIX

STDERR_TAIL = 4000
GRACE_S = 5.0  # between SIGTERM and SIGKILL of a timed-out worker

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class WorkerExit:
    returncode: int | None
    timed_out: bool
    stderr_tail: str
    wall_s: float


def run_worker(spec: TrialSpec, workdir: Path, progress: Progress = lambda d, t: None) -> TrialResult:
    """Run `spec` in a worker process; always returns a TrialResult, whatever happened."""
    workdir.mkdir(parents=True, exist_ok=True)
    spec_path = workdir / f"{spec.trial_id}.spec.json"
    result_path = workdir / f"{spec.trial_id}.result.json"
    result_path.unlink(missing_ok=True)
    spec_path.write_text(json.dumps(spec.to_dict()))
    command = [sys.executable, "-m", "harness.train.worker", str(spec_path), str(result_path),
               str(os.getpid())]
    exit_ = _run(command, spec.timeout_s, workdir / f"{spec.trial_id}.stderr", progress,
                 _worker_env(workdir / f"{spec.trial_id}.compile-cache"))
    if exit_.timed_out:
        return TrialResult(spec.trial_id, "timeout",
                           reason=f"no result after {spec.timeout_s:g} s; the worker was killed",
                           traceback=exit_.stderr_tail or None)
    if result_path.exists():
        return TrialResult.from_json(result_path.read_text())
    return TrialResult(spec.trial_id, "failed", reason=_describe_exit(exit_.returncode),
                       traceback=exit_.stderr_tail or None)


def _worker_env(compile_cache: Path) -> dict[str, str]:
    """The runner's environment, with compiler caches private to the trial: every compiled
    trial compiles cold, so compile_time_s does not depend on which trial ran before."""
    return {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(compile_cache / "inductor"),
            "TRITON_CACHE_DIR": str(compile_cache / "triton")}


def _run(command: list[str], timeout_s: float, stderr_path: Path, progress: Progress,
         env: dict[str, str]) -> WorkerExit:
    t0 = time.monotonic()
    with open(stderr_path, "w+b") as stderr:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL,
                                start_new_session=True, text=True, bufsize=1, env=env)
        reader = threading.Thread(target=_read_progress, args=(proc, progress), daemon=True)
        reader.start()
        timed_out = False
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc)
        except BaseException:  # the runner itself is interrupted: take the worker down too
            _kill_group(proc)
            raise
        reader.join(timeout=5)
        stderr.seek(0)
        tail = stderr.read().decode(errors="replace")[-STDERR_TAIL:]
    return WorkerExit(proc.returncode, timed_out, tail, time.monotonic() - t0)


def _read_progress(proc: subprocess.Popen, progress: Progress) -> None:
    for line in proc.stdout:
        if line.startswith(PROGRESS_PREFIX):
            try:
                event = json.loads(line[len(PROGRESS_PREFIX):])
                progress(event["done"], event["total"])
            except (ValueError, KeyError):
                continue


def _kill_group(proc: subprocess.Popen) -> None:
    for sig, wait_s in ((signal.SIGTERM, GRACE_S), (signal.SIGKILL, GRACE_S)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def _describe_exit(returncode: int | None) -> str:
    if returncode is not None and returncode < 0:
        name = signal.Signals(-returncode).name
        hint = " (the host's out-of-memory killer is one sender)" if name == "SIGKILL" else ""
        return f"the worker was killed by {name}{hint} before writing a result"
    return f"the worker exited with code {returncode} without writing a result"
