"""harness.metrics.contention: the arithmetic of foreign CPU time and steal, the busy decision at
its lines, the GPU's foreign processes and throttles as warnings, merging over ranks, and the
meter on real windows (a competing process outside the harness's tree, a child inside it)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import namedtuple

import pytest

from harness.metrics import contention as contention_module
from harness.metrics.contention import (FOREIGN_SHARE_BUSY, STEAL_SHARE_BUSY, TICK_SLACK_S, Contention,
                                        ContentionMeter, CpuReading, HarnessProcesses,
                                        contention_between, cpu_busy, harness_processes,
                                        merge_rank_warnings, window_warnings, worst_over_ranks)
from harness.spec import GPU_THROTTLED, MACHINE_BUSY, WARNING_CODES

CPUS, WINDOW_S = 2, 10.0
CAPACITY_S = CPUS * WINDOW_S
LOAD = (3.1, 2.0, 1.0), (4.0, 2.2, 1.1)


def figures(foreign_s: float = 0.0, steal_s: float = 0.0, pids: tuple[int, ...] = ()) -> Contention:
    return Contention(WINDOW_S, CPUS, foreign_s, steal_s, *LOAD, harness_pids=pids)


# --- arithmetic ------------------------------------------------------------------------------

def test_foreign_time_is_busy_less_steal_less_the_harness():
    before = CpuReading(busy_s=100.0, steal_s=5.0, harness_s=40.0)
    after = CpuReading(busy_s=115.0, steal_s=6.0, harness_s=50.0)
    contention = contention_between(before, after, WINDOW_S, CPUS, *LOAD)
    assert contention.foreign_cpu_s == pytest.approx(4.0)  # 15 busy - 1 steal - 10 harness
    assert contention.foreign_cpu_share == pytest.approx(4.0 / CAPACITY_S)
    assert contention.steal_share == pytest.approx(1.0 / CAPACITY_S)


def test_a_harness_that_outran_the_system_counters_reads_as_no_foreign_time():
    # tick rounding can put the harness's own seconds above the system's busy seconds
    before, after = CpuReading(10.0, 0.0, 5.0), CpuReading(10.5, 0.0, 5.52)
    assert contention_between(before, after, 1.0, CPUS).foreign_cpu_s == 0.0


def test_notes_have_the_documented_shape_and_are_json():
    notes = figures(4.0, 1.0).to_notes()
    assert set(notes) == {"foreign_cpu_share", "steal_share", "foreign_cpu_s", "cpus", "window_s",
                          "load_avg_before", "load_avg_after"}
    assert notes["load_avg_before"] == [3.1, 2.0, 1.0] and notes["cpus"] == CPUS
    assert json.loads(json.dumps(notes, allow_nan=False)) == notes
    unreadable = Contention(1.0, CPUS, None, None, None, None).to_notes()
    assert unreadable["foreign_cpu_share"] is None and unreadable["load_avg_after"] is None


# --- the decision ----------------------------------------------------------------------------

@pytest.mark.parametrize("above, busy", [(+0.01, True), (-0.01, False)])
def test_the_foreign_share_line_with_tick_slack(above, busy):
    line_s = FOREIGN_SHARE_BUSY * CAPACITY_S + TICK_SLACK_S
    assert cpu_busy(figures(foreign_s=line_s + above)) is busy
    codes = [w["code"] for w in window_warnings(figures(foreign_s=line_s + above), {})]
    assert codes == ([MACHINE_BUSY] if busy else [])


def test_one_tick_on_a_very_short_window_is_not_busy():
    # 10 ms of foreign time on a 20 ms window of 2 CPUs reads as a 25% share: it is tick noise
    assert not cpu_busy(Contention(0.02, CPUS, 0.01, 0.0, None, None))


def test_the_message_carries_the_figures():
    warning, = window_warnings(figures(foreign_s=0.34 * CAPACITY_S), {})
    assert warning == {"code": MACHINE_BUSY, "message": "other processes used 34% of the 2 CPUs "
                       "during the measured window (load average 3.1 → 4.0)"}


@pytest.mark.parametrize("steal_share, busy", [(STEAL_SHARE_BUSY + 0.01, True), (STEAL_SHARE_BUSY - 0.01, False)])
def test_steal_alone_makes_a_window_busy(steal_share, busy):
    warnings = window_warnings(figures(steal_s=steal_share * CAPACITY_S), {})
    assert [w["code"] for w in warnings] == ([MACHINE_BUSY] if busy else [])
    if busy:
        assert "steal" in warnings[0]["message"] and "11%" in warnings[0]["message"]


def test_another_process_on_the_gpu_makes_a_window_busy():
    warning, = window_warnings(figures(), {"gpu_foreign_processes": [4242]})
    assert warning["code"] == MACHINE_BUSY and "4242" in warning["message"]


def test_the_harness_own_ranks_on_the_gpu_are_not_foreign():
    assert window_warnings(figures(pids=(4242, 17)), {"gpu_foreign_processes": [4242]}) == []


def test_in_another_pid_namespace_one_foreign_gpu_process_is_this_one():
    container = {"gpu_foreign_processes": [90001], "gpu_processes_namespace": "pids of the host"}
    assert window_warnings(figures(), container) == []
    container["gpu_foreign_processes"] = [90001, 90002]
    assert [w["code"] for w in window_warnings(figures(), container)] == [MACHINE_BUSY]


def test_a_busy_cpu_and_a_foreign_gpu_process_are_one_warning():
    warnings = window_warnings(figures(foreign_s=0.5 * CAPACITY_S), {"gpu_foreign_processes": [7]})
    assert [w["code"] for w in warnings] == [MACHINE_BUSY]
    assert "50%" in warnings[0]["message"] and "pid 7" in warnings[0]["message"]


@pytest.mark.parametrize("reasons, codes", [
    ({"hw_thermal": 0.4}, [GPU_THROTTLED]),
    ({"sw_thermal": 0.1, "power_cap": 0.9}, [GPU_THROTTLED]),
    ({"hw_slowdown": 0.05}, [GPU_THROTTLED]),
    ({"power_cap": 1.0}, []),  # at full load the power cap is the GPU's normal operation
    ({"sync_boost": 1.0, "display_clock": 1.0}, []),
])
def test_thermal_and_hardware_slowdowns_are_gpu_throttled(reasons, codes):
    warnings = window_warnings(figures(), {"gpu_throttled": True, "gpu_throttle_reasons": reasons})
    assert [w["code"] for w in warnings] == codes
    if codes:
        assert "thermal" in warnings[0]["message"] or "slowdown" in warnings[0]["message"]
        assert "power_cap" not in warnings[0]["message"]


def test_every_warning_code_is_a_known_one():
    warnings = window_warnings(figures(foreign_s=CAPACITY_S), {"gpu_throttle_reasons": {"hw_thermal": 1.0}})
    assert {w["code"] for w in warnings} <= set(WARNING_CODES) and len(warnings) == 2


# --- over ranks ------------------------------------------------------------------------------

def test_the_trial_figure_is_the_worst_rank_s():
    ranks = [figures(0.1, 3.0).to_notes(), figures(8.0, 0.0).to_notes(), None]
    worst = worst_over_ranks(ranks)
    assert worst["foreign_cpu_share"] == pytest.approx(8.0 / CAPACITY_S)
    assert worst["steal_share"] == pytest.approx(3.0 / CAPACITY_S)  # the largest of any rank
    assert worst_over_ranks([None, None]) is None


def test_rank_warnings_merge_to_one_per_code_from_the_busiest_rank():
    contention = [figures(3.0).to_notes(), figures(9.0).to_notes()]
    per_rank = [[{"code": MACHINE_BUSY, "message": "a"}],
                [{"code": MACHINE_BUSY, "message": "b"}, {"code": GPU_THROTTLED, "message": "c"}]]
    merged = merge_rank_warnings(per_rank, contention)
    assert merged == [{"code": MACHINE_BUSY, "message": "rank 1: b"},
                      {"code": GPU_THROTTLED, "message": "rank 1: c"}]


# --- the meter -------------------------------------------------------------------------------

Times = namedtuple("Times", "user nice system idle iowait irq softirq steal guest guest_nice")


def scripted_cpu_times(*busy_steal):
    """psutil.cpu_times() stand-in: each call the next (busy, steal) reading, all else idle."""
    readings = iter(busy_steal)

    def read():
        busy, steal = next(readings)
        return Times(busy - steal, 0.0, 0.0, 1000.0, 0.0, 0.0, 0.0, steal, 0.0, 0.0)

    return read


@pytest.fixture
def sleeper():
    """A process that does nothing, to stand for a trial's root."""
    process = subprocess.Popen(["sleep", "30"])
    yield process
    process.kill()
    process.wait()


