"""A/A: how often does the harness call a difference between runs of identical code?

    pytest tests/benchmarks/test_aa_false_positives.py --benchmark-enable -s
    HARNESS_AA_RUNS=8 HARNESS_AA_DEVICE=cuda pytest ... (more runs; on a GPU)

Runs one small scenario (the tiny GPT, fp32 and bf16 autocast, SHIPPED_REPEATS interleaved
repeats each, as nightly.yaml is built) N times into one database, then compares every pair of
runs as `harness compare` does (the later run against the earlier, judged against the drift of
the runs before the later one, the earlier excluded): every call of `regressed` or `improved` is
a false positive, since nothing changed. Prints the count over the tested rows, the rows the
test calls significant whatever the threshold, and the pairs with any call; rows that cannot be
tested yet (too few earlier runs) or come from a busy machine are counted apart. For contrast it
also prints what Welch's t on the two runs' repeats alone would have called. With benchmarks
disabled (the default test run) it is skipped: it takes minutes.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest
import yaml

from harness.analysis.stats import ALPHA, SHIPPED_REPEATS
from harness.analysis.noise import noise_for_run
from harness.analysis.samples import compare_metric
from harness.regression.compare import by_combination, compare_runs
from harness.regression.rules import DEFAULT_RULES
from harness.runner import run_scenario
from harness.scenario import load_scenario
from harness.store import ResultStore

SCENARIO = {
    "name": "aa", "description": "A/A: identical runs of the tiny GPT",
    "model": {"arch": "gpt", "preset": "tiny"}, "data": {"kind": "synthetic", "seq_len": 128},
    "train": {"micro_batch_size": 8, "steps": 60, "warmup_steps": 10, "lr": 2.0e-3, "seed": 0},
    "repeats": SHIPPED_REPEATS, "matrix": {"precision": ["fp32", "bf16"]},
    "baseline": {"precision": "fp32"},
}


def test_identical_runs_are_called_different_at_most_five_percent_of_the_time(benchmark, tmp_path: Path):
    if benchmark.disabled:
        pytest.skip("an A/A benchmark of several full runs: run it with --benchmark-enable")
    runs = int(os.environ.get("HARNESS_AA_RUNS", "8"))
    device = os.environ.get("HARNESS_AA_DEVICE", "cpu")
    path = tmp_path / "aa.yaml"
    path.write_text(yaml.safe_dump(SCENARIO, sort_keys=False))
    store = ResultStore(Path(os.environ.get("HARNESS_AA_RESULTS", tmp_path / "aa.db")))
    run_ids = [run_scenario(load_scenario(path), store, device).run_id for _ in range(runs)]

    tested = calls = significant = inconclusive = pairs_called = naive = naive_tested = 0
    for a, b in itertools.combinations(run_ids, 2):
        noise = noise_for_run(store, store.run(b), list(DEFAULT_RULES), exclude={a}, between_runs=True)
        base, cand = store.trials(a), store.trials(b)
        frame = compare_runs(base, cand, noise=noise)
        metrics = frame[frame["metric"] != "status"]
        for key, trials in by_combination(cand).items():
            for metric in ("tokens_per_s", "step_time_s"):
                within = compare_metric(trials, by_combination(base)[key], metric)
                naive += within.significant
                naive_tested += within.tested
        called = metrics["status"].isin(("regressed", "improved"))
        tested += int(metrics["tested"].astype(bool).sum())
        calls += int(called.sum())
        significant += int((metrics["tested"].astype(bool) & (metrics["p_value"] < ALPHA)).sum())
        inconclusive += int((metrics["status"] == "inconclusive").sum())
        pairs_called += bool(called.any() or frame["status"].eq("failed-now").any())
    pairs = runs * (runs - 1) // 2
    print(f"\nA/A on {device}: {runs} runs of {SHIPPED_REPEATS} repeats x 2 combinations, "
          f"{pairs} pairs compared: {calls} false calls in {tested} tested rows "
          f"({calls / max(tested, 1):.1%}); {significant} rows significant whatever the threshold "
          f"({significant / max(tested, 1):.1%}); {pairs_called} of {pairs} pairs with a false call; "
          f"{inconclusive} rows inconclusive (machine busy or untested); "
          f"Welch on the repeats alone: {naive} of {naive_tested} throughput rows significant "
          f"({naive / max(naive_tested, 1):.1%}); load average now {os.getloadavg()[0]:.2f}")
    assert calls / max(tested, 1) <= ALPHA
