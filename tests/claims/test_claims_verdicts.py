"""Each verdict arises from data that warrant it, on hand-built result sets."""

from __future__ import annotations

import numpy as np
import pytest
from claims_fixture_store import claim, runs, seeds, store_with, trial

from harness.claims import claims_for_run, evaluate_claims

FP32 = {"precision": "fp32", "repeat": 0}
BF16 = {"precision": "bf16", "repeat": 0}


def verdict_of(tmp_path, trials, loaded=None, device="cuda"):
    store = store_with(tmp_path / "r.db", trials, device=device, baseline={"precision": "fp32"})
    (result,) = evaluate_claims(store, [loaded or claim()])
    return result


def sides_of(fp32_s: float, bf16_s: float, **options) -> list:
    return (runs("fp32", {"precision": "fp32"}, step_s=fp32_s, seed=1, **options)
            + runs("bf16", {"precision": "bf16"}, step_s=bf16_s, seed=2, **options))


def test_a_speedup_inside_the_claimed_range_is_confirmed(tmp_path):
    result = verdict_of(tmp_path, sides_of(0.30, 0.10))
    assert result.verdict == "confirmed"
    assert result.estimate.point == pytest.approx(3.0, rel=0.03)
    assert result.estimate.low < result.estimate.point < result.estimate.high
    assert result.estimate.basis == "Welch t over 5 vs 5 repeats"
    assert result.hardware == "NVIDIA H100 80GB HBM3"


def test_one_run_per_side_is_inconclusive_however_far_apart(tmp_path):
    result = verdict_of(tmp_path, [trial("fp32", FP32, step_s=0.30), trial("bf16", BF16, step_s=0.10, seed=1)])
    assert result.verdict == "inconclusive"
    assert result.why.startswith("one run per side: no test: the value lies inside the claimed range")
    assert result.estimate.point == pytest.approx(3.0, rel=0.03)


def test_a_busy_machine_makes_a_claim_inconclusive(tmp_path):
    result = verdict_of(tmp_path, sides_of(0.30, 0.10, busy=True))
    assert result.verdict == "inconclusive"
    assert result.why.startswith("inconclusive: machine busy")


def test_a_significant_speedup_below_the_range_is_partly(tmp_path):
    result = verdict_of(tmp_path, sides_of(0.15, 0.10))
    assert result.verdict == "partly"
    assert result.estimate.high < 2.0 and result.estimate.low > 1.0


def test_a_significant_slowdown_refutes_a_speedup_claim(tmp_path):
    result = verdict_of(tmp_path, sides_of(0.10, 0.12))
    assert result.verdict == "refuted"
    assert "opposite direction" in result.why
    assert result.estimate.p_value < 1e-4


def test_no_effect_with_a_tight_interval_refutes(tmp_path):
    result = verdict_of(tmp_path, sides_of(0.10, 0.10))
    assert result.verdict == "refuted"
    assert result.estimate.high < 2.0


def test_a_noisy_measurement_reaching_both_no_effect_and_the_range_is_inconclusive(tmp_path):
    fp32 = [trial(f"fp32 #{r}", {**FP32, "repeat": r}, metrics={"tokens_per_s": v})
            for r, v in enumerate((100.0, 100.0, 100.0))]
    bf16 = [trial(f"bf16 #{r}", {**BF16, "repeat": r}, metrics={"tokens_per_s": v})
            for r, v in enumerate((60.0, 250.0, 500.0))]
    result = verdict_of(tmp_path, fp32 + bf16)
    assert result.verdict == "inconclusive"
    assert result.estimate.low <= 1.0 and result.estimate.high >= 2.0
    assert result.estimate.basis == "Welch t over 3 vs 3 repeats"


def test_a_gpu_claim_measured_on_a_cpu_is_not_testable_but_shows_the_value(tmp_path):
    loaded = claim(requires={"device": "cuda", "reason": "tensor cores"})
    result = verdict_of(tmp_path, [trial("fp32", FP32, step_s=0.10, device="cpu"),
                                   trial("bf16", BF16, step_s=0.20, seed=1, device="cpu")],
                        loaded, device="cpu")
    assert result.verdict == "not-testable-here"
    assert "the claim is about CUDA GPUs (tensor cores); this run was on cpu" in result.why
    assert result.estimate.point == pytest.approx(0.5, rel=0.03)


def test_a_claim_without_trials_is_not_testable_and_says_what_to_run(tmp_path):
    result = verdict_of(tmp_path, [trial("fp32", FP32, step_s=0.10)])  # no bf16 trial
    assert result.verdict == "not-testable-here"
    assert result.why == "no results of its trials yet: run `harness run scenarios/s.yaml`"
    assert result.estimate is None


