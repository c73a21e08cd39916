"""What makes a run's figures doubtful, said at the top of its report: trials measured on a busy
machine (left out of every comparison), throttled GPUs, a CPU peak that could not be measured
quietly or that a trial outran; and, for every run, how busy the machine was and which peak MFU is against."""

from __future__ import annotations

from typing import Any

from harness.report import units
from harness.spec import CPU_PEAK_UNDER_LOAD, GPU_THROTTLED, MACHINE_BUSY, PEAK_EXCEEDED

CONSEQUENCES = {
    MACHINE_BUSY: "measured on a busy machine: their figures are shown, but left out of every "
                  "comparison, claim and history",
    GPU_THROTTLED: "measured on a throttled GPU (thermal or hardware slowdown)",
    CPU_PEAK_UNDER_LOAD: "without MFU: the CPU peak could not be measured on a quiet machine",
    PEAK_EXCEEDED: "without MFU (datasheet or achievable): they ran faster than the peak FLOP/s they "
                   "would be measured against",
}


def warnings_of(trial: dict[str, Any]) -> list[dict[str, str]]:
    return [w for w in trial.get("warnings") or [] if isinstance(w, dict) and w.get("code")]


def run_warnings(trials: list[dict[str, Any]]) -> list[str]:
    """One line per warning code some trial carries: how many trials, what it means for the
    report, and the first trial's own message."""
    lines = []
    for code, consequence in CONSEQUENCES.items():
        hit = [(t, w) for t in trials for w in warnings_of(t) if w["code"] == code]
        if not hit:
            continue
        names = list(dict.fromkeys(t["name"] for t, _ in hit))
        first_trial, first = hit[0]
        lines.append(f"{len(names)} of {len(trials)} trials were {consequence} ({code}); e.g. "
                     f"{first_trial['name']}: {first.get('message', '')}")
    return lines


def contention_fact(trials: list[dict[str, Any]]) -> str | None:
    """"other processes used 0.2–3.1% of the CPUs in the measured windows; load average
    0.3–1.8": the range over the ok trials that measured it."""
    shares, loads = [], []
    for trial in trials:
        figures = (trial.get("notes") or {}).get("contention")
        if trial["status"] != "ok" or not isinstance(figures, dict):
            continue
        if isinstance(figures.get("foreign_cpu_share"), (int, float)):
            shares.append(figures["foreign_cpu_share"])
        for key in ("load_avg_before", "load_avg_after"):
            value = figures.get(key)
            if isinstance(value, list) and value and isinstance(value[0], (int, float)):
                loads.append(value[0])
    if not shares:
        return None
    text = (f"other processes used {units.percent(min(shares))}–{units.percent(max(shares))} of "
            "the CPUs in the measured windows")
    if loads:
        text += f"; 1-minute load average {min(loads):.2f}–{max(loads):.2f}"
    return text


def peaks_used(trials: list[dict[str, Any]]) -> list[str]:
    """Each distinct peak the run's MFU figures are against, with how it was had."""
    seen: dict[tuple, str] = {}
    for trial in trials:
        notes = trial.get("notes") or {}
        if notes.get("peak_tflops") is not None:
            key = (notes.get("peak_dtype"), notes.get("peak_tflops"), notes.get("peak_source"))
            seen.setdefault(key, f"{units.number(notes['peak_tflops'])} TFLOP/s {notes.get('peak_dtype')}"
                                 f" ({notes.get('peak_source') or 'source not stored'})")
        achievable, source = notes.get("peak_achievable_tflops"), notes.get("peak_achievable_source")
        if achievable is not None and source != "the same measurement as peak_source":
            seen.setdefault(("achievable", notes.get("peak_dtype"), achievable, source),
                            f"{units.number(achievable)} TFLOP/s"
                            f"{' ' + notes['peak_dtype'] if notes.get('peak_dtype') else ''}, achievable "
                            f"({source or 'source not stored'})")
    return list(seen.values())
