"""factorial_effects on synthetic multiplicative sweeps: known effects come back exactly."""

from __future__ import annotations

import itertools
import math
from typing import Any

import pandas as pd
import pytest

from harness.analysis import effects_summary, factorial_effects

PRECISION = {"fp32": 1.0, "bf16": 1.8, "fp16": 1.6}
CHECKPOINTING = {"none": 1.0, "full": 0.7}
COMPILE = {False: 1.0, True: 1.25}
BASE = {"precision": "fp32", "checkpointing": "none", "compile": False}


def sweep(interaction: dict[tuple, float] | None = None) -> pd.DataFrame:
    """y = 100 * f_precision * f_checkpointing * f_compile, times `interaction` on chosen cells."""
    rows = []
    for precision, checkpointing, compiled in itertools.product(PRECISION, CHECKPOINTING, COMPILE):
        y = 100 * PRECISION[precision] * CHECKPOINTING[checkpointing] * COMPILE[compiled]
        y *= (interaction or {}).get((precision, checkpointing, compiled), 1.0)
        rows.append({"params.precision": precision, "params.checkpointing": checkpointing,
                     "params.compile": compiled, "params.seq_len": 64, "tokens_per_s": y})
    return pd.DataFrame(rows)


def by_levels(effects: pd.DataFrame) -> dict[tuple[str, str], Any]:
    """Each effect row (a named tuple) by its (factors, levels)."""
    return {(row.factors, row.levels): row for row in effects.itertuples()}


def test_main_effects_of_a_multiplicative_sweep_are_each_factor_alone():
    effects = factorial_effects(sweep(), "tokens_per_s", BASE)
    main = effects[effects["kind"] == "main"]
    # axis order then level order; seq_len has one level and is no factor
    assert list(zip(main["factors"], main["levels"])) == [
        ("precision", "bf16 vs fp32"), ("precision", "fp16 vs fp32"),
        ("checkpointing", "full vs none"), ("compile", "true vs false")]
    assert list(main["ratio"]) == pytest.approx([1.8, 1.6, 0.7, 1.25])
    assert list(main["cells"]) == [4, 4, 6, 6]
    assert set(effects["metric"]) == {"tokens_per_s"}


def test_interactions_of_independent_techniques_are_one():
    effects = factorial_effects(sweep(), "tokens_per_s", BASE)
    interactions = effects[effects["kind"] == "interaction"]
    assert list(zip(interactions["factors"], interactions["levels"])) == [
        ("precision × checkpointing", "bf16 × full"),
        ("precision × checkpointing", "fp16 × full"),
        ("precision × compile", "bf16 × true"), ("precision × compile", "fp16 × true"),
        ("checkpointing × compile", "full × true")]
    assert list(interactions["ratio"]) == pytest.approx([1.0] * 5)
    assert list(interactions["cells"]) == [2, 2, 2, 2, 3]


def test_a_known_interaction_shows_only_where_it_belongs():
    # bf16 with full checkpointing gains an extra 1.5x, whatever compile is
    effects = by_levels(factorial_effects(
        sweep({("bf16", "full", False): 1.5, ("bf16", "full", True): 1.5}), "tokens_per_s", BASE))
    assert effects[("precision × checkpointing", "bf16 × full")].ratio == pytest.approx(1.5)
    for other in [("precision × checkpointing", "fp16 × full"),
                  ("precision × compile", "bf16 × true"),
                  ("precision × compile", "fp16 × true"),
                  ("checkpointing × compile", "full × true")]:
        assert effects[other].ratio == pytest.approx(1.0)
    # a main effect averages the boost over its cells: 2 of bf16's 4, 2 of full's 6
    assert effects[("precision", "bf16 vs fp32")].ratio == pytest.approx(1.8 * math.sqrt(1.5))
    assert effects[("checkpointing", "full vs none")].ratio == pytest.approx(0.7 * 1.5 ** (1 / 3))


def test_a_boost_on_one_cell_reaches_exactly_the_interactions_that_involve_it():
    # one combination (bf16, full, compiled) 2x faster: each pair's contrast sees it in one cell
    boosted = sweep({("bf16", "full", True): 2.0})
    ratio = {key: row.ratio for key, row in by_levels(
        factorial_effects(boosted, "tokens_per_s", BASE)).items()}
    assert ratio[("precision × checkpointing", "bf16 × full")] == pytest.approx(math.sqrt(2))
    assert ratio[("precision × compile", "bf16 × true")] == pytest.approx(math.sqrt(2))
    assert ratio[("checkpointing × compile", "full × true")] == pytest.approx(2 ** (1 / 3))
    assert ratio[("precision × checkpointing", "fp16 × full")] == pytest.approx(1.0)
    assert ratio[("precision × compile", "fp16 × true")] == pytest.approx(1.0)


