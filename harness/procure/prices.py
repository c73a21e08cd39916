"""The prices file: what a device-hour and a kilowatt-hour cost, each with its date and source.

A price without a date and a source is not a price a buyer can check, so both are required.
The file is strict like a scenario file (an unknown key is an error) and every problem is one
`InputError` naming the file, the line and the dotted field.

Also here: what a price makes of a measured figure ($ per million tokens), pure arithmetic.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from harness.scenario.loader import read_yaml_mapping, validation_error
from harness.scenario.schema import Section

J_PER_KWH = 3.6e6  # as harness.metrics.energy; not imported from there: that loads torch

_DATE = re.compile(r"^(\d{4})-(\d{2})(?:-(\d{2}))?$")


class DatedPrice(Section):
    """When the price was stated (YYYY-MM or YYYY-MM-DD) and where (a URL or a citation)."""

    date: str
    source: str = Field(min_length=1)

    @field_validator("date", mode="before")
    @classmethod
    def _check_date(cls, value: Any) -> str:
        # YAML reads an unquoted 2024-10-17 as a date: accept it, keep the text form
        if isinstance(value, datetime.date):
            return value.isoformat()
        match = _DATE.match(str(value)) if isinstance(value, str) else None
        if match is None or not _is_calendar_date(*match.groups()):
            raise PydanticCustomError("date_form", "expected a date YYYY-MM or YYYY-MM-DD, got "
                                      "'{value}'", {"value": str(value)})
        return value


class DevicePrice(DatedPrice):
    usd_per_device_hour: float = Field(gt=0)
    note: str | None = None


class ElectricityPrice(DatedPrice):
    usd_per_kwh: float = Field(gt=0)


class PriceBook(Section):
    """`devices` keys are matched against a trial's device name: see `price_for`."""

    devices: dict[str, DevicePrice]
    electricity: ElectricityPrice
    pue: float = Field(1.0, ge=1.0)  # the datacenter's total power over the IT power


@dataclass(frozen=True)
class LoadedPrices:
    book: PriceBook
    path: str


@dataclass(frozen=True)
class DeviceMatch:
    key: str  # the prices file's key that matched
    price: DevicePrice


def load_prices(path: str | Path) -> LoadedPrices:
    path = Path(path)
    _, data, lines = read_yaml_mapping(
        path, "a prices file is a mapping with devices, electricity and pue", field="--prices")
    try:
        book = PriceBook.model_validate(data)
    except ValidationError as err:
        raise validation_error(err, str(path), lines, ()) from None
    return LoadedPrices(book, str(path))


def price_for(book: PriceBook, device_name: str) -> DeviceMatch | None:
    """The price whose key is found in `device_name` (case-insensitive); where several are,
    the longest key wins, so "H100 PCIe" beats "H100" for "NVIDIA H100 PCIe".

    A key must not be cut out of a longer word or number: "L4" is not found in "L40S", nor
    "A10" in "A100", which a plain substring test would price as the cheaper part."""
    keys = [key for key in book.devices if key_matches(key, device_name)]
    if not keys:
        return None
    key = max(keys, key=len)
    return DeviceMatch(key, book.devices[key])


def key_matches(key: str, device_name: str) -> bool:
    pattern = rf"(?<![a-z0-9]){re.escape(key.strip().lower())}(?![a-z0-9])"
    return bool(key.strip()) and re.search(pattern, device_name.lower()) is not None


def device_usd_per_million_tokens(usd_per_device_hour: float, devices: int,
                                  tokens_per_s: float) -> float:
    """$ for the device-time of one million tokens: the hourly price of all `devices`, per
    second, over the tokens trained in that second."""
    if tokens_per_s <= 0 or devices < 1:
        raise ValueError(f"needs tokens_per_s > 0 and devices >= 1, got {tokens_per_s}, {devices}")
    return usd_per_device_hour * devices / 3600 / tokens_per_s * 1e6


def energy_usd_per_million_tokens(energy_per_token_j: float, usd_per_kwh: float,
                                  pue: float = 1.0) -> float:
    """$ for the electricity of one million tokens, datacenter overhead (PUE) included."""
    return energy_per_token_j * 1e6 / J_PER_KWH * pue * usd_per_kwh


def energy_usd(joules: float, usd_per_kwh: float, pue: float = 1.0) -> float:
    """$ for `joules` measured at the devices, drawn from the wall through the datacenter."""
    return joules / J_PER_KWH * pue * usd_per_kwh


def describe(key: str, price: DatedPrice, amount: str) -> str:
    """'H100 80GB HBM3: $3.99 per device-hour (2026-09-20, https://...)' for the assumptions."""
    note = f"; {price.note}" if getattr(price, "note", None) else ""
    return f"{key}: {amount} ({price.date}, {price.source}{note})"


def _is_calendar_date(year: str, month: str, day: str | None) -> bool:
    try:
        datetime.date(int(year), int(month), int(day or 1))
    except ValueError:
        return False
    return True
