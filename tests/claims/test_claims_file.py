"""The shipped claims file, its errors (one line: file, line, field), and `harness claims`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from claims_fixture_store import runs, store_with

from harness.cli import main
from harness.claims import default_claims_path, load_claims
from harness.errors import InputError

REQUIRED = ("mixed-precision-6x", "checkpointing-memory-70pct", "checkpointing-time-15-25pct",
            "full-recompute-33pct-flops", "fsdp-faster-than-deepspeed", "yafsdp-faster-than-fsdp",
            "deepspeed-10x", "llm-int8-halves-memory", "llm-int8-no-perplexity-loss", "ligo-bert-flops",
            "ligo-bert-wall-time", "ligo-gpt2-flops", "moe-switch-7x", "distillation-97pct-quality",
            "distillation-60pct-faster", "grad-accumulation-flat-memory")

SCENARIO = "name: s\nmodel: {preset: tiny}\nmatrix:\n  precision: [fp32, bf16]\n"
GOOD = """claims:
  - id: c1
    claim: bf16 is faster
    source: {primary: A paper}
    conditions: V100
    confirmed_when: 2-6x
    scenario: s.yaml
    baseline: {precision: fp32}
    treatment: {precision: bf16}
    metric: tokens_per_s
    expect: {min: 2, max: 6}
"""


def test_the_shipped_claims_file_holds_every_claim_the_project_tests():
    loaded = load_claims(default_claims_path())
    ids = [c.claim.id for c in loaded]
    assert set(REQUIRED) <= set(ids)
    unsourced = {c.claim.id for c in loaded if c.claim.source.primary is None}
    assert {"fsdp-faster-than-deepspeed", "checkpointing-memory-70pct"} <= unsourced
    assert {c.scenario_name for c in loaded if c.claim.id.startswith("ligo")} == {"ligo"}


def test_claim_scenarios_and_nightly_have_the_runs_the_rule_needs():
    from harness.analysis.samples import evidence_unit
    from harness.analysis.stats import SHIPPED_REPEATS
    from harness.scenario import load_scenario

    folder = default_claims_path().parent
    nightly = load_scenario(folder / "nightly.yaml").scenario
    assert nightly.repeats == SHIPPED_REPEATS
    for loaded in load_claims(default_claims_path()):
        claim = loaded.claim
        if claim.not_testable is not None:
            continue
        scenario = load_scenario(folder / claim.scenario).scenario
        seeds = (scenario.matrix or {}).get("train.seed", [])
        if claim.measure == "growth_saving" or evidence_unit(claim.metric) == "seeds":
            assert len(seeds) >= SHIPPED_REPEATS and "train.seed" in claim.pool, claim.id
        elif evidence_unit(claim.metric) == "repeats":  # counted figures are exact at any count
            assert scenario.repeats >= SHIPPED_REPEATS or (
                len(seeds) >= SHIPPED_REPEATS and "train.seed" in claim.pool), claim.id


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "s.yaml").write_text(SCENARIO)
    path = tmp_path / "claims.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(("text", "message"), [
    (GOOD.replace("    metric: tokens_per_s\n", "    metric: tokens_per_s\n    mesure: ratio\n"),
     "claims.yaml:11: claims.0.mesure: unknown key 'mesure' (did you mean 'measure'?)"),
    (GOOD.replace("{precision: bf16}", "{precison: bf16}"),
     "claims.yaml:9: claims.0.treatment.precison: unknown axis or field 'precison' (did you mean 'precision'?)"),
    (GOOD.replace("scenario: s.yaml", "scenario: nope.yaml"),
     "claims.yaml:7: claims.0.scenario: no scenario file 'nope.yaml' beside the claims file"),
    (GOOD.replace("    expect: {min: 2, max: 6}\n", ""),
     "claims.yaml:2: claims.0: Value error, a testable claim needs expect (or not_testable: the reason)"),
    (GOOD + GOOD[len("claims:\n"):],
     "claims.yaml:12: claims.1.id: claim id 'c1' appears twice (first at line 2)"),
])
def test_a_bad_claims_file_is_one_line_naming_file_line_and_field(tmp_path, text, message):
    with pytest.raises(InputError) as caught:
        load_claims(write(tmp_path, text))
    assert str(caught.value).endswith(message)


def test_harness_claims_prints_every_verdict_from_a_database_and_its_export(tmp_path, capsys):
    claims = write(tmp_path, GOOD)
    db = tmp_path / "r.db"
    store_with(db, runs("fp32", {"precision": "fp32"}, step_s=0.3, seed=1)
               + runs("bf16", {"precision": "bf16"}, step_s=0.1, seed=2))
    assert main(["claims", "--results", str(db), "--claims", str(claims), "--format", "json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert (row["id"], row["verdict"], row["hardware"]) == ("c1", "confirmed", "NVIDIA H100 80GB HBM3")
    assert row["low"] < row["value"] < row["high"]

    export = tmp_path / "exports"
    export.mkdir()
    assert main(["export", "--results", str(db), "--format", "json", "--out", str(export / "a.json")]) == 0
    assert main(["claims", "--results", str(export), "--claims", str(claims), "--format", "markdown"]) == 0
    out = capsys.readouterr().out
    assert "| c1: bf16 is faster" in out and "confirmed" in out
    assert "Welch t over 5 vs 5 repeats" in out
