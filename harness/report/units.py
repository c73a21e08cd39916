"""Numbers in the units a reader thinks in. A missing figure is DASH, never 0."""

from __future__ import annotations

import math

DASH = "—"  # a figure that was not measured, or a trial that did not finish

_KIB, _MIB, _GIB = 2**10, 2**20, 2**30


def _missing(value: float | None) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _non_finite(value: float) -> str | None:
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return None


def tokens_per_s(value: float | None) -> str:
    """79767.9 -> "79.8 k"; the column header carries the unit (tokens/s)."""
    if _missing(value):
        return DASH
    if (special := _non_finite(value)) is not None:
        return special
    if abs(value) >= 1e6:
        return f"{value / 1e6:.2f} M"
    if abs(value) >= 1e3:
        return f"{value / 1e3:.1f} k"
    return f"{value:.0f}"


def duration(seconds: float | None) -> str:
    if _missing(seconds):
        return DASH
    if (special := _non_finite(seconds)) is not None:
        return special
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def step_time(median_s: float | None, p10_s: float | None, p90_s: float | None) -> str:
    """The median, then the p10-p90 spread in the median's unit: "12.4 ms (11.6–13.3)"."""
    if _missing(median_s):
        return DASH
    text = duration(median_s)
    if _missing(p10_s) or _missing(p90_s) or not math.isfinite(median_s):
        return text
    scale, unit = (1e6, "µs") if median_s < 1e-3 else (1e3, "ms") if median_s < 1 else (1, "s")
    digits = 0 if unit == "µs" else 1 if unit == "ms" else 2
    return f"{text} ({p10_s * scale:.{digits}f}–{p90_s * scale:.{digits}f})"


def size(num_bytes: float | None) -> str:
    """Binary units: KiB below 1 MiB, MiB below 1 GiB, GiB above."""
    if _missing(num_bytes):
        return DASH
    if (special := _non_finite(num_bytes)) is not None:
        return special
    if abs(num_bytes) < _MIB:
        return f"{num_bytes / _KIB:.1f} KiB"
    if abs(num_bytes) < _GIB:
        return f"{num_bytes / _MIB:.1f} MiB"
    return f"{num_bytes / _GIB:.2f} GiB"


def ratio(value: float | None) -> str:
    if _missing(value):
        return DASH
    if (special := _non_finite(value)) is not None:
        return special
    return f"{value:.2f}×"


def loss(value: float | None) -> str:
    if _missing(value):
        return DASH
    if (special := _non_finite(value)) is not None:
        return special
    return f"{value:.3f}"


def plain(value: object) -> str:
    """A fingerprint or spec value: None -> DASH, booleans lower-case as in the YAML."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return DASH
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    return str(value)


def _guarded(value: float | None) -> str | None:
    if _missing(value):
        return DASH
    return _non_finite(value)


def seconds(value: float | None) -> str:
    return duration(value)


def count(value: float | None) -> str:
    """A count stored as a float (skipped steps, graph breaks, a loss scale): 3 -> "3"."""
    return _guarded(value) or f"{value:,.0f}"


def number(value: float | None) -> str:
    """Three significant digits: 0.0532 -> "0.0532", 412.7 -> "413"."""
    return _guarded(value) or f"{value:.3g}"


def gflop(flops: float | None) -> str:
    """FLOPs as GFLOP with three significant digits."""
    return _guarded(flops) or f"{flops / 1e9:.3g}"


def percent(fraction: float | None) -> str:
    """0.4123 -> "41.2%"."""
    return _guarded(fraction) or f"{100 * fraction:.1f}%"


def joules(value: float | None) -> str:
    """1500.2 -> "1,500 J"; 0.0153 -> "0.0153 J"."""
    return _guarded(value) or (f"{value:,.0f} J" if abs(value) >= 100 else f"{value:.3g} J")


def flops(value: float | None) -> str:
    """A FLOP count with an SI prefix and three significant digits: 1.23e15 -> "1.23 PFLOP"."""
    if (special := _guarded(value)) is not None:
        return special
    for scale, prefix in ((1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {prefix}FLOP"
    return f"{value:.3g} FLOP"


def tokens(value: float | None) -> str:
    """A token count in thousands or millions: 76800 -> "76.8 k" (as tokens/s without the /s)."""
    return tokens_per_s(value)


def signed_percent(fraction: float | None) -> str:
    """A change: 0.0123 -> "+1.2%", -0.5 -> "-50.0%"."""
    return _guarded(fraction) or f"{100 * fraction:+.1f}%"
