"""`harness suite --dry-run`: every entry's planned trials with an estimated time, and a total.

The plan is what `harness run --dry-run` plans for each entry (harness.runner.iter_plan), on
this machine's device or on an assumed one; the estimate is harness.suite.estimate's, with
the fixed costs harness.suite.costs measured or assumed. Nothing is run, nothing is timed.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from harness.suite import estimate
from harness.suite.costs import fixed_costs
from harness.suite.devices import PlannedDevice
from harness.suite.loader import LoadedSuite
from harness.text import printable, rich_text


def plan_suite(suite: LoadedSuite, device: PlannedDevice, results: Path | None) -> dict[str, Any]:
    """The dry run's JSON: `trials`, `checks`, `estimated_s` (the whole suite, reports
    included), and what every figure rests on."""
    from harness import runner

    basis = fixed_costs(results, device.type, device.name)
    rates = estimate.assumed_rates(device.type, {d: p.tflops for d, p in device.peaks.items()})
    trials, estimates = [], []
    for entry in suite.scenarios():
        for spec, skip in runner.iter_plan(entry.loaded, device.type, facts=device.facts):
            found = estimate.estimate_trial(spec, skip, rates, basis.costs)
            estimates.append(found)
            trials.append({
                "entry": entry.label, "position": entry.index, "scenario": spec.scenario,
                "trial_id": spec.trial_id, "name": spec.name, "kind": spec.kind, "skip": skip,
                "estimated_s": round(found.total_s, 2), "flops": found.flops,
                "compute_s": round(found.compute_s, 3), "start_s": round(found.start_s, 2),
                "compile_s": round(found.compile_s, 2), "precision": spec.techniques["precision"],
                "compile": spec.techniques["compile"], "params": spec.params,
                "model": _model(spec.model), "steps": spec.train["steps"],
                "techniques": spec.techniques, "model_config": spec.model})
    checks = [{"entry": entry.label, "position": entry.index, "check": entry.check,
               "estimated_s": estimate.check_seconds(entry.check), "source": "assumed"}
              for entry in suite.checks()]
    reports = len(suite.scenarios())
    total = estimate.total_seconds(estimates, [c["estimated_s"] for c in checks], reports)
    return {
        "suite": suite.name, "file": suite.path, "smoke": suite.smoke, "device": device.describe(),
        "trials": trials, "checks": checks, "reports_s": reports * estimate.ASSUMED_REPORT_S,
        "estimated_s": round(total, 1),
        "assumptions": {
            "mfu": rates.mfu, "mfu_source": "assumed",
            "min_pass_s": rates.min_pass_s, "min_pass_source": "assumed",
            "trial_s": {"value": round(basis.costs.trial_s, 2), "source": basis.sources["trial_s"]},
            "compile_s": {mode: {"value": round(value, 2), "source": basis.sources[f"compile_s.{mode}"]}
                          for mode, value in basis.costs.compile_s.items()},
            "report_s": {"value": estimate.ASSUMED_REPORT_S, "source": "assumed"},
        },
    }


def _model(model: dict) -> str:
    experts = f" E{model['n_experts']}" if model.get("n_experts") else ""
    return f"{model['flavour']} L{model['n_layer']} d{model['d_model']}{experts}"


def print_plan(plan: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    device = plan["device"]
    where = f"{device['name']} ({device['type']}{', assumed' if device['assumed'] else ''})"
    runs = sum(1 for t in plan["trials"] if not t["skip"])
    title = (f"{plan['suite']}{' (smoke)' if plan['smoke'] else ''}: {len(plan['trials'])} trials "
             f"({runs} run) and {len(plan['checks'])} checks on {where}: "
             f"about {_duration(plan['estimated_s'])}")
    table = Table(title=rich_text(title))
    for column in ("entry", "trial", "kind", "model", "steps", "plan", "est. s"):
        table.add_column(column, justify="right" if column in ("steps", "est. s") else "left")
    rows = [(t["position"], (t["entry"], t["name"], t["kind"], t["model"], str(t["steps"]),
                             f"skip: {t['skip']}" if t["skip"] else "run", f"{t['estimated_s']:.1f}"))
            for t in plan["trials"]]
    rows += [(c["position"], (c["entry"], f"check {c['check']}", "check", "", "", "run",
                              f"{c['estimated_s']:.1f}")) for c in plan["checks"]]
    for _, row in sorted(rows, key=lambda r: r[0]):  # stable: trials keep their planned order
        table.add_row(*map(rich_text, row))
    Console(width=160).print(table)
    for line in assumption_lines(plan):
        print(printable(line))


def assumption_lines(plan: dict[str, Any]) -> list[str]:
    a, device = plan["assumptions"], plan["device"]
    peaks = ", ".join(f"{dtype} {p['tflops']:g} ({p['source']})"
                      for dtype, p in device["peaks_tflops"].items())
    compiles = ", ".join(f"{mode} {c['value']:g} s ({c['source']})" for mode, c in a["compile_s"].items())
    lines = [f"peak TFLOP/s: {peaks}",
             "utilisation (assumed): " + ", ".join(f"{k} {v:g}" for k, v in a["mfu"].items())
             + f"; no pass faster than {a['min_pass_s'] * 1e3:g} ms (assumed)",
             f"per trial: {a['trial_s']['value']:g} s ({a['trial_s']['source']}); per compile: {compiles}",
             f"per report: {a['report_s']['value']:g} s (assumed); checks: assumed"]
    if device["assumed"]:
        lines.append(f"assumed device: compute capability {device['compute_capability']}, native bf16, "
                     f"libraries assumed installed: {', '.join(device['libraries'])}")
    return lines


def _duration(seconds: float) -> str:
    minutes, rest = divmod(int(math.ceil(seconds)), 60)
    return f"{seconds:.0f} s ({minutes} min {rest:02d} s)"
