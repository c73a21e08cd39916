"""Energy over a window, Zeus's way: the difference of NVML's cumulative energy counter
(nvmlDeviceGetTotalEnergyConsumption, mJ) read at the window's two edges. Where the counter cannot
answer -- a GPU older than Volta, a window shorter than its ~100 ms update period, a counter that
did not move while the GPU drew power -- the power sampled in the background is integrated instead
(trapezoid over the samples, the window's edges included) and the method says so.

The sampler also records utilisation, SM and memory clocks, temperature, memory used and clock-event
(throttle) reasons; the power limit and the compute processes on the GPU are read at both edges.
NVML's figures are the board's: another process on the same GPU is inside them, and the notes name
it. The host's figures (RAPL package energy, CPU utilisation) come from harness.metrics.rapl over
the same window.

The meter synchronises the device on entering and leaving (as MemoryMeter does), so queued
kernels are not left outside the window whatever its place in a `with` stack. It is re-enterable:
NVML handles and RAPL zones are found once; each window replaces `reading`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from harness.metrics.nvml import (GpuProbe, NvmlUnavailable, PowerSampler, find_gpu, load_nvml,
                                  throttle_shares, torch_pci_bus_id, visible_devices)
from harness.metrics.rapl import HostEnergy, HostEnergyMeter

COUNTER = "nvml-energy-counter"
SAMPLING = "power-sampling"
COUNTER_PERIOD_S = 0.1  # the counter updates every 20-100 ms (Zeus; PETSc's energy-meter notes)
MAX_BOARD_W = 5000.0  # no GPU board draws this: a larger counter delta is a reset, not energy
ENERGY_METRICS = ("energy_j", "energy_per_token_j", "tokens_per_kwh", "avg_power_w", "max_power_w")
NO_GPU = "no GPU: NVML measures NVIDIA GPUs only"
COUNTER_ERROR = ("board-level counter: the whole GPU, other tenants of it included; "
                 "1 mJ steps, updated every 20-100 ms")
J_PER_KWH = 3.6e6


def sampling_error(hz: float) -> str:
    return (f"power sampled at {hz:g} Hz and integrated; on A100/H100 NVML's power reading averages "
            "only ~25% of the time (Yang et al., SC24, arXiv 2312.02741)")


@dataclass(frozen=True)
class GpuEnergy:
    """One GPU over one window."""

    index: int  # torch's cuda:<index>
    pci_bus_id: str
    energy_j: float | None  # None: neither a usable counter nor power readings
    method: str | None  # COUNTER or SAMPLING
    fallback: str | None  # why not the counter (or, with energy_j None, why nothing)
    max_power_w: float | None  # largest power sample
    power_limit_w: float | None  # enforced limit at the window's start
    throttle: dict[str, float]  # throttle reason -> share of the window's samples it was set in
    foreign_pids: tuple[int, ...] | None  # other processes on the GPU at start or end; None: unreadable
    own_pid_seen: bool  # False: NVML's pids are another PID namespace's (a container)
    # the integral of the sampled power, kept beside the counter's figure so the two can be
    # compared (Zeus's check of the counter); None without power readings
    sampled_energy_j: float | None = None


@dataclass(frozen=True)
class EnergyReading:
    """Energy of one window on the trial's GPUs (summed), with its method and known error, and
    the host's figures. `samples` holds the sampler's series: 't_s' (seconds since the window's
    start), 'power_w' (summed over GPUs), and '<field>.gpu<index>' per GPU and GpuState field."""

    window_s: float
    gpus: tuple[GpuEnergy, ...] = ()
    samples: dict[str, list[float | None]] = field(default_factory=dict)
    sample_hz: float = 0.0  # the rate asked for
    unavailable: str | None = None  # why no GPU was measured
    host: HostEnergy = field(default_factory=HostEnergy)
    sampler_error: str | None = None  # what stopped the sampler thread early, if anything

    @property
    def energy_j(self) -> float | None:
        if not self.gpus or any(gpu.energy_j is None for gpu in self.gpus):
            return None
        return sum(gpu.energy_j for gpu in self.gpus)

    @property
    def sampled_energy_j(self) -> float | None:
        """The integrated sampled power over the window (summed), whatever `energy_j` used."""
        if not self.gpus or any(gpu.sampled_energy_j is None for gpu in self.gpus):
            return None
        return sum(gpu.sampled_energy_j for gpu in self.gpus)

    @property
    def method(self) -> str | None:
        return "+".join(sorted({gpu.method for gpu in self.gpus if gpu.method})) or None

    @property
    def known_error(self) -> str:
        errors = {COUNTER: COUNTER_ERROR, SAMPLING: sampling_error(self.sample_hz)}
        return "; ".join(errors[m] for m in (COUNTER, SAMPLING) if any(g.method == m for g in self.gpus))

    @property
    def avg_power_w(self) -> float | None:
        energy = self.energy_j
        return None if energy is None or self.window_s <= 0 else energy / self.window_s

    @property
    def max_power_w(self) -> float | None:
        values = [v for v in self.samples.get("power_w", []) if v is not None]
        return max(values) if values else None

    @property
    def throttled(self) -> bool:
        return any(gpu.throttle for gpu in self.gpus)

    @property
    def throttle_reasons(self) -> dict[str, float]:
        """Each reason's largest share of samples over the GPUs."""
        reasons: dict[str, float] = {}
        for gpu in self.gpus:
            for name, share in gpu.throttle.items():
                reasons[name] = max(share, reasons.get(name, 0.0))
        return reasons

    @property
    def foreign_processes(self) -> tuple[int, ...]:
        return tuple(sorted({pid for gpu in self.gpus for pid in (gpu.foreign_pids or ())}))

    @property
    def why_unmeasured(self) -> str:
        return self.unavailable or "; ".join(f"cuda:{g.index}: {g.fallback}" for g in self.gpus
                                             if g.energy_j is None)


