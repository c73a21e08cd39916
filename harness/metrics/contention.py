"""Contention over a window: the CPU time that processes other than the harness's took, the
time the hypervisor gave to other guests (steal), and the load average at both edges.

CPU time decides, not the load average: the load average counts the harness's own ranks and
threads too, and trails a window by minutes (it is an exponential average). It is kept for the
reader.

    foreign CPU seconds = busy - steal - harness        (all logical CPUs, over the window)
    foreign_cpu_share   = foreign / (logical CPUs x window)
    steal_share         = steal / (logical CPUs x window)

The logical CPUs are those this process may run on (its affinity: a Slurm job's or container's
cpuset), or all of the machine's; work on CPUs the trial cannot use does not compete with it.

`busy` is the system's CPU time that was not idle or iowait (/proc/stat, through psutil; guest
time is inside user time and not added twice). `harness` is the CPU time of the trial's process
tree -- the process the launcher started: the worker, or under torchrun the elastic agent and
its ranks -- and of the runner that launched it. A process of the
tree that ends inside the window is still counted: once reaped, its time is in its parent's
children_user/children_system, which are summed too.

Finding the tree scans the process table (/proc/<pid>/task/<tid>/children is not on every
kernel), so it happens outside the window's edges: before the first reading and after the last.
The edges themselves read /proc/stat and the few known processes, some 30 µs each.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psutil

from harness.metrics.rapl import cpu_seconds
from harness.spec import GPU_THROTTLED, MACHINE_BUSY

LoadAvg = tuple[float, float, float]
HARNESS_LAUNCHERS = ("harness.elastic",)  # a rank's parent that is one of these leads the trial

# --- when a window is busy -------------------------------------------------------------------
# Measured on the 2-core development machine, otherwise idle (tiny GPT, batch 8 x 128, two
# torch threads; a competing process outside the harness busy a fraction of every 20 ms; median
# step of 40-60 steps, 3-4 rounds): idle, the meter read shares of 0.000-0.014 and the median
# step wandered 15-23 ms from round to round (the VM's own noise). Competing shares of 0.05-0.10
# gave 17-24 ms, inside that noise; 0.14 gave 21-43 ms. One `while 1: pass`, which never yields,
# read 0.49-0.50 and made the quickstart's steps 32-68x slower (16-35 ms -> 1.06-1.31 s: torch's
# threads wait at every barrier for the one that lost its core) and its CPU peak 1.8-2.5x too
# low. So 10% is the smallest share whose cost shows above a quiet machine's spread; smaller
# shares may still cost a few percent, which only repeats resolve.
FOREIGN_SHARE_BUSY = 0.10  # busy above this share of all CPUs' time going to other processes
# Steal is time the vCPUs wanted to run and the hypervisor ran another guest: the same loss as
# foreign CPU time, so the same line.
STEAL_SHARE_BUSY = 0.10
# /proc/stat and each process's times count whole clock ticks (10 ms): an edge can be off by a
# tick per counter, and on a 50 ms window of 2 CPUs one tick alone reads as a 10% share. Foreign
# time must exceed the line by this much before a window is called busy.
TICK_SLACK_S = 0.03
# Throttle reasons (harness.metrics.nvml) that mean the GPU ran slower than it should: thermal
# and hardware slowdowns. A power-cap throttle at full load is a GPU doing its normal work, and
# sync boost and display clocks are settings: none of those is a warning.
GPU_SLOWDOWNS = ("hw_slowdown", "sw_thermal", "hw_thermal", "hw_power_brake")


@dataclass(frozen=True)
class HarnessProcesses:
    """Whose CPU time is the harness's own."""

    root: int  # the trial's processes: this pid and its descendants
    runner: int | None = None  # the runner that launched the trial: its own time, not its tree

    @classmethod
    def of_this_trial(cls) -> HarnessProcesses:
        """The trial this process belongs to. Under torchrun a rank's parent is the elastic agent
        (`python -m harness.elastic`, which the runner launched; torch starts each rank in a
        session of its own), so the agent's tree is the trial and its parent the runner. A
        single-process worker leads the session the launcher gave it, and its parent is the
        runner. Run in-process (a test, a benchmark), the trial is this process and its children."""
        try:
            me = psutil.Process()
            parent = me.parent()
            if parent is not None and _is_launcher(parent):
                return cls(parent.pid, parent.ppid() or None)
            if os.getsid(0) == me.pid:
                return cls(me.pid, me.ppid() or None)
        except (psutil.Error, OSError):
            pass
        return cls(os.getpid(), None)


