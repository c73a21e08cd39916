"""The energy meter on a replayed NVML trace: the counter's delta over exactly the window, the
fallbacks to integrated power, counter wrap, throttling, other processes, the sampler thread."""

from __future__ import annotations

import os
import time

import pytest
import torch
from energy_fake_nvml import FakeNvml, ManualClock, since

from harness.metrics.energy import (COUNTER, ENERGY_METRICS, SAMPLING, EnergyMeter, EnergyReading,
                                    integrate, merge_over_ranks, metrics_from, power_series)
from harness.metrics.rapl import HostEnergyMeter

GPU0 = torch.device("cuda", 0)
BUS = "00000000:1B:00.0"


@pytest.fixture
def no_rapl(tmp_path):
    """A host meter with no powercap tree: the GPU tests do not depend on the machine's RAPL."""
    return HostEnergyMeter(root=tmp_path / "no-powercap")


def meter_on(machine: str, clock, no_rapl, **kwargs) -> tuple[EnergyMeter, FakeNvml]:
    fake = FakeNvml(machine, clock)
    kwargs.setdefault("bus_id_of", lambda index: BUS)
    return EnergyMeter(GPU0, nvml=fake, clock=clock, host=no_rapl, **kwargs), fake


def sampled_window(meter: EnergyMeter, clock: ManualClock, seconds: float, dt: float) -> EnergyReading:
    """A window of `seconds` on the trace, sampled every `dt`: the meter samples the two edges, this
    thread the times between (the meter's own thread is slowed to 0.5 Hz by the caller)."""
    steps = round(seconds / dt)
    with meter:
        for step in range(1, steps + 1):
            clock.advance(dt)
            if step < steps:
                meter.sampler.take()
    return meter.reading


def test_energy_is_the_counter_delta_over_exactly_the_window(no_rapl):
    clock = ManualClock(1.0)
    meter, fake = meter_on("steady", clock, no_rapl)
    trace = fake.device(BUS)
    with meter:
        clock.advance(1.0)
    reading = meter.reading
    expected_mj = trace.at(2.0)["energy_mj"] - trace.at(1.0)["energy_mj"]
    assert expected_mj != trace.at(3.0)["energy_mj"] - trace.at(0.0)["energy_mj"]  # the edges matter
    assert reading.energy_j == expected_mj / 1e3
    assert reading.method == COUNTER
    assert reading.window_s == pytest.approx(1.0)
    assert reading.known_error.startswith("board-level counter")
    assert reading.gpus[0].fallback is None


def test_a_counter_that_does_not_move_falls_back_to_integrated_power(no_rapl):
    clock = ManualClock(1.0)
    meter, fake = meter_on("frozen_counter", clock, no_rapl, sample_hz=0.5)
    reading = sampled_window(meter, clock, 1.0, 0.05)
    truth = fake.device(BUS).power_w_integral(1.0, 2.0)  # 400 W with a 700 W peak at 1.5 s: 550 J
    assert truth == pytest.approx(550.0, rel=1e-3)
    assert reading.method == SAMPLING
    assert reading.energy_j == pytest.approx(truth, rel=0.01)
    assert "did not move" in reading.gpus[0].fallback
    assert "25% of the time" in reading.known_error
    # the window's two edges are samples of their own
    assert reading.samples["t_s"][0] == 0.0
    assert reading.samples["t_s"][-1] == pytest.approx(reading.window_s)


def test_a_window_shorter_than_the_counter_period_integrates_power(no_rapl):
    clock = ManualClock(1.0)
    meter, fake = meter_on("steady", clock, no_rapl)
    with meter:
        clock.advance(0.05)
    reading = meter.reading
    assert reading.method == SAMPLING
    assert "50 ms window" in reading.gpus[0].fallback
    assert reading.energy_j == pytest.approx(fake.device(BUS).power_w_integral(1.0, 1.05), rel=0.01)


def test_counter_wrap_gives_the_positive_delta(no_rapl):
    clock = ManualClock(1.0)
    meter, fake = meter_on("wrap", clock, no_rapl)
    trace = fake.device(BUS)
    start, end = trace.at(1.0)["energy_mj"], trace.at(2.0)["energy_mj"]
    assert start > 2**64 - 10**6 and end < 10**6  # the unsigned 64-bit counter wrapped in the window
    with meter:
        clock.advance(1.0)
    assert meter.reading.method == COUNTER
    assert meter.reading.energy_j == pytest.approx(500.0)  # 500 W for 1 s


