"""The shipped suites' plans: gpu-evidence covers every axis the issue lists, none skipped on an
assumed H200, within its time budget; its smoke form skips only what needs a GPU; the nightly
suite runs the nightly scenario unchanged."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from harness.cli import main
from harness.scenario import load_scenario
from harness.suite.loader import load_suite

REPO = Path(__file__).resolve().parents[2]
GPU_EVIDENCE = REPO / "scenarios" / "suites" / "gpu-evidence.yaml"
NIGHTLY = REPO / "scenarios" / "suites" / "nightly.yaml"
BUDGET_S = 540  # the issue's: the whole suite on one H200


@pytest.fixture(scope="module")
def h200_plan(tmp_path_factory) -> dict:
    # an absent database: every fixed cost assumed, whatever results/ holds on this machine
    none = tmp_path_factory.mktemp("plan") / "none.db"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["suite", str(GPU_EVIDENCE), "--dry-run", "--format", "json",
                     "--assume-device", "NVIDIA H200", "--results", str(none)])
    assert code == 0
    return json.loads(out.getvalue())


def test_gpu_evidence_fits_its_budget_on_one_h200(h200_plan):
    assert h200_plan["device"]["name"] == "NVIDIA H200" and h200_plan["device"]["assumed"]
    assert h200_plan["device"]["compute_capability"] == "9.0"
    assert 0 < h200_plan["estimated_s"] <= BUDGET_S
    parts = (sum(t["estimated_s"] for t in h200_plan["trials"])
             + sum(c["estimated_s"] for c in h200_plan["checks"]) + h200_plan["reports_s"])
    assert h200_plan["estimated_s"] == pytest.approx(parts, abs=0.5)


def test_gpu_evidence_runs_every_listed_axis_value_on_an_h200(h200_plan):
    trials = h200_plan["trials"]
    assert [t["skip"] for t in trials if t["skip"]] == []
    training = [t for t in trials if t["kind"] == "train"]
    gpt2_small = [t for t in training
                  if (t["model_config"]["n_layer"], t["model_config"]["d_model"]) == (12, 768)]
    assert len(gpt2_small) == len(training)

    def seen(key: str, among=gpt2_small) -> set:
        return {t["techniques"][key] for t in among}

    assert seen("precision") >= {"fp32", "tf32", "bf16", "fp16", "bf16-pure", "fp8"}
    fp8 = [t for t in gpt2_small if t["techniques"]["precision"] == "fp8"]
    assert {t["techniques"]["compile"] for t in fp8} == {False, True}
    assert seen("checkpointing") >= {"none", "full", "selective", "offload"}
    assert seen("attention") >= {"flash", "efficient", "cudnn", "math", "manual"}
    assert seen("compile") >= {False, "default", "reduce-overhead"}
    assert seen("grad_accum") >= {1, 4}
    experts = {t["model_config"]["n_experts"] for t in gpt2_small if t["entry"] == "moe"}
    assert experts == {0, 8}
    inference = [t for t in trials if t["kind"] == "inference"]
    assert {(t["techniques"]["precision"], t["techniques"]["quantization"]) for t in inference} == \
        {("fp16", "none"), ("fp16", "int8")}
    assert {(t["model_config"]["n_layer"], t["model_config"]["d_model"]) for t in inference} == {(24, 1024)}
    assert [c["check"] for c in h200_plan["checks"]] == ["preflight", "overhead"]
    assert h200_plan["checks"][0]["position"] == 0  # preflight before any trial


def test_the_energy_entry_plans_a_window_of_seconds(h200_plan):
    (energy,) = [t for t in h200_plan["trials"] if t["entry"] == "energy"]
    assert energy["compute_s"] >= 5  # NVML's counter updates every ~100 ms: many ticks


def test_gpu_evidence_smoke_skips_only_what_needs_a_gpu():
    suite = load_suite(GPU_EVIDENCE, smoke=True)
    from harness import runner

    skipped, ran = {}, []
    for entry in suite.scenarios():
        for spec, skip in runner.iter_plan(entry.loaded, "cpu"):
            assert spec.device == "cpu" and spec.train["steps"] == 3 and spec.model["d_model"] <= 128
            if skip:
                skipped[(entry.label, spec.name)] = skip
            else:
                ran.append(spec)
    assert set(skipped) == {
        ("precision", "precision=tf32 compile=false"), ("precision", "precision=fp8 compile=false"),
        ("precision", "precision=fp8 compile=true"),
        ("checkpointing", "precision=bf16 checkpointing=offload"),
        ("attention", "attention=efficient"), ("attention", "attention=cudnn")}
    assert all(skipped.values())  # each with its reason
    assert len(ran) == 19


def test_the_nightly_suite_runs_the_nightly_scenario_unchanged():
    suite = load_suite(NIGHTLY)
    (entry,) = suite.entries
    assert entry.overrides == ()
    plain = load_scenario(REPO / "scenarios" / "nightly.yaml")
    assert entry.loaded.scenario.name == "nightly" and entry.loaded.file_hash == plain.file_hash
