"""Every bad scenario becomes one InputError naming the file, the line and the dotted field.

Each case writes a small YAML file whose first two lines are always valid (`name`,
`description`), so a line number of 1 or 2 would mean the error fell back to the top.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import InputError, did_you_mean
from harness.scenario import load_scenario

HEADER = "name: t\ndescription: d\n"


def write(tmp_path: Path, text: str, name: str = "bad.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def load_error(path: Path, overrides: tuple[str, ...] = ()) -> InputError:
    with pytest.raises(InputError) as caught:
        load_scenario(path, list(overrides))
    return caught.value


# id, body after HEADER, expected line, expected field, words the message must contain
CASES = [
    ("unknown-top-level-key",
     "model: {preset: tiny}\nmatrx:\n  precision: [fp32, bf16]\n",
     4, "matrx", ["unknown key 'matrx'", "did you mean 'matrix'"]),
    ("unknown-nested-key",
     "model:\n  preset: tiny\n  n_layerz: 3\n",
     5, "model.n_layerz", ["unknown key 'n_layerz'", "did you mean 'n_layer'"]),
    ("unknown-key-in-flow-mapping",
     "train: {steps: 10}\nmodel: {preset: tiny, n_layerz: 3}\n",
     4, "model.n_layerz", ["did you mean 'n_layer'"]),
    ("unknown-technique-key",
     "techniques:\n  compiel: true\n",
     4, "techniques.compiel", ["did you mean 'compile'"]),
    ("wrong-type",
     "train:\n  micro_batch_size: 4\n  steps: many\n",
     5, "train.steps", ["valid integer"]),
    ("out-of-range",
     "train:\n  steps: 0\n",
     4, "train.steps", ["greater than or equal to 1"]),
    ("negative-repeats",
     "model: {preset: tiny}\nrepeats: -3\n",
     4, "repeats", ["greater than or equal to 1"]),
    ("bad-literal-in-matrix",
     "matrix:\n  checkpointing: [none, full]\n  precision: [fp32, bf17]\n",
     5, "matrix.precision.1", ["'bf17'", "'bf16'"]),
    ("bad-literal-in-block-list",
     "matrix:\n  precision:\n    - fp32\n    - bf17\n",
     6, "matrix.precision.1", ["'bf17'"]),
    ("bad-integer-in-matrix",
     "matrix:\n  grad_accum: [1, many]\n",
     4, "matrix.grad_accum.1", ["valid integer", "'many'"]),
    ("bad-compile-mode-in-matrix",
     "matrix:\n  compile: [true, maybe]\n",
     4, "matrix.compile.1", ["torch.compile mode", "'maybe'"]),
    ("bad-checkpointing-form-in-matrix",
     "matrix:\n  checkpointing: [full, every-0]\n",
     4, "matrix.checkpointing.1", ["every-K", "'every-0'"]),
    ("unknown-matrix-axis",
     "matrix:\n  checkpointing: [none]\n  precison: [fp32]\n",
     5, "matrix.precison", ["unknown matrix axis 'precison'", "did you mean 'precision'"]),
    ("unknown-dotted-matrix-axis",
     "matrix:\n  model.presett: [tiny]\n",
     4, "matrix.model.presett", ["did you mean 'model.preset'"]),
    ("matrix-axis-not-a-list",
     "matrix:\n  precision: fp32\n",
     4, "matrix.precision", ["valid list"]),
    ("empty-matrix",
     "model: {preset: tiny}\nmatrix: {}\n",
     4, "matrix", ["matrix is empty"]),
    ("empty-axis",
     "matrix:\n  checkpointing: [none]\n  precision: []\n",
     5, "matrix.precision", ["at least one value"]),
    ("repeated-axis-value",
     "matrix:\n  precision:\n    - fp32\n    - bf16\n    - fp32\n",
     7, "matrix.precision.2", ["'fp32' is listed twice"]),
    ("warmup-not-below-steps",
     "train:\n  steps: 10\n  warmup_steps: 10\n",
     5, "train.warmup_steps", ["warmup_steps (10) must be smaller than steps (10)"]),
    ("warmup-against-steps-of-another-axis",
     "train: {steps: 30, warmup_steps: 2}\nmatrix:\n  train.steps: [30, 5]\n"
     "  train.warmup_steps: [2, 10]\n",
     6, "matrix.train.warmup_steps.1",
     ["warmup_steps (10) must be smaller than steps (5)", "train.steps=5"]),
    ("compile-without-warmup",
     "train: {steps: 10, warmup_steps: 0}\nmatrix:\n  compile: [false, true]\n",
     3, "train.warmup_steps", ["compile needs warmup_steps >= 1", "compile=true"]),
    ("exclude-key-not-an-axis",
     "matrix:\n  precision: [fp32, bf16]\nexclude:\n  - {precision: fp32}\n"
     "  - {checkpointing: full}\n",
     7, "exclude.1.checkpointing", ["'checkpointing' is not an axis of the matrix"]),
    ("exclude-bad-value",
     "matrix:\n  precision: [fp32, bf16]\nexclude:\n  - {precision: bf17}\n",
     6, "exclude.0.precision", ["'bf17'"]),
    ("include-key-not-an-axis",
     "matrix:\n  precision: [fp32, bf16]\ninclude:\n  - precision: fp16\n    compile: true\n",
     7, "include.0.compile", ["'compile' is not an axis of the matrix"]),
    ("exclude-removes-everything",
     "matrix:\n  precision: [fp32]\nexclude:\n  - {precision: fp32}\n",
     5, "exclude", ["removes every combination"]),
    ("baseline-matches-no-trial",
     "matrix:\n  precision: [fp32, bf16]\nexclude: [{precision: fp32}]\n"
     "baseline: {precision: fp32}\n",
     6, "baseline", ["matches no trial"]),
    ("baseline-key-not-an-axis",
     "matrix:\n  precision: [fp32, bf16]\nbaseline:\n  checkpointing: none\n",
     6, "baseline.checkpointing", ["not an axis of the matrix"]),
    ("duplicate-yaml-key",
     "train:\n  steps: 10\n  lr: 0.1\n  steps: 20\n",
     6, "train.steps", ["duplicate key 'steps'"]),
    ("unknown-preset",
     "model:\n  arch: gpt\n  preset: gpt5\n",
     5, "model.preset", ["unknown preset 'gpt5'", "tiny", "gpt2-small"]),
    ("unknown-preset-in-matrix",
     "matrix:\n  model.preset:\n    - tiny\n    - gpt5\n",
     6, "matrix.model.preset.1", ["unknown preset 'gpt5'", "model.preset=gpt5"]),
    ("seq-len-beyond-context",
     "model: {preset: tiny}\ndata:\n  kind: synthetic\n  seq_len: 2048\n",
     6, "data.seq_len", ["2048", "max_seq_len 1024"]),
    ("seq-len-beyond-context-of-one-preset",
     "data: {seq_len: 2048}\nmatrix:\n  model.preset:\n    - llama-1b\n    - tiny\n",
     7, "matrix.model.preset.1", ["2048", "max_seq_len 1024", "model.preset=tiny"]),
    ("model-that-cannot-be-built",
     "matrix:\n  model.n_head:\n    - 4\n    - 5\n",
     6, "matrix.model.n_head.1", ["divisible by n_head (5)"]),
    ("text-data-without-path",
     "model: {preset: tiny}\ndata:\n  kind: text\n",
     4, "data.path", ["data kind 'text' needs a path"]),
]


@pytest.mark.parametrize("body, line, field, words", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_error_names_file_line_and_field(tmp_path, body, line, field, words):
    path = write(tmp_path, HEADER + body)
    err = load_error(path)
    assert (err.file, err.line, err.field) == (str(path), line, field)
    for word in words:
        assert word in err.message
    assert str(err) == f"{path}:{line}: {field}: {err.message}"
    assert "\n" not in str(err)


def test_one_line_message_reads_file_line_field_message(tmp_path):
    path = write(tmp_path, HEADER + "model:\n  preset: tiny\n  n_layerz: 3\n")
    assert str(load_error(path)) == (
        f"{path}:5: model.n_layerz: unknown key 'n_layerz' (did you mean 'n_layer'?)")


def test_missing_required_name_points_at_the_document(tmp_path):
    path = write(tmp_path, "# a comment\n\ndescription: d\nmodel: {preset: tiny}\n")
    err = load_error(path)
    assert (err.line, err.field) == (3, "name")
    assert "required" in err.message


@pytest.mark.parametrize("body, line", [
    ("train:\n  steps: [5\n  lr: 1\n", 5),  # unclosed flow list: found at the next key
    ("model:\n  preset: tiny\n   n_layer: 2\n", 5),  # over-indented key
    ("train: {steps: 5\nmodel: 3\n", 4),  # unclosed flow mapping
])
def test_invalid_yaml_names_the_line_of_the_problem(tmp_path, body, line):
    path = write(tmp_path, HEADER + body)
    err = load_error(path)
    assert (err.file, err.line, err.field) == (str(path), line, None)
    assert err.message.startswith("invalid YAML: ")
    assert str(err).startswith(f"{path}:{line}: invalid YAML: ")


def test_missing_file(tmp_path):
    path = tmp_path / "nowhere.yaml"
    err = load_error(path)
    assert (err.file, err.line, err.field) == (str(path), None, None)
    assert str(err) == f"{path}: no such file"


def test_directory_is_not_a_scenario(tmp_path):
    err = load_error(tmp_path)
    assert err.file == str(tmp_path)
    assert "cannot read" in err.message


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "", "# only a comment\n"])
def test_document_that_is_not_a_mapping(tmp_path, text):
    path = write(tmp_path, text)
    err = load_error(path)
    assert (err.file, err.line) == (str(path), 1)
    assert "mapping" in err.message


GOOD = HEADER + "model: {preset: tiny}\nmatrix:\n  precision: [fp32, bf16]\n"


@pytest.mark.parametrize("item", ["noequals", "=fp32", "  =x"])
def test_override_without_key_and_value(tmp_path, item):
    err = load_error(write(tmp_path, GOOD), (item,))
    assert err.field == "--set"
    assert err.file is None and err.line is None
    assert f"expected KEY=VALUE, got '{item}'" in err.message
    assert str(err) == f"--set: expected KEY=VALUE, got '{item}'"


def test_override_with_unparseable_value(tmp_path):
    err = load_error(write(tmp_path, GOOD), ("train.steps=[1",))
    assert err.field == "--set train.steps"
    assert "cannot parse the value '[1'" in err.message


def test_override_into_a_value_that_is_not_a_section(tmp_path):
    err = load_error(write(tmp_path, GOOD), ("model.preset.x=1",))
    assert err.field == "--set model.preset.x"
    assert "'preset' is not a section" in err.message


# override, field, words; none of these may blame a line of the (valid) file
OVERRIDE_CASES = [
    ("model.presett=tiny", "model.presett",
     ["unknown key 'presett'", "did you mean 'preset'", "(from --set model.presett=tiny)"]),
    ("train.steps=abc", "train.steps", ["valid integer", "(from --set train.steps=abc)"]),
    ("matrix.precision=[fp32, bf17]", "matrix.precision.1",
     ["'bf17'", "(from --set matrix.precision=[fp32, bf17])"]),
    ("matrix.precison=[fp32]", "matrix.precison",
     ["did you mean 'precision'", "(from --set matrix.precison=[fp32])"]),
    ("model.preset=gpt5", "model.preset", ["unknown preset 'gpt5'", "(from --set model.preset=gpt5)"]),
    ("data.seq_len=4096", "data.seq_len", ["max_seq_len 1024", "(from --set data.seq_len=4096)"]),
    ("baseline.precision=fp16", "baseline",
     ["matches no trial", "(from --set baseline.precision=fp16)"]),
]


@pytest.mark.parametrize("item, field, words", OVERRIDE_CASES, ids=[c[0] for c in OVERRIDE_CASES])
def test_error_from_override_says_from_set_and_names_no_file_line(tmp_path, item, field, words):
    path = write(tmp_path, GOOD)
    load_scenario(path)  # the file alone is fine
    err = load_error(path, (item,))
    assert (err.file, err.line, err.field) == (str(path), None, field)
    for word in words:
        assert word in err.message
    assert str(err).startswith(f"{path}: {field}: ")


def test_did_you_mean_only_for_a_close_word():
    assert did_you_mean("matrx", ["matrix", "model"]) == " (did you mean 'matrix'?)"
    assert did_you_mean("zzzz", ["matrix", "model"]) == ""


def test_input_error_leaves_out_the_unknown_parts():
    assert str(InputError("m")) == "m"
    assert str(InputError("m", field="f")) == "f: m"
    assert str(InputError("m", file="a.yaml", field="f")) == "a.yaml: f: m"
    assert str(InputError("m", file="a.yaml", line=3)) == "a.yaml:3: m"
    assert str(InputError("m", file="a.yaml", line=3, field="f")) == "a.yaml:3: f: m"
