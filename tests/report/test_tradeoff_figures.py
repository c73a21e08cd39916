"""The trade-off figures: which points are plotted and on the front, what each figure writes
(captured from the Figure before it becomes PNG bytes), and PNG bytes for odd inputs."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from matplotlib.figure import Figure

from harness.report import tradeoff_figures
from harness.report.tradeoff_figures import (
    NO_ENERGY,
    NO_POINTS,
    breakdown_mib,
    memory_breakdown_png,
    pareto_png,
    pareto_points,
    short_name,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MIB = 2**20
NAN = math.nan


def combos(energy: list[float] | None = None, names: list[str] | None = None) -> pd.DataFrame:
    frame = pd.DataFrame({
        "combination": names or ["fp32", "bf16", "fp16", "fp32+ckpt", "broken"],
        "is_baseline": [True, False, False, False, False],
        "tokens_per_s": [40_000.0, 78_000.0, 76_000.0, 31_000.0, NAN],
        "peak_memory_bytes": [900 * MIB, 610 * MIB, 615 * MIB, 520 * MIB, 100 * MIB],
        "energy_per_token_j": energy if energy is not None else [NAN] * 5,
    })
    return frame


def trials() -> pd.DataFrame:
    return pd.DataFrame({
        "name": ["fp32 #0", "bf16 #0", "crashed #0", "cpu #0"],
        "status": ["ok", "ok", "failed", "ok"],
        "is_baseline": [True, False, False, False],
        "parameter_bytes": [100 * MIB, 50 * MIB, NAN, NAN],
        "gradient_bytes": [100 * MIB, 50 * MIB, NAN, NAN],
        "optimizer_state_bytes": [200 * MIB, 200 * MIB, NAN, NAN],
        "activation_bytes": [400 * MIB, NAN, NAN, NAN],
        "peak_rss_bytes": [900 * MIB, NAN, NAN, 300 * MIB],
    })


@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch) -> list[Figure]:
    """The figures the module hands to `_png`, so tests can read what was drawn."""
    figures: list[Figure] = []
    real_png = tradeoff_figures._png

    def capture(fig: Figure) -> bytes:
        figures.append(fig)
        return real_png(fig)

    monkeypatch.setattr(tradeoff_figures, "_png", capture)
    return figures


def texts(fig: Figure) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def test_short_name_cuts_long_names_to_label_chars_with_an_ellipsis() -> None:
    assert short_name("a" * 52) == "a" * 52
    cut = short_name("b" * 53)
    assert len(cut) == 52 and cut.endswith("…") and cut.startswith("b" * 51)


def test_pareto_points_drops_unmeasured_rows_and_marks_the_front() -> None:
    points = pareto_points(combos(), "peak_memory_bytes")
    assert points["label"].tolist() == ["fp32", "bf16", "fp16", "fp32+ckpt"]  # planned order
    assert points["memory_mib"].tolist() == [900.0, 610.0, 615.0, 520.0]
    # bf16 beats fp32 and fp16 on both; fp32+ckpt uses least memory
    assert points["on_front"].tolist() == [False, True, False, True]


def test_pareto_points_gives_energy_in_millijoules() -> None:
    points = pareto_points(combos(energy=[2e-3, 1e-3, NAN, NAN, NAN]), "peak_memory_bytes")
    assert points["energy_mj"].iloc[:2].tolist() == pytest.approx([2.0, 1.0])
    assert points["energy_mj"].iloc[2:].isna().all()


def test_pareto_points_without_an_energy_column_is_all_nan() -> None:
    points = pareto_points(combos().drop(columns="energy_per_token_j"), "peak_memory_bytes")
    assert points["energy_mj"].isna().all()


def test_pareto_png_with_energy_adds_a_colorbar(drawn: list[Figure]) -> None:
    png = pareto_png(combos(energy=[2e-3, 1e-3, NAN, 3e-3, NAN]), "peak_memory_bytes", "peak")
    assert png.startswith(PNG_SIGNATURE)
    fig = drawn[-1]
    assert [ax.get_ylabel() for ax in fig.axes][1] == "energy per token (mJ)"
    assert NO_ENERGY not in texts(fig)
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend == ["Pareto front", "combination", "baseline", "energy not measured"]


def test_pareto_png_without_energy_says_so_and_has_no_colorbar(drawn: list[Figure]) -> None:
    png = pareto_png(combos(), "peak_memory_bytes", "peak GPU memory")
    assert png.startswith(PNG_SIGNATURE)
    fig = drawn[-1]
    assert len(fig.axes) == 1
    assert NO_ENERGY in texts(fig)
    ax = fig.axes[0]
    assert ax.get_title() == "Throughput against peak memory"
    assert ax.get_xlabel().startswith("peak GPU memory (MiB")
    assert {"fp32", "bf16", "fp16", "fp32+ckpt"} <= set(texts(fig))
    assert "broken" not in texts(fig)  # no throughput: not a point


def test_pareto_png_escapes_dollars_and_keeps_markup_as_text(drawn: list[Figure]) -> None:
    names = ["cost=$5", "<script>alert(1)</script>", "$$", "x" * 70, "gone"]
    assert pareto_png(combos(names=names), "peak_memory_bytes", "peak").startswith(PNG_SIGNATURE)
    written = texts(drawn[-1])
    assert r"cost=\$5" in written and r"\$\$" in written
    assert "<script>alert(1)</script>" in written
    assert "x" * 51 + "…" in written


def test_pareto_png_with_no_plottable_row_says_why(drawn: list[Figure]) -> None:
    frame = combos().assign(tokens_per_s=NAN)
    assert pareto_png(frame, "peak_memory_bytes", "peak").startswith(PNG_SIGNATURE)
    assert texts(drawn[-1]) == [NO_POINTS]


def test_pareto_names_of_close_points_do_not_overlap(drawn: list[Figure]) -> None:
    frame = combos().assign(tokens_per_s=[61_000.0, 60_600.0, 30_000.0, 20_000.0, NAN],
                            peak_memory_bytes=[330 * MIB, 333 * MIB, 900 * MIB, 800 * MIB, NAN])
    pareto_png(frame, "peak_memory_bytes", "peak")
    fig = drawn[-1]
    renderer = fig.canvas.get_renderer()
    boxes = {t.get_text(): t.get_window_extent(renderer) for t in fig.axes[0].texts}
    assert not boxes["fp32"].overlaps(boxes["bf16"])


def test_breakdown_mib_converts_and_adds_missing_parts_as_nan() -> None:
    parts = breakdown_mib(pd.DataFrame({"name": ["a"], "parameter_bytes": [3 * MIB]}))
    assert parts.columns.tolist() == ["parameter_bytes", "gradient_bytes",
                                      "optimizer_state_bytes", "activation_bytes"]
    assert parts.iloc[0, 0] == 3.0 and parts.iloc[0, 1:].isna().all()


def test_memory_breakdown_png_stacks_parts_and_marks_peaks(drawn: list[Figure]) -> None:
    png = memory_breakdown_png(trials(), "peak_rss_bytes", "peak RSS")
    assert png.startswith(PNG_SIGNATURE)
    fig = drawn[-1]
    ax = fig.axes[0]
    assert ax.get_title() == "Where the memory went"
    assert ax.yaxis_inverted()  # planned order reads top to bottom
    # " #0", shared by every name, is left out: labels keep what tells trials apart
    assert [t.get_text() for t in ax.get_yticklabels()] == [
        "fp32 (baseline)", "bf16", "crashed", "cpu"]
    # the first trial's four segments end where its parts add up: 800 MiB
    first_row = [p for p in ax.patches if abs(p.get_y() + p.get_height() / 2) < 1e-9]
    assert max(p.get_x() + p.get_width() for p in first_row) == pytest.approx(800.0)
    (peak_line,) = [line for line in ax.lines if line.get_label() == "peak (peak RSS)"]
    assert peak_line.get_xdata().tolist() == [900.0, 300.0]
    assert peak_line.get_ydata().tolist() == [0, 3]
    written = texts(fig)
    assert "failed" in written and "not measured" in written  # all four parts missing
    assert "peak 900.0 MiB" in written
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "peak (peak RSS)" in legend and "gradients" in legend


def test_memory_breakdown_png_renders_an_empty_frame(drawn: list[Figure]) -> None:
    png = memory_breakdown_png(trials().iloc[:0], "peak_rss_bytes", "peak RSS")
    assert png.startswith(PNG_SIGNATURE)
    assert texts(drawn[-1]) == ["no trials"]


def test_memory_breakdown_png_escapes_dollars(drawn: list[Figure]) -> None:
    frame = trials().assign(name=["a$b", "<script>", "$", "c"])
    assert memory_breakdown_png(frame, "peak_rss_bytes", "peak RSS").startswith(PNG_SIGNATURE)
    labels = [t.get_text() for t in drawn[-1].axes[0].get_yticklabels()]
    assert labels[:3] == [r"a\$b (baseline)", "<script>", r"\$"]


def test_labels_drop_the_words_every_name_shares():
    from harness.report.tradeoff_figures import distinguishing

    names = ["precision=fp32 compile=false grad_accum=1", "precision=bf16 compile=false grad_accum=4"]
    assert distinguishing(names) == ["precision=fp32 grad_accum=1", "precision=bf16 grad_accum=4"]
    assert distinguishing(["only one name"]) == ["only one name"]
