"""Meters measure what they say: step-time statistics, bytes saved for backward, host peak."""

from __future__ import annotations

import statistics

import pytest
import torch

from harness.metrics import MemoryMeter, SavedTensorMeter, StepTimer, StepTimes


def test_step_time_statistics():
    times = StepTimes([0.1, 0.2, 0.3, 0.4, 1.0], window_s=2.5)
    assert times.median_s == 0.3
    # linear interpolation between ranks: p10 = 0.1 + 0.4 * 0.1, p90 = 0.4 + 0.6 * 0.6
    assert times.percentile_s(10) == pytest.approx(0.14)
    assert times.percentile_s(90) == pytest.approx(0.76)
    assert times.percentile_s(100) == 1.0
    assert times.cv == pytest.approx(statistics.stdev(times.step_times_s) / 0.4)
    assert StepTimes([0.5], 0.5).cv == 0.0


def test_step_timer_counts_each_step_inside_the_window():
    with StepTimer(torch.device("cpu")) as timer:
        for _ in range(3):
            with timer.step():
                torch.ones(256, 256) @ torch.ones(256, 256)
    result = timer.result()
    assert len(result.step_times_s) == 3
    assert sum(result.step_times_s) <= result.window_s


def test_saved_tensor_meter_counts_distinct_storages_and_leaves_parameters_out():
    weight = torch.nn.Parameter(torch.randn(100, 100))
    x = torch.randn(10, 100, requires_grad=True)  # 4000 bytes
    with SavedTensorMeter([weight]) as meter:
        y = x @ weight  # saves x and weight; weight is a parameter
        z = (x * x).sum()  # saves x twice more: the same storage
    assert meter.bytes == 10 * 100 * 4
    plain = torch.randn(100, 100, requires_grad=True)  # a weight that is no Parameter
    with SavedTensorMeter([]) as meter:
        y = torch.sin(x @ plain)  # saves x, plain, and the product (10x100 floats)
    assert meter.bytes == 4000 + 40000 + 4000
    with SavedTensorMeter([]) as meter:  # a Parameter, or a view of one, is never counted
        y = torch.sin(x @ weight.t())
    assert meter.bytes == 4000 + 4000
    del y, z


def test_host_peak_covers_an_allocation_inside_the_window():
    with MemoryMeter(torch.device("cpu")) as meter:
        block = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched
        del block
    peaks = meter.peaks
    assert peaks.metrics["peak_rss_bytes"] >= 64 * 2**20
    assert "peak_memory_bytes" not in peaks.metrics
    assert peaks.unmeasured["peak_memory_bytes"].startswith("no device allocator on cpu")