class EnergyMeter:
    """`with EnergyMeter(device) as energy: <window>`; then `energy.reading` (an EnergyReading).

    `device`: the trial's device, or several; a non-CUDA device gets an EnergyReading whose GPU
    figures are unavailable with a reason (the host's are still measured). `nvml`: the pynvml
    module or a stand-in; None imports pynvml at the first window. `visible`: CUDA_VISIBLE_DEVICES
    entries (None: read them), used only where torch does not report a GPU's PCI bus id."""

    def __init__(self, device: torch.device | Sequence[torch.device], nvml: Any = None,
                 sample_hz: float = 20.0, *, clock: Callable[[], float] = time.perf_counter,
                 visible: list[str] | None = None,
                 bus_id_of: Callable[[int], str | None] = torch_pci_bus_id,
                 host: HostEnergyMeter | None = None):
        if not sample_hz > 0:
            raise ValueError(f"sample_hz must be positive, not {sample_hz}")
        devices = [device] if isinstance(device, (torch.device, str)) else list(device)
        self.devices = [torch.device(d) for d in devices]
        self.sample_hz, self.clock = sample_hz, clock
        self.host = host or HostEnergyMeter()
        self.reading: EnergyReading | None = None
        self.sampler: PowerSampler | None = None  # the current window's
        self._nvml, self._visible, self._bus_id_of = nvml, visible, bus_id_of
        self._probes: list[GpuProbe] | None = None
        self._unavailable: str | None = None

    def __enter__(self) -> EnergyMeter:
        probes = self._setup()
        self.reading = None
        self._pids = [p.compute_pids() for p in probes]  # outside the window: keep its edges tight
        self._limits = [p.power_limit_w() for p in probes]
        self.host.__enter__()
        _synchronize(self.devices)
        self._t0 = self.clock()
        self._start = [self._counter(p) for p in probes]
        self.sampler = PowerSampler(probes, self.clock, 1.0 / self.sample_hz)
        if probes:
            self.sampler.take()
            self.sampler.start()
        return self

    def __exit__(self, *exc) -> None:
        probes = self._probes
        _synchronize(self.devices)
        if probes:
            self.sampler.stop()
            self.sampler.take()
        t1 = self.clock()
        end = [self._counter(p) for p in probes]
        self.host.__exit__(*exc)
        gpus = tuple(self._gpu_energy(i, probe, end[i], t1) for i, probe in enumerate(probes))
        self.reading = EnergyReading(t1 - self._t0, gpus, self.sampler.series(self._t0),
                                     self.sample_hz, self._unavailable, self.host.reading,
                                     self.sampler.error)

    def _setup(self) -> list[GpuProbe]:
        if self._probes is None:
            try:
                self._probes = self._find_probes()
            except NvmlUnavailable as err:
                self._probes, self._unavailable = [], str(err)
        return self._probes

    def _find_probes(self) -> list[GpuProbe]:
        indices = sorted({_index(d) for d in self.devices if d.type == "cuda"})
        if not indices:
            kinds = ", ".join(sorted({d.type for d in self.devices}))
            raise NvmlUnavailable(f"{NO_GPU} (device: {kinds})")
        if torch.version.hip:
            raise NvmlUnavailable(f"{NO_GPU}; this is a ROCm build of torch")
        nvml = self._nvml or load_nvml()
        self._nvml = nvml
        visible = self._visible if self._visible is not None else visible_devices()
        probes = []
        for index in indices:
            try:
                handle, bus_id = find_gpu(nvml, index, self._bus_id_of(index), visible)
            except nvml.NVMLError as err:
                raise NvmlUnavailable(f"NVML has no device for cuda:{index}: {err}") from None
            probes.append(GpuProbe(nvml, handle, index, bus_id))
        return probes

    def _counter(self, probe: GpuProbe) -> int | Exception:
        try:
            return probe.energy_mj()
        except self._nvml.NVMLError as err:
            return err

    def _gpu_energy(self, i: int, probe: GpuProbe, end: int | Exception, t1: float) -> GpuEnergy:
        times, states = self.sampler.times, [tick[i] for tick in self.sampler.states]
        powered = [(t, s.power_w) for t, s in zip(times, states) if s.power_w is not None]
        sampled_j = None
        if powered:
            sampled_j = integrate([t for t, _ in powered], [p for _, p in powered], self._t0, t1)
        energy, method, fallback = choose_energy(self._start[i], end, t1 - self._t0, sampled_j,
                                                 self._nvml.NVMLError_NotSupported)
        own, pids = os.getpid(), [self._pids[i], probe.compute_pids()]
        seen = None if all(p is None for p in pids) else {pid for p in pids if p for pid in p}
        return GpuEnergy(
            index=probe.index, pci_bus_id=probe.bus_id, energy_j=energy, method=method,
            fallback=fallback, max_power_w=max((p for _, p in powered), default=None),
            power_limit_w=self._limits[i], throttle=throttle_shares(s.reasons for s in states),
            foreign_pids=None if seen is None else tuple(sorted(seen - {own})),
            own_pid_seen=seen is not None and own in seen, sampled_energy_j=sampled_j)


