"""`harness procure` end to end on hand-written results: two machines side by side with a trial
present on one only, a machine without a price, JSON exports, the projection and bad input."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest
from procure_fixture_stores import (
    A100,
    BF16,
    CPU,
    FP8,
    FP8_SKIP,
    H100,
    NO_ENERGY,
    PRICES_YAML,
    a100_store,
    cpu_store,
    env,
    h100_store,
    write_run,
)

from harness.errors import InputError
from harness.procure import command
from harness.procure.arguments import add_arguments
from harness.procure.compare import load_sources, rows_frame, side_by_side
from harness.procure.prices import load_prices
from harness.store import export_trials


@pytest.fixture
def paths(tmp_path: Path) -> dict[str, Path]:
    prices = tmp_path / "prices.yaml"
    prices.write_text(PRICES_YAML)
    h100_store(tmp_path / "h100.db")
    a100_store(tmp_path / "a100.db")
    cpu_store(tmp_path / "cpu.db")
    return {"prices": prices, "h100": tmp_path / "h100.db", "a100": tmp_path / "a100.db",
            "cpu": tmp_path / "cpu.db"}


def procure(capsys, *argv: object) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="harness procure")
    add_arguments(parser)
    code = command.run(parser.parse_args([str(a) for a in argv]))
    out, err = capsys.readouterr()
    return code, out, err


def markdown_rows(out: str, title_part: str) -> list[dict[str, str]]:
    """The rows of the markdown table under the heading containing `title_part`."""
    section = out[out.index(title_part):]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    end = next((i for i, line in enumerate(lines[2:], 2) if not line.startswith("|")), len(lines))
    cells = [[c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]] for line in lines[:end]]
    header, body = cells[0], cells[2:]
    return [dict(zip(header, row)) for row in body]


def footnote(out: str, cell: str, title_part: str = "side by side") -> str:
    """The footnote a cell's [n] points to, under the table whose heading has `title_part`."""
    number = re.search(r"\[(\d+)\]", cell).group(1)
    section = out[out.index(title_part):]
    return re.search(rf"^- \[{number}\] (.*)$", section, re.MULTILINE).group(1)


def test_two_machines_side_by_side_with_costs_by_hand(paths):
    prices = load_prices(paths["prices"])
    scenario, sources = load_sources([paths["h100"], paths["a100"]])
    frame = rows_frame(side_by_side(sources, prices)).set_index(["trial", "hardware"])
    h100, a100 = frame.loc[(BF16, H100)], frame.loc[(BF16, A100)]
    assert scenario == "shootout"
    # H100: $3.60/h, 1 device, 1000 tokens/s -> $1.00; + 1 mJ/token at $0.10/kWh -> $2.78e-5
    assert h100["energy_usd_per_mtok"] == pytest.approx(2.7778e-5, rel=1e-4)
    assert h100["usd_per_mtok"] == pytest.approx(1.0 + 2.7778e-5, rel=1e-6)
    assert h100["tokens_per_j"] == pytest.approx(1000.0)
    # A100: $1.80/h x 2 devices at 500 tokens/s (global) -> $2.00; energy unmeasured
    assert (a100["devices"], a100["tokens_per_s_per_device"]) == (2, 250.0)
    assert a100["usd_per_mtok"] == pytest.approx(2.0)
    assert a100[["tokens_per_j", "energy_usd_per_mtok"]].isna().all()