def test_a_gpu_without_the_counter_integrates_power(no_rapl):
    clock = ManualClock(1.0)
    meter, fake = meter_on("pre_volta", clock, no_rapl, sample_hz=0.5)
    reading = sampled_window(meter, clock, 1.0, 0.1)
    assert reading.method == SAMPLING
    assert "Volta" in reading.gpus[0].fallback
    assert reading.energy_j == pytest.approx(450.0, rel=0.01)  # 300 + 100 t W from 1 s to 2 s


def test_throttle_reasons_are_decoded_and_other_processes_named(no_rapl):
    clock = ManualClock(1.0)
    meter, _ = meter_on("shared", clock, no_rapl, sample_hz=0.5)
    reading = sampled_window(meter, clock, 1.0, 0.1)  # samples at 1.0, 1.1, ..., 2.0
    assert reading.throttled
    # power cap in [1.0, 1.5), software thermal in [1.5, 1.8), GPU idle (ignored) elsewhere
    assert reading.throttle_reasons == pytest.approx({"power_cap": 5 / 11, "sw_thermal": 3 / 11})
    assert reading.foreign_processes == (4242, 5151)  # one there at the start, one at the end
    assert reading.gpus[0].own_pid_seen
    _, _, notes = metrics_from(reading, tokens=1000)
    assert notes["gpu_throttled"] is True
    assert notes["gpu_foreign_processes"] == [4242, 5151]
    assert os.getpid() not in notes["gpu_foreign_processes"]
    assert notes["gpu_power_limit_w"] == [700.0]


def test_metrics_from_a_counter_window(no_rapl):
    clock = ManualClock(1.0)
    meter, _ = meter_on("steady", clock, no_rapl)
    with meter:
        clock.advance(1.0)
    reading = meter.reading
    metrics, unmeasured, notes = metrics_from(reading, tokens=9000)
    energy = reading.energy_j
    assert metrics["energy_j"] == energy
    assert metrics["energy_per_token_j"] == pytest.approx(energy / 9000)
    assert metrics["tokens_per_kwh"] == pytest.approx(9000 * 3.6e6 / energy)
    assert metrics["avg_power_w"] == pytest.approx(energy / 1.0)
    assert metrics["max_power_w"] == pytest.approx(500.0)  # the ramp's value at the window's end
    assert not set(ENERGY_METRICS) & set(unmeasured)
    assert notes["energy_method"] == COUNTER and notes["gpu_throttled"] is False
    _, unmeasured, _ = metrics_from(reading, tokens=0)
    assert unmeasured["energy_per_token_j"] == "no tokens in the window"


def test_the_meter_serves_warmup_and_measured_windows_with_one_lookup(no_rapl):
    clock = ManualClock(0.5)
    meter, fake = meter_on("steady", clock, no_rapl)
    trace = fake.device(BUS)
    with meter:
        clock.advance(0.5)
    warmup = meter.reading
    with meter:
        clock.advance(1.0)
    measured = meter.reading
    assert warmup.energy_j == (trace.at(1.0)["energy_mj"] - trace.at(0.5)["energy_mj"]) / 1e3
    assert measured.energy_j == (trace.at(2.0)["energy_mj"] - trace.at(1.0)["energy_mj"]) / 1e3
    assert fake.calls["nvmlDeviceGetHandleByPciBusId"] == 1


def test_the_sampler_runs_at_about_its_rate_and_stops_with_the_window(no_rapl):
    clock = since(time.perf_counter())
    meter, _ = meter_on("steady", clock, no_rapl, sample_hz=20)
    with meter:
        time.sleep(0.3)
        assert meter.sampler.alive
    reading = meter.reading
    assert not meter.sampler.alive
    looks = len(reading.samples["t_s"])
    assert 3 <= looks <= reading.window_s * 20 + 3  # the thread's looks plus the two edges
    assert reading.samples["t_s"] == sorted(reading.samples["t_s"])
    assert reading.samples["power_w"] == reading.samples["power_w.gpu0"]  # one GPU: the sum is it
    assert {"util_percent.gpu0", "sm_clock_mhz.gpu0", "mem_clock_mhz.gpu0", "temperature_c.gpu0",
            "memory_used_bytes.gpu0"} <= set(reading.samples)


