"""The procurement tables as text: a rich table for the terminal or markdown (pandas).

A cell with no figure shows a dash and a footnote number; the footnote under the table says
why (the trial's own reason, or the missing price). Under every table, its assumptions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
from rich.console import Console
from rich.table import Table

from harness.procure.compare import ResultsSource, Row
from harness.procure.prices import J_PER_KWH, LoadedPrices, describe
from harness.procure.projection import Projection
from harness.procure.targets import Target
from harness.report import units
from harness.text import rich_text


@dataclass
class TextTable:
    title: str
    frame: pd.DataFrame  # every cell a string
    footnotes: list[str] = field(default_factory=list)
    assumptions: list[str] = field(default_factory=list)


class Footnotes:
    """Reasons numbered in order of first use, each reason once."""

    def __init__(self) -> None:
        self.numbers: dict[str, int] = {}

    def mark(self, reason: str) -> str:
        number = self.numbers.setdefault(reason, len(self.numbers) + 1)
        return f"{units.DASH} [{number}]"

    def lines(self) -> list[str]:
        return [f"[{n}] {reason}" for reason, n in self.numbers.items()]


def money(usd: float) -> str:
    """$ with cents where cents matter, three significant digits below a cent."""
    if abs(usd) >= 1000:
        return f"${usd:,.0f}"
    if abs(usd) >= 0.01:
        return f"${usd:,.2f}"
    return f"${usd:.3g}"


def per_joule(tokens: float) -> str:
    """Tokens per joule: whole numbers from a thousand up, three significant digits below."""
    return f"{tokens:,.0f}" if tokens >= 1000 else f"{tokens:.3g}"


SIDE_COLUMNS = {  # figure -> (header, format)
    "tokens_per_s": ("tokens/s", units.tokens_per_s),
    "devices": ("devices", lambda v: f"{v:.0f}"),
    "tokens_per_s_per_device": ("tokens/s per device", units.tokens_per_s),
    "tokens_per_j": ("tokens/J", per_joule),
    "mfu": ("MFU", units.percent),
    "peak_memory_bytes": ("peak memory", units.size),
    "usd_per_mtok": ("$ per M tokens", money),
    "energy_usd_per_mtok": ("of which energy", money),
}


def side_by_side_table(rows: list[Row], scenario: str, sources: list[ResultsSource],
                       prices: LoadedPrices) -> TextTable:
    notes = Footnotes()
    records = []
    for row in rows:
        record = {"trial": row.trial, "hardware": row.hardware, "results": row.results}
        for figure, (header, fmt) in SIDE_COLUMNS.items():
            value = row.figures.get(figure)
            record[header] = fmt(value) if value is not None else notes.mark(row.missing[figure])
        records.append(record)
    columns = ["trial", "hardware", "results", *(h for h, _ in SIDE_COLUMNS.values())]
    runs = ", ".join(f"{s.path}: run {s.run.run_id}" for s in sources)
    assumptions = [
        "$ per M tokens = device-hour price × devices / 3600 / (tokens/s) × 1e6, plus, where "
        "energy was measured, energy per token × 1e6 / 3.6e6 J/kWh × PUE × $/kWh (the "
        "'of which energy' column); where it was not, the device part alone.",
        "devices = world_size × nnodes of the trial; tokens/s counts all of them.",
        *_price_lines({r.price_key for r in rows if r.price_key}, prices),
        "A cloud device-hour price usually includes power: the energy part is shown apart so "
        "that it can be left out (or is the whole cost of power on hardware one owns).",
    ]
    return TextTable(f"{scenario}: side by side ({runs})", pd.DataFrame(records, columns=columns),
                     notes.lines(), assumptions)


def projection_table(projections: list[Projection], target: Target,
                     prices: LoadedPrices) -> TextTable:
    notes = Footnotes()
    records = []
    for p in projections:
        basis = p.basis
        record = {"results": p.results, "hardware": p.hardware,
                  "devices": str(p.devices)}
        if basis is None:
            dash = notes.mark(p.why or "no basis trial")
            record.update({h: dash for h in ("basis trial", "MFU", "peak", "time",
                                             "device-hours", "device $", "energy", "energy $",
                                             "total $")})
            records.append(record)
            continue
        record.update({
            "basis trial": basis.trial, "MFU": units.percent(basis.mfu),
            "peak": f"{basis.peak.tflops:,.1f} TFLOP/s {basis.peak.dtype}",
            "time": f"{p.seconds / 86400:,.1f} days",
            "device-hours": f"{p.device_hours:,.0f}",
            "device $": money(p.device_usd) if p.device_usd is not None
            else notes.mark(p.missing["device_usd"]),
            "energy": f"{p.energy_j / J_PER_KWH / 1000:,.1f} MWh" if p.energy_j is not None
            else notes.mark(p.missing["energy"]),
            "energy $": money(p.energy_usd) if p.energy_usd is not None
            else notes.mark(p.missing["energy"]),
            "total $": money(p.total_usd) if p.total_usd is not None
            else notes.mark(p.missing["device_usd"]),
        })
        records.append(record)
    columns = ["results", "hardware", "basis trial", "MFU", "peak", "devices", "time",
               "device-hours", "device $", "energy", "energy $", "total $"]
    return TextTable(f"projected training of {target.name}",
                     pd.DataFrame(records, columns=columns), notes.lines(),
                     projection_assumptions(projections, target, prices))


def projection_assumptions(projections: list[Projection], target: Target,
                           prices: LoadedPrices) -> list[str]:
    attention = 12 * target.layers * target.d_model * target.seq_len
    lines = [
        f"{target.name}: N = {target.params:.3g} parameters, D = {target.tokens:.3g} tokens, "
        f"L = {target.layers}, d_model = {target.d_model}, T = {target.seq_len}; model FLOPs = "
        f"D × (6N + 12·L·d_model·T) = {target.total_flops:.3g} (PaLM appendix B; attention "
        f"{attention / target.flops_per_token:.1%} of it).",
        "time = FLOPs / (devices × peak FLOP/s × MFU); device-hours = devices × time. The MFU "
        "is taken as independent of the device count: no loss to communication at scale.",
    ]
    for p in projections:
        if p.basis is None:
            continue
        b = p.basis
        size = f"{b.parameters:.3g}-parameter" if b.parameters else "a model of unrecorded size"
        lines += [
            f"{p.results}: MFU {units.percent(b.mfu)} of trial '{b.trial}' ({b.precision}), "
            f"the ok trial with the most parameters (ties: the highest MFU). Carrying the MFU "
            f"of a {size} model to a {target.params:.3g}-parameter one on {p.devices} devices "
            "is an assumption: parallelism, communication and batch size move it both ways.",
            f"{p.results}: peak {b.peak.tflops:,.1f} TFLOP/s {b.peak.dtype} per device "
            f"({'measured' if b.peak.measured else 'datasheet'}: {b.peak.source}).",
        ]
        if b.joules_per_flop is not None:
            lines.append(f"{p.results}: energy = {b.joules_per_flop:.3g} J per model FLOP "
                         f"measured on '{b.trial}' × the target's FLOPs, × PUE for the wall.")
    lines += _price_lines({p.price_key for p in projections if p.price_key}, prices)
    lines.append("Not counted: failed runs and restarts, evaluation, data loading and "
                 "preprocessing, networking and storage, checkpoint writes, idle and queue "
                 "time, people.")
    return lines


def _price_lines(keys: set[str], prices: LoadedPrices) -> list[str]:
    book = prices.book
    lines = [describe(key, book.devices[key],
                      f"${book.devices[key].usd_per_device_hour:,.2f} per device-hour")
             for key in sorted(keys)]
    lines.append(describe("electricity", book.electricity,
                          f"${book.electricity.usd_per_kwh:.4g} per kWh"))
    lines.append(f"PUE {book.pue:.2f} (datacenter overhead: wall energy / device energy)"
                 + ("; the default, set `pue` in the prices file" if "pue" not in
                    book.model_fields_set else ""))
    lines.append(f"prices from {prices.path}: prices change; check the dates.")
    return lines


def to_markdown(table: TextTable) -> str:
    frame = table.frame.map(lambda cell: str(cell).replace("|", "\\|"))
    parts = [f"### {table.title}", "", frame.to_markdown(index=False)]
    if table.footnotes:
        parts += ["", *(f"- {line}" for line in table.footnotes)]
    if table.assumptions:
        parts += ["", "Assumptions:", "", *(f"- {line}" for line in table.assumptions)]
    return "\n".join(parts) + "\n"


def print_rich(table: TextTable, console: Console) -> None:
    rich_table = Table(title=rich_text(table.title))
    for column in table.frame.columns:
        rich_table.add_column(rich_text(column), overflow="fold")
    for _, row in table.frame.iterrows():
        rich_table.add_row(*(rich_text(str(cell)) for cell in row))
    console.print(rich_table)
    for line in table.footnotes:
        console.print(rich_text(line))
    if table.assumptions:
        console.print(rich_text("Assumptions:"))
        for line in table.assumptions:
            console.print(rich_text(f"- {line}"))
    console.print()
