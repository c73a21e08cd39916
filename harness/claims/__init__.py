"""Claims: published figures about training techniques, tested against stored results.

`load_claims` reads the claims file (scenarios/claims.yaml); `evaluate_claims` gives every
claim a verdict from the best evidence in a results database; `claims_for_run` gives the
verdicts of the claims one run bears on, for its report.
"""

from __future__ import annotations

from typing import Any

from harness.claims.loader import LoadedClaim, default_claims_path, load_claims
from harness.claims.schema import Claim
from harness.claims.verdict import (
    VERDICTS,
    ClaimResult,
    evaluate_on_run,
    judge,
    measured_metric,
    results_frame,
    untested,
)

# verdicts that rest on a measurement made on the claim's own kind of hardware
MEASURED = ("confirmed", "partly", "refuted", "inconclusive")

__all__ = ["VERDICTS", "Claim", "ClaimResult", "LoadedClaim", "claims_for_run", "default_claims_path",
           "evaluate_claims", "judge", "load_claims", "results_frame"]


def claims_for_run(store, run_id: str, claims: list[LoadedClaim]) -> list[ClaimResult]:
    """The claims whose baseline and treatment trials are both in run `run_id`."""
    run = store.run(run_id)
    trials = store.trials(run_id, with_series=True)
    series_rows = store.series(run_id)
    noise = _noise(store, run, claims, trials)
    results = [evaluate_on_run(loaded, run, trials, series_rows, noise) for loaded in claims]
    return [result for result in results if result is not None]


def _noise(store, run, claims: list[LoadedClaim], trials: list[dict[str, Any]]) -> dict:
    """Run-to-run noise of the claims' metrics from the run's earlier runs, when some
    combination of the run has fewer than two ok repeats (else no comparison needs it)."""
    from harness.analysis.noise import noise_for_run  # deferred: pulls numpy and scipy
    from harness.analysis.trials import combination_name

    ok: dict[str, int] = {}
    for trial in trials:
        name = combination_name(trial["name"])
        ok[name] = ok.get(name, 0) + (trial["status"] == "ok")
    metrics = sorted({m for loaded in claims if (m := measured_metric(loaded.claim))})
    if not metrics or all(count >= 2 for count in ok.values()):
        return {}
    return noise_for_run(store, run, metrics)


def evaluate_claims(store, claims: list[LoadedClaim]) -> list[ClaimResult]:
    """Every claim's verdict from the best run in `store`: a run whose measurement gives a
    verdict beats one that cannot (a CPU run of a GPU claim), then a run of the claim's own
    scenario beats another that holds the same trials, then the latest run wins."""
    candidates: dict[str, list[tuple[tuple, ClaimResult]]] = {c.claim.id: [] for c in claims}
    for order, summary in enumerate(store.runs()):
        run = store.run(summary["run_id"])
        trials: list[dict[str, Any]] | None = None
        series_rows = None
        noise = None
        for loaded in claims:
            if trials is None:
                trials = store.trials(run.run_id, with_series=True)
                series_rows = store.series(run.run_id)
                noise = _noise(store, run, claims, trials)
            result = evaluate_on_run(loaded, run, trials, series_rows, noise)
            if result is not None:
                rank = (result.verdict in MEASURED, run.scenario == loaded.scenario_name, order)
                candidates[loaded.claim.id].append((rank, result))
    chosen = []
    for loaded in claims:
        found = candidates[loaded.claim.id]
        if found:
            chosen.append(max(found, key=lambda item: item[0])[1])
        else:
            chosen.append(untested(loaded, _no_results(loaded)))
    return chosen


def _no_results(loaded: LoadedClaim) -> str:
    need = loaded.claim.requires
    where = {"cuda": " on a CUDA GPU", "any": ""}[need.device]
    if need.devices > 1:
        where += f" with {need.devices} or more devices"
    why = f" ({need.reason})" if need.reason else ""
    command = f"harness run {loaded.scenario_path}" if loaded.scenario_path else "its scenario"
    return f"no results of its trials yet: run `{command}`{where}{why}"
