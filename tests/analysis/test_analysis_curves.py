"""loss_curves: tidy rows, planned order, warm-up flags, missing and infinite losses."""

from __future__ import annotations

import math

from harness.analysis import loss_curves


def trial(trial_id: str, warmup: int) -> dict:
    return {"trial_id": trial_id, "name": f"name of {trial_id}",
            "spec": {"train": {"warmup_steps": warmup}}}


def test_rows_follow_planned_order_and_flag_warmup_steps():
    trials = [trial("b", 2), trial("a", 1)]  # planned order is b then a, not alphabetical
    rows = [("a", "loss", 0, 3.0), ("a", "loss", 1, 2.0), ("a", "step_time_s", 0, 0.1),
            ("b", "loss", 0, 5.0), ("b", "loss", 1, 4.0), ("b", "loss", 2, 3.5)]
    curves = loss_curves(rows, trials)
    assert list(curves.columns) == ["trial_id", "name", "step", "loss", "warmup"]
    assert curves["trial_id"].tolist() == ["b", "b", "b", "a", "a"]
    assert curves["warmup"].tolist() == [True, True, False, True, False]
    assert curves["name"].iloc[0] == "name of b"
    assert curves["loss"].tolist() == [5.0, 4.0, 3.5, 3.0, 2.0]  # step_time_s left out


def test_missing_loss_is_nan_and_infinite_loss_stays_infinite():
    curves = loss_curves([("a", "loss", 0, 4.0), ("a", "loss", 1, None), ("a", "loss", 2, math.inf)],
                         [trial("a", 0)])
    assert math.isnan(curves.loc[1, "loss"]) and math.isinf(curves.loc[2, "loss"])
    assert not curves["warmup"].any()


def test_series_of_unknown_trials_are_ignored_and_empty_input_has_columns():
    assert loss_curves([("zz", "loss", 0, 1.0)], [trial("a", 0)]).empty
    empty = loss_curves([], [])
    assert list(empty.columns) == ["trial_id", "name", "step", "loss", "warmup"]