def _is_launcher(process: psutil.Process) -> bool:
    return any(launcher in part for part in process.cmdline() for launcher in HARNESS_LAUNCHERS)


@dataclass(frozen=True)
class CpuReading:
    """One edge of a window: seconds since boot summed over the counted CPUs, and the CPU
    seconds of the harness's processes known at that edge."""

    busy_s: float
    steal_s: float
    harness_s: float


@dataclass(frozen=True)
class Contention:
    """Who else used the machine over one window. None: unreadable here."""

    window_s: float
    cpus: int
    foreign_cpu_s: float | None
    steal_s: float | None
    load_avg_before: LoadAvg | None
    load_avg_after: LoadAvg | None
    harness_pids: tuple[int, ...] = ()  # the processes counted as the harness's

    @property
    def foreign_cpu_share(self) -> float | None:
        return self._share(self.foreign_cpu_s)

    @property
    def steal_share(self) -> float | None:
        return self._share(self.steal_s)

    def _share(self, seconds: float | None) -> float | None:
        capacity = self.cpus * self.window_s
        if seconds is None or capacity <= 0:
            return None
        return min(1.0, seconds / capacity)

    def to_notes(self) -> dict[str, Any]:
        """notes["contention"]: JSON-safe floats, None where unreadable; rounded far below the
        counters' 10 ms resolution, only to drop float residue such as 1e-14 s."""
        return {"foreign_cpu_share": _rounded(self.foreign_cpu_share),
                "steal_share": _rounded(self.steal_share),
                "foreign_cpu_s": _rounded(self.foreign_cpu_s), "cpus": self.cpus,
                "window_s": _rounded(self.window_s),
                "load_avg_before": _listed(self.load_avg_before),
                "load_avg_after": _listed(self.load_avg_after)}


def contention_between(before: CpuReading, after: CpuReading, window_s: float, cpus: int,
                       load_before: LoadAvg | None = None, load_after: LoadAvg | None = None,
                       harness_pids: Sequence[int] = ()) -> Contention:
    """The figures of a window from its two edges. Clock ticks make each edge uncertain by a
    few hundredths of a second, so a small negative difference is noise and reads as 0."""
    steal = max(0.0, after.steal_s - before.steal_s)
    harness = after.harness_s - before.harness_s
    foreign = max(0.0, after.busy_s - before.busy_s - steal - harness)
    return Contention(window_s, cpus, foreign, steal, load_before, load_after, tuple(harness_pids))