def test_markdown_shows_a_trial_present_on_one_machine_and_reasons_not_zeros(capsys, paths):
    code, out, err = procure(capsys, paths["h100"], paths["a100"], "--prices", paths["prices"],
                             "--format", "markdown")
    assert (code, err) == (0, "")
    rows = markdown_rows(out, "side by side")
    assert [(r["trial"], r["hardware"]) for r in rows] == [
        (BF16, H100), (BF16, A100), (FP8, H100), (FP8, A100)]
    h100_bf16, a100_bf16, h100_fp8, a100_fp8 = rows
    assert (h100_bf16["$ per M tokens"], h100_bf16["of which energy"]) == ("$1.00", "$2.78e-05")
    assert (a100_bf16["$ per M tokens"], a100_bf16["devices"]) == ("$2.00", "2")
    assert footnote(out, a100_bf16["tokens/J"]) == NO_ENERGY
    assert footnote(out, a100_bf16["of which energy"]) == NO_ENERGY
    assert h100_fp8["tokens/s"] == "1.5 k" and h100_fp8["MFU"] == "30.0%"
    # fp8 never ran on the A100: its row says why in every column, never a 0
    assert footnote(out, a100_fp8["tokens/s"]) == f"skipped: {FP8_SKIP}"
    assert all(cell.startswith("—") for key, cell in a100_fp8.items()
               if key not in ("trial", "hardware", "results"))
    side = markdown_rows(out, "side by side")
    assert not [cell for row in side for cell in row.values() if cell in ("0", "$0.00", "0.0%")]
    assert "prices change" in out and "https://example.com/h100" in out


def test_a_device_without_a_price_has_no_cost_and_says_why(capsys, paths):
    code, out, _ = procure(capsys, paths["h100"], paths["cpu"], "--prices", paths["prices"],
                           "--format", "markdown")
    assert code == 0
    cpu_row = next(r for r in markdown_rows(out, "side by side") if r["hardware"] == CPU)
    reason = f"no price for {CPU} in {paths['prices']}"
    assert footnote(out, cpu_row["$ per M tokens"]) == reason
    assert footnote(out, cpu_row["of which energy"]) == reason
    assert cpu_row["tokens/s"] == "50"


def test_json_exports_compare_like_databases(capsys, paths, tmp_path):
    store = a100_store(tmp_path / "again.db")
    export = tmp_path / "a100.json"
    export_trials(store.trials("run-a100", with_series=True), "json", export)
    _, from_db, _ = procure(capsys, paths["h100"], paths["a100"], "--prices", paths["prices"],
                            "--format", "markdown")
    _, from_json, _ = procure(capsys, paths["h100"], export, "--prices", paths["prices"],
                              "--format", "markdown")
    def without_path(out: str) -> list[dict[str, str]]:
        return [{k: v for k, v in row.items() if k != "results"}
                for row in markdown_rows(out, "side by side")]

    assert without_path(from_json) == without_path(from_db)


def test_a_path_without_the_scenario_is_one_line_error(capsys, paths, tmp_path):
    other = tmp_path / "other.db"
    write_run(other, "run-x", env("cuda", H100), [], scenario="shootot")
    with pytest.raises(InputError) as caught:
        procure(capsys, paths["h100"], other, "--prices", paths["prices"])
    assert str(caught.value) == (f"{other}: --scenario: no run of scenario 'shootout' "
                                 "(did you mean 'shootot'?)")


def test_scenario_defaults_to_the_first_paths_latest_run(capsys, paths):
    write_run(paths["a100"], "run-later", env("cuda", A100), [], scenario="newer",
              started_at="2026-11-20T00:00:00+00:00")
    with pytest.raises(InputError, match="no run of scenario 'newer'"):
        procure(capsys, paths["a100"], paths["h100"], "--prices", paths["prices"])
    code, out, _ = procure(capsys, paths["a100"], paths["h100"], "--prices", paths["prices"],
                           "--scenario", "shootout", "--format", "markdown")
    assert code == 0 and "run-a100" in out


