"""Claim verdicts as a table: the same rows for `harness claims`, the report's claims section
and the markdown summary. Cells are plain text; each renderer escapes for its format."""

from __future__ import annotations

import math

from harness.analysis.stats import Estimate
from harness.claims import ClaimResult
from harness.report import units
from harness.report.tables import Table

# how each measure reads: a ratio as "1.52×", a share as "+23.4%"
_RATIO_MEASURES = ("ratio", "inverse")


def measured_text(measure: str, estimate: Estimate | None) -> str:
    """"1.52× [1.48–1.57]" or "−23.4% [−25.0% – −21.9%]"; DASH when nothing was measured."""
    if estimate is None or math.isnan(estimate.point):
        return units.DASH
    fmt = units.ratio if measure in _RATIO_MEASURES else units.signed_percent
    if not estimate.tested:
        return f"{fmt(estimate.point)} (no test)"
    if estimate.exact:
        return f"{fmt(estimate.point)} (exact)"
    return f"{fmt(estimate.point)} [{fmt(estimate.low)} – {fmt(estimate.high)}]"


def claimed_text(result: ClaimResult) -> str:
    expect = result.claim.expect
    if expect is None:
        return units.DASH
    fmt = units.ratio if result.claim.measure in _RATIO_MEASURES else units.percent
    if expect.min is not None and expect.max is not None:
        return f"{fmt(expect.min)} – {fmt(expect.max)}"
    return f"≥ {fmt(expect.min)}" if expect.min is not None else f"≤ {fmt(expect.max)}"


def what_text(result: ClaimResult) -> str:
    """What was compared: "tokens_per_s ratio: precision=bf16 vs precision=fp32"."""
    claim = result.claim
    if claim.metric is None:
        return units.DASH
    what = f"{result.metric or claim.metric} {claim.measure.replace('_', ' ')}"
    if result.treatment is None:
        return what
    if claim.baseline_metric is not None:
        return f"{what} against {claim.baseline_metric}, {result.treatment}"
    return f"{what}: {result.treatment} vs {result.baseline}"


def claims_table(results: list[ClaimResult], *, compact: bool = False) -> Table:
    """Every result, one row each. `compact` (a report, one run: one hardware) folds what was
    compared and the source into the claim and reason cells, for a narrower table."""
    headers = ["claim", "verdict", "measured (95% interval)", "claimed", "compared", "hardware",
               "why", "source"]
    if compact:
        headers = ["claim (source)", "verdict", "measured (95% interval)", "claimed", "why (compared)"]
    rows, classes = [], []
    for result in results:
        estimate = result.estimate
        basis = f"; {estimate.basis}" if estimate is not None else ""
        if estimate is not None and estimate.caveat:
            basis += f" ({estimate.caveat})"
        p_value = (f"; p = {estimate.p_value:.2g}"
                   if estimate is not None and not estimate.exact
                   and not math.isnan(estimate.p_value) else "")
        claim = f"{result.claim.id}: {result.claim.claim}"
        source = result.claim.source.primary or "no primary source found"
        why = result.why + basis + p_value
        measured = measured_text(result.claim.measure, estimate)
        if compact:
            rows.append([f"{claim} ({source})", result.verdict, measured, claimed_text(result),
                         f"{why} ({what_text(result)})"])
        else:
            rows.append([claim, result.verdict, measured, claimed_text(result), what_text(result),
                         result.hardware or units.DASH, why, source])
        classes.append(f"verdict-{result.verdict}")
    numeric = [False, False, True, True] + [False] * (len(headers) - 4)
    return Table(headers, rows, classes, numeric)