def choose_energy(start: int | Exception, end: int | Exception, window_s: float,
                  sampled_j: float | None, not_supported: type,
                  ) -> tuple[float | None, str | None, str | None]:
    """(joules, method, why not the counter) from the counter's two readings (mJ, or NVML's
    error) and the integral of the sampled power (None: no power readings)."""
    failed = next((x for x in (start, end) if isinstance(x, Exception)), None)
    if failed is not None:
        why = ("no energy counter on this GPU (NVML's needs Volta or newer)"
               if isinstance(failed, not_supported) else f"energy counter unreadable: {failed}")
    elif window_s < COUNTER_PERIOD_S:
        why = (f"a {window_s * 1e3:.0f} ms window is shorter than the counter's update period "
               f"(~{COUNTER_PERIOD_S * 1e3:.0f} ms)")
    else:
        delta_mj = end - start
        if delta_mj < 0:  # an unsigned 64-bit counter wrapped
            delta_mj += 2**64
        joules = delta_mj / 1e3
        if joules == 0 and sampled_j:
            why = "the counter did not move over the window while the GPU drew power"
        elif joules / window_s > MAX_BOARD_W:
            why = "the counter went backwards (driver reloaded?)"
        else:
            return joules, COUNTER, None
    if sampled_j is None:
        return None, None, f"{why}; and no power readings to integrate"
    return sampled_j, SAMPLING, why