def test_a_skipped_treatment_is_not_testable_with_its_reason(tmp_path):
    result = verdict_of(tmp_path, [trial("fp32", FP32, step_s=0.10),
                                   trial("bf16", BF16, status="skipped", reason="bf16 needs sm_80")])
    assert result.verdict == "not-testable-here"
    assert result.why == "the treatment trial is skipped: bf16 needs sm_80"


def test_a_claim_marked_not_testable_keeps_its_reason(tmp_path):
    loaded = claim(not_testable="needs 256 GPUs", scenario=None, baseline=None, treatment=None)
    result = verdict_of(tmp_path, [trial("fp32", FP32, step_s=0.10)], loaded)
    assert (result.verdict, result.why) == ("not-testable-here", "needs 256 GPUs")


def test_a_figure_without_a_primary_source_is_unsourced_yet_measured(tmp_path):
    loaded = claim(source={"primary": None, "detail": "a blog"})
    result = verdict_of(tmp_path, [trial("fp32", FP32, step_s=0.30), trial("bf16", BF16, step_s=0.10, seed=1)],
                        loaded)
    assert result.verdict == "unsourced"
    assert result.estimate.point == pytest.approx(3.0, rel=0.03)


@pytest.mark.parametrize(("int8_ppl", "verdict"), [(100.5, "confirmed"), (105.0, "refuted")])
def test_a_no_change_claim_is_an_equivalence_test_over_seeds(tmp_path, int8_ppl, verdict):
    loaded = claim(baseline={"quantization": "none"}, treatment={"quantization": "int8"},
                   metric="perplexity", expect={"min": 0.99, "max": 1.01}, pool=["train.seed"])
    base = [100.0, 100.2, 99.8, 100.1, 99.9]
    trials = (seeds("none", {"quantization": "none"}, {"perplexity": base})
              + seeds("int8", {"quantization": "int8"},
                      {"perplexity": [v * int8_ppl / 100.0 for v in base[::-1]]}))
    result = verdict_of(tmp_path, trials, loaded)
    assert result.verdict == verdict
    assert result.estimate.basis == "Welch t over 5 vs 5 seeds"
    assert result.estimate.point == pytest.approx(int8_ppl / 100.0, rel=1e-3)


def test_repeats_of_one_seed_are_no_evidence_about_a_trained_figure(tmp_path):
    loaded = claim(baseline={"quantization": "none"}, treatment={"quantization": "int8"},
                   metric="perplexity", expect={"min": 0.99, "max": 1.01})
    trials = [trial(f"{q} #{r}", {"quantization": q, "repeat": r}, metrics={"perplexity": 100.0})
              for q in ("none", "int8") for r in range(3)]
    result = verdict_of(tmp_path, trials, loaded)
    assert result.verdict == "inconclusive"
    assert result.why.startswith("one seed per side: no test")


@pytest.mark.parametrize(("measure", "expected"), [("saving", 0.25), ("increase", -0.25), ("inverse", 4 / 3)])
def test_measures_derive_from_the_ratio(tmp_path, measure, expected):
    loaded = claim(metric="peak_memory_bytes", measure=measure, expect={"min": 0.1, "max": 0.5})
    trials = [trial("fp32", FP32, metrics={"peak_memory_bytes": 400.0}),
              trial("bf16", BF16, metrics={"peak_memory_bytes": 300.0})]
    assert verdict_of(tmp_path, trials, loaded).estimate.point == pytest.approx(expected)


def test_two_metrics_of_the_same_trials_compare_with_baseline_metric(tmp_path):
    loaded = claim(baseline=None, treatment={"precision": "bf16"}, metric="teacher_perplexity",
                   baseline_metric="perplexity", expect={"min": 0.97}, pool=["train.seed"])
    trials = seeds("bf16", {"precision": "bf16"}, {"teacher_perplexity": [64.0, 65.0, 63.0],
                                                   "perplexity": [80.0, 81.0, 79.0]})
    result = verdict_of(tmp_path, trials, loaded)
    assert result.estimate.point == pytest.approx(0.8, rel=1e-3)
    assert result.verdict == "refuted"


def test_open_axes_are_held_at_the_run_baseline(tmp_path):
    trials = [trial("fp32 none", {"precision": "fp32", "checkpointing": "none", "repeat": 0}, step_s=0.3),
              trial("fp32 full", {"precision": "fp32", "checkpointing": "full", "repeat": 0}, step_s=0.9),
              trial("bf16 full", {"precision": "bf16", "checkpointing": "full", "repeat": 0}, step_s=0.1),
              trial("bf16 none", {"precision": "bf16", "checkpointing": "none", "repeat": 0}, step_s=0.1)]
    store = store_with(tmp_path / "r.db", trials, baseline={"precision": "fp32", "checkpointing": "none"})
    (result,) = evaluate_claims(store, [claim()])
    assert (result.baseline, result.treatment) == ("fp32 none", "bf16 none")
    assert result.estimate.point == pytest.approx(3.0, rel=0.03)


