"""A claim against one run's trials: the measured value with its interval, and a verdict.

Verdicts (each with the reason in words):
  unsourced           the figure has no primary source (the measurement is still shown)
  not-testable-here   never testable here (e.g. needs 256 GPUs), no trial of it yet, its trials
                      did not finish, or the hardware is not the claim's (a CPU run of a GPU claim:
                      the measurement is shown for information)
  confirmed           the effect is significant in the claimed direction and its interval
                      reaches the claimed range; for a "no change" claim (the range holds the
                      no-effect value), the whole interval lies inside the range
  partly              significant in the claimed direction, but the interval misses the range
  refuted             significant the other way, or no effect and the interval excludes the range;
                      for a "no change" claim, the interval lies wholly outside the range
  inconclusive        the interval reaches both "no effect" and the claimed range; or there is no
                      test (one run or one seed per side); or the trials ran on a busy machine

Significance is the harness's one rule (harness.analysis.stats: Welch's t on the log figures of
independent runs, p < 0.05 exactly when the 95% interval excludes no effect); a verdict never
rests on a point value alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd

from harness.analysis import eval_curves, growth_savings, trial_frame
from harness.analysis.growth import METHOD_AXIS, SCRATCH
from harness.analysis.samples import BUSY, compare_metric, is_busy
from harness.analysis.stats import Estimate, RunNoise, log_ratio
from harness.analysis.stats import untested as untested_estimate
from harness.analysis.trials import combination_name
from harness.claims.loader import LoadedClaim
from harness.claims.schema import MEASURES, Claim
from harness.claims.select import select

VERDICTS = ("confirmed", "partly", "refuted", "inconclusive", "not-testable-here", "unsourced")
# what a claim's memory figure is: the metric the claim is about, never the host process's RSS
METRIC_MEANINGS = {
    "peak_memory_bytes": "the device allocator's peak",
    "peak_reserved_bytes": "the device allocator's reserved peak",
    "activation_bytes": "bytes saved for backward",
    "peak_rss_bytes": "the host process's resident-set peak",
}


@dataclass(frozen=True)
class ClaimResult:
    claim: Claim
    verdict: str
    why: str
    estimate: Estimate | None = None  # of the claim's measure
    hardware: str | None = None
    run_id: str | None = None
    scenario: str | None = None
    baseline: str | None = None  # the compared combinations, by name
    treatment: str | None = None
    run_with: str | None = None  # the scenario file that tests the claim
    metric: str | None = None  # the metric measured (a claim's "peak_memory" resolved)


def hardware_of(env: dict[str, Any], device: str | None) -> str:
    name = env.get("device_name") or env.get("cpu_model") or device or "unknown device"
    count = env.get("device_count")
    if count and (env.get("device") or device) not in (None, "cpu") and count > 1:
        return f"{count} × {name}"
    return name


def untested(loaded: LoadedClaim, why: str) -> ClaimResult:
    """The result of a claim no run bears on."""
    claim = loaded.claim
    if claim.source.primary is None:
        return ClaimResult(claim, "unsourced", "no primary source behind the figure; "
                           + (claim.not_testable or why), run_with=loaded.scenario_path)
    return ClaimResult(claim, "not-testable-here", claim.not_testable or why,
                       run_with=loaded.scenario_path)


def sides(claim: Claim, trials: list[dict[str, Any]], run_baseline: dict[str, Any] | None
          ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(baseline trials, treatment trials) of a run; either may be empty."""
    if claim.not_testable is not None or claim.treatment is None:
        return [], []
    treatment = select(trials, claim.treatment, run_baseline, claim.pool)
    if claim.baseline_metric is not None:
        return treatment, treatment
    return select(trials, claim.baseline or {}, run_baseline, claim.pool), treatment


def measured_metric(claim: Claim) -> str | None:
    """The metric a claim's figure is read from: `peak_memory` is the device allocator's peak
    (what memory claims are about; a CPU run has none, and its host RSS is not a stand-in)."""
    return "peak_memory_bytes" if claim.metric == "peak_memory" else claim.metric


