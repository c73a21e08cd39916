"""The report's tables as plain strings, built once and rendered twice (markdown, HTML).

Cells hold unescaped text: each renderer escapes for its own format.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from harness.report import units

# The one memory column shows the device allocator's peak on a GPU run and the host's
# resident-set peak on a CPU run; its header says which, so nobody compares them.
MEMORY_LABELS = {"peak_memory_bytes": "peak device memory", "peak_rss_bytes": "peak host RSS"}
# MFU against the rate the device's own large GEMMs reach (timed once per device and dtype), not
# its datasheet's; on a CPU, whose MFU peak is measured already, the same figure as MFU
ACHIEVABLE_LABEL = "MFU (achievable peak)"
REASON_CHARS = 90  # longer reasons are cut in the table and given whole below it

# fingerprint keys in reading order; any other key follows, so a new field is never lost
ENV_ORDER = ("device", "device_name", "device_count", "device_memory_bytes", "compute_capability",
             "driver", "torch_cuda", "cudnn", "host", "os", "cpu_model", "cpu_cores_logical",
             "cpu_cores_physical", "torch_threads", "host_memory_bytes", "python", "libraries",
             "harness_version", "git_commit", "git_dirty")


@dataclass(frozen=True)
class Table:
    headers: list[str]
    rows: list[list[str]]
    row_classes: list[str] = field(default_factory=list)  # styling hints for HTML rows
    numeric: list[bool] = field(default_factory=list)  # right-aligned columns

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=self.headers)


def trial_table(trials: pd.DataFrame, memory_metric: str, with_ratios: bool) -> Table:
    """Every trial in planned order. `trials` is `ratios_to_baseline(trial_frame(...))`."""
    headers = ["trial", "status", "tokens/s", "step time (p10–p90)", MEMORY_LABELS[memory_metric],
               "activation bytes", "final loss", "eval loss"]
    if with_ratios:
        headers += ["speedup", "memory vs baseline", "activations vs baseline"]
    rows, classes = [], []
    for values in trials.to_dict("records"):
        status = status_cell(values["status"], values["reason"])
        busy = values.get("busy") and values["status"] == "ok"
        cells = [values["name"], f"{status} (machine busy)" if busy else status]
        cells += _figures(values, memory_metric)
        if with_ratios:
            cells += _ratios(values)
        rows.append(cells)
        classes.append(_row_class(values["status"], bool(values.get("is_baseline"))))
    return Table(headers, rows, classes, [False, False] + [True] * (len(headers) - 2))


def combination_table(combos: pd.DataFrame, memory_metric: str, with_ratios: bool) -> Table:
    """One row per combination: medians over its ok repeats (`compare_to_baseline`); timed
    figures over its quiet ones, the busy ones counted in the second cell."""
    headers = ["combination", "ok / repeats", "tokens/s", "step time (p10–p90)",
               MEMORY_LABELS[memory_metric], "activation bytes", "final loss", "eval loss"]
    if with_ratios:
        headers += ["speedup", "memory vs baseline", "activations vs baseline"]
    rows, classes = [], []
    for values in combos.to_dict("records"):
        busy = int(values.get("busy_repeats") or 0)
        cells = [values["combination"], f"{values['ok_repeats']} / {values['repeats']}"
                 + (f" ({busy} busy, left out)" if busy else "")]
        cells += _figures(values, memory_metric)
        if with_ratios:
            cells += _ratios(values)
        rows.append(cells)
        status = "ok" if values["ok_repeats"] == values["repeats"] else "failed"
        classes.append(_row_class(status, bool(values["is_baseline"])))
    return Table(headers, rows, classes, [False] + [True] * (len(headers) - 1))


def compute_table(trials: pd.DataFrame) -> Table:
    """Where the FLOPs went: model and hardware FLOPs per token, achieved rate, MFU and HFU,
    MFU against the device's measured GEMM rate where a trial has it, plus what the compiler
    and the fp16 loss scaler did where they were used."""
    achievable = "mfu_achievable" in trials and trials["mfu_achievable"].notna().any()
    headers = ["trial", "global batch (micro x accum x ranks)", "model GFLOP/token",
               "hardware GFLOP/token", "achieved TFLOP/s", "MFU",
               *([ACHIEVABLE_LABEL] if achievable else []), "HFU"]
    extras = [(column, label, fmt) for column, label, fmt in (
        ("compile_time_s", "compile time", units.seconds),
        ("graph_breaks", "graph breaks", units.count),
        ("compile_recompiles", "recompiles", units.count),
        ("skipped_steps", "fp16 skipped steps", units.count),
        ("loss_scale", "final loss scale", units.count),
    ) if column in trials and trials[column].notna().any()]
    headers += [label for _, label, _ in extras]
    rows, classes = [], []
    for values in trials.to_dict("records"):
        cells = [values["name"], _batch(values), units.gflop(values.get("flops_per_token")),
                 units.gflop(values.get("hardware_flops_per_token")),
                 units.number(values.get("achieved_tflops")), units.percent(values.get("mfu")),
                 *([units.percent(values.get("mfu_achievable"))] if achievable else []),
                 units.percent(values.get("hfu"))]
        cells += [fmt(values.get(column)) for column, _, fmt in extras]
        rows.append(cells)
        classes.append(_row_class(values["status"], bool(values.get("is_baseline"))))
    return Table(headers, rows, classes, [False] + [True] * (len(headers) - 1))


def _batch(values: dict[str, Any]) -> str:
    """"32 (8 x 2 x 2)": sequences per optimizer step, and how the trial made them."""
    micro, accum, ranks = (values.get(k) for k in ("micro_batch", "grad_accum", "ranks"))
    if any(v is None or v != v for v in (micro, accum, ranks)):
        return units.DASH
    micro, accum, ranks = int(micro), int(accum), int(ranks)
    return f"{micro * accum * ranks} ({micro} x {accum} x {ranks})"


def memory_breakdown_table(trials: pd.DataFrame, memory_metric: str) -> Table:
    """Where the memory went: parameters, gradients, optimizer state and activations beside
    the peak, each measured on its own (their sum is not the peak: allocator caching,
    temporaries and the runtime come on top, and on a CPU the peak is the whole process)."""
    parts = [("parameter_bytes", "parameters"), ("gradient_bytes", "gradients"),
             ("optimizer_state_bytes", "optimizer state"), ("activation_bytes", "activations")]
    headers = ["trial", *(label for _, label in parts), "sum", MEMORY_LABELS[memory_metric]]
    rows, classes = [], []
    for values in trials.to_dict("records"):
        figures = [values.get(column) for column, _ in parts]
        known = [f for f in figures if f is not None and f == f]
        total = sum(known) if len(known) == len(figures) else None
        rows.append([values["name"], *(units.size(f) for f in figures), units.size(total),
                     units.size(values.get(memory_metric))])
        classes.append(_row_class(values["status"], bool(values.get("is_baseline"))))
    return Table(headers, rows, classes, [False] + [True] * (len(headers) - 1))


def scaling_table(scaling: pd.DataFrame, memory_metric: str) -> Table:
    """Per strategy (group), each rank count: batch, throughput, efficiency, communication."""
    headers = ["group", "ranks", "global batch", "micro-batch per device", "tokens/s",
               "tokens/s per device", "efficiency", "exposed comm", MEMORY_LABELS[memory_metric]]
    rows = []
    for values in scaling.to_dict("records"):
        rows.append([values["group"], units.plain(int(values["ranks"])),
                     units.plain(values["global_batch"]), units.plain(values["micro_batch"]),
                     units.tokens_per_s(values["tokens_per_s"]),
                     units.tokens_per_s(values["tokens_per_s_per_device"]),
                     f"{units.percent(values['efficiency'])} ({values['kind']})",
                     units.percent(values.get("comm_fraction")), units.size(values.get(memory_metric))])
    return Table(headers, rows, [""] * len(rows), [False] + [True] * (len(headers) - 1))


def energy_table(trials: list[dict[str, Any]]) -> Table | None:
    """Energy of each trial's measured window with its method; None when no trial measured
    any (a CPU run: the reasons are listed with the other unmeasured figures)."""
    if not any("energy_j" in (t.get("metrics") or {}) for t in trials):
        return None
    headers = ["trial", "energy", "J/token", "tokens/kWh", "avg power", "max power", "method", "flags"]
    rows, classes = [], []
    for trial in trials:
        m, notes = trial.get("metrics") or {}, trial.get("notes") or {}
        flags = [f"throttled ({', '.join(notes.get('gpu_throttle_reasons') or {})})"
                 if notes.get("gpu_throttled") else "",
                 f"other processes on the GPU: {notes['gpu_foreign_processes']}"
                 if notes.get("gpu_foreign_processes") else ""]
        rows.append([trial["name"], units.joules(m.get("energy_j")),
                     units.number(m.get("energy_per_token_j")), units.number(m.get("tokens_per_kwh")),
                     _watts(m.get("avg_power_w")), _watts(m.get("max_power_w")),
                     notes.get("energy_method") or units.DASH, "; ".join(f for f in flags if f) or units.DASH])
        classes.append(_row_class(trial["status"], False))
    return Table(headers, rows, classes, [False] + [True] * 5 + [False, False])


def energy_warnings(trials: list[dict[str, Any]]) -> list[str]:
    """One line per trial whose energy and timing a reader should not trust as they stand."""
    lines = []
    for trial in trials:
        notes = trial.get("notes") or {}
        if notes.get("gpu_throttled"):
            reasons = ", ".join(notes.get("gpu_throttle_reasons") or {}) or "unknown"
            lines.append(f"{trial['name']}: the GPU throttled during the measured window ({reasons}); "
                         "its figures do not compare with unthrottled trials")
        if notes.get("gpu_foreign_processes"):
            lines.append(f"{trial['name']}: other processes ({notes['gpu_foreign_processes']}) used the "
                         "GPU; NVML's energy and power include them")
    return lines


def _watts(value: float | None) -> str:
    text = units.number(value)
    return text if text == units.DASH else f"{text} W"


def environment_table(env: dict[str, Any]) -> Table:
    keys = [k for k in ENV_ORDER if k in env] + sorted(k for k in env if k not in ENV_ORDER)
    rows = [[key, _env_value(key, env[key])] for key in keys]
    return Table(["field", "value"], rows, [""] * len(rows), [False, False])


def status_cell(status: str, reason: str | None) -> str:
    if status == "ok" or not isinstance(reason, str) or not reason.strip():
        return status
    first_line = reason.strip().splitlines()[0]
    if len(first_line) > REASON_CHARS:
        first_line = first_line[: REASON_CHARS - 1] + "…"
    return f"{status}: {first_line}"


def _figures(values: dict[str, Any], memory_metric: str) -> list[str]:
    return [
        units.tokens_per_s(values.get("tokens_per_s")),
        units.step_time(values.get("step_time_s"), values.get("step_time_p10_s"),
                        values.get("step_time_p90_s")),
        units.size(values.get(memory_metric)),
        units.size(values.get("activation_bytes")),
        units.loss(values.get("final_loss")),
        units.loss(values.get("eval_loss")),
    ]


def _ratios(values: dict[str, Any]) -> list[str]:
    return [units.ratio(values.get(c)) for c in ("speedup", "memory_ratio", "activation_ratio")]


def _row_class(status: str, is_baseline: bool) -> str:
    return " ".join(c for c in (f"status-{status}", "baseline" if is_baseline else "") if c)


def _env_value(key: str, value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{name} {version}" for name, version in value.items()) or units.DASH
    if key.endswith("_bytes") and isinstance(value, (int, float)):
        return units.size(float(value))
    if isinstance(value, Iterable) and not isinstance(value, str):
        return ", ".join(map(units.plain, value))
    return units.plain(value)