def integrate(times: Sequence[float], watts: Sequence[float], t0: float, t1: float) -> float:
    """Joules: the trapezoid over the samples, held flat from the first sample back to t0 and
    from the last on to t1, samples outside [t0, t1] cut at the edges."""
    order = np.argsort(times, kind="stable")
    ts, ps = np.asarray(times, float)[order], np.asarray(watts, float)[order]
    grid = np.concatenate(([t0], ts[(ts > t0) & (ts < t1)], [t1]))
    values = np.interp(grid, ts, ps)
    return float(np.sum((values[1:] + values[:-1]) * np.diff(grid)) / 2)


def metrics_from(reading: EnergyReading, tokens: float,
                 ) -> tuple[dict[str, float], dict[str, str], dict[str, Any]]:
    """(metrics, unmeasured, notes) of a window in which `tokens` tokens were trained: energy_j,
    energy_per_token_j, tokens_per_kwh, avg_power_w, max_power_w summed over the trial's GPUs;
    cpu_energy_j and host_cpu_percent from the host. A figure that could not be measured is in
    `unmeasured` with its reason, never 0."""
    metrics: dict[str, float] = {}
    unmeasured: dict[str, str] = {}
    notes: dict[str, Any] = {}
    energy = reading.energy_j
    if energy is None:
        unmeasured.update(dict.fromkeys(ENERGY_METRICS, reading.why_unmeasured))
    else:
        metrics["energy_j"] = energy
        if tokens <= 0:
            unmeasured["energy_per_token_j"] = unmeasured["tokens_per_kwh"] = "no tokens in the window"
        else:
            metrics["energy_per_token_j"] = energy / tokens
            if energy > 0:
                metrics["tokens_per_kwh"] = tokens / (energy / J_PER_KWH)
            else:
                unmeasured["tokens_per_kwh"] = "no energy measured over the window"
        _put(metrics, unmeasured, "avg_power_w", reading.avg_power_w, "the window had no length")
        _put(metrics, unmeasured, "max_power_w", reading.max_power_w,
             "no power readings (nvmlDeviceGetPowerUsage)")
        notes["energy_method"] = reading.method
        notes["energy_known_error"] = reading.known_error
    sampled = reading.sampled_energy_j
    if sampled is not None:  # beside the counter's figure, so the two can be compared
        metrics["energy_sampled_j"] = sampled
        if energy and reading.method == COUNTER and sampled > 0:
            notes["energy_counter_over_sampled"] = energy / sampled
    if reading.gpus:
        fallbacks = {f"cuda:{g.index}": g.fallback for g in reading.gpus if g.fallback}
        if fallbacks:
            notes["energy_fallback"] = fallbacks
        notes["gpu_throttled"] = reading.throttled
        if reading.throttled:
            notes["gpu_throttle_reasons"] = reading.throttle_reasons  # reason -> share of samples
        notes["gpu_power_limit_w"] = [g.power_limit_w for g in reading.gpus]
        if reading.sampler_error:
            notes["gpu_sampler_error"] = reading.sampler_error
        notes["gpu_foreign_processes"] = list(reading.foreign_processes)
        if reading.foreign_processes:
            notes["gpu_foreign_processes_note"] = ("other processes on the trial's GPU: NVML's energy and "
                                                   "power are the board's and include them")
        if any(g.foreign_pids and not g.own_pid_seen for g in reading.gpus):
            notes["gpu_processes_namespace"] = ("this process's pid is not among NVML's (a container's PID "
                                                "namespace?): the foreign processes may include this one")
    metrics.update(reading.host.metrics)
    unmeasured.update(reading.host.unmeasured)
    notes.update(reading.host.notes)
    return metrics, unmeasured, notes