def test_projection_of_llama_2_on_each_machine(capsys, paths):
    code, out, _ = procure(capsys, paths["h100"], paths["a100"], paths["cpu"], "--prices",
                           paths["prices"], "--target", "llama-2-70b", "--devices", "1000",
                           "--format", "markdown")
    assert code == 0
    h100, a100, cpu = markdown_rows(out, "projected training of llama-2-70b")
    # 6ND + D·12·L·d_model·T = 9.04e23 FLOPs / (1000 x 989.4e12 x 0.40) s = 26.5 days
    seconds = (8.4e23 + 2e12 * 12 * 80 * 8192 * 4096) / (1000 * 989.4e12 * 0.40)
    assert h100["time"] == f"{seconds / 86400:,.1f} days"
    assert h100["device-hours"] == f"{1000 * seconds / 3600:,.0f}"
    assert h100["device $"] == f"${1000 * seconds / 3600 * 3.6:,.0f}"
    assert (h100["basis trial"], h100["MFU"], h100["peak"]) == (BF16, "40.0%",
                                                                "989.4 TFLOP/s bf16")
    assert a100["peak"] == "312.0 TFLOP/s bf16"
    projected = "projected training"
    assert footnote(out, a100["energy $"], projected) == NO_ENERGY
    assert footnote(out, cpu["time"], projected) == (
        "no ok trial with a measured MFU and a known peak")
    assert "is an assumption" in out and "Not counted: failed runs and restarts" in out
    assert "D × (6N + 12·L·d_model·T) = 9.04e+23" in out


def test_explicit_target_needs_every_dimension(capsys, paths):
    with pytest.raises(InputError) as caught:
        procure(capsys, paths["h100"], "--prices", paths["prices"], "--params", "70B",
                "--tokens", "2T")
    assert str(caught.value) == ("--layers: a target spelled out needs --layers, --d-model, "
                                 "--seq-len too")
    code, out, _ = procure(capsys, paths["h100"], "--prices", paths["prices"], "--params", "70B",
                           "--tokens", "2T", "--layers", "80", "--d-model", "8192", "--seq-len",
                           "4096", "--format", "markdown")
    assert code == 0 and "= 9.04e+23" in out


def test_target_and_explicit_dimensions_exclude_each_other(capsys, paths):
    with pytest.raises(InputError, match="--target and --params exclude each other"):
        procure(capsys, paths["h100"], "--prices", paths["prices"], "--target", "gpt-3-175b",
                "--params", "1e9")
    with pytest.raises(InputError, match=r"unknown target 'lama-2-70b' \(did you mean"):
        procure(capsys, paths["h100"], "--prices", paths["prices"], "--target", "lama-2-70b")


def test_rich_table_format_prints_the_same_figures(capsys, paths):
    code, out, _ = procure(capsys, paths["h100"], paths["a100"], "--prices", paths["prices"])
    assert code == 0
    assert "$1.00" in out and "$2.00" in out and H100 in out and A100 in out
    assert NO_ENERGY in out


def test_the_command_line_runs_procure(capsys, paths):
    from harness.cli import main

    code = main(["procure", str(paths["h100"]), str(paths["a100"]), "--prices", str(paths["prices"]),
                 "--target", "llama-2-70b", "--format", "markdown"])
    out = capsys.readouterr().out
    assert code == 0
    assert "projected training of llama-2-70b" in out


def test_a_trial_measured_on_a_busy_machine_is_left_out_and_says_why(tmp_path):
    from procure_fixture_stores import ok, spec

    busy = ok("t-bf16", 4000.0, mfu=0.5, parameters=1e9, energy_per_token_j=1e-3)
    busy.warnings = [{"code": "machine-busy", "message": "other processes used 45% of the 16 CPUs"}]
    path = tmp_path / "busy.db"
    write_run(path, "busy", env("cuda", H100), [(spec(BF16, "bf16"), busy)])
    prices = tmp_path / "prices.yaml"
    prices.write_text(PRICES_YAML)
    _, sources = load_sources([path])
    (row,) = side_by_side(sources, load_prices(prices))
    assert row.figures == {}
    assert row.missing["tokens_per_s"] == ("measured on a busy machine, left out: other processes "
                                           "used 45% of the 16 CPUs")
