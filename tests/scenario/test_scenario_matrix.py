"""Matrix expansion: cartesian product, minus exclude, plus include, times repeats; trial ids,
dotted axes, --set overrides, the baseline and relative paths."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from harness.scenario.schema import TechniquesSection
from harness.scenario import baseline_of, expand, expand_combinations, load_scenario, trial_id

REPO = Path(__file__).resolve().parents[2]

TWO_BY_TWO = """\
name: t
model: {preset: tiny}
train: {steps: 6, warmup_steps: 1}
matrix:
  precision: [fp32, bf16]
  checkpointing: [none, full]
"""


def write(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def combos(tmp_path: Path, text: str, overrides: tuple[str, ...] = ()) -> list[dict]:
    return expand_combinations(load_scenario(write(tmp_path, text), list(overrides)).scenario)


def pairs(combinations: list[dict]) -> list[tuple]:
    return [(c["precision"], c["checkpointing"]) for c in combinations]


def test_two_by_two_is_the_cartesian_product_in_order(tmp_path):
    assert pairs(combos(tmp_path, TWO_BY_TWO)) == [
        ("fp32", "none"), ("fp32", "full"), ("bf16", "none"), ("bf16", "full")]


def test_three_axes_multiply(tmp_path):
    text = TWO_BY_TWO + "  compile: [false, true]\n  train.micro_batch_size: [2, 4, 8]\n"
    found = combos(tmp_path, text)
    assert len(found) == 2 * 2 * 2 * 3
    keys = {tuple(c.values()) for c in found}
    assert keys == set(itertools.product(["fp32", "bf16"], ["none", "full"], [False, True], [2, 4, 8]))


def test_no_matrix_is_one_default_trial(tmp_path):
    loaded = load_scenario(write(tmp_path, "name: t\nmodel: {preset: tiny}\nrepeats: 2\n"))
    assert expand_combinations(loaded.scenario) == [{}]
    specs = expand(loaded, "cpu")
    assert [s.name for s in specs] == ["default #0", "default #1"]
    assert [s.params for s in specs] == [{"repeat": 0}, {"repeat": 1}]


def test_exclude_with_a_full_selector_removes_one(tmp_path):
    text = TWO_BY_TWO + "exclude: [{precision: fp32, checkpointing: full}]\n"
    assert pairs(combos(tmp_path, text)) == [("fp32", "none"), ("bf16", "none"), ("bf16", "full")]


def test_exclude_with_a_partial_selector_removes_every_match(tmp_path):
    text = TWO_BY_TWO.replace("[fp32, bf16]", "[fp32, bf16, fp16]") + "exclude: [{precision: bf16}]\n"
    assert pairs(combos(tmp_path, text)) == [
        ("fp32", "none"), ("fp32", "full"), ("fp16", "none"), ("fp16", "full")]


def test_several_exclude_rules_each_remove(tmp_path):
    text = TWO_BY_TWO + "exclude:\n  - {checkpointing: full}\n  - {precision: bf16}\n"
    assert pairs(combos(tmp_path, text)) == [("fp32", "none")]


def test_include_adds_a_new_combination_at_the_end(tmp_path):
    text = TWO_BY_TWO + "include: [{precision: fp16, checkpointing: full}]\n"
    found = pairs(combos(tmp_path, text))
    assert len(found) == 5
    assert found[-1] == ("fp16", "full")


def test_include_fills_missing_axes_from_the_fixed_techniques(tmp_path):
    text = TWO_BY_TWO + "techniques: {checkpointing: full}\ninclude: [{precision: fp16}]\n"
    found = pairs(combos(tmp_path, text))
    assert found[-1] == ("fp16", "full")
    assert len(found) == 5
    text = TWO_BY_TWO + "include: [{precision: fp16}]\n"  # the schema default: none
    assert pairs(combos(tmp_path, text))[-1] == ("fp16", "none")


def test_include_of_an_existing_combination_does_not_duplicate_it(tmp_path):
    text = TWO_BY_TWO + "include:\n  - {precision: bf16, checkpointing: full}\n  - {precision: fp32}\n"
    found = pairs(combos(tmp_path, text))
    assert found == pairs(combos(tmp_path, TWO_BY_TWO))
    assert len(set(found)) == len(found) == 4


def test_include_brings_back_an_excluded_combination(tmp_path):
    text = (TWO_BY_TWO + "exclude: [{precision: fp32}]\n"
            "include: [{precision: fp32, checkpointing: none}]\n")
    assert pairs(combos(tmp_path, text)) == [("bf16", "none"), ("bf16", "full"), ("fp32", "none")]


def test_the_design_example_gives_four_trials(tmp_path):
    text = TWO_BY_TWO + """\
