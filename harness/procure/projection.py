"""Projected time and cost of training a target model on the machine a results path measured.

Model FLOPs of the target: D x (6N + 12·L·d_model·T) (PaLM, Chowdhery et al. 2022, appendix B:
6N for the matmuls of forward and backward, 12·L·H·Q·T for attention with H·Q = d_model, full
non-causal T x T), the same count the harness's MFU uses. Wall time on `devices` devices:

    time = FLOPs / (devices x peak FLOP/s x MFU)

The MFU is measured, not assumed: it is the MFU of one ok trial of the results, the basis.
The basis is the trial whose model has the most parameters (notes.parameters), because MFU
grows with model size (bigger matmuls keep the tensor cores busier) and the largest measured
model is the nearest to a target of billions of parameters; between trials of that size the
highest MFU wins, the configuration one would train with. Carrying that MFU to a 70B model on
a thousand devices is an assumption, printed as one: parallelism, communication and batch size
change it both ways.

The peak is the device's peak for the basis trial's compute dtype from `harness.peaks`: the
datasheet table for a GPU (the table the trial's MFU was computed against, so peak x MFU is the
FLOP/s the trial achieved); for a CPU, the peak measured with the trial, stored in its notes
(harness.peaks would time this machine's CPU, not the one that ran the trial).

Energy: the J per model FLOP measured on the basis trial (energy_per_token_j /
flops_per_token), times the target's FLOPs. At the same MFU and the same power per device the
energy per FLOP is the same, so this rests on the MFU assumption and no other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness import peaks
from harness.analysis.samples import is_busy
from harness.hardware import DeviceFacts
from harness.procure.compare import finite_or_none
from harness.procure.targets import Target
from harness.procure.prices import LoadedPrices, energy_usd, price_for


@dataclass(frozen=True)
class Basis:
    """The measured trial a projection stands on."""

    trial: str
    parameters: float | None  # notes.parameters of the trial's model
    precision: str
    mfu: float
    peak: peaks.Peak
    device_name: str
    joules_per_flop: float | None
    energy_why: str | None  # why joules_per_flop is None


@dataclass(frozen=True)
class Projection:
    results: str
    hardware: str
    target: Target
    devices: int
    basis: Basis | None
    why: str | None = None  # why there is no basis (and so no projection)
    seconds: float | None = None
    device_hours: float | None = None
    device_usd: float | None = None
    energy_j: float | None = None  # at the devices, before the PUE
    energy_usd: float | None = None
    price_key: str | None = None
    missing: dict[str, str] = field(default_factory=dict)  # figure -> why it has no value

    @property
    def total_usd(self) -> float | None:
        if self.device_usd is None:
            return None
        return self.device_usd + (self.energy_usd or 0.0)


def training_seconds(flops: float, devices: int, peak_tflops: float, mfu: float) -> float:
    """Wall time of `flops` model FLOPs on `devices` devices, each at `mfu` of its peak."""
    if devices < 1 or peak_tflops <= 0 or mfu <= 0:
        raise ValueError(f"needs devices >= 1, peak > 0 and mfu > 0, got {devices}, "
                         f"{peak_tflops}, {mfu}")
    return flops / (devices * peak_tflops * 1e12 * mfu)


def choose_basis(trials: list[dict[str, Any]]) -> Basis | str:
    """The basis trial (see the module docstring), or why there is none."""
    candidates = []
    for trial in trials:
        mfu = finite_or_none((trial.get("metrics") or {}).get("mfu"))
        if trial["status"] != "ok" or mfu is None or mfu <= 0 or is_busy(trial):
            continue
        peak = trial_peak(trial)
        if peak is not None:
            parameters = finite_or_none((trial.get("notes") or {}).get("parameters"))
            candidates.append(((parameters or 0.0, mfu), trial, peak))
    if not candidates:
        return "no ok trial with a measured MFU and a known peak"
    (parameters, mfu), trial, peak = max(candidates, key=lambda c: c[0])
    metrics = trial.get("metrics") or {}
    unmeasured = trial.get("unmeasured") or {}
    per_token = finite_or_none(metrics.get("energy_per_token_j"))
    flops = finite_or_none(metrics.get("flops_per_token"))
    joules_per_flop = per_token / flops if per_token and flops else None
    energy_why = None if joules_per_flop else str(
        unmeasured.get("energy_per_token_j") or unmeasured.get("flops_per_token")
        or "energy per token or FLOPs per token not recorded")
    return Basis(trial["name"], parameters or None, _precision(trial), mfu, peak,
                 str((trial.get("env") or {}).get("device_name") or "unknown device"),
                 joules_per_flop, energy_why)


def trial_peak(trial: dict[str, Any]) -> peaks.Peak | None:
    """The peak of the trial's device for its compute dtype (see the module docstring)."""
    try:
        dtype = peaks.compute_dtype(_precision(trial))
    except ValueError:
        return None
    env = trial.get("env") or {}
    if env.get("device") == "cuda":
        return peaks.peak_for(DeviceFacts("cuda", str(env.get("device_name") or "")), dtype)
    notes = trial.get("notes") or {}
    tflops = finite_or_none(notes.get("peak_tflops"))
    if tflops is None or notes.get("peak_dtype") != dtype:
        return None
    return peaks.Peak(tflops, dtype, str(notes.get("peak_source") or "recorded with the trial"),
                      measured=bool(notes.get("peak_measured", True)))


def project(target: Target, trials: list[dict[str, Any]], devices: int, prices: LoadedPrices,
            results: str) -> Projection:
    """Time, device-hours, energy and $ of training `target` on `devices` of the machine that
    produced `trials`."""
    basis = choose_basis(trials)
    if isinstance(basis, str):
        names = [(t.get("env") or {}).get("device_name") for t in trials]
        hardware = next((str(n) for n in names if n), "unknown device")
        return Projection(results, hardware, target, devices, None, why=basis)
    seconds = training_seconds(target.total_flops, devices, basis.peak.tflops, basis.mfu)
    device_hours = devices * seconds / 3600
    missing: dict[str, str] = {}
    match = price_for(prices.book, basis.device_name)
    device_usd = None
    if match is None:
        missing["device_usd"] = f"no price for {basis.device_name} in {prices.path}"
    else:
        device_usd = device_hours * match.price.usd_per_device_hour
    energy_j = energy_cost = None
    if basis.joules_per_flop is None:
        missing["energy"] = basis.energy_why or "energy not measured"
    else:
        energy_j = basis.joules_per_flop * target.total_flops
        energy_cost = energy_usd(energy_j, prices.book.electricity.usd_per_kwh, prices.book.pue)
    return Projection(results, basis.device_name, target, devices, basis, None, seconds,
                      device_hours, device_usd, energy_j, energy_cost,
                      match.key if match else None, missing)


def _precision(trial: dict[str, Any]) -> str:
    techniques = (trial.get("spec") or {}).get("techniques") or {}
    return str(techniques.get("precision") or (trial.get("params") or {}).get("precision")
               or "fp32")