def merge_over_ranks(per_rank: list[dict[str, float]], tokens: float,
                     local_ranks: Sequence[int]) -> tuple[dict[str, float], dict[str, str]]:
    """A multi-rank trial's energy figures from each rank's metrics: each rank measured its own
    GPU, so GPU energy and power add up (max_power_w becomes the sum of each GPU's peak, an upper
    bound of the simultaneous peak); per-token figures come from the sums and the global `tokens`.
    RAPL and CPU utilisation are the node's: one rank per node (local rank 0) counts them."""
    metrics: dict[str, float] = {}
    unmeasured: dict[str, str] = {}
    for name in ("energy_j", "energy_sampled_j", "avg_power_w", "max_power_w"):
        values = [m.get(name) for m in per_rank]
        if all(v is not None for v in values):
            metrics[name] = sum(values)
        elif any(v is not None for v in values):
            unmeasured[name] = "measured on some ranks only"
    if "energy_j" in metrics and tokens > 0:
        metrics["energy_per_token_j"] = metrics["energy_j"] / tokens
        if metrics["energy_j"] > 0:
            metrics["tokens_per_kwh"] = tokens / (metrics["energy_j"] / J_PER_KWH)
    nodes = [m for m, local in zip(per_rank, local_ranks) if local == 0]
    cpu = [m.get("cpu_energy_j") for m in nodes]
    if cpu and all(v is not None for v in cpu):
        metrics["cpu_energy_j"] = sum(cpu)
    busy = [m.get("host_cpu_percent") for m in nodes]
    if busy and all(v is not None for v in busy):
        metrics["host_cpu_percent"] = sum(busy) / len(busy)
    return metrics, unmeasured


def power_series(reading: EnergyReading, max_points: int = 600) -> dict[str, list[float | None]]:
    """The power trace for TrialResult.series: 'power_t_s' (seconds since the measured window's
    start) and 'power_w' (summed over GPUs), plus 'gpu_util_percent' and 'sm_clock_mhz' (GPU mean),
    averaged into at most `max_points` bins so a long window stays a small series."""
    samples = reading.samples
    if not samples.get("t_s"):
        return {}
    series = {"power_t_s": samples["t_s"], "power_w": samples["power_w"]}
    for field_name, out_name in (("util_percent", "gpu_util_percent"), ("sm_clock_mhz", "sm_clock_mhz")):
        per_gpu = [v for k, v in samples.items() if k.startswith(field_name + ".gpu")]
        if per_gpu:
            series[out_name] = [_mean(tick) for tick in zip(*per_gpu)]
    bins = np.array_split(np.arange(len(samples["t_s"])), min(max_points, len(samples["t_s"])))
    return {name: [_mean([values[i] for i in b]) for b in bins] for name, values in series.items()}


def _mean(values) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def _put(metrics: dict, unmeasured: dict, name: str, value: float | None, why: str) -> None:
    if value is None:
        unmeasured[name] = why
    else:
        metrics[name] = value


def _index(device: torch.device) -> int:
    if device.index is not None:
        return device.index
    return torch.cuda.current_device() if torch.cuda.is_available() else 0


def _synchronize(devices: list[torch.device]) -> None:
    for device in devices:
        if device.type == "cuda" and torch.cuda.is_available():
            torch.cuda.synchronize(device)