exclude: [{precision: fp32, checkpointing: full}]
include: [{precision: fp16, checkpointing: none}]
baseline: {precision: fp32, checkpointing: none}
"""
    loaded = load_scenario(write(tmp_path, text))
    assert pairs(expand_combinations(loaded.scenario)) == [
        ("fp32", "none"), ("bf16", "none"), ("bf16", "full"), ("fp16", "none")]
    assert baseline_of(loaded.scenario) == {"precision": "fp32", "checkpointing": "none"}


def test_repeats_multiply_with_distinct_ids_and_one_name_stem(tmp_path):
    loaded = load_scenario(write(tmp_path, TWO_BY_TWO + "repeats: 3\n"))
    specs = expand(loaded, "cpu")
    assert len(specs) == 4 * 3
    assert len({s.trial_id for s in specs}) == 12
    first = [s for s in specs if s.params["precision"] == "fp32" and s.params["checkpointing"] == "none"]
    assert [s.name for s in first] == [f"precision=fp32 checkpointing=none #{i}" for i in range(3)]
    assert [s.params["repeat"] for s in first] == [0, 1, 2]
    assert len({s.name.rsplit(" #", 1)[0] for s in specs}) == 4


def test_one_repeat_has_no_repeat_mark(tmp_path):
    specs = expand(load_scenario(write(tmp_path, TWO_BY_TWO)), "cpu")
    assert [s.name for s in specs] == [
        "precision=fp32 checkpointing=none", "precision=fp32 checkpointing=full",
        "precision=bf16 checkpointing=none", "precision=bf16 checkpointing=full"]
    assert all(s.params["repeat"] == 0 for s in specs)


def test_trial_ids_are_stable_across_loads_and_independent_of_axis_order(tmp_path):
    first = expand(load_scenario(write(tmp_path, TWO_BY_TWO, "a.yaml")), "cpu")
    again = expand(load_scenario(write(tmp_path, TWO_BY_TWO, "a.yaml")), "cpu")
    swapped = TWO_BY_TWO.replace(
        "  precision: [fp32, bf16]\n  checkpointing: [none, full]\n",
        "  checkpointing: [full, none]\n  precision: [bf16, fp32]\n")
    other = expand(load_scenario(write(tmp_path, swapped, "b.yaml")), "cpu")
    assert [s.trial_id for s in first] == [s.trial_id for s in again]
    by_params = {(s.params["precision"], s.params["checkpointing"]): s.trial_id for s in first}
    assert by_params == {(s.params["precision"], s.params["checkpointing"]): s.trial_id for s in other}
    assert len(set(by_params.values())) == 4


def test_trial_id_is_a_function_of_params_only():
    assert trial_id({"a": 1, "repeat": 0}) == trial_id({"repeat": 0, "a": 1})
    assert trial_id({"a": 1, "repeat": 0}) != trial_id({"a": 1, "repeat": 1})
    assert trial_id({"a": 1, "repeat": 0}).startswith("t")


def test_dotted_axes_resolve_into_model_and_train(tmp_path):
    text = """\
name: t
train: {steps: 6, warmup_steps: 1}
matrix:
  model.preset: [tiny, small]
  train.micro_batch_size: [4, 8]