class ContentionMeter:
    """`with ContentionMeter() as meter: <window>`; then `meter.reading` (a Contention).
    Re-enterable: each window replaces the reading; whose processes are the harness's is
    worked out at the first window. The readers are arguments so that tests can replay figures."""

    def __init__(self, processes: HarnessProcesses | None = None, *,
                 cpu_times: Callable[[], Any] | None = None,
                 clock: Callable[[], float] = time.perf_counter,
                 load_avg: Callable[[], LoadAvg | None] | None = None,
                 cpus: int | None = None):
        self.processes = processes
        self.reading: Contention | None = None
        allowed = allowed_cpus()
        self._cpu_times = cpu_times or (lambda: cpu_times_of(allowed))
        self._clock = clock
        self._load_avg = load_avg or read_load_avg
        self._cpus = cpus or (len(allowed) if allowed else psutil.cpu_count(logical=True) or 1)

    def __enter__(self) -> ContentionMeter:
        if self.processes is None:
            self.processes = HarnessProcesses.of_this_trial()
        self.reading = None
        self._known = harness_processes(self.processes)  # before the edge: the scan is slow
        self._load_before = self._load_avg()
        self._t0 = self._clock()
        self._start = self._read(self._known)
        return self

    def __exit__(self, *exc) -> None:
        end = self._read(self._known)
        t1 = self._clock()
        # after the edge: processes born inside the window, counted from zero at its start
        known_pids = {p.pid for p in self._known}
        born = [p for p in harness_processes(self.processes) if p.pid not in known_pids]
        if end is not None and born:
            end = CpuReading(end.busy_s, end.steal_s, end.harness_s + process_cpu_s(born))
        load_after = self._load_avg()
        pids = sorted(known_pids | {p.pid for p in born})
        if self._start is None or end is None:
            self.reading = Contention(t1 - self._t0, self._cpus, None, None, self._load_before,
                                      load_after, tuple(pids))
            return
        self.reading = contention_between(self._start, end, t1 - self._t0, self._cpus,
                                          self._load_before, load_after, pids)

    def _read(self, processes: list[psutil.Process]) -> CpuReading | None:
        try:
            times = self._cpu_times()
        except (psutil.Error, OSError):
            return None
        _, busy = cpu_seconds(times)
        return CpuReading(busy, getattr(times, "steal", 0.0), process_cpu_s(processes))


def allowed_cpus() -> list[int] | None:
    """The logical CPUs this process may run on, where that is fewer than the machine's (a
    cpuset: a Slurm job, `taskset`, a container's --cpuset-cpus); None: all of them. Work on
    the other CPUs does not compete with the trial's, so only these count."""
    try:
        allowed = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on macOS or Windows
        return None
    return allowed if len(allowed) < (psutil.cpu_count(logical=True) or 0) else None


def cpu_times_of(cpus: list[int] | None) -> Any:
    """psutil.cpu_times(), summed over `cpus` only (None: the machine's total)."""
    if cpus is None:
        return psutil.cpu_times()
    per_cpu = psutil.cpu_times(percpu=True)
    chosen = [per_cpu[i] for i in cpus if i < len(per_cpu)]
    return type(per_cpu[0])(*(sum(values) for values in zip(*chosen)))


def harness_processes(processes: HarnessProcesses) -> list[psutil.Process]:
    """The runner, the trial's root and the root's descendants that are alive now."""
    found = []
    if processes.runner is not None:
        try:
            found.append(psutil.Process(processes.runner))
        except psutil.Error:
            pass
    try:
        root = psutil.Process(processes.root)
        found += [root, *root.children(recursive=True)]
    except psutil.Error:
        pass
    return found


def process_cpu_s(processes: list[psutil.Process]) -> float:
    """User and system seconds of each process and of its reaped children; a process that has
    ended since it was found counts 0 here (its parent's children fields hold it)."""
    total = 0.0
    for process in processes:
        try:
            t = process.cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


def read_load_avg() -> LoadAvg | None:
    try:
        return tuple(float(x) for x in os.getloadavg())
    except (OSError, AttributeError):  # not on Windows
        return None


def _listed(load: LoadAvg | None) -> list[float] | None:
    return None if load is None else [round(x, 2) for x in load]


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


# --- the decision ----------------------------------------------------------------------------

def cpu_busy(contention: Contention) -> bool:
    """Whether other processes, or other guests of the hypervisor, took enough of the CPUs over
    the window to doubt its figures (the lines above; tick noise given the benefit of doubt)."""
    return (_over(contention.foreign_cpu_s, FOREIGN_SHARE_BUSY, contention)
            or _over(contention.steal_s, STEAL_SHARE_BUSY, contention))


def _over(seconds: float | None, line: float, contention: Contention) -> bool:
    capacity = contention.cpus * contention.window_s
    return seconds is not None and capacity > 0 and seconds - TICK_SLACK_S > line * capacity


