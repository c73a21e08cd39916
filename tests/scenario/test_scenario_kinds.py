"""Scenario kinds (train, inference, distill, grow): their sections resolve into the trial
spec, and settings a kind cannot use are one-line errors naming file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import InputError
from harness.scenario import expand, load_scenario

HEADER = "name: t\nmodel: {preset: small}\ndata: {seq_len: 64}\n"


def _write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "kinds.yaml"
    path.write_text(HEADER + body)
    return path


def _error(path: Path) -> InputError:
    with pytest.raises(InputError) as caught:
        load_scenario(path)
    return caught.value


CASES = [
    ("section-of-another-kind", "distillation:\n  teacher_steps: 10\n", 4, "distillation",
     ["the distillation section needs kind: distill", "kind is train"]),
    ("axis-of-another-kind", "kind: grow\nmatrix:\n  distillation.method: [scratch]\n", 6,
     "matrix.distillation.method", ["needs kind: distill", "kind is grow"]),
    ("quantization-outside-inference", "matrix:\n  quantization: [none, int8]\n", 5,
     "matrix.quantization.1", ["quantization applies to kind: inference"]),
    ("prompt-longer-than-eval-windows", "kind: inference\ninference:\n  prompt_len: 65\n", 6,
     "inference.prompt_len", ["prompt_len 65 exceeds data.seq_len 64"]),
    ("inference-in-fp8", "kind: inference\ntechniques: {precision: fp8}\n", 5,
     "techniques.precision", ["loads its weights in one of fp32, bf16, fp16"]),
    ("distillation-across-ranks", "kind: distill\ntechniques: {parallel: ddp, world_size: 2}\n", 5,
     "techniques.world_size", ["kind distill runs on one rank"]),
    ("student-that-cannot-be-built", "kind: distill\ndistillation:\n  student: {n_head: 5}\n", 6,
     "distillation.student", ["divisible by n_head (5)"]),
    ("stop-without-target", "train: {stop_at_target: true}\n", 4, "train.stop_at_target",
     ["stop_at_target needs train.target_loss"]),
]


@pytest.mark.parametrize("body, line, field, words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_kind_errors_name_file_line_and_field(tmp_path, body, line, field, words):
    err = _error(_write(tmp_path, body))
    assert (err.line, err.field) == (line, field), str(err)
    for word in words:
        assert word in err.message, err.message
    assert "\n" not in str(err)


def test_student_is_the_model_with_the_given_fields_changed(tmp_path):
    path = _write(tmp_path, "kind: distill\ndistillation:\n  student: {n_layer: 2}\n"
                            "matrix:\n  distillation.method: [scratch, distill]\n")
    scratch, distill = expand(load_scenario(path), "cpu")
    assert (scratch.kind, distill.kind) == ("distill", "distill")
    assert [s.kind_settings["method"] for s in (scratch, distill)] == ["scratch", "distill"]
    student, teacher = distill.kind_settings["student"], distill.model
    assert (student["n_layer"], teacher["n_layer"]) == (2, 4)
    assert {k: v for k, v in student.items() if k != "n_layer"} == {
        k: v for k, v in teacher.items() if k not in ("n_layer", "arch")}


def test_small_model_of_a_growth_may_name_a_preset(tmp_path):
    path = _write(tmp_path, "kind: grow\ngrowth:\n  small: {preset: tiny, n_layer: 1}\n")
    (spec,) = expand(load_scenario(path), "cpu")
    small = spec.kind_settings["small"]
    assert (small["n_layer"], small["d_model"]) == (1, 64)
    assert spec.kind_settings["method"] == "ligo"


def test_a_train_scenario_carries_no_kind_settings(tmp_path):
    (spec,) = expand(load_scenario(_write(tmp_path, "")), "cpu")
    assert (spec.kind, spec.kind_settings) == ("train", {})


@pytest.mark.parametrize("name", ["moe", "int8_inference", "distillation", "ligo"])
def test_shipped_model_level_scenarios_validate(name):
    loaded = load_scenario(Path(__file__).parents[2] / "scenarios" / f"{name}.yaml")
    assert len(expand(loaded, "cpu")) >= 2


def test_set_reaches_a_dotted_matrix_axis_and_the_baseline(tmp_path):
    path = _write(tmp_path, "matrix:\n  model.preset: [small]\nbaseline: {model.preset: small}\n")
    loaded = load_scenario(path, ["matrix.model.preset=[tiny, tiny-moe]", "baseline.model.preset=tiny"])
    assert loaded.scenario.matrix == {"model.preset": ["tiny", "tiny-moe"]}
    assert loaded.scenario.baseline == {"model.preset": "tiny"}