def test_power_series_bins_a_long_trace_keeping_its_mean():
    n = 1000
    samples = {"t_s": [i * 0.05 for i in range(n)], "power_w": [300.0 + (i % 7) for i in range(n)],
               "util_percent.gpu0": [90.0] * n, "util_percent.gpu1": [70.0] * n}
    series = power_series(EnergyReading(window_s=50.0, samples=samples), max_points=100)
    assert len(series["power_w"]) == len(series["power_t_s"]) == 100
    assert sum(series["power_w"]) / 100 == pytest.approx(sum(samples["power_w"]) / n)
    assert series["gpu_util_percent"] == [80.0] * 100  # the mean over GPUs


def test_ranks_add_their_gpus_and_count_the_node_once():
    ranks = [{"energy_j": 100.0, "avg_power_w": 400.0, "max_power_w": 500.0, "cpu_energy_j": 30.0,
              "host_cpu_percent": 20.0},
             {"energy_j": 120.0, "avg_power_w": 480.0, "max_power_w": 550.0, "cpu_energy_j": 31.0,
              "host_cpu_percent": 22.0}]
    metrics, unmeasured = merge_over_ranks(ranks, tokens=1000, local_ranks=[0, 1])
    assert metrics["energy_j"] == 220.0 and metrics["avg_power_w"] == 880.0
    assert metrics["energy_per_token_j"] == pytest.approx(0.22)
    assert metrics["cpu_energy_j"] == 30.0  # one node: rank 0's reading, not both
    assert metrics["host_cpu_percent"] == 20.0
    metrics, unmeasured = merge_over_ranks([ranks[0], {"cpu_energy_j": 31.0}], 1000, [0, 0])
    assert "energy_j" not in metrics and unmeasured["energy_j"] == "measured on some ranks only"
    assert metrics["cpu_energy_j"] == 61.0  # two nodes


def test_a_failing_look_is_noted_and_the_window_still_measured(no_rapl):
    clock = ManualClock(1.0)
    meter, fake = meter_on("steady", clock, no_rapl)

    def broken(handle):
        raise RuntimeError("driver hiccup")

    fake.nvmlDeviceGetUtilizationRates = broken  # not an NVMLError: the sampler must absorb it
    with meter:
        clock.advance(1.0)
    assert meter.reading.method == COUNTER and meter.reading.energy_j > 0
    assert not meter.sampler.alive
    _, _, notes = metrics_from(meter.reading, tokens=100)
    assert notes["gpu_sampler_error"] == "RuntimeError: driver hiccup"


def test_with_a_working_counter_the_integrated_power_is_kept_beside_it(no_rapl):
    clock = ManualClock(1.0)
    meter, _ = meter_on("steady", clock, no_rapl, sample_hz=0.5)
    reading = sampled_window(meter, clock, seconds=2.0, dt=0.05)
    assert reading.method == COUNTER
    sampled = reading.gpus[0].sampled_energy_j
    # the trapezoid over the sampler's own power series, not a copy of the counter's figure
    assert sampled == pytest.approx(integrate(reading.samples["t_s"], reading.samples["power_w"],
                                              0.0, reading.window_s))
    metrics, _, notes = metrics_from(reading, tokens=9000)
    assert metrics["energy_j"] == reading.energy_j and metrics["energy_sampled_j"] == sampled
    assert notes["energy_counter_over_sampled"] == pytest.approx(reading.energy_j / sampled)
    assert 0.95 < notes["energy_counter_over_sampled"] < 1.05  # the trace's counter and power agree


def test_ranks_add_their_sampled_energy_too():
    from harness.metrics.energy import merge_over_ranks

    metrics, unmeasured = merge_over_ranks([{"energy_j": 10.0, "energy_sampled_j": 9.0},
                                            {"energy_j": 12.0, "energy_sampled_j": 11.5}], 100, [0, 1])
    assert (metrics["energy_j"], metrics["energy_sampled_j"]) == (22.0, 20.5) and not unmeasured
