"""Everything a report says, gathered once from the store; markdown and HTML only render it.

Statistics come from `harness.analysis`; this module picks, formats and explains them.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from harness.analysis import (
    METRICS,
    PARAM_PREFIX,
    axis_columns,
    compare_to_baseline,
    eval_curves,
    loss_curves,
    scaling_frame,
    memory_metric,
    ratios_to_baseline,
    trial_frame,
)
from harness.claims import ClaimResult, LoadedClaim, claims_for_run, default_claims_path, load_claims
from harness.analysis.noise import noise_for_run
from harness.report import analyst, caveats, figures, tradeoff_figures, units
from harness.report.claims_table import claims_table
from harness.report.kind_sections import kind_figures_for, kind_sections
from harness.report.tables import (
    MEMORY_LABELS,
    Table,
    combination_table,
    compute_table,
    energy_table,
    energy_warnings,
    environment_table,
    memory_breakdown_table,
    scaling_table,
    trial_table,
)
from harness.store import ResultStore

# One line per figure on how it is measured; the report prints each next to its figure.
HOW_MEASURED = {
    "tokens/s": "tokens of the measured steps (all ranks) over the measured window's wall "
                "time; warm-up steps excluded.",
    "step time": "median of the measured steps' times (CUDA events on a GPU, a synchronised "
                 "clock elsewhere); p10–p90 are their 10th and 90th percentiles.",
    "peak_memory_bytes": "the CUDA caching allocator's peak of allocated bytes over the measured "
                         "window, max over ranks.",
    "peak_rss_bytes": "the worker process's resident-set high-water mark over the measured "
                      "window (no device allocator on this run); it includes the Python runtime "
                      "and libraries, not only the model.",
    "activation bytes": "bytes autograd saves for backward in one forward of one micro-batch, "
                        "counted through saved-tensor hooks; parameters excluded.",
    "final loss": "mean training loss over the last 10% of the steps.",
    "eval loss": "mean next-token loss over the held-out eval batches after training.",
    "ratios": "a trial's figure over the baseline combination's median over its ok repeats: "
              "speedup > 1 is faster, a memory or activation ratio < 1 uses less.",
    "compute": "model FLOPs per token are 6N + 12·L·H·Q·T (PaLM, appendix B); hardware FLOPs add "
               "one forward of every block activation checkpointing recomputes. MFU and HFU are "
               "those FLOPs per second over the device's dense peak for the compute dtype "
               "(datasheet on a GPU, a timed matmul on a CPU; fp8 against the bf16 peak).",
    "memory breakdown": "parameters, gradients (one backward's), optimizer state and activations "
                        "(saved for backward, one micro-batch) are each counted from the tensors "
                        "themselves; the peak comes on top of their sum with allocator caching "
                        "and temporaries (on a CPU, with the whole process).",
    "scaling": "tokens/s is global (every rank's tokens over the longest rank's measured "
               "window); per device, it is divided by the ranks. Efficiency is the per-device "
               "rate against the group's smallest rank count: strong scaling when the global "
               "batch is held, weak when the micro-batch per device is. Exposed comm: the share "
               "of a step's time that gradient synchronisation adds, timed with and without it. "
               "Memory is the largest rank's.",
    "energy": "GPU energy is the delta of NVML's cumulative energy counter over the measured "
              "window (synchronised), summed over the trial's GPUs; where the counter is missing or "
              "the window too short, sampled power integrated over it. Board-level: it includes "
              "anything else on the GPU. The method of each trial is named.",
    "pareto": "one point per combination (medians over ok repeats): tokens/s against peak "
              "memory; the line joins the combinations no other beats on both (the Pareto "
              "front); colour marks energy per token where NVML measured it.",
    "power": "board power of the trial's GPUs (summed), sampled by NVML during the measured window.",
    "loss curves": "the training loss of every step, warm-up steps included (shaded); the "
                   "dashed line is the synthetic source's entropy rate, the lowest loss any "
                   "model can reach in expectation.",
}
DASH_MEANING = (f"{units.DASH} marks a figure that was not measured (why, below) or a trial that "
                "did not finish (its status says why); it never stands for zero.")


@dataclass(frozen=True)
class FigureBlock:
    slug: str  # file stem of the PNG next to report.md
    title: str
    how_measured: str
    png: bytes


@dataclass(frozen=True)
class Unfinished:
    name: str
    status: str
    reason: str
    traceback: str | None


@dataclass(frozen=True)
class ReportContent:
    scenario: str
    description: str
    facts: list[tuple[str, str]]  # the header: run, times, device, git, version, counts
    setup: list[tuple[str, str]]  # model, data, training, swept axes, baseline
    baseline_name: str | None
    trials: Table
    combinations: Table | None  # only when some combination was repeated
    unmeasured: list[tuple[str, str, str]]  # (metric, reason, which trials)
    unfinished: list[Unfinished]
    figures: list[FigureBlock]
    accounting: list[tuple[str, str, Table]]  # (title, what it shows, table)
    measurements: list[tuple[str, str]]  # (column, how it is measured)
    environment: Table
    summary: list[tuple[str, str]] = field(default_factory=list)  # best by throughput, memory, energy
    warnings: list[str] = field(default_factory=list)  # said before anything else: busy machine, ...
    claims: Table | None = None  # verdicts of the claims this run bears on
    verdict_counts: str = ""  # "2 confirmed, 1 refuted, ..."
    claims_note: str = analyst.HOW["claims"]
    analysis: list[tuple[str, str, Table]] = field(default_factory=list)  # statistics, effects
    dash_meaning: str = DASH_MEANING


def build_content(store: ResultStore, run_id: str,
                  claims: list[LoadedClaim] | None = None) -> ReportContent:
    """Everything the report says about run `run_id`. `claims` defaults to the shipped claims
    file (when this checkout has one)."""
    run = store.run(run_id)
    trials = store.trials(run.run_id, with_series=True)
    frame = ratios_to_baseline(trial_frame(trials), run.baseline)
    combos = compare_to_baseline(frame, run.baseline)
    memory = memory_metric(frame)
    with_ratios = run.baseline is not None
    baseline_name = _baseline_name(combos, run.baseline)
    series_rows = store.series(run.run_id)
    curves = loss_curves(series_rows, trials)
    evals = eval_curves(series_rows, trials)

    measurements = [(label, HOW_MEASURED[key]) for label, key in (
        ("tokens/s", "tokens/s"), ("step time", "step time"),
        (MEMORY_LABELS[memory], memory), ("activation bytes", "activation bytes"),
        ("final loss", "final loss"), ("eval loss", "eval loss"))]
    if with_ratios:
        measurements.append(("ratios", HOW_MEASURED["ratios"]))

    if claims is None and default_claims_path().is_file():
        claims = load_claims(default_claims_path())
    verdicts = claims_for_run(store, run.run_id, claims or [])
    single = (combos["ok_repeats"] < 2).any() if len(combos) else False
    noise = noise_for_run(store, run, ["tokens_per_s", memory]) if single else {}
    analysis = [(title, analyst.HOW[key], table) for title, key, table in (
        ("Against the baseline, with intervals", "statistics",
         analyst.statistics_table(trials, baseline_name, memory, noise)),
        ("Which technique bought what", "effects",
         analyst.effects_table(combos, run.baseline, memory))) if table is not None]

    return ReportContent(
        summary=analyst.summary_lines(combos, memory, trials),
        warnings=caveats.run_warnings(trials),
        claims=claims_table(verdicts, compact=True) if verdicts else None,
        verdict_counts=_verdict_counts(verdicts),
        analysis=analysis,
        scenario=run.scenario,
        description=run.description.strip(),
        facts=_facts(run, trials),
        setup=_setup(trials, frame, baseline_name),
        baseline_name=baseline_name,
        trials=trial_table(frame, memory, with_ratios),
        combinations=(combination_table(combos, memory, with_ratios)
                      if (combos["repeats"] > 1).any() else None),
        unmeasured=_unmeasured(trials),
        unfinished=[Unfinished(t["name"], t["status"], t["reason"] or "(no reason stored)",
                               t.get("traceback")) for t in trials if t["status"] != "ok"],
        figures=(_figures(frame, curves, trials, memory)
                 + [FigureBlock(*block) for block in kind_figures_for(trials, series_rows, evals)]
                 + _tradeoff_figures(frame, combos, memory)
                 + _extra_figures(frame, trials, series_rows)),
        accounting=kind_sections(frame, trials, evals) + _accounting(frame, trials, memory),
        measurements=measurements,
        environment=environment_table(run.env),
    )


def _verdict_counts(verdicts: list[ClaimResult]) -> str:
    counts = pd.Series([v.verdict for v in verdicts], dtype=object).value_counts()
    return ", ".join(f"{n} {verdict}" for verdict, n in counts.items())


def _accounting(frame: pd.DataFrame, trials: list[dict[str, Any]],
                memory: str) -> list[tuple[str, str, Table]]:
    trained = frame["tokens_per_s"].notna().any() or not (frame["status"] == "ok").any()
    peaks = caveats.peaks_used(trials)
    compute_note = HOW_MEASURED["compute"] + (" Peak used: " + "; ".join(peaks) + "." if peaks else "")
    sections = [("Compute", compute_note, compute_table(frame)),
                ("Where the memory went", HOW_MEASURED["memory breakdown"],
                 memory_breakdown_table(frame, memory))] if trained else []  # not for inference
    energy = energy_table(trials)
    if energy is not None:
        warnings = " ".join(f"WARNING: {line}." for line in energy_warnings(trials))
        sections.append(("Energy", (warnings + " " if warnings else "") + HOW_MEASURED["energy"], energy))
    scaling = scaling_frame(frame)
    if scaling is not None:
        sections.append(("Scaling", HOW_MEASURED["scaling"], scaling_table(scaling, memory)))
    return sections


def _extra_figures(frame: pd.DataFrame, trials: list[dict[str, Any]],
                   series_rows: list[tuple[str, str, int, float | None]]) -> list[FigureBlock]:
    blocks = []
    scaling = scaling_frame(frame)
    if scaling is not None:
        blocks.append(FigureBlock("scaling", "Scaling", HOW_MEASURED["scaling"],
                                  figures.scaling_png(scaling)))
    points: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for trial_id, name, _, value in series_rows:  # ordered by trial, series, step
        if name in ("power_t_s", "power_w"):
            points[trial_id][name].append(value)
    names = {t["trial_id"]: t["name"] for t in trials}
    traces = {names[trial_id]: (p["power_t_s"], p["power_w"]) for trial_id, p in points.items()
              if p["power_w"] and trial_id in names}
    if traces:
        blocks.append(FigureBlock("power", "Power", HOW_MEASURED["power"], figures.power_png(traces)))
    return blocks


def _tradeoff_figures(frame: pd.DataFrame, combos: pd.DataFrame, memory: str) -> list[FigureBlock]:
    """Throughput against memory (energy marked), and the memory breakdown per trial; only for
    runs whose trials trained and measured both."""
    ok = combos[combos["ok_repeats"] > 0]
    blocks = []
    if (ok["tokens_per_s"].notna() & ok[memory].notna()).any():
        blocks.append(FigureBlock("pareto", "Throughput against peak memory", HOW_MEASURED["pareto"],
                                  tradeoff_figures.pareto_png(combos, memory, MEMORY_LABELS[memory])))
    parts = ["parameter_bytes", "gradient_bytes", "optimizer_state_bytes", "activation_bytes"]
    if any(c in frame and frame[c].notna().any() for c in parts):
        blocks.append(FigureBlock("memory_breakdown", "Where the memory went",
                                  HOW_MEASURED["memory breakdown"],
                                  tradeoff_figures.memory_breakdown_png(frame, memory, MEMORY_LABELS[memory])))
    return blocks


def _figures(frame: pd.DataFrame, curves: pd.DataFrame, trials: list[dict[str, Any]],
             memory: str) -> list[FigureBlock]:
    """Throughput, memory and loss curves, each left out when trials finished but none of
    them has its data (an inference run trains no measured steps: no tokens/s, no loss
    series). A run with no finished trial keeps all three: they say why they are empty."""
    floors = [t["notes"]["loss_floor"] for t in trials
              if (t.get("notes") or {}).get("loss_floor") is not None]
    warmups = [int(t["spec"]["train"].get("warmup_steps") or 0) for t in trials]
    label = MEMORY_LABELS[memory]
    ok = frame[frame["status"] == "ok"]

    def shown(*columns: str) -> bool:
        return ok.empty or any(ok[c].notna().any() for c in columns if c in ok)

    blocks = []
    if shown("tokens_per_s"):
        blocks.append(FigureBlock("throughput", "Throughput", "tokens/s: " + HOW_MEASURED["tokens/s"]
                                  + " Bars are labelled with the speedup over the baseline.",
                                  figures.throughput_png(frame)))
    if shown(memory, "activation_bytes"):
        blocks.append(FigureBlock("memory", "Memory", f"{label}: {HOW_MEASURED[memory]} activation "
                                  "bytes: " + HOW_MEASURED["activation bytes"],
                                  figures.memory_png(frame, memory, label)))
    if ok.empty or not curves.empty:
        blocks.append(FigureBlock("loss", "Loss curves", "loss: " + HOW_MEASURED["loss curves"],
                                  figures.loss_png(curves, floors, warmups)))
    return blocks


def _facts(run, trials: list[dict[str, Any]]) -> list[tuple[str, str]]:
    env = run.env
    counts = pd.Series([t["status"] for t in trials], dtype=object).value_counts()
    by_status = ", ".join(f"{n} {status}" for status, n in counts.items()) or "none"
    commit = env.get("git_commit")
    git = units.DASH if not commit else commit[:12] + (" (dirty)" if env.get("git_dirty") else "")
    device = env.get("device_name") or run.device
    if env.get("device_count") and env.get("device") not in (None, "cpu"):
        device = f"{env['device_count']} × {device}"
    facts = [
        ("run", run.run_id),
        ("started", run.started_at),
        ("finished", run.finished_at or "not finished (interrupted, or still running)"),
        ("device", f"{device} ({run.device})"),
        ("git commit", git),
        ("harness version", units.plain(env.get("harness_version"))),
        ("trials", f"{len(trials)} stored of {run.planned_trials} planned: {by_status}"),
    ]
    contention = caveats.contention_fact(trials)
    if contention:
        facts.append(("contention", contention))
    return facts


def _setup(trials: list[dict[str, Any]], frame: pd.DataFrame,
           baseline_name: str | None) -> list[tuple[str, str]]:
    """What was trained, from the first trial's spec (a swept axis changes it per trial)."""
    if not trials:
        return []
    first = trials[0]
    spec, notes = first["spec"], next((t["notes"] for t in trials if t.get("notes")), {})
    model, data, train = spec["model"], spec["data"], spec["train"]
    parameters = f", {notes['parameters']:,} parameters" if notes.get("parameters") else ""
    axes = [column.removeprefix(PARAM_PREFIX) for column in axis_columns(frame)]
    swept = "; ".join(
        f"{axis}: {', '.join(units.plain(v) for v in frame[PARAM_PREFIX + axis].drop_duplicates())}"
        for axis in axes)
    fixed = ", ".join(f"{k}={units.plain(v)}" for k, v in spec["techniques"].items() if k not in axes)
    rows = [
        ("model", f"{model.get('arch')} ({model.get('flavour')}): {model.get('n_layer')} layers, "
                  f"{model.get('n_head')} heads, d_model {model.get('d_model')}, "
                  f"vocab {model.get('vocab_size')}{parameters}"),
        ("data", notes.get("data") or f"{data.get('kind')}, seq_len {data.get('seq_len')}"),
        ("training", f"micro-batch {train.get('micro_batch_size')} × {data.get('seq_len')} tokens, "
                     f"{train.get('steps')} steps of which {train.get('warmup_steps')} warm-up, "
                     f"lr {train.get('lr')}, seed {train.get('seed')}"),
        ("fixed techniques", fixed or units.DASH),
        ("swept", swept or "nothing (a single combination)"),
    ]
    if baseline_name is not None:
        rows.append(("baseline", baseline_name))
    return rows


