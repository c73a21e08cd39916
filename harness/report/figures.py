"""The report's figures as PNG bytes: throughput, memory and loss curves per trial.

Drawn on `matplotlib.figure.Figure` with the Agg canvas, not pyplot, so rendering touches no
global backend or figure registry (the CLI, tests and notebooks may all import this).
Trials appear top to bottom in planned order; the baseline is drawn in its own colour.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from harness.report import units
from harness.text import printable

BAR = "#4C72B0"
BASELINE = "#DD8452"
ACTIVATION = "#55A868"
MISSING = "#8C8C8C"
FLOOR_LABEL = "entropy floor (synthetic source)"
DPI = 110


def throughput_png(trials: pd.DataFrame) -> bytes:
    """Horizontal bars of tokens/s, one per trial; the label gives the speedup when known.
    `trials` is `ratios_to_baseline(trial_frame(...))`."""
    fig, ax = _bar_figure(len(trials), panels=1)
    ax = ax[0]
    _bars(ax, trials, trials["tokens_per_s"], units.tokens_per_s,
          extra=trials["speedup"] if "speedup" in trials else None)
    quiet = (trials["status"] == "ok") & ~trials["busy"].astype(bool)
    baseline = trials.loc[trials["is_baseline"] & quiet, "tokens_per_s"]
    if baseline.notna().any():
        ax.axvline(float(baseline.median()), color=BASELINE, linestyle=":", linewidth=1,
                   label="baseline (median)")
        ax.legend(loc="lower right", fontsize=8)
    ax.xaxis.set_major_formatter(FuncFormatter(_tick_tokens))
    ax.set_xlabel("tokens/s (measured window, warm-up excluded)")
    ax.set_title("Throughput per trial")
    return _png(fig)


def memory_png(trials: pd.DataFrame, memory_metric: str, memory_label: str) -> bytes:
    """Two panels sharing the trial axis: the run's peak memory and the bytes saved for
    backward. Apart, because a process peak dwarfs one step's activations."""
    fig, (peak_ax, act_ax) = _bar_figure(len(trials), panels=2)
    _bars(peak_ax, trials, trials[memory_metric] / 2**20, lambda v: units.size(v * 2**20))
    peak_ax.set_xlabel(f"{memory_label} (MiB)")
    peak_ax.set_title(memory_label)
    _bars(act_ax, trials, trials["activation_bytes"] / 2**20, lambda v: units.size(v * 2**20),
          color=ACTIVATION, show_names=False)
    act_ax.set_xlabel("bytes saved for backward, one step (MiB)")
    act_ax.set_title("activation bytes")
    return _png(fig)