def test_an_unbalanced_design_uses_the_cells_that_remain():
    combos = sweep()
    missing = (combos["params.precision"] == "bf16") & (combos["params.checkpointing"] == "full") \
        & (combos["params.compile"])
    combos.loc[missing, "tokens_per_s"] = math.nan
    combos = combos.drop(combos.index[(combos["params.precision"] == "fp16")
                                      & (combos["params.checkpointing"] == "none")
                                      & ~combos["params.compile"].astype(bool)])
    effects = by_levels(factorial_effects(combos, "tokens_per_s", BASE))
    assert effects[("precision", "bf16 vs fp32")].ratio == pytest.approx(1.8)
    assert effects[("precision", "bf16 vs fp32")].cells == 3
    assert effects[("precision", "fp16 vs fp32")].cells == 3
    assert effects[("checkpointing", "full vs none")].cells == 4
    assert effects[("checkpointing", "full vs none")].ratio == pytest.approx(0.7)
    assert effects[("compile", "true vs false")].ratio == pytest.approx(1.25)
    # the bf16 × full contrast had two cells (compile off/on) and lost the compiled one
    assert effects[("precision × checkpointing", "bf16 × full")].cells == 1
    assert effects[("precision × checkpointing", "bf16 × full")].ratio == pytest.approx(1.0)


def test_a_figure_that_is_not_positive_never_enters_a_log():
    combos = sweep()
    combos.loc[0, "tokens_per_s"] = 0.0  # fp32, none, not compiled: the all-reference cell
    effects = by_levels(factorial_effects(combos, "tokens_per_s", BASE))
    assert effects[("compile", "true vs false")].cells == 5
    assert effects[("compile", "true vs false")].ratio == pytest.approx(1.25)


def test_a_single_factor_gives_main_effects_and_no_interactions():
    combos = pd.DataFrame({"params.precision": ["fp32", "bf16", "fp16"],
                           "params.compile": [False, False, False],
                           "tokens_per_s": [100.0, 180.0, math.nan]})
    effects = factorial_effects(combos, "tokens_per_s", {})
    assert list(effects["kind"]) == ["main", "main"]
    assert list(effects["levels"]) == ["bf16 vs fp32", "fp16 vs fp32"]
    assert effects["ratio"].iloc[0] == pytest.approx(1.8)
    assert effects["cells"].iloc[0] == 1
    # fp16 never measured: a row that says so, not a figure
    assert math.isnan(effects["ratio"].iloc[1]) and effects["cells"].iloc[1] == 0


def test_no_factor_gives_an_empty_frame_with_the_columns():
    combos = pd.DataFrame({"params.precision": ["bf16", "bf16"], "tokens_per_s": [1.0, 2.0]})
    effects = factorial_effects(combos, "tokens_per_s", {})
    assert effects.empty
    assert list(effects.columns) == ["kind", "factors", "levels", "ratio", "cells", "metric"]


def test_none_bool_and_list_levels_are_levels_like_any_other():
    rows = []
    for checkpointing, compiled, layers in itertools.product([None, "full"], [True, False],
                                                             [[0, 1], [2]]):
        y = 50 * (0.5 if checkpointing == "full" else 1.0) * (3.0 if compiled else 1.0) \
            * (1.1 if layers == [2] else 1.0)
        rows.append({"params.checkpointing": checkpointing, "params.compile": compiled,
                     "params.layers": layers, "peak_memory_bytes": y})
    combos = pd.DataFrame(rows)
    # the reference of compile is False though True comes first; layers takes its first level
    effects = by_levels(factorial_effects(combos, "peak_memory_bytes",
                                          {"checkpointing": None, "compile": False}))
    assert effects[("checkpointing", "full vs None")].ratio == pytest.approx(0.5)
    assert effects[("compile", "true vs false")].ratio == pytest.approx(3.0)
    assert effects[("layers", "[2] vs [0, 1]")].ratio == pytest.approx(1.1)
    assert effects[("checkpointing × compile", "full × true")].ratio == pytest.approx(1.0)
    assert effects[("compile × layers", "true × [2]")].cells == 2


def test_a_metric_nobody_measured_gives_nan_with_no_cells():
    combos = sweep().assign(energy_j=math.nan)
    effects = factorial_effects(combos, "energy_j", BASE)
    assert len(effects) == 9
    assert effects["ratio"].isna().all()
    assert (effects["cells"] == 0).all()


def test_a_baseline_level_outside_the_sweep_is_an_error():
    with pytest.raises(ValueError, match="baseline precision=fp8 is not among the swept levels"):
        factorial_effects(sweep(), "tokens_per_s", {"precision": "fp8"})


def test_the_summary_stacks_metrics_and_skips_unmeasured_ones():
    combos = sweep().assign(peak_memory_bytes=lambda f: 1e9 * f["params.checkpointing"].map(
        {"none": 1.0, "full": 0.4}), energy_j=math.nan)
    summary = effects_summary(combos, ["tokens_per_s", "peak_memory_bytes", "energy_j"], BASE)
    assert list(summary["metric"].unique()) == ["tokens_per_s", "peak_memory_bytes"]
    memory = by_levels(summary[summary["metric"] == "peak_memory_bytes"])
    assert memory[("checkpointing", "full vs none")].ratio == pytest.approx(0.4)
    assert memory[("precision", "bf16 vs fp32")].ratio == pytest.approx(1.0)
    assert effects_summary(combos, ["energy_j"], BASE).empty
