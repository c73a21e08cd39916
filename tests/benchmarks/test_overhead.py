"""The harness must not distort what it measures: its training loop, meters included, against a
bare loop a user would write for the same model, data and optimizer (harness/checks/overhead.py,
which a suite also runs on a GPU).

    pytest tests/benchmarks --benchmark-enable -s     # prints the overhead, stores it

With benchmarks disabled (the default test run) one short round runs and only the equality of
the two loops' losses is asserted: timings are never a pass/fail test here.
"""

from __future__ import annotations

import dataclasses
import statistics

import pytest
import torch

from harness.checks import overhead
from harness.checks.overhead import SETTINGS, bare_loop, harness_loop, measure

CPU = torch.device("cpu")


def _settings(benchmark) -> overhead.OverheadSettings:
    full = SETTINGS["cpu"]
    return dataclasses.replace(full, rounds=1, steps=15) if benchmark.disabled else full


def test_harness_loop_overhead_against_a_bare_loop(benchmark):
    settings = _settings(benchmark)
    found = measure(settings, CPU)
    # the same computation step for step; only the order in which the gradient norm is summed
    # for clipping differs (model order vs optimizer-group order), hence float rounding
    assert found["max_loss_rel_gap"] < 1e-5
    assert len(found["ratios"]) == settings.rounds
    benchmark.extra_info.update({"overhead_pct": 100 * (found["ratio"] - 1), "rounds": settings.rounds,
                                 "steps": settings.steps, "ratios": found["ratios"]})
    print(f"\nharness loop vs bare loop, tiny GPT on CPU (1 thread): overhead "
          f"{100 * (found['ratio'] - 1):+.2f}% (median of {settings.rounds} rounds of {settings.steps} "
          f"steps; ratio IQR {found['ratio_q1']:.4f}-{found['ratio_q3']:.4f})")
    splits = overhead._splits(settings)
    benchmark.pedantic(harness_loop, args=(settings, splits, CPU), rounds=1, iterations=1)


def test_the_check_refuses_a_ratio_of_two_different_computations(monkeypatch):
    """A bare loop whose losses differ from the harness loop's (it trained something else)
    must not yield a ratio: the check fails and says why."""
    def other_loop(settings, splits, device):
        seconds, losses = bare_loop(settings, splits, device)
        return seconds, [loss * 1.01 for loss in losses]

    monkeypatch.setattr(overhead, "bare_loop", other_loop)
    result = overhead.run("cpu", smoke=True)
    assert result.status == "failed"
    assert "computed different losses (relative gap 0.0099 within the first 12 steps)" in result.summary
    assert result.figures["max_loss_rel_gap"] == pytest.approx(0.01 / 1.01, rel=1e-3)


class _NoEnergy:
    """Stands in for EnergyMeter: the same loop with nothing measuring energy."""

    def __init__(self, device):
        from harness.metrics.energy import EnergyReading

        self.reading = EnergyReading(window_s=0.0, unavailable="energy not measured in this arm")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


def test_energy_measurement_overhead(benchmark, monkeypatch):
    """Step time with and without the energy meter (NVML sampler thread on a GPU, host meter
    here), alternating arms in one process; the target on a GPU is under 0.5%."""
    import harness.train.loop as loop

    settings = _settings(benchmark)
    rounds = 1 if benchmark.disabled else 21
    splits = overhead._splits(settings)
    real_meter, ratios = loop.EnergyMeter, []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for index in range(rounds):
            arms = [(real_meter, "with"), (_NoEnergy, "without")]
            if index % 2:
                arms.reverse()
            seconds = {}
            for meter, arm in arms:
                monkeypatch.setattr(loop, "EnergyMeter", meter)
                seconds[arm], losses = harness_loop(settings, splits, CPU)
                seconds[arm + "_losses"] = losses
            assert seconds["with_losses"] == seconds["without_losses"]  # measuring changes nothing
            ratios.append(seconds["with"] / seconds["without"])
    finally:
        torch.set_num_threads(threads)
        monkeypatch.setattr(loop, "EnergyMeter", real_meter)
    overhead_pct = 100 * (statistics.median(ratios) - 1)
    benchmark.extra_info.update({"energy_overhead_pct": overhead_pct, "rounds": rounds})
    print(f"\nenergy meter on vs off, tiny GPT on CPU (1 thread): overhead {overhead_pct:+.2f}% "
          f"(median of {rounds} rounds of {settings.steps} steps)")
    benchmark.pedantic(harness_loop, args=(settings, splits, CPU), rounds=1, iterations=1)


def test_only_the_checked_first_steps_must_agree_and_the_later_gap_is_reported(monkeypatch):
    """A GPU's runs drift apart by rounding as they train: there the first steps must agree,
    and how far the later ones drifted is a figure, not a failure."""
    def drifting(settings, splits, device):
        seconds, losses = bare_loop(settings, splits, device)
        return seconds, [loss * (1.03 if step >= 5 else 1.0) for step, loss in enumerate(losses)]

    monkeypatch.setattr(overhead, "bare_loop", drifting)
    settings = dataclasses.replace(overhead.SMOKE, checked_steps=5)
    found = measure(settings, CPU)
    assert found["checked_steps"] == 5 and found["max_loss_rel_gap"] < 1e-5
    assert found["max_loss_rel_gap_all_steps"] == pytest.approx(0.03 / 1.03, rel=1e-3)
    assert measure(overhead.SMOKE, CPU)["max_loss_rel_gap"] == pytest.approx(0.03 / 1.03, rel=1e-3)  # all steps