def evaluate_on_run(loaded: LoadedClaim, run, trials: list[dict[str, Any]],
                    series_rows: list[tuple] | None = None,
                    noise: dict[str, RunNoise] | None = None) -> ClaimResult | None:
    """The claim on one run (`run` a RunInfo, `trials` with series); None when the run does
    not hold both sides of it. `noise`: run-to-run noise per metric from earlier runs."""
    claim = loaded.claim
    base, treat = sides(claim, trials, run.baseline)
    if not base or not treat:
        return None
    common = dict(hardware=hardware_of(run.env, run.device), run_id=run.run_id,
                  scenario=run.scenario, baseline=_name(base), treatment=_name(treat),
                  run_with=loaded.scenario_path, metric=measured_metric(claim))
    unfinished = _unfinished(base, treat)
    if unfinished:
        return ClaimResult(claim, "not-testable-here", unfinished, **common)
    estimate, problem = _measure(claim, base, treat, trials, series_rows or [], noise or {})
    if estimate is None or math.isnan(estimate.point):
        return ClaimResult(claim, "not-testable-here", problem or "no value measured", **common)
    hardware_gap = _hardware_gap(claim, run, treat + base)
    if claim.source.primary is None:
        return ClaimResult(claim, "unsourced", "no primary source behind the figure; measured "
                           "here for information", estimate, **common)
    if hardware_gap:
        return ClaimResult(claim, "not-testable-here", hardware_gap + "; measured here for "
                           "information only", estimate, **common)
    verdict, why = judge(claim, estimate)
    metric = common["metric"]
    if metric in METRIC_MEANINGS:
        why += f"; measured on {metric}, {METRIC_MEANINGS[metric]}"
    return ClaimResult(claim, verdict, why, estimate, **common)


def judge(claim: Claim, estimate: Estimate) -> tuple[str, str]:
    """The verdict of a measured estimate against the claimed range (module docstring)."""
    expect, null = claim.expect, MEASURES[claim.measure][1]
    if estimate.busy:
        return "inconclusive", BUSY + (f" ({estimate.caveat})" if estimate.caveat else "")
    if not estimate.tested:
        where = "inside" if expect.contains(estimate.point) else "outside"
        return "inconclusive", (f"{estimate.basis}: the value lies {where} the claimed range, "
                                "which one run cannot show")
    low, high = estimate.low, estimate.high
    what = "the exact value" if estimate.exact else "the interval"
    if expect.contains(null):  # a "no change" claim: an equivalence test
        lowest, highest = expect.bounds()
        if lowest <= low and high <= highest:
            return "confirmed", f"{what} lies inside the claimed range"
        if not expect.overlaps(low, high):
            return "refuted", f"{what} lies outside the claimed range"
        return "inconclusive", "the interval straddles an end of the claimed range"
    claimed_up = expect.bounds()[0] > null  # the claim is of an increase of the measure
    right_way = (estimate.point > null) == claimed_up
    if estimate.significant and right_way:
        if expect.overlaps(low, high):
            return "confirmed", f"significant in the claimed direction, and {what} reaches the claimed range"
        return "partly", "significant in the claimed direction, but outside the claimed range"
    if estimate.significant:
        return "refuted", "significant in the opposite direction to the claim"
    if expect.overlaps(low, high):
        return "inconclusive", "no significant effect, yet the interval reaches the claimed range"
    return "refuted", f"no significant effect, and {what} excludes the claimed range"


def _measure(claim: Claim, base: list[dict[str, Any]], treat: list[dict[str, Any]],
             trials: list[dict[str, Any]], series_rows: list[tuple],
             noise: dict[str, RunNoise]) -> tuple[Estimate | None, str]:
    if claim.measure == "growth_saving":
        return _growth_saving(claim, base, treat, trials, series_rows)
    metric = measured_metric(claim)
    if claim.baseline_metric is not None:  # two figures of the same trials
        renamed = [{**t, "metrics": {metric: (t.get("metrics") or {}).get(claim.baseline_metric)}}
                   for t in treat]
        ratio = compare_metric(treat, renamed, metric)
    else:
        ratio = compare_metric(treat, base, metric, noise.get(metric))
    if math.isnan(ratio.point):
        missing = [t for t in base + treat if metric not in (t.get("metrics") or {})]
        why = next((t.get("unmeasured", {}).get(metric) for t in missing
                    if (t.get("unmeasured") or {}).get(metric)), None)
        return None, f"{metric} not measured" + (f": {why}" if why else "")
    return _as_measure(claim.measure, ratio), ""


def _as_measure(measure: str, ratio: Estimate) -> Estimate:
    return {
        "ratio": lambda: ratio,
        "inverse": lambda: ratio.map(lambda r: 1.0 / r),
        "saving": lambda: ratio.map(lambda r: 1.0 - r),
        "increase": lambda: ratio.map(lambda r: r - 1.0),
    }[measure]()


