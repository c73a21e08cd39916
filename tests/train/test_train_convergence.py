"""Convergence as a measured figure: evaluations at token intervals, tokens/time/FLOPs to a
target loss, early stopping, and evaluations kept out of the measured window."""

from __future__ import annotations

import itertools

import pytest
import torch

from harness.metrics import timing
from harness.scenario import expand, load_scenario
from harness.train.convergence import ConvergenceSettings, ConvergenceTracker
from harness.train.worker import run_trial

CPU = torch.device("cpu")


def _tracker(losses, settings, tokens_per_step=100, interval=2) -> ConvergenceTracker:
    values = iter(losses)
    return ConvergenceTracker(settings, lambda: next(values), tokens_per_step, interval, CPU)


@pytest.mark.parametrize("every, tokens_per_step, steps, expected", [
    (None, 128, 100, 5), (None, 128, 10, 1), (1000, 128, 100, 8), (1, 128, 100, 1),
])
def test_interval_is_the_token_interval_in_whole_steps(every, tokens_per_step, steps, expected):
    assert ConvergenceSettings(eval_every_tokens=every).interval_steps(tokens_per_step, steps) == expected


def test_the_first_evaluation_at_or_below_the_target_gives_tokens_and_time():
    tracker = _tracker([4.0, 3.0, 2.0, 1.0], ConvergenceSettings(target_loss=2.5))
    tracker.start()
    for done in range(1, 7):
        tracker.evaluate_if_due(done)
    assert tracker.tokens == [0, 200, 400, 600]
    metrics, unmeasured, series, notes = tracker.results()
    assert metrics["tokens_to_target"] == 400 and unmeasured == {}
    assert metrics["time_to_target_s"] == series["eval_time_s"][2]
    assert series["eval_time_s"] == sorted(series["eval_time_s"]) and series["eval_time_s"][0] == 0
    assert notes == {"eval_interval_tokens": 200, "evaluations": 4, "target_loss": 2.5}
    assert not tracker.should_stop()  # stop_at_target is off


def test_a_target_never_reached_is_unmeasured_with_the_best_loss():
    tracker = _tracker([4.0, 3.5, 3.2], ConvergenceSettings(target_loss=1.0, stop_at_target=True))
    tracker.start()
    for done in (1, 2, 3, 4):
        tracker.evaluate_if_due(done)
    metrics, unmeasured, _, _ = tracker.results()
    assert metrics == {} and not tracker.should_stop()
    assert set(unmeasured) == {"tokens_to_target", "time_to_target_s", "flops_to_target"}
    assert "never reached the target 1 (best 3.2 after 400 tokens)" in unmeasured["tokens_to_target"]


def test_the_last_step_is_evaluated_even_off_the_interval():
    tracker = _tracker([4.0, 3.0, 2.5], ConvergenceSettings(eval_every_tokens=200), interval=2)
    tracker.start()
    for done in (1, 2, 3):
        tracker.evaluate_if_due(done, last=done == 3)
    assert tracker.tokens == [0, 200, 300]


def test_time_left_out_of_the_step_timer_window(monkeypatch):
    clock = itertools.count(start=0.0, step=1.0)  # every perf_counter call advances 1 s
    monkeypatch.setattr(timing.time, "perf_counter", lambda: next(clock))
    with timing.StepTimer(CPU) as timer:
        timer.leave_out(0.5)
    assert timer.result().window_s == 0.5  # enter at 0, exit at 1, less the 0.5 s left out


def _spec(write_scenario, **train):
    path = write_scenario("convergence", train={"steps": 12, "warmup_steps": 2, **train})
    return expand(load_scenario(path), "cpu")[0]


def test_a_trial_stops_at_its_target_and_reports_tokens_time_and_flops(write_scenario):
    # the untrained tiny model sits at ln(256) = 5.55 nats; 5.3 is reached within a few steps
    result = run_trial(_spec(write_scenario, target_loss=5.3, eval_every_tokens=256,
                             stop_at_target=True, lr=1e-2))
    m, series, notes = result.metrics, result.series, result.notes
    assert notes["eval_interval_tokens"] == 256  # 2 steps of 4 x 32 tokens
    assert series["eval_tokens"][0] == 0 and series["eval_loss"][0] > 5.3
    reached = next(i for i, loss in enumerate(series["eval_loss"]) if loss <= 5.3)
    assert m["tokens_to_target"] == series["eval_tokens"][reached]
    assert m["time_to_target_s"] == series["eval_time_s"][reached]
    assert m["flops_to_target"] == pytest.approx(m["tokens_to_target"] * m["flops_per_token"])
    assert notes["stopped_early"] is True
    steps_run = len(series["loss"])
    assert steps_run < 12 and steps_run * 128 >= m["tokens_to_target"]
    assert notes["measured_steps"] == steps_run - 2


def test_without_stopping_the_run_goes_on_and_evaluates_at_every_interval(write_scenario):
    result = run_trial(_spec(write_scenario, target_loss=0.5, eval_every_tokens=384))
    assert result.series["eval_tokens"] == [0, 384, 768, 1152, 1536]
    assert "tokens_to_target" in result.unmeasured and result.notes["stopped_early"] is False
    assert len(result.series["loss"]) == 12