def test_the_meter_subtracts_a_child_born_and_reaped_inside_the_window():
    # the system readings are scripted: 10 busy seconds; the child's 0.3 CPU seconds are real,
    # and reaped by this process they are in its children_user/system at the window's end
    meter = ContentionMeter(HarnessProcesses(os.getpid()),
                            cpu_times=scripted_cpu_times((0.0, 0.0), (10.0, 1.0)),
                            clock=iter([0.0, 5.0]).__next__, load_avg=lambda: (1.0, 1.0, 1.0),
                            cpus=CPUS)
    with meter:
        subprocess.run([sys.executable, "-c", "import time\nwhile time.process_time() < 0.3: pass"],
                       check=True)
    reading = meter.reading
    assert reading.window_s == 5.0 and reading.steal_s == 1.0
    assert reading.foreign_cpu_s <= 10.0 - 1.0 - 0.25  # less a clock tick of rounding
    assert reading.steal_share == pytest.approx(1.0 / (CPUS * 5.0))


def test_only_the_cpus_this_process_may_run_on_count(monkeypatch):
    per_cpu = [Times(*[float(10 * cpu + field) for field in range(10)]) for cpu in range(4)]
    monkeypatch.setattr(contention_module.psutil, "cpu_times", lambda percpu=False: per_cpu)
    assert contention_module.cpu_times_of([1, 3]) == Times(*[float(40 + 2 * field) for field in range(10)])


