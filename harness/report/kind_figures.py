"""Figures of the trial kinds beyond plain training: convergence curves (eval loss against
tokens and against training time) and how Mixture-of-Experts routers spread the tokens.

Same conventions as `figures`: a `Figure` on the Agg canvas (no pyplot state), trials in
planned order, PNG bytes out.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from harness.report.figures import DPI, FLOOR_LABEL, _palette, _png, _say, _text, _tick_tokens

TARGET_COLOUR = "#B42318"


def convergence_png(curves: pd.DataFrame, targets: list[float], floors: list[float]) -> bytes:
    """Two panels sharing the loss axis: eval loss against tokens trained and against
    training wall time (evaluations excluded), one line per trial; each target loss dashed
    in red, the synthetic source's entropy floor dashed in black."""
    fig = Figure(figsize=(10.0, 4.6), dpi=DPI, layout="constrained")
    token_ax, time_ax = fig.subplots(1, 2, sharey=True)
    count = curves["trial_id"].nunique()
    for index, (colour, (_, curve)) in enumerate(
            zip(_palette(count), curves.groupby("trial_id", sort=False))):
        loss = curve["loss"].where(np.isfinite(curve["loss"]))
        # earlier trials drawn wider, so identical curves stay visible
        width = 2.4 - 1.4 * index / max(count - 1, 1)
        label = _text(curve["name"].iloc[0])
        token_ax.plot(curve["tokens"], loss, color=colour, linewidth=width, marker="o",
                      markersize=3, label=label)
        if curve["time_s"].notna().any():
            time_ax.plot(curve["time_s"], loss, color=colour, linewidth=width, marker="o",
                         markersize=3)
    for ax in (token_ax, time_ax):
        for index, target in enumerate(sorted(set(targets))):
            ax.axhline(target, color=TARGET_COLOUR, linestyle="--", linewidth=1.2,
                       label="target loss" if index == 0 and ax is token_ax else None)
        for index, floor in enumerate(sorted(set(floors))):
            ax.axhline(floor, color="#222222", linestyle="--", linewidth=1,
                       label=FLOOR_LABEL if index == 0 and ax is token_ax else None)
        ax.grid(alpha=0.3)
    if curves.empty:
        _say(token_ax, "no eval losses stored")
    token_ax.xaxis.set_major_formatter(FuncFormatter(_tick_tokens))
    token_ax.set_xlabel("tokens trained (global)")
    token_ax.set_ylabel("eval loss (nats/token)")
    token_ax.set_title("Eval loss against tokens")
    time_ax.set_xlabel("training wall time (s, evaluations excluded)")
    time_ax.set_title("Eval loss against training time")
    entries = len(token_ax.get_legend_handles_labels()[0])
    if 0 < entries <= 8:
        token_ax.legend(fontsize=8, loc="upper right")
    elif entries > 8:
        fig.legend(fontsize=7, loc="outside lower center", ncols=3)
    return _png(fig)


def experts_png(loads: dict[str, list[float]]) -> bytes:
    """Fraction of the routed tokens each expert received, grouped bars per trial, with the
    uniform share 1/E dashed (one line per distinct expert count)."""
    fig = Figure(figsize=(8.0, 4.2), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    count = len(loads)
    width = 0.8 / max(count, 1)
    for index, (colour, (name, fractions)) in enumerate(zip(_palette(count), loads.items())):
        positions = np.arange(len(fractions)) - 0.4 + width * (index + 0.5)
        values = [math.nan if v is None else v for v in fractions]
        ax.bar(positions, values, width=width, color=colour, label=_text(name))
    for index, experts in enumerate(sorted({len(f) for f in loads.values() if f})):
        ax.axhline(1 / experts, color="#222222", linestyle="--", linewidth=1,
                   label=f"uniform share 1/E (E={experts})")
    if not loads:
        _say(ax, "no expert loads stored")
    most = max((len(f) for f in loads.values()), default=0)
    ax.set_xticks(np.arange(most))
    ax.set_xlabel("expert")
    ax.set_ylabel("share of routed assignments")
    ax.set_ylim(bottom=0)
    ax.set_title("Tokens per expert: share of assignments (measured steps, all layers)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    return _png(fig)
