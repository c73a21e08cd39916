"""Two analyst figures: throughput against peak memory (with the Pareto front), and where each
trial's memory went (parameters, gradients, optimizer state, activations beside the peak).

Same conventions as `figures`: a `Figure` on the Agg canvas (no pyplot state), trials in
planned order, PNG bytes out. What gets plotted is computed by small pure functions
(`pareto_points`, `breakdown_mib`) so it can be tested without reading pixels.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter
from matplotlib.transforms import Bbox

from harness.analysis.pareto import pareto_front
from harness.report import units
from harness.report.figures import (
    ACTIVATION,
    BAR,
    BASELINE,
    DPI,
    MISSING,
    _png,
    _say,
    _text,
    _tick_tokens,
)

FRONT = "#B42318"
ENERGY_CMAP = "viridis"
NO_POINTS = "no trial has both throughput and memory"
NO_ENERGY = "energy not measured on this run"
LABEL_CHARS = 52
_MIB = 2**20

# offsets (points) from a point to its name, tried in this order
_LABEL_SPOTS = ((7, 3), (7, -3), (-7, 3), (-7, -3), (7, 13), (7, -13), (-7, 13), (-7, -13))
_POINT_SIZE, _BASELINE_SIZE = 55, 230

# (column, legend label, colour), stacked left to right in this order
PARTS = (
    ("parameter_bytes", "parameters", BAR),
    ("gradient_bytes", "gradients", "#8172B3"),
    ("optimizer_state_bytes", "optimizer state", "#C44E52"),
    ("activation_bytes", "activations (saved for backward)", ACTIVATION),
)


def short_name(name: object, limit: int = LABEL_CHARS) -> str:
    """A name cut to `limit` characters, the cut shown by "…"; long sweeps make long names."""
    text = str(name)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def distinguishing(names: list[object]) -> list[str]:
    """Each name without the `axis=value` words every name shares (`compile=false` in a sweep
    that never compiled), so that a label cut to LABEL_CHARS keeps what tells points apart."""
    words = [str(name).split(" ") for name in names]
    shared = set.intersection(*(set(w) for w in words)) if len(words) > 1 else set()
    return [short_name(" ".join(w for w in split if w not in shared) or " ".join(split))
            for split in words]


def pareto_points(combos: pd.DataFrame, memory_metric: str) -> pd.DataFrame:
    """The plottable combinations in planned order: `label`, `memory_mib`, `tokens_per_s`,
    `energy_mj` (NaN where unmeasured), `is_baseline` and `on_front`. Rows without both
    throughput and memory are dropped: an unmeasured figure is not a point."""
    energy = combos["energy_per_token_j"] if "energy_per_token_j" in combos else np.nan
    points = pd.DataFrame({
        "label": distinguishing(list(combos["combination"])),
        "memory_mib": combos[memory_metric].astype(float) / _MIB,
        "tokens_per_s": combos["tokens_per_s"].astype(float),
        "energy_mj": pd.Series(energy, index=combos.index, dtype=float) * 1e3,
        "is_baseline": combos["is_baseline"].astype(bool),
    }, index=combos.index)
    points = points[np.isfinite(points["memory_mib"]) & np.isfinite(points["tokens_per_s"])]
    return points.assign(on_front=pareto_front(points, "tokens_per_s", "memory_mib"))


def pareto_png(combos: pd.DataFrame, memory_metric: str, memory_label: str) -> bytes:
    """Median tokens/s against median peak memory, one point per combination of
    `compare_to_baseline(...)`; the Pareto front (more throughput, less memory) joined by a
    step line; points coloured by energy per token where any was measured."""
    fig = Figure(figsize=(8.0, 5.0), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    ax.set_title("Throughput against peak memory")
    ax.set_xlabel(f"{memory_label} (MiB, median over ok repeats)")
    ax.set_ylabel("tokens/s (median over ok repeats)")
    points = pareto_points(combos, memory_metric)
    if points.empty:
        _say(ax, NO_POINTS)
        return _png(fig)

    front = points[points["on_front"]].sort_values(["memory_mib", "tokens_per_s"])
    # "post": past a front point, what that memory buys is that point's throughput
    ax.step(front["memory_mib"], front["tokens_per_s"], where="post", color=FRONT,
            linewidth=1.4, zorder=1)
    has_energy = np.isfinite(points["energy_mj"])
    norm = None
    if has_energy.any():
        measured = points.loc[has_energy, "energy_mj"]
        norm = Normalize(float(measured.min()), float(measured.max()))
        fig.colorbar(ScalarMappable(norm=norm, cmap=ENERGY_CMAP), ax=ax,
                     label="energy per token (mJ)")
    else:
        ax.text(0.99, 0.02, NO_ENERGY, transform=ax.transAxes, ha="right", va="bottom",
                fontsize=7, color=MISSING, style="italic")
    _scatter(ax, points, has_energy, norm)
    ax.margins(x=0.12, y=0.12)
    ax.yaxis.set_major_formatter(FuncFormatter(_tick_tokens))
    ax.grid(alpha=0.3)
    _annotate(ax, points, points["is_baseline"].map({True: _BASELINE_SIZE, False: _POINT_SIZE}))
    # after the names: "best" then keeps the legend off them as well as off the points
    ax.legend(handles=_pareto_legend(points, has_energy), fontsize=8, loc="best")
    return _png(fig)


def _scatter(ax, points: pd.DataFrame, has_energy: pd.Series, norm: Normalize | None) -> None:
    """Coloured by energy when any was measured; else one plain colour, since hollow grey
    everywhere would say "missing" about a figure this device cannot measure at all."""
    for is_baseline, marker, size in ((False, "o", _POINT_SIZE), (True, "*", _BASELINE_SIZE)):
        chosen = points["is_baseline"] == is_baseline
        if norm is not None:
            lit = points[chosen & has_energy]
            ax.scatter(lit["memory_mib"], lit["tokens_per_s"], c=lit["energy_mj"],
                       cmap=ENERGY_CMAP, norm=norm, marker=marker, s=size,
                       edgecolors="black", linewidths=0.6, zorder=3)
            dark = points[chosen & ~has_energy]
            ax.scatter(dark["memory_mib"], dark["tokens_per_s"], facecolors="none",
                       edgecolors=MISSING, marker=marker, s=size, linewidths=1.3, zorder=3)
        else:
            plain = points[chosen]
            ax.scatter(plain["memory_mib"], plain["tokens_per_s"], marker=marker, s=size,
                       color=BASELINE if is_baseline else BAR, edgecolors="black",
                       linewidths=0.6, zorder=3)


def _annotate(ax, points: pd.DataFrame, sizes: pd.Series) -> None:
    """Each name beside its point, at the first of a few spots that stays inside the axes
    and overlaps no name already placed and no other point: close combinations (bf16 and
    fp16, say) otherwise print their names on top of each other."""
    fig = ax.figure
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw_without_rendering()  # settle layout and limits, so display extents are final
    centres = ax.transData.transform(points[["memory_mib", "tokens_per_s"]].to_numpy())
    radii = np.sqrt(sizes.to_numpy()) / 2 * fig.dpi / 72
    taken = [Bbox.from_bounds(x - r, y - r, 2 * r, 2 * r) for (x, y), r in zip(centres, radii)]
    taken += [text.get_window_extent(renderer) for text in ax.texts]  # the energy note
    inside = ax.get_window_extent(renderer)
    low, high = float(points["memory_mib"].min()), float(points["memory_mib"].max())
    for own, (label, x, y) in enumerate(zip(points["label"], points["memory_mib"],
                                            points["tokens_per_s"])):
        # a name in the right part of the plot tries its point's left side first
        leftward = high > low and (x - low) / (high - low) > 0.6
        spots = [(-dx if leftward else dx, dy) for dx, dy in _LABEL_SPOTS]
        note = ax.annotate(_text(label), (x, y), xytext=spots[0], textcoords="offset points",
                           fontsize=7, color="#222222", zorder=4)
        for dx, dy in [*spots, spots[0]]:  # none free: the first spot, overlap and all
            note.xyann = (dx, dy)
            note.set_horizontalalignment("left" if dx > 0 else "right")
            note.set_verticalalignment("bottom" if dy > 0 else "top")
            box = note.get_window_extent(renderer)
            others = (b for index, b in enumerate(taken) if index != own)
            if _contains(inside, box) and not any(box.overlaps(b) for b in others):
                break
        taken.append(box)


def _contains(outer: Bbox, inner: Bbox) -> bool:
    return (outer.x0 <= inner.x0 and inner.x1 <= outer.x1
            and outer.y0 <= inner.y0 and inner.y1 <= outer.y1)


def _pareto_legend(points: pd.DataFrame, has_energy: pd.Series) -> list[Line2D]:
    handles = [Line2D([], [], color=FRONT, linewidth=1.4, label="Pareto front"),
               Line2D([], [], linestyle="none", marker="o", color="#444444",
                      label="combination")]
    if points["is_baseline"].any():
        handles.append(Line2D([], [], linestyle="none", marker="*", markersize=11,
                              color=BASELINE if not has_energy.any() else "#444444",
                              label="baseline"))
    if has_energy.any() and not has_energy.all():
        handles.append(Line2D([], [], linestyle="none", marker="o", markerfacecolor="none",
                              markeredgecolor=MISSING, label="energy not measured"))
    return handles


def breakdown_mib(trials: pd.DataFrame) -> pd.DataFrame:
    """The four measured parts of each trial in MiB, one column per `PARTS` entry, NaN
    where unmeasured (a trial frame has a part's column only if some trial stored it)."""
    columns = [column for column, _, _ in PARTS]
    return trials.reindex(columns=columns).astype(float) / _MIB


def memory_breakdown_png(trials: pd.DataFrame, memory_metric: str, memory_label: str) -> bytes:
    """Per trial, a stacked bar of parameters, gradients, optimizer state and activations,
    each measured on its own, with the trial's peak as a black tick: the gap between the
    bar's end and the tick is what the parts do not account for (allocator caching,
    temporaries, the runtime; on a CPU the peak is the whole process)."""
    count = len(trials)
    fig = Figure(figsize=(8.0, 2.1 + 0.38 * max(count, 1)), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    ax.set_title("Where the memory went")
    ax.set_xlabel("MiB (each part measured on its own; their sum is not the peak)")
    positions = np.arange(count)
    parts = breakdown_mib(trials)
    left = np.zeros(count)
    for column, label, colour in PARTS:
        widths = parts[column].where(np.isfinite(parts[column])).fillna(0).to_numpy()
        drawn = bool(parts[column].notna().any())
        ax.barh(positions, widths, left=left, color=colour, height=0.65,
                label=label if drawn else None)
        left += widths
    peaks = trials.reindex(columns=[memory_metric])[memory_metric].astype(float).to_numpy() / _MIB
    has_peak = np.isfinite(peaks)
    if has_peak.any():
        ax.plot(peaks[has_peak], positions[has_peak], linestyle="none", marker="|",
                markersize=17, markeredgewidth=2.5, color="black", label=f"peak ({memory_label})")
    widest = max(float(np.max(left, initial=0.0)), float(np.max(peaks[has_peak], initial=0.0)))
    scale = widest or 1.0
    _write_values(ax, trials, parts, left, peaks, scale)
    ax.set_xlim(0, scale * 1.3)
    ax.set_yticks(positions, [_trial_label(name, base) for name, base in
                              zip(distinguishing(list(trials["name"])), trials["is_baseline"])])
    for tick, is_baseline in zip(ax.get_yticklabels(), trials["is_baseline"]):
        if is_baseline:
            tick.set_color(BASELINE)
    ax.tick_params(axis="y", labelsize=8)
    ax.invert_yaxis()  # planned order, top to bottom
    ax.grid(axis="x", alpha=0.3)
    if trials.empty:
        _say(ax, "no trials")
    if ax.get_legend_handles_labels()[0]:
        fig.legend(fontsize=8, loc="outside lower center", ncols=3)
    return _png(fig)


def _write_values(ax, trials: pd.DataFrame, parts: pd.DataFrame, ends: np.ndarray,
                  peaks: np.ndarray, scale: float) -> None:
    """The peak written past each bar; a trial with no part measured gets its status
    instead, so an empty row is never read as zero bytes."""
    for pos, (index, status) in enumerate(zip(trials.index, trials["status"])):
        if parts.loc[index].isna().all():
            note = status if status != "ok" else "not measured"
            ax.text(0.01 * scale, pos, note, va="center", fontsize=8, color=MISSING,
                    style="italic")
            continue
        if math.isfinite(peaks[pos]):
            ax.text(max(ends[pos], peaks[pos]) + 0.02 * scale, pos,
                    f"peak {units.size(peaks[pos] * _MIB)}", va="center", fontsize=8)


def _trial_label(name: str, is_baseline: bool) -> str:
    return _text(name) + (" (baseline)" if is_baseline else "")

