"""growth_savings: the cost for a grown model to reach the scratch model's final eval loss,
with the operator's (and, second, the small model's) training counted, against scratch.

Every curve below is evaluated at tokens 0, 100, ..., 400 with FLOPs per token 10 and
training time tokens / 10 s, so tokens T cost 10 T FLOPs and T / 10 seconds."""

from __future__ import annotations

import math

import pytest

from harness.analysis import eval_curves, growth_savings, trial_frame

TOKENS = [0.0, 100.0, 200.0, 300.0, 400.0]
SMALL = {"small_train_tokens": 100.0, "small_train_flops": 200.0, "small_train_time_s": 6.0}
OPERATOR = {"operator_tokens": 40.0, "operator_flops": 400.0, "operator_time_s": 2.0}


def grow_trial(method: str, losses: list[float], extra: dict | None = None, repeat: int = 0,
               preset: str | None = None) -> tuple[dict, list[tuple]]:
    params = {"growth.method": method, "repeat": repeat}
    if preset is not None:
        params["model.preset"] = preset
    trial_id = f"{preset or ''}{method}-{repeat}"
    trial = {"trial_id": trial_id, "name": trial_id, "status": "ok", "params": params,
             "metrics": {"flops_per_token": 10.0, **(extra or {})}, "spec": {"kind": "grow"}}
    series = []
    for name, values in (("eval_tokens", TOKENS), ("eval_loss", losses),
                         ("eval_time_s", [t / 10 for t in TOKENS])):
        series += [(trial_id, name, i, v) for i, v in enumerate(values)]
    return trial, series


def savings_of(*made) -> dict[str, dict]:
    trials = [t for t, _ in made]
    series = [row for _, rows in made for row in rows]
    frame = growth_savings(trial_frame(trials), eval_curves(series, trials))
    return {row["method"]: row for row in frame.to_dict("records")}


def test_ligo_saving_counts_its_operator_and_then_the_small_model():
    rows = savings_of(
        grow_trial("scratch", [5.0, 4.0, 3.0, 2.5, 2.0]),  # its final loss 2.0 is the target
        grow_trial("ligo", [3.5, 2.5, 1.5, 1.4, 1.3], {**SMALL, **OPERATOR}))
    scratch, ligo = rows["scratch"], rows["ligo"]
    assert scratch["target_loss"] == 2.0 and ligo["target_loss"] == 2.0
    # scratch reaches its own final loss at its last evaluation: 400 tokens, 4000 FLOPs, 40 s
    assert (scratch["tokens"], scratch["flops"], scratch["time_s"]) == pytest.approx((400, 4000, 40))
    assert scratch["tokens_saving"] == 0.0 and scratch["time_saving_with_small"] == 0.0
    # ligo crosses 2.0 half-way between 100 (2.5) and 200 (1.5) tokens: 150 tokens, 1500 FLOPs,
    # 15 s; plus the operator's 40 tokens, 400 FLOPs and 2 s
    assert ligo["crossing_tokens"] == pytest.approx(150.0)
    assert (ligo["tokens"], ligo["flops"], ligo["time_s"]) == pytest.approx((190, 1900, 17))
    assert ligo["tokens_saving"] == pytest.approx(1 - 190 / 400)  # 0.525
    assert ligo["flops_saving"] == pytest.approx(1 - 1900 / 4000)  # 0.525
    assert ligo["time_saving"] == pytest.approx(1 - 17 / 40)  # 0.575
    # plus the small model's 100 tokens, 200 FLOPs and 6 s: a smaller saving
    assert (ligo["tokens_with_small"], ligo["flops_with_small"], ligo["time_s_with_small"]) == \
        pytest.approx((290, 2100, 23))
    assert ligo["tokens_saving_with_small"] == pytest.approx(1 - 290 / 400)  # 0.275
    assert ligo["flops_saving_with_small"] == pytest.approx(1 - 2100 / 4000)  # 0.475
    assert ligo["time_saving_with_small"] == pytest.approx(1 - 23 / 40)  # 0.425
    assert ligo["tokens_saving_with_small"] < ligo["tokens_saving"]
    assert ligo["note"] == ""