def loss_png(curves: pd.DataFrame, floors: list[float], warmup_steps: list[int]) -> bytes:
    """Training loss against step, one line per trial; warm-up steps shaded; the synthetic
    source's entropy floor dashed. Non-finite losses (a diverged trial) end the line with x."""
    fig = Figure(figsize=(8.0, 4.6), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    for index, warmup in enumerate(sorted({w for w in warmup_steps if w > 0})):
        ax.axvspan(-0.5, warmup - 0.5, color="#000000", alpha=0.07, linewidth=0,
                   label="warm-up steps (not measured)" if index == 0 else None)
    count = curves["trial_id"].nunique()
    highest_start = 0.0
    for index, (colour, (_, curve)) in enumerate(
            zip(_palette(count), curves.groupby("trial_id", sort=False))):
        finite = curve[np.isfinite(curve["loss"])]
        # earlier trials drawn wider, so identical curves (same numerics) stay visible
        width = 2.6 - 1.6 * index / max(count - 1, 1)
        ax.plot(curve["step"], curve["loss"].where(np.isfinite(curve["loss"])),
                color=colour, linewidth=width, label=_text(curve["name"].iloc[0]))
        if len(finite) < len(curve) and len(finite):
            ax.plot(finite["step"].iloc[-1], finite["loss"].iloc[-1], "x", color=colour,
                    markersize=8, markeredgewidth=2)
        if len(finite):
            highest_start = max(highest_start, float(finite["loss"].iloc[0]))
    for index, floor in enumerate(sorted(set(floors))):
        ax.axhline(floor, color="#222222", linestyle="--", linewidth=1,
                   label=FLOOR_LABEL if index == 0 else None)
    if curves.empty:
        _say(ax, "no loss series stored")
    elif highest_start > 0:
        # a diverging trial's last finite losses would flatten every other curve
        finite_max = float(curves.loc[np.isfinite(curves["loss"]), "loss"].max())
        ax.set_ylim(top=min(finite_max, 2 * highest_start) * 1.03)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (nats/token)")
    ax.set_title("Training loss per trial")
    ax.grid(alpha=0.3)
    entries = len(ax.get_legend_handles_labels()[0])
    if 0 < entries <= 8:
        ax.legend(fontsize=8, loc="upper right")
    elif entries > 8:  # a long legend goes under the axes instead of over the curves
        fig.legend(fontsize=7, loc="outside lower center", ncols=2)
    return _png(fig)


def _bar_figure(count: int, panels: int) -> tuple[Figure, list]:
    height = 1.5 + 0.38 * max(count, 1)
    fig = Figure(figsize=(8.0 if panels == 1 else 9.0, height), dpi=DPI, layout="constrained")
    axes = fig.subplots(1, panels, sharey=True, squeeze=False)[0]
    return fig, list(axes)


def _bars(ax, trials: pd.DataFrame, values: pd.Series, fmt, *, color: str = BAR,
          extra: pd.Series | None = None, show_names: bool = True) -> None:
    """One bar per trial, labelled with its value (and ratio); a trial without a value gets
    its status written where the bar would be, so a missing bar is never read as zero."""
    positions = np.arange(len(trials))
    finite = values.where(np.isfinite(values.astype(float)))
    colours = [BASELINE if base else color for base in trials["is_baseline"]]
    ax.barh(positions, finite.fillna(0), color=colours, height=0.65)
    scale = float(finite.max()) if finite.notna().any() else 1.0
    busy_marks = trials["busy"].astype(bool) & (trials["status"] == "ok") if "busy" in trials \
        else [False] * len(trials)
    for pos, value, status, ratio, busy in zip(positions, finite, trials["status"],
                                               extra if extra is not None else [math.nan] * len(trials),
                                               busy_marks):
        if math.isnan(value):
            note = status if status != "ok" else "not measured"
            ax.text(0.01 * scale, pos, note, va="center", fontsize=8, color=MISSING, style="italic")
            continue
        label = fmt(value) + ("" if math.isnan(ratio) else f"  ({units.ratio(ratio)})")
        label += "  (machine busy)" if busy else ""
        ax.text(value + 0.01 * scale, pos, label, va="center", fontsize=8)
    ax.set_xlim(0, scale * 1.35)
    ax.set_yticks(positions, [_text(n) for n in trials["name"]] if show_names else None)
    ax.tick_params(axis="y", labelsize=8)
    if show_names:  # once: the panels share the trial axis
        ax.invert_yaxis()
    ax.grid(axis="x", alpha=0.3)
    if trials.empty:
        _say(ax, "no trials")


def _tick_tokens(value: float, _position: int) -> str:
    # ticks are round numbers: "20 k", not the table's "20.0 k"
    for scale, suffix in ((1e6, " M"), (1e3, " k")):
        if abs(value) >= scale:
            return f"{value / scale:g}{suffix}"
    return f"{value:g}"


def _palette(count: int) -> list:
    from matplotlib import colormaps  # the registry only; no pyplot state

    cmap = colormaps["tab10" if count <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(max(count, 1))]


def _say(ax, message: str) -> None:
    ax.text(0.5, 0.5, message, transform=ax.transAxes, ha="center", va="center", color=MISSING)


def _text(name: str) -> str:
    # a "$" in a trial name would switch matplotlib to mathtext; control characters have no glyph
    return printable(name).replace("$", r"\$")


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def scaling_png(scaling: pd.DataFrame) -> bytes:
    """Tokens/s per device against ranks, one line per group (strategy and other axes), each
    with its ideal: the per-device throughput of its smallest rank count, held."""
    fig = Figure(figsize=(8, 4.5), dpi=DPI)
    ax = fig.add_subplot()
    for index, (name, group) in enumerate(scaling.groupby("group", sort=False)):
        group = group.sort_values("ranks")
        color = f"C{index % 10}"
        ax.plot(group["ranks"], group["tokens_per_s_per_device"], marker="o", color=color, label=name)
        ax.axhline(float(group["tokens_per_s_per_device"].iloc[0]), color=color, linestyle=":",
                   linewidth=1)
    ax.plot([], [], color="black", linestyle=":", linewidth=1, label="ideal (per-device rate held)")
    ranks = sorted(scaling["ranks"].unique())
    ax.set_xscale("log", base=2)
    ax.set_xticks(ranks, [str(r) for r in ranks])
    ax.yaxis.set_major_formatter(FuncFormatter(_tick_tokens))
    ax.set_ylim(bottom=0)
    ax.set_xlabel("ranks (world_size x nnodes)")
    ax.set_ylabel("tokens/s per device")
    ax.set_title("Scaling: throughput per device")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def power_png(traces: dict[str, tuple[list[float], list[float]]]) -> bytes:
    """Board power against time in the measured window, one line per trial."""
    fig = Figure(figsize=(8, 4), dpi=DPI)
    ax = fig.add_subplot()
    for index, (name, (times, watts)) in enumerate(traces.items()):
        points = [(t, w) for t, w in zip(times, watts) if t is not None and w is not None]
        ax.plot([t for t, _ in points], [w for _, w in points], color=f"C{index % 10}",
                linewidth=1, label=name)
    ax.set_xlabel("seconds into the measured window")
    ax.set_ylabel("power (W, summed over GPUs)")
    ax.set_ylim(bottom=0)
    ax.set_title("GPU power during the measured window")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)
