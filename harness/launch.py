"""Launch one trial's worker in its own process (and process group), with a timeout.

The worker is a fresh Python process so that a crash, a CUDA OOM, leaked memory or a global
setting (TF32, thread counts, compile caches) of one trial cannot touch the next. A trial of
several ranks (or with a data-parallel strategy) runs under torch elastic instead: torchrun
(`harness.elastic`) starts its ranks on this node, with a fixed node count and no restarts,
NCCL on GPUs and gloo on CPUs; across nodes the ranks meet at node 0's static rendezvous.
On Linux every process dies with its parent (see `worker.die_with_parent`), so a killed sweep
leaves no orphan training behind; a timeout ends the whole process group.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from harness.processes import pid_alive
from harness.spec import TrialResult, TrialSpec, utc_now
from harness.train.trial import uses_process_group
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


@dataclass(frozen=True)
class Cluster:
    """The nodes a sweep runs on: one runner per node, all with the same scenario."""

    nnodes: int = 1
    node_rank: int = 0
    rdzv_endpoint: str | None = None  # host:port of node 0's rendezvous; needed past one node


WORKDIR_PREFIX = "harness-"


@contextmanager
def worker_folder() -> Iterator[Path]:
    """The sweep's temporary folder for trial specs, results, stderr and compile caches:
    removed when the sweep ends, however it ends (an exception, Ctrl-C, SIGTERM: see cli).
    A runner killed outright (SIGKILL) cannot remove its own, so each new one first removes
    the folders of runners that are no longer alive (the pid is in the name)."""
    remove_stale_worker_folders()
    with tempfile.TemporaryDirectory(prefix=f"{WORKDIR_PREFIX}{os.getpid()}-") as folder:
        yield Path(folder)


def remove_stale_worker_folders(root: Path | None = None) -> list[Path]:
    """Remove `harness-<pid>-*` folders (in the temporary root) whose runner is dead."""
    removed = []
    for folder in Path(root or tempfile.gettempdir()).glob(f"{WORKDIR_PREFIX}*-*"):
        pid = folder.name[len(WORKDIR_PREFIX):].split("-", 1)[0]
        if folder.is_dir() and pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def run_worker(spec: TrialSpec, workdir: Path, progress: Progress = lambda d, t: None,
               cluster: Cluster = Cluster()) -> TrialResult:
    """Run `spec` in a worker process (or its ranks); always returns a TrialResult."""
    workdir.mkdir(parents=True, exist_ok=True)
    spec_path = workdir / f"{spec.trial_id}.spec.json"
    result_path = workdir / f"{spec.trial_id}.result.json"
    for stale in (result_path, *workdir.glob(f"{spec.trial_id}.result.rank*.json")):
        stale.unlink(missing_ok=True)
    spec_path.write_text(json.dumps(spec.to_dict()))
    command = worker_command(spec, spec_path, result_path, cluster)
    started = utc_now()
    exit_ = _run(command, spec.timeout_s, workdir / f"{spec.trial_id}.stderr", progress,
                 _worker_env(workdir / f"{spec.trial_id}.compile-cache"))
    times = {"started_at": started, "finished_at": utc_now()}  # of a worker that wrote no result
    if exit_.timed_out:
        return TrialResult(spec.trial_id, "timeout",
                           reason=f"no result after {spec.timeout_s:g} s; the worker was killed",
                           traceback=exit_.stderr_tail or None, **times)
    results = {path: TrialResult.from_json(path.read_text())
               for path in (result_path, *workdir.glob(f"{spec.trial_id}.result.rank*.json"))
               if path.exists()}
    failures = [path for path, result in results.items() if result.status != "ok"]
    if failures:  # the first rank to fail is the cause; the others lost their peer
        return results[min(failures, key=lambda path: path.stat().st_mtime_ns)]
    if result_path in results:
        return results[result_path]
    return TrialResult(spec.trial_id, "failed", reason=_describe_exit(exit_.returncode),
                       traceback=exit_.stderr_tail or None, **times)


def worker_command(spec: TrialSpec, spec_path: Path, result_path: Path, cluster: Cluster) -> list[str]:
    worker = ["-m", "harness.train.worker", str(spec_path), str(result_path)]
    if not uses_process_group(spec.techniques):
        return [sys.executable, *worker, str(os.getpid())]
    nnodes = spec.techniques["nnodes"]
    elastic = ["--nproc-per-node", str(spec.techniques["world_size"]), "--nnodes", str(nnodes),
               "--max-restarts", "0"]
    if nnodes == 1:
        elastic.append("--standalone")  # a private rendezvous on a free local port
    else:
        # the static rendezvous keeps node order, so global rank 0 (which writes the result)
        # is on node 0, whose runner records it
        elastic += ["--node-rank", str(cluster.node_rank), "--rdzv-backend", "static",
                    "--rdzv-endpoint", str(cluster.rdzv_endpoint), "--rdzv-id", spec.trial_id]
    return [sys.executable, "-m", "harness.elastic", str(os.getpid()), *elastic, *worker]


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