"""
    specs = expand(load_scenario(write(tmp_path, text)), "cpu")
    assert len(specs) == 4
    for spec in specs:
        assert spec.train["micro_batch_size"] == spec.params["train.micro_batch_size"]
        assert spec.train["steps"] == 6
        expected = {"tiny": (2, 64), "small": (4, 128)}[spec.params["model.preset"]]
        assert (spec.model["n_layer"], spec.model["d_model"]) == expected
        assert spec.model["arch"] == "gpt"
        assert "preset" not in spec.model  # resolved into GPTConfig fields
    assert specs[0].name == "model.preset=tiny train.micro_batch_size=4"


def test_swept_techniques_land_in_spec_techniques(tmp_path):
    text = TWO_BY_TWO + "techniques: {compile: true}\n"
    for spec in expand(load_scenario(write(tmp_path, text)), "cpu"):
        assert spec.techniques == {**TechniquesSection().model_dump(), "compile": True,
                                   "precision": spec.params["precision"],
                                   "checkpointing": spec.params["checkpointing"]}


def test_matrix_values_take_their_fields_types(tmp_path):
    # YAML 1.1 reads 1e-3 (no dot) as a string; the trial must still get a float
    text = "name: t\nmatrix:\n  train.lr: [1e-3, 3.0e-4]\n  data.seq_len: ['64']\n"
    specs = expand(load_scenario(write(tmp_path, text)), "cpu")
    assert [s.train["lr"] for s in specs] == [0.001, 0.0003]
    assert all(isinstance(s.train["lr"], float) for s in specs)
    assert [s.data["seq_len"] for s in specs] == [64, 64]
    assert [s.params["train.lr"] for s in specs] == [0.001, 0.0003]


def test_set_model_preset_changes_the_resolved_model(tmp_path):
    path = write(tmp_path, TWO_BY_TWO)
    plain = expand(load_scenario(path), "cpu")[0]
    small = expand(load_scenario(path, ["model.preset=small"]), "cpu")[0]
    assert (plain.model["n_layer"], plain.model["d_model"]) == (2, 64)
    assert (small.model["n_layer"], small.model["d_model"], small.model["n_head"]) == (4, 128, 4)


def test_set_replaces_a_matrix_axis(tmp_path):
    found = combos(tmp_path, TWO_BY_TWO, ("matrix.precision=[bf16]",))
    assert pairs(found) == [("bf16", "none"), ("bf16", "full")]


def test_set_adds_a_matrix_axis_and_fixed_fields(tmp_path):
    loaded = load_scenario(write(tmp_path, TWO_BY_TWO),
                           ["matrix.compile=[false, true]", "train.steps=9", "repeats=2"])
    specs = expand(loaded, "cpu")
    assert len(specs) == 2 * 2 * 2 * 2
    assert {s.train["steps"] for s in specs} == {9}
    assert loaded.overrides == ("matrix.compile=[false, true]", "train.steps=9", "repeats=2")


def test_overrides_change_the_scenario_hash(tmp_path):
    path = write(tmp_path, TWO_BY_TWO)
    assert load_scenario(path).file_hash == load_scenario(path).file_hash
    assert load_scenario(path).file_hash != load_scenario(path, ["train.steps=9"]).file_hash


def test_baseline_defaults_to_the_first_combination(tmp_path):
    scenario = load_scenario(write(tmp_path, TWO_BY_TWO)).scenario
    assert baseline_of(scenario) == {"precision": "fp32", "checkpointing": "none"}
    scenario = load_scenario(write(tmp_path, TWO_BY_TWO + "exclude: [{precision: fp32}]\n")).scenario
    assert baseline_of(scenario) == {"precision": "bf16", "checkpointing": "none"}


def test_partial_baseline_selects_the_first_match(tmp_path):
    scenario = load_scenario(write(tmp_path, TWO_BY_TWO + "baseline: {precision: bf16}\n")).scenario
    assert baseline_of(scenario) == {"precision": "bf16", "checkpointing": "none"}


def test_relative_data_path_resolves_against_the_scenario_folder(tmp_path, monkeypatch):
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    text = "name: t\nmodel: {preset: tiny}\ndata: {kind: text, path: corpus/input.txt}\n"
    path = write(tmp_path, text, "suite/s.yaml")
    spec = expand(load_scenario(path), "cpu")[0]
    assert spec.data["path"] == str((tmp_path / "suite" / "corpus" / "input.txt").resolve())


def test_absolute_data_path_is_kept(tmp_path):
    corpus = (tmp_path / "abs.txt").resolve()
    text = f"name: t\nmodel: {{preset: tiny}}\ndata: {{kind: text, path: '{corpus}'}}\n"
    spec = expand(load_scenario(write(tmp_path, text, "x/s.yaml")), "cpu")[0]
    assert spec.data["path"] == str(corpus)


def test_quickstart_plans_four_combinations_three_times_against_fp32():
    loaded = load_scenario(REPO / "scenarios" / "quickstart.yaml")
    specs = expand(loaded, "cpu")
    assert len(specs) == 12
    combinations = [(s.params["precision"], s.params["checkpointing"]) for s in specs]
    assert set(combinations) == set(itertools.product(["fp32", "bf16"], ["none", "full"]))
    assert all(combinations.count(c) == 3 for c in set(combinations))
    assert baseline_of(loaded.scenario) == {"precision": "fp32", "checkpointing": "none"}
    assert all(s.scenario == "quickstart" and s.device == "cpu" for s in specs)


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_expand_records_the_device_without_touching_it(tmp_path, device):
    specs = expand(load_scenario(write(tmp_path, TWO_BY_TWO)), device)
    assert {s.device for s in specs} == {device}