def test_a_run_with_a_verdict_beats_a_later_run_that_cannot_give_one(tmp_path):
    loaded = claim(requires={"device": "cuda"})
    path = tmp_path / "r.db"
    store = store_with(path, sides_of(0.3, 0.1), run_id="gpu", started_at="2026-01-01T00:00:00+00:00")
    store_with(path, [trial("fp32", FP32, step_s=0.1, device="cpu"),
                      trial("bf16", BF16, step_s=0.2, device="cpu")], device="cpu", run_id="cpu",
               started_at="2026-02-01T00:00:00+00:00", store=store)
    (result,) = evaluate_claims(store, [loaded])
    assert (result.verdict, result.run_id) == ("confirmed", "gpu")
    assert [r.run_id for r in claims_for_run(store, "cpu", [loaded])] == ["cpu"]


def test_claims_for_run_lists_only_the_claims_a_run_bears_on(tmp_path):
    store = store_with(tmp_path / "r.db", [trial("fp32", FP32, step_s=0.3)])
    assert claims_for_run(store, "run-1", [claim()]) == []


def grown(method: str, seed: int, losses: list[float], time_scale: float, busy: bool = False):
    """A growth trial of one seed: eval every 100 tokens, 10 FLOPs a token, tokens/10 s."""
    operator = {"operator_tokens": 40.0, "operator_flops": 400.0, "operator_time_s": 2.0,
                "small_train_tokens": 0.0, "small_train_flops": 0.0, "small_train_time_s": 0.0}
    spec, result = trial(f"{method} train.seed={seed}", {"growth.method": method, "train.seed": seed,
                                                          "repeat": 0},
                         metrics={"flops_per_token": 10.0, **(operator if method == "ligo" else {})},
                         train_seed=seed, busy=busy)
    tokens = [0.0, 100.0, 200.0, 300.0, 400.0]
    result.series.update(eval_tokens=tokens, eval_loss=losses,
                         eval_time_s=[t / 10 * time_scale for t in tokens])
    return spec, result


def growth_claim(metric: str):
    return claim(id=f"ligo-{metric.replace('_', '-')}", baseline={"growth.method": "scratch"},
                 treatment={"growth.method": "ligo"}, pool=["train.seed"], metric=metric,
                 measure="growth_saving", expect={"min": 0.5, "max": 0.65})


def test_a_wall_time_growth_saving_leaves_out_busy_trials(tmp_path):
    scratch = [5.0, 4.0, 3.0, 2.5, 2.0]
    ligo = [3.5, 2.5, 1.5, 1.4, 1.3]  # crosses 2.0 at 150 tokens: 15 s + 2 s of operator, of 40 s
    scales = [1.0, 1.05, 0.95, 1.02]
    quiet = [grown("scratch", s, scratch, 1.0) for s in range(4)]
    trials = quiet + [grown("ligo", s, ligo, scales[s], busy=s == 3) for s in range(4)]
    store = store_with(tmp_path / "r.db", trials, baseline={"growth.method": "scratch"})
    time_result, flops_result = evaluate_claims(store, [growth_claim("time_s"), growth_claim("flops")])
    # the busy seed is left out of the timed saving, said so, and the three quiet seeds decide
    assert time_result.estimate.caveat == "1 trial left out: machine busy"
    expected = 1 - np.exp(np.mean(np.log([(15 * k + 2) / 40 for k in scales[:3]])))
    assert time_result.estimate.point == pytest.approx(expected)
    assert time_result.estimate.basis == "Welch t over 3 vs 3 seeds"
    # FLOPs to the target are counted, not timed: a busy machine does not touch them
    assert flops_result.estimate.caveat == ""
    assert flops_result.estimate.basis == "identical in every run (4 vs 4 seeds): exact"


def test_a_wall_time_growth_saving_with_only_busy_trials_on_a_side_is_inconclusive(tmp_path):
    trials = ([grown("scratch", s, [5.0, 4.0, 3.0, 2.5, 2.0], 1.0) for s in range(3)]
              + [grown("ligo", s, [3.5, 2.5, 1.5, 1.4, 1.3], 1.0, busy=True) for s in range(3)])
    store = store_with(tmp_path / "r.db", trials, baseline={"growth.method": "scratch"})
    (result,) = evaluate_claims(store, [growth_claim("time_s")])
    assert result.verdict == "inconclusive"
    assert result.why == "inconclusive: machine busy (3 trials left out: machine busy)"
    assert result.estimate.point == pytest.approx(1 - 17 / 40)  # what the busy trials showed
