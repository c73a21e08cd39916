"""The CLI's contract for bad input: exit 2 and exactly one stderr line, never a traceback.
Also `validate`, `run --dry-run` and `env` on good input (nothing here trains a model)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from harness.cli import main
from harness.scenario import expand, load_scenario

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "scenarios" / "quickstart.yaml"
# claims.yaml and prices.yaml live beside the scenarios but are not scenarios
SCENARIOS = sorted(p for p in (REPO / "scenarios").glob("*.yaml") if p.name not in ("claims.yaml", "prices.yaml"))

BAD = "name: t\ndescription: d\nmodel: {preset: tiny}\nmatrx:\n  precision: [fp32, bf16]\n"


@pytest.fixture(autouse=True)
def _elsewhere(tmp_path, monkeypatch):
    # a stray results/ or reports/ folder would land in tmp_path, not in the repository
    monkeypatch.chdir(tmp_path)


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("harness: error: ")
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture
def bad(tmp_path) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(BAD)
    return path


def test_validate_bad_scenario(capsys, bad):
    code, out, err = cli(capsys, "validate", bad)
    assert code == 2
    assert out == ""
    assert one_error_line(err) == (
        f"harness: error: {bad}:4: matrx: unknown key 'matrx' (did you mean 'matrix'?)")


def test_validate_stops_at_the_first_bad_file(capsys, bad):
    code, out, err = cli(capsys, "validate", QUICKSTART, bad)
    assert code == 2
    assert out.splitlines() == [f"{QUICKSTART}: ok (4 combinations x 3 repeats)"]
    assert f"{bad}:4: matrx:" in one_error_line(err)


def test_dry_run_of_bad_scenario(capsys, bad):
    code, out, err = cli(capsys, "run", bad, "--dry-run", "--device", "cpu")
    assert code == 2
    assert out == ""
    assert f"{bad}:4: matrx: " in one_error_line(err)


@pytest.mark.parametrize("body, where", [
    ("matrix:\n  precison: [fp32]\n", ":4: matrix.precison: unknown matrix axis 'precison' "
                                      "(did you mean 'precision'?)"),
    ("matrix: {}\n", ":3: matrix: matrix is empty"),
    ("train:\n  steps: many\n", ":4: train.steps: "),
    ("matrix:\n  precision: [fp32, bf17]\n", ":4: matrix.precision.1: "),
])
def test_schema_errors_through_the_cli(capsys, tmp_path, body, where):
    path = tmp_path / "s.yaml"
    path.write_text("name: t\ndescription: d\n" + body)
    code, _, err = cli(capsys, "validate", path)
    assert code == 2
    assert one_error_line(err).startswith(f"harness: error: {path}{where}")


def test_missing_scenario_file(capsys, tmp_path):
    code, _, err = cli(capsys, "validate", tmp_path / "nope.yaml")
    assert code == 2
    assert one_error_line(err) == f"harness: error: {tmp_path / 'nope.yaml'}: no such file"


@pytest.mark.parametrize("argv, words", [
    (["frobnicate"], ["invalid choice: 'frobnicate'"]),
    ([], ["required"]),
    (["run", str(QUICKSTART), "--frob"], ["unrecognized arguments: --frob"]),
    (["run", str(QUICKSTART), "--device", "tpu"], ["--device", "invalid choice: 'tpu'"]),
    (["validate"], ["scenarios"]),
    (["export", "--results", "x.db"], ["--format"]),
    (["export", "--format", "xml"], ["invalid choice: 'xml'"]),
])
def test_usage_errors(capsys, argv, words):
    code, out, err = cli(capsys, *argv)
    assert code == 2
    assert out == ""
    line = one_error_line(err)
    for word in words:
        assert word in line


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_requested_without_cuda(capsys):
    code, out, err = cli(capsys, "run", QUICKSTART, "--dry-run", "--device", "cuda")
    assert code == 2
    assert out == ""
    assert one_error_line(err).startswith("harness: error: --device: CUDA was requested")


@pytest.mark.parametrize("command", ["export", "report", "runs"])
def test_missing_results_database(capsys, tmp_path, command):
    db = tmp_path / "missing.db"
    extra = ["--format", "json"] if command == "export" else []
    code, out, err = cli(capsys, command, "--results", db, *extra)
    assert code == 2
    assert out == ""
    assert str(db) in one_error_line(err)
    assert not db.exists()  # reading must not create an empty database


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.name for p in SCENARIOS])
def test_every_shipped_scenario_validates(capsys, path):
    code, out, err = cli(capsys, "validate", path)
    assert (code, err) == (0, "")
    assert out.startswith(f"{path}: ok (")


def test_validate_several_files(capsys, tmp_path):
    other = tmp_path / "other.yaml"
    other.write_text("name: other\nrepeats: 3\nmatrix:\n  precision: [fp32, bf16, fp16]\n")
    code, out, err = cli(capsys, "validate", QUICKSTART, other)
    assert (code, err) == (0, "")
    assert out.splitlines() == [f"{QUICKSTART}: ok (4 combinations x 3 repeats)",
                                f"{other}: ok (3 combinations x 3 repeats)"]


def test_dry_run_prints_every_planned_trial(capsys, tmp_path):
    code, out, err = cli(capsys, "run", QUICKSTART, "--dry-run", "--device", "cpu",
                         "--results", tmp_path / "r.db")
    assert (code, err) == (0, "")
    assert "quickstart: 12 trials on cpu" in out
    for spec in expand(load_scenario(QUICKSTART), "cpu"):
        row = next(line for line in out.splitlines() if spec.trial_id in line)
        assert spec.name in row
        assert "gpt2 L2 d64 h4" in row
    assert not (tmp_path / "r.db").exists()  # a dry run stores nothing
    assert not Path("reports").exists()


def test_dry_run_with_overrides(capsys):
    code, out, err = cli(capsys, "run", QUICKSTART, "--dry-run", "--device", "cpu",
                         "--set", "model.preset=small", "--set", "matrix.precision=[bf16]",
                         "--set", "baseline=")  # quickstart's baseline is fp32
    assert (code, err) == (0, "")
    assert "quickstart: 6 trials on cpu" in out
    assert out.count("gpt2 L4 d128 h4") == 6  # 2 combinations x 3 repeats
    assert "precision=fp32" not in out


def test_override_that_drops_the_baseline_says_so(capsys):
    code, out, err = cli(capsys, "validate", QUICKSTART, "--set", "matrix.precision=[bf16]")
    assert code == 2
    line = one_error_line(err)
    assert line.startswith(f"harness: error: {QUICKSTART}:16: baseline: the baseline matches no trial")
    assert "after --set matrix.precision=[bf16]" in line
    assert "--set baseline=" in line


@pytest.mark.parametrize("item, words", [
    ("model.presett=tiny", ["model.presett: unknown key 'presett'", "did you mean 'preset'",
                            "(from --set model.presett=tiny)"]),
    ("noequals", ["--set: expected KEY=VALUE, got 'noequals'"]),
])
def test_bad_override(capsys, item, words):
    for argv in (["validate", QUICKSTART], ["run", QUICKSTART, "--dry-run", "--device", "cpu"]):
        code, out, err = cli(capsys, *argv, "--set", item)
        assert code == 2
        assert out == ""
        line = one_error_line(err)
        for word in words:
            assert word in line


def test_env_prints_the_fingerprint_as_json(capsys):
    code, out, err = cli(capsys, "env")
    assert (code, err) == (0, "")
    env = json.loads(out)
    assert env["device"] == ("cuda" if torch.cuda.is_available() else "cpu")
    assert env["libraries"]["torch"] == torch.__version__
    assert isinstance(env["host"], str) and env["host"]


def test_python_dash_m_validate_bad_file(tmp_path, bad):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "harness", "validate", str(bad)],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert done.returncode == 2
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines() == [
        f"harness: error: {bad}:4: matrx: unknown key 'matrx' (did you mean 'matrix'?)"]


def test_the_recorded_torch_version_keeps_the_builds_local_tag(monkeypatch):
    from importlib import metadata

    from harness import hardware

    monkeypatch.setattr(torch, "__version__", "2.11.0+cu130")  # the GPU machine's build
    real = metadata.version
    monkeypatch.setattr(metadata, "version", lambda name: "2.11.0" if name == "torch" else real(name))
    assert hardware.library_versions()["torch"] == "2.11.0+cu130"


def test_a_reader_that_stops_early_gets_no_traceback():
    """`harness run ... --dry-run | head -c 10`: more than a pipe holds (1,200 streamed lines,
    over 64 KiB), so the writer meets the closed pipe; it ends quietly, with exit 0."""
    done = subprocess.run(f"{sys.executable} -m harness run {QUICKSTART} --dry-run --device cpu "
                          "--set repeats=300 | head -c 10; exit ${PIPESTATUS[0]}", shell=True,
                          executable="/bin/bash", capture_output=True, text=True, timeout=120)
    assert "Traceback" not in done.stderr and done.returncode == 0, done.stderr
    assert len(done.stdout) == 10