def _unmeasured(trials: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """Each (metric, reason) once, with the ok trials it applies to. Caveats stored as notes
    under a metric's name (e.g. a lifetime RSS peak) are listed the same way."""
    ok = [t for t in trials if t["status"] == "ok"]
    found: dict[tuple[str, str], list[str]] = defaultdict(list)
    for trial in ok:
        for metric, reason in (trial.get("unmeasured") or {}).items():
            found[(metric, f"not measured: {reason}")].append(trial["name"])
        for metric, note in (trial.get("notes") or {}).items():
            if metric in METRICS and isinstance(note, str):
                found[(metric, note)].append(trial["name"])
    order = {metric: index for index, metric in enumerate(METRICS)}
    rows = []
    for (metric, reason), names in sorted(found.items(), key=lambda item: order.get(item[0][0], 99)):
        if len(names) == len(ok):
            which = f"all {len(ok)} ok trials" if len(ok) > 1 else "the ok trial"
        else:
            which = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        rows.append((metric, reason, which))
    return rows


def _baseline_name(combos: pd.DataFrame, baseline: dict[str, Any] | None) -> str | None:
    if baseline is None:
        return None
    chosen = combos.loc[combos["is_baseline"], "combination"]
    if len(chosen):
        return str(chosen.iloc[0])
    return " ".join(f"{axis}={units.plain(value)}" for axis, value in baseline.items()) + \
        " (no trial of it was stored)"