def test_stack_has_no_operator_cost_and_a_method_that_never_reaches_gets_nan_and_a_note():
    rows = savings_of(
        grow_trial("scratch", [5.0, 4.0, 3.0, 2.5, 2.0]),
        grow_trial("stack", [4.0, 3.0, 2.5, 2.0, 1.9], SMALL),  # 2.0 at 300 tokens exactly
        grow_trial("ligo", [4.0, 3.0, 2.5, 2.2, 2.1], {**SMALL, **OPERATOR}))
    stack, ligo = rows["stack"], rows["ligo"]
    assert stack["tokens"] == pytest.approx(300.0)  # no operator: nothing added
    assert stack["tokens_saving"] == pytest.approx(0.25)
    assert stack["tokens_saving_with_small"] == pytest.approx(1 - 400 / 400)
    assert stack["time_saving_with_small"] == pytest.approx(1 - 36 / 40)
    for column in ("tokens", "tokens_saving", "flops_saving", "time_saving",
                   "tokens_saving_with_small", "flops_saving_with_small", "time_saving_with_small"):
        assert math.isnan(ligo[column]), column
    assert ligo["note"].startswith("never reached the target 2 (best 2.1 after 400 tokens)")
    assert list(rows) == ["scratch", "stack", "ligo"]


def test_repeats_are_averaged_and_groups_are_kept_apart():
    rows = savings_of(
        # repeats end at 2.0 and 2.2: the target is their mean, 2.1, reached by the mean curve
        grow_trial("scratch", [5.0, 4.0, 3.0, 2.5, 2.0], repeat=0),
        grow_trial("scratch", [5.0, 4.0, 3.0, 2.5, 2.2], repeat=1),
        grow_trial("ligo", [3.5, 2.5, 1.5, 1.4, 1.3], {**SMALL, **OPERATOR}))
    assert rows["scratch"]["repeats"] == 2
    assert rows["scratch"]["target_loss"] == pytest.approx(2.1)
    assert rows["scratch"]["tokens"] == pytest.approx(400.0)
    # ligo crosses 2.1 at 100 + 100 * (2.5 - 2.1) / (2.5 - 1.5) = 140 tokens, + 40 operator
    assert rows["ligo"]["tokens"] == pytest.approx(180.0)
    assert rows["ligo"]["tokens_saving"] == pytest.approx(1 - 180 / 400)

    trials = [grow_trial("scratch", [5.0, 4.0, 3.0, 2.5, 2.0], preset="big"),
              grow_trial("ligo", [3.5, 2.5, 1.5, 1.4, 1.3], {**SMALL, **OPERATOR}, preset="big"),
              grow_trial("ligo", [3.5, 2.5, 1.5, 1.4, 1.3], {**SMALL, **OPERATOR}, preset="tiny")]
    frame = growth_savings(trial_frame([t for t, _ in trials]),
                           eval_curves([r for _, rows in trials for r in rows], [t for t, _ in trials]))
    tiny = frame[frame["group"] == "model.preset=tiny"].iloc[0]
    assert tiny["method"] == "ligo" and math.isnan(tiny["tokens_saving"])
    assert "no ok scratch trial" in tiny["note"]
    big = frame[(frame["group"] == "model.preset=big") & (frame["method"] == "ligo")].iloc[0]
    assert big["tokens_saving"] == pytest.approx(1 - 190 / 400)


def test_a_ligo_trial_without_its_operator_cost_is_not_counted_as_free():
    rows = savings_of(grow_trial("scratch", [5.0, 4.0, 3.0, 2.5, 2.0]),
                      grow_trial("ligo", [3.5, 2.5, 1.5, 1.4, 1.3], SMALL))
    assert math.isnan(rows["ligo"]["tokens_saving"])
    assert "operator_tokens" in rows["ligo"]["note"]


def test_no_growth_axis_gives_an_empty_frame():
    trial, series = grow_trial("scratch", [5.0, 4.0])
    trial = {**trial, "params": {"repeat": 0}}
    frame = growth_savings(trial_frame([trial]), eval_curves(series, [trial]))
    assert frame.empty and "tokens_saving" in frame.columns