def test_the_tree_walk_finds_the_root_s_children_and_the_runner(sleeper):
    found = {p.pid for p in harness_processes(HarnessProcesses(os.getpid(), runner=os.getppid()))}
    assert {os.getpid(), os.getppid(), sleeper.pid} <= found
    only_sleeper = {p.pid for p in harness_processes(HarnessProcesses(sleeper.pid))}
    assert only_sleeper == {sleeper.pid}


def test_run_in_process_the_trial_is_this_process():
    assert HarnessProcesses.of_this_trial().root == os.getpid()


def test_under_torchrun_the_trial_is_the_elastic_agent_s_tree():
    # a stand-in agent: a process whose command line names harness.elastic, and a "rank" below it
    rank = ("import os; from harness.metrics.contention import HarnessProcesses; "
            "p = HarnessProcesses.of_this_trial(); print(p.root, p.runner, os.getppid())")
    agent = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {rank!r}], check=True)"
    out = subprocess.run([sys.executable, "-c", agent, "harness.elastic"], capture_output=True,
                         text=True, check=True).stdout
    root, runner, parent = map(int, out.split())
    assert root == parent and runner == os.getpid()


def test_a_busy_loop_outside_the_harness_tree_is_foreign(sleeper):
    # started through a shell that exits at once, so the loop is nobody's child here
    pid = int(subprocess.run(
        ["sh", "-c", f"'{sys.executable}' -c 'while 1: pass' >/dev/null 2>&1 & echo $!"],
        capture_output=True, text=True, check=True).stdout)
    try:
        time.sleep(0.1)  # its interpreter starting
        meter = ContentionMeter(HarnessProcesses(sleeper.pid))
        with meter:
            time.sleep(0.6)
    finally:
        os.kill(pid, signal.SIGKILL)
    reading = meter.reading
    # one core of the machine's went to the loop: at least 1/cpus of it, less tick noise
    assert reading.foreign_cpu_share > min(0.2, 0.5 / reading.cpus)
    assert pid not in reading.harness_pids and sleeper.pid in reading.harness_pids
    if reading.cpus <= 4:  # one busy core of at most four is over the 10% line
        assert cpu_busy(reading)


def test_the_meter_is_re_enterable_and_each_window_replaces_the_reading(sleeper):
    meter = ContentionMeter(HarnessProcesses(sleeper.pid))
    with meter:
        pass
    first = meter.reading
    with meter:
        time.sleep(0.05)
    assert meter.reading is not first and meter.reading.window_s > first.window_s
    assert len(meter.reading.load_avg_before) == 3
