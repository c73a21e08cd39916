"""A/A: how often does the harness call a difference between runs of identical code?

    pytest tests/benchmarks/test_aa_false_positives.py --benchmark-enable -s
    HARNESS_AA_RUNS=8 HARNESS_AA_DEVICE=cuda pytest ... (more runs; on a GPU)
    HARNESS_AA_RESULTS=aa.db HARNESS_AA_REJUDGE=1 pytest ... (judge the runs stored there again)

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
    if os.environ.get("HARNESS_AA_REJUDGE"):  # judge the A/A runs already in the store again
        run_ids = [r["run_id"] for r in sorted(store.runs(), key=lambda r: r["started_at"])
                   if r["scenario"] == SCENARIO["name"]]
    else:
        run_ids = [run_scenario(load_scenario(path), store, device).run_id for _ in range(runs)]
    counts = judge_every_pair(store, run_ids)
    tested = max(counts["tested"], 1)
    print(f"\nA/A on {device}: {len(run_ids)} runs of {SHIPPED_REPEATS} repeats x 2 combinations, "
          f"{counts['pairs']} pairs compared: {counts['calls']} false calls in {counts['tested']} "
          f"tested rows ({counts['calls'] / tested:.1%}); {counts['significant']} rows significant "
          f"whatever the threshold ({counts['significant'] / tested:.1%}); {counts['pairs_called']} "
          f"of {counts['pairs']} pairs with a false call; {counts['inconclusive']} rows inconclusive "
          f"(machine busy or untested); Welch on the repeats alone: {counts['naive']} of "
          f"{counts['naive_tested']} throughput rows significant "
          f"({counts['naive'] / max(counts['naive_tested'], 1):.1%}); load average now "
          f"{os.getloadavg()[0]:.2f}")
    assert counts["calls"] / tested <= ALPHA


def judge_every_pair(store: ResultStore, run_ids: list[str]) -> dict[str, int]:
    """Every pair of `run_ids` compared as `harness compare` compares them (the later against
    the earlier, the runs before the later one giving the drift, the earlier excluded)."""
    counts = dict.fromkeys(("tested", "calls", "significant", "inconclusive", "pairs_called",
                            "naive", "naive_tested"), 0)
    counts["pairs"] = len(run_ids) * (len(run_ids) - 1) // 2
    for a, b in itertools.combinations(run_ids, 2):
        noise = noise_for_run(store, store.run(b), list(DEFAULT_RULES), exclude={a}, between_runs=True)
        base, cand = store.trials(a), store.trials(b)
        frame = compare_runs(base, cand, noise=noise)
        metrics = frame[frame["metric"] != "status"]
        for key, trials in by_combination(cand).items():
            for metric in ("tokens_per_s", "step_time_s"):
                within = compare_metric(trials, by_combination(base)[key], metric)
                counts["naive"] += within.significant
                counts["naive_tested"] += within.tested
        called = metrics["status"].isin(("regressed", "improved"))
        tested = metrics["tested"].astype(bool)
        counts["tested"] += int(tested.sum())
        counts["calls"] += int(called.sum())
        counts["significant"] += int((tested & (metrics["p_value"] < ALPHA)).sum())
        counts["inconclusive"] += int((metrics["status"] == "inconclusive").sum())
        counts["pairs_called"] += bool(called.any() or frame["status"].eq("failed-now").any())
    return counts
