"""eval_curves and crossing: the eval-loss curves of convergence trials, and the interpolated
point where one first reaches a target loss."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from harness.analysis import crossing, eval_curves, final_eval_loss


def trial(trial_id: str, flops_per_token: float | None = 6.0) -> dict:
    metrics = {} if flops_per_token is None else {"flops_per_token": flops_per_token}
    return {"trial_id": trial_id, "name": f"name of {trial_id}", "metrics": metrics}


def rows(trial_id: str, tokens, losses, times) -> list[tuple]:
    out = []
    for series, values in (("eval_tokens", tokens), ("eval_loss", losses), ("eval_time_s", times)):
        out += [(trial_id, series, i, v) for i, v in enumerate(values)]
    return out


def curve(losses, tokens=(0.0, 100.0, 200.0), times=(0.0, 10.0, 30.0), per_token=6.0):
    return pd.DataFrame({"tokens": tokens, "loss": losses, "time_s": times,
                         "flops": [t * per_token for t in tokens]})


def test_eval_curves_join_the_three_series_in_planned_order_with_flops():
    series = (rows("a", [0, 100], [4.0, 3.0], [0.0, 1.5]) + rows("b", [0, 50], [5.0, None], [0.0, 2.0])
              + [("b", "loss", 0, 9.9), ("c", "step_time_s", 0, 0.1)])
    curves = eval_curves(series, [trial("b", None), trial("a", 6.0), trial("c")])
    assert list(curves.columns) == ["trial_id", "name", "tokens", "loss", "time_s", "flops"]
    assert curves["trial_id"].tolist() == ["b", "b", "a", "a"]  # planned order; c has no evals
    a = curves[curves["trial_id"] == "a"]
    assert a["tokens"].tolist() == [0.0, 100.0] and a["loss"].tolist() == [4.0, 3.0]
    assert a["time_s"].tolist() == [0.0, 1.5] and a["flops"].tolist() == [0.0, 600.0]
    b = curves[curves["trial_id"] == "b"]
    assert math.isnan(b["loss"].iloc[1])  # stored as NULL
    assert b["flops"].isna().all()  # no FLOPs per token: no FLOPs
    assert b["name"].iloc[0] == "name of b"


def test_eval_curves_without_series_is_empty_with_columns():
    empty = eval_curves([], [trial("a")])
    assert empty.empty and list(empty.columns) == ["trial_id", "name", "tokens", "loss", "time_s", "flops"]


def test_crossing_interpolates_tokens_and_the_same_fraction_of_time_and_flops():
    # losses 4, 3, 2 at tokens 0, 100, 200: 2.5 is half-way between the last two evaluations
    at = crossing(curve([4.0, 3.0, 2.0]), 2.5)
    assert at == pytest.approx({"tokens": 150.0, "time_s": 20.0, "flops": 900.0})
    # a quarter of the way from 4 to 3
    assert crossing(curve([4.0, 3.0, 2.0]), 3.75) == pytest.approx(
        {"tokens": 25.0, "time_s": 2.5, "flops": 150.0})


def test_crossing_on_an_evaluation_and_at_the_start():
    assert crossing(curve([4.0, 3.0, 2.0]), 3.0) == pytest.approx(
        {"tokens": 100.0, "time_s": 10.0, "flops": 600.0})
    assert crossing(curve([4.0, 3.0, 2.0]), 5.0) == {"tokens": 0.0, "time_s": 0.0, "flops": 0.0}


def test_crossing_never_reached_or_without_target_is_none():
    assert crossing(curve([4.0, 3.0, 2.0]), 1.5) is None
    assert crossing(curve([4.0, 3.0, 2.0]), None) is None
    assert crossing(curve([4.0, 3.0, 2.0]), math.nan) is None
    assert crossing(curve([4.0, 3.0, 2.0]).iloc[0:0], 2.0) is None


def test_crossing_takes_the_first_crossing_and_does_not_interpolate_across_a_nan():
    # it dips below 2.5 at 100 tokens (half-way from 4 to 1 is 2.5 -> 50 tokens), then rises
    assert crossing(curve([4.0, 1.0, 3.0]), 2.5)["tokens"] == pytest.approx(50.0)
    # no finite evaluation before the one at the target: that evaluation is the crossing
    assert crossing(curve([4.0, math.nan, 2.0]), 2.5)["tokens"] == 200.0


def test_final_eval_loss_is_the_last_finite_evaluation():
    assert final_eval_loss(curve([4.0, 3.0, math.inf])) == 3.0
    assert math.isnan(final_eval_loss(curve([math.nan, math.nan, math.nan])))