def window_warnings(contention: Contention | None, energy_notes: dict[str, Any],
                    window: str = "the measured window") -> list[dict[str, str]]:
    """TrialResult.warnings of one window, from its contention figures and the energy meter's
    notes (harness.metrics.energy.metrics_from: gpu_foreign_processes, gpu_throttle_reasons).
    Pure: the same figures give the same warnings."""
    busy = []
    if contention is not None and cpu_busy(contention):
        busy.append(describe_cpu_load(contention, window))
    gpu_others = foreign_gpu_pids(energy_notes, contention.harness_pids if contention else ())
    if gpu_others:
        pids = ", ".join(str(pid) for pid in gpu_others)
        busy.append(f"other processes were on the trial's GPU during {window} (pid {pids})")
    warnings = [{"code": MACHINE_BUSY, "message": "; ".join(busy)}] if busy else []
    reasons = energy_notes.get("gpu_throttle_reasons") or {}
    slowdowns = [f"{name} in {share:.0%} of the samples" for name, share in sorted(reasons.items())
                 if name in GPU_SLOWDOWNS]
    if slowdowns:
        warnings.append({"code": GPU_THROTTLED, "message": f"the GPU slowed its clocks during "
                                                           f"{window}: {', '.join(slowdowns)}"})
    return warnings


def describe_cpu_load(contention: Contention, window: str = "the measured window") -> str:
    """One line with the figures: 'other processes used 34% of the 2 CPUs during the measured
    window (load average 3.1 → 4.0)'; steal named where it was over its line."""
    cpus = f"{contention.cpus} CPU{'s' if contention.cpus != 1 else ''}"
    parts = []
    if contention.foreign_cpu_share is not None:
        parts.append(f"other processes used {contention.foreign_cpu_share:.0%} of the {cpus} "
                     f"during {window}")
    if _over(contention.steal_s, STEAL_SHARE_BUSY, contention):
        parts.append(f"the hypervisor gave {contention.steal_share:.0%} of their time to other "
                     "guests (steal)")
    before, after = contention.load_avg_before, contention.load_avg_after
    load = f" (load average {before[0]:.1f} → {after[0]:.1f})" if before and after else ""
    return ", and ".join(parts) + load


def foreign_gpu_pids(energy_notes: dict[str, Any], harness_pids: Sequence[int]) -> list[int]:
    """Processes NVML saw on the trial's GPU that are not the harness's. In a container NVML's
    pids are the host's, this process is not among them and so looks foreign itself: then one
    of them is taken to be this process, and only a second one counts."""
    others = sorted(set(energy_notes.get("gpu_foreign_processes") or ()) - set(harness_pids))
    if energy_notes.get("gpu_processes_namespace"):
        return others if len(others) > 1 else []
    return others


# --- over ranks ------------------------------------------------------------------------------

def worst_over_ranks(per_rank: list[dict[str, Any] | None]) -> dict[str, Any] | None:
    """A multi-rank trial's notes["contention"] from each rank's: the rank with the largest
    foreign share, with the largest steal share of any rank (a slow rank slows every step)."""
    known = [c for c in per_rank if c]
    if not known:
        return None
    worst = dict(max(known, key=lambda c: c.get("foreign_cpu_share") or 0.0))
    steals = [c["steal_share"] for c in known if c.get("steal_share") is not None]
    worst["steal_share"] = max(steals) if steals else None
    return worst


def merge_rank_warnings(per_rank: list[list[dict[str, str]]],
                        contention: list[dict[str, Any] | None]) -> list[dict[str, str]]:
    """One warning per code for the trial: that of the busiest rank carrying it (by foreign
    share), its message saying which rank."""
    def foreign(rank: int) -> float:
        return (contention[rank] or {}).get("foreign_cpu_share") or 0.0

    merged: dict[str, dict[str, str]] = {}
    for rank in sorted(range(len(per_rank)), key=foreign, reverse=True):
        for warning in per_rank[rank]:
            merged.setdefault(warning["code"], {"code": warning["code"],
                                                "message": f"rank {rank}: {warning['message']}"})
    return list(merged.values())
