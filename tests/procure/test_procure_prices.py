"""The prices file: strict schema, one-line errors with file:line: field, device matching,
and the $ per million tokens arithmetic against figures worked out by hand."""

from __future__ import annotations

from pathlib import Path

import pytest
from procure_fixture_stores import PRICES_YAML

from harness.errors import InputError
from harness.procure.prices import (
    device_usd_per_million_tokens,
    energy_usd,
    energy_usd_per_million_tokens,
    load_prices,
    price_for,
)

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "prices.yaml"
    path.write_text(text)
    return path


def error_of(path: Path) -> str:
    with pytest.raises(InputError) as caught:
        load_prices(path)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_the_example_prices_file_loads_and_every_price_is_dated_and_sourced():
    prices = load_prices(REPO / "scenarios" / "prices.yaml")
    assert len(prices.book.devices) >= 4
    for price in [*prices.book.devices.values(), prices.book.electricity]:
        assert price.date[:4].isdigit() and price.source.strip()
        assert "http" in price.source  # a source a buyer can open
    assert price_for(prices.book, "NVIDIA H100 80GB HBM3") is not None


def test_fixture_prices_parse_with_quoted_and_unquoted_dates(tmp_path):
    prices = load_prices(write(tmp_path, PRICES_YAML))
    assert prices.book.devices["H100 80GB HBM3"].usd_per_device_hour == 3.6
    assert prices.book.devices["H100 80GB HBM3"].date == "2026-09"
    assert prices.book.devices["A100-SXM4-80GB"].date == "2026-09-20"  # YAML read it as a date
    assert prices.book.electricity.usd_per_kwh == 0.10
    assert prices.book.pue == 1.0


def test_unknown_top_level_key_names_file_line_and_field(tmp_path):
    path = write(tmp_path, PRICES_YAML + "electricty: 3\n")
    assert error_of(path) == (f"{path}:14: electricty: unknown key 'electricty' "
                              "(did you mean 'electricity'?)")


def test_unknown_key_inside_a_device_names_the_dotted_field(tmp_path):
    text = PRICES_YAML.replace("    usd_per_device_hour: 1.8\n",
                               "    usd_per_device_hour: 1.8\n    usd_per_hour: 2\n")
    path = write(tmp_path, text)
    assert error_of(path) == (f"{path}:8: devices.A100-SXM4-80GB.usd_per_hour: unknown key "
                              "'usd_per_hour' (did you mean 'usd_per_device_hour'?)")


def test_missing_date_is_one_line_at_the_device(tmp_path):
    path = write(tmp_path, PRICES_YAML.replace("    date: 2026-09\n", ""))
    assert error_of(path) == f"{path}:2: devices.H100 80GB HBM3.date: required field is missing"


def test_missing_source_of_the_electricity_price(tmp_path):
    path = write(tmp_path, PRICES_YAML.replace("  source: https://example.com/eia\n", ""))
    assert error_of(path) == f"{path}:10: electricity.source: required field is missing"


@pytest.mark.parametrize("bad", ["2024-13", "'24-10-01'", "last year", "'2024-02-30'"])
def test_a_date_must_be_a_calendar_month_or_day(tmp_path, bad):
    path = write(tmp_path, PRICES_YAML.replace("date: 2024-10", f"date: {bad}"))
    message = error_of(path)
    assert message.startswith(f"{path}:12: electricity.date: expected a date YYYY-MM or "
                              "YYYY-MM-DD, got ")


def test_an_unquoted_impossible_date_is_one_line_not_a_traceback(tmp_path):
    # PyYAML itself turns an unquoted 2024-02-30 into a date and fails
    path = write(tmp_path, PRICES_YAML.replace("date: 2024-10", "date: 2024-02-30"))
    assert error_of(path) == f"{path}:12: invalid YAML: day is out of range for month"


def test_a_price_must_be_positive_and_pue_at_least_one(tmp_path):
    path = write(tmp_path, PRICES_YAML.replace("usd_per_kwh: 0.10", "usd_per_kwh: 0"))
    assert error_of(path).startswith(f"{path}:11: electricity.usd_per_kwh: ")
    path = write(tmp_path, PRICES_YAML + "pue: 0.9\n")
    assert error_of(path).startswith(f"{path}:14: pue: ")


def test_a_missing_prices_file(tmp_path):
    assert error_of(tmp_path / "nope.yaml") == f"{tmp_path / 'nope.yaml'}: --prices: no such file"


def test_device_keys_match_case_insensitively_and_the_longest_wins(tmp_path):
    keys = {"H100 80GB HBM3": 3.6, "H100": 2.0, "h100 pcie": 1.5, "L4": 0.5, "A10": 0.9}
    devices = "".join(f"  {key}:\n    usd_per_device_hour: {usd}\n    date: 2026-01\n"
                      f"    source: s\n" for key, usd in keys.items())
    electricity = PRICES_YAML[PRICES_YAML.index("electricity:"):]
    book = load_prices(write(tmp_path, "devices:\n" + devices + electricity)).book
    assert price_for(book, "NVIDIA H100 80GB HBM3").key == "H100 80GB HBM3"
    assert price_for(book, "NVIDIA H100 PCIe").key == "h100 pcie"
    assert price_for(book, "NVIDIA H100 NVL").key == "H100"
    assert price_for(book, "NVIDIA L4").key == "L4"
    # a key never cuts a longer part number: L4 is not L40S, A10 is not A100
    assert price_for(book, "NVIDIA L40S") is None
    assert price_for(book, "NVIDIA A100 80GB PCIe") is None
    assert price_for(book, "NVIDIA A10").key == "A10"
    assert price_for(book, "Test CPU") is None


def test_device_cost_per_million_tokens_by_hand():
    # $3.60/h for one device at 1000 tokens/s: 1e6 tokens take 1000 s = $1.00
    assert device_usd_per_million_tokens(3.6, 1, 1000.0) == pytest.approx(1.0)
    # two devices at the same global rate cost twice as much
    assert device_usd_per_million_tokens(3.6, 2, 1000.0) == pytest.approx(2.0)
    with pytest.raises(ValueError):
        device_usd_per_million_tokens(3.6, 1, 0.0)


def test_energy_cost_per_million_tokens_by_hand():
    # 1 mJ/token: 1e6 tokens = 1000 J = 2.78e-4 kWh; at $0.10/kWh, $2.78e-5
    assert energy_usd_per_million_tokens(1e-3, 0.10) == pytest.approx(2.7778e-5, rel=1e-4)
    # a PUE of 1.5 draws half as much again from the wall
    assert energy_usd_per_million_tokens(1e-3, 0.10, pue=1.5) == pytest.approx(4.1667e-5, rel=1e-4)
    assert energy_usd(3.6e6, 0.10) == pytest.approx(0.10)  # one kWh