def _growth_saving(claim: Claim, base: list[dict[str, Any]], treat: list[dict[str, Any]],
                   trials: list[dict[str, Any]], series_rows: list[tuple]
                   ) -> tuple[Estimate | None, str]:
    """The share of the scratch model's cost a growth method saves to reach the scratch
    model's final eval loss: one saving per group of trials (a seed, when seeds are swept and
    pooled); the method's costs against scratch's by the rule, as 1 - ratio. A wall-time cost
    leaves out trials timed on a busy machine, whole: their eval curves too, so a group's loss
    target then comes from its quiet trials (a busy trial's time to the target cannot be
    separated from its curve); with none quiet on a side it is inconclusive."""
    cost = claim.metric
    chosen = {t["trial_id"] for t in base + treat}
    timed = cost.startswith("time")
    busy = [t for t in base + treat if timed and t["status"] == "ok" and is_busy(t)]
    quiet_sides = all(any(t["status"] == "ok" and not is_busy(t) for t in side) for side in (base, treat))
    if busy and quiet_sides:
        chosen -= {t["trial_id"] for t in busy}
    estimate, problem = _growth_ratio(claim, treat, [t for t in trials if t["trial_id"] in chosen],
                                      series_rows)
    if not busy or estimate is None:
        return estimate, problem
    caveat = f"{len(busy)} trial{'s' if len(busy) > 1 else ''} left out: machine busy"
    if not quiet_sides:  # what the busy trials showed, for information
        return untested_estimate(estimate.point, BUSY, busy=True, caveat=caveat), ""
    return replace(estimate, caveat=caveat), ""


def _growth_ratio(claim: Claim, treat: list[dict[str, Any]], subset: list[dict[str, Any]],
                  series_rows: list[tuple]) -> tuple[Estimate | None, str]:
    savings = growth_savings(trial_frame(subset), eval_curves(series_rows, subset))
    method = (treat[0].get("params") or {}).get(METHOD_AXIS.removeprefix("params."))
    cost = claim.metric
    rows = savings[savings["method"] == method]
    scratch = savings[savings["method"] == SCRATCH].set_index("group")[cost]
    paired = rows.set_index("group")[cost].to_frame("method").join(scratch.rename("scratch"))
    paired = paired.dropna()
    if paired.empty:
        note = rows["note"].dropna().iloc[0] if not rows.empty and rows["note"].notna().any() else ""
        return None, f"{method} did not reach the scratch model's final eval loss {note}".strip()
    ratio = log_ratio(paired["method"], paired["scratch"], unit="seeds")
    return ratio.map(lambda r: 1.0 - r), ""


def _unfinished(base: list[dict[str, Any]], treat: list[dict[str, Any]]) -> str:
    for side, group in (("baseline", base), ("treatment", treat)):
        if not any(t["status"] == "ok" for t in group):
            first = group[0]
            return f"the {side} trial is {first['status']}: {first.get('reason') or 'no reason stored'}"
    return ""


def _hardware_gap(claim: Claim, run, trials: list[dict[str, Any]]) -> str:
    need = claim.requires
    why = f" ({need.reason})" if need.reason else ""
    if need.device == "cuda" and run.device != "cuda":
        return f"the claim is about CUDA GPUs{why}; this run was on {run.device}"
    ranks = max(int((t.get("spec") or {}).get("techniques", {}).get("world_size", 1))
                * int((t.get("spec") or {}).get("techniques", {}).get("nnodes", 1)) for t in trials)
    if ranks < need.devices:
        return f"needs {need.devices} or more devices{why}; these trials used {ranks}"
    return ""


def _name(trials: list[dict[str, Any]]) -> str:
    names = list(dict.fromkeys(combination_name(t["name"]) for t in trials))
    return names[0] if len(names) == 1 else f"{names[0]} (+{len(names) - 1} pooled)"


def results_frame(results: list[ClaimResult]) -> pd.DataFrame:
    """One row per claim result, for tables and JSON."""
    rows = []
    for r in results:
        e = r.estimate
        rows.append({
            "id": r.claim.id, "claim": r.claim.claim, "verdict": r.verdict, "why": r.why,
            "measure": r.claim.measure, "metric": r.metric or r.claim.metric,
            "claimed": r.claim.expect.text() if r.claim.expect else None,
            "value": e.point if e else math.nan, "low": e.low if e else math.nan,
            "high": e.high if e else math.nan, "basis": e.basis if e else None,
            "p_value": e.p_value if e else math.nan, "hardware": r.hardware, "run_id": r.run_id,
            "scenario": r.scenario, "baseline": r.baseline, "treatment": r.treatment,
            "source": r.claim.source.primary, "run_with": r.run_with,
        })
    return pd.DataFrame(rows)
