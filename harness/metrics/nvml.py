"""NVML, the NVIDIA driver's management library, as the energy meter uses it: which NVML device a
torch device index is, what one look at that GPU reads, and a thread that looks periodically.

pynvml (package `nvidia-ml-py`, the `gpu` extra) is imported only when a meter first needs it, so
the harness installs and runs without it. Everything here takes the NVML module as an argument:
tests pass a fake that replays a recorded trace (tests/energy/energy_fake_nvml.py).

Indices: NVML numbers every GPU of the machine in PCI bus order and ignores CUDA_VISIBLE_DEVICES;
torch's `cuda:i` is the i-th *visible* device, in CUDA's order. Matching the two by index gives
the wrong GPU (optimum-benchmark issues #47/#136), so a GPU is found by its PCI bus id.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

NOT_INSTALLED = "nvidia-ml-py is not installed (pip install 'harness[gpu]')"

# Clock-event ("throttle") reason bits of nvmlDeviceGetCurrentClocksEventReasons, from nvml.h.
# GPU idle (0x1) and an applications-clocks setting (0x2) are chosen states, not throttling.
THROTTLE_REASONS = {
    0x4: "power_cap",         # SwPowerCap: held under the enforced power limit
    0x8: "hw_slowdown",       # HwSlowdown: clocks cut by 2x or more (thermal, power brake, ...)
    0x10: "sync_boost",       # SyncBoost: held to the slowest GPU of a sync-boost group
    0x20: "sw_thermal",       # SwThermalSlowdown: kept under the max operating temperature
    0x40: "hw_thermal",       # HwThermalSlowdown
    0x80: "hw_power_brake",   # HwPowerBrakeSlowdown: an external power brake (power supply)
    0x100: "display_clock",   # DisplayClockSetting
}


class NvmlUnavailable(Exception):
    """NVML cannot measure this device; the message is the reason stored in `unmeasured`."""


def load_nvml() -> Any:
    """pynvml, initialised. NVML counts its initialisations, so calling this once per meter is
    harmless; the worker process ends without a matching shutdown, which NVML tolerates."""
    try:
        import pynvml  # nvidia-ml-py, the `gpu` extra
    except ImportError:
        raise NvmlUnavailable(NOT_INSTALLED) from None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as err:  # no driver, or a driver/library mismatch
        raise NvmlUnavailable(f"NVML did not start: {err}") from None
    return pynvml


def visible_devices() -> list[str] | None:
    """CUDA_VISIBLE_DEVICES as a list of entries (None when unset): torch's `cuda:i` is entry i.

    Nothing below `runner` reads the environment except hardware-facing code; this is such code.
    NVML ignores the variable and numbers every GPU on the machine, so mapping a torch index to
    an NVML device needs it -- but only when torch does not report the device's PCI bus id."""
    value = os.environ.get("CUDA_VISIBLE_DEVICES")
    if value is None:
        return None
    return [entry.strip() for entry in value.split(",") if entry.strip()]


def torch_pci_bus_id(index: int) -> str | None:
    """The PCI bus id of torch's `cuda:index` ("0000:3b:00.0"), None where torch does not say.
    torch's device properties carry pci_domain_id / pci_bus_id / pci_device_id (ints) in recent
    versions; a GPU is always PCI function 0."""
    try:
        import torch

        props = torch.cuda.get_device_properties(index)
        return f"{props.pci_domain_id:04x}:{props.pci_bus_id:02x}:{props.pci_device_id:02x}.0"
    except Exception:  # no CUDA, or an older torch without the fields
        return None


def normalize_bus_id(bus_id: str | bytes) -> str:
    """NVML's '00000000:3B:00.0', torch's or sysfs's '0000:3b:00.0' and the short '3b:00.0' all
    become '0000:3b:00.0', so ids from different sources compare equal."""
    text = (bus_id.decode() if isinstance(bus_id, bytes) else bus_id).strip().lower()
    parts = text.split(":")
    domain, bus, rest = ("0", *parts) if len(parts) == 2 else parts
    device, _, function = rest.partition(".")
    return f"{int(domain, 16):04x}:{int(bus, 16):02x}:{int(device, 16):02x}.{int(function or '0', 16)}"


def nvml_bus_id(nvml: Any, handle: Any) -> str:
    return normalize_bus_id(nvml.nvmlDeviceGetPciInfo(handle).busId)


def find_gpu(nvml: Any, index: int, bus_id: str | None, visible: list[str] | None) -> tuple[Any, str]:
    """(NVML handle, normalised PCI bus id) of torch's `cuda:index`.

    With the bus id torch reports, the handle follows directly. Without it, entry `index` of
    CUDA_VISIBLE_DEVICES names the GPU: a UUID ('GPU-...') exactly; an ordinal n as the n-th GPU
    in PCI bus order. That is CUDA's order under CUDA_DEVICE_ORDER=PCI_BUS_ID, and under CUDA's
    default (fastest first, ties by bus id) whenever the machine's GPUs are all one model."""
    if bus_id is None:
        entry = str(index) if visible is None else (visible[index] if index < len(visible) else None)
        if entry is None:
            listed = ",".join(visible or [])
            raise NvmlUnavailable(f"cuda:{index} is not among CUDA_VISIBLE_DEVICES={listed}")
        if entry.startswith("MIG-"):
            raise NvmlUnavailable("a MIG instance: NVML's energy and power are the whole GPU's, "
                                  "shared with the other instances")
        if entry.startswith("GPU-"):
            bus_id = nvml_bus_id(nvml, nvml.nvmlDeviceGetHandleByUUID(entry.encode()))
        elif not entry.isdigit():
            raise NvmlUnavailable(f"CUDA_VISIBLE_DEVICES entry '{entry}' is neither an ordinal "
                                  "nor a GPU UUID")
        else:
            buses = sorted(nvml_bus_id(nvml, nvml.nvmlDeviceGetHandleByIndex(i))
                           for i in range(nvml.nvmlDeviceGetCount()))
            ordinal = int(entry)
            if not 0 <= ordinal < len(buses):
                raise NvmlUnavailable(f"CUDA_VISIBLE_DEVICES names GPU {ordinal}; NVML sees {len(buses)}")
            bus_id = buses[ordinal]
    bus_id = normalize_bus_id(bus_id)
    # bytes: older pynvml passes the argument straight to ctypes; newer accepts either
    return nvml.nvmlDeviceGetHandleByPciBusId(bus_id.encode()), bus_id


def decode_throttle(mask: int) -> list[str]:
    """Names of the throttling reasons set in a clock-event mask (idle and app clocks left out)."""
    return [name for bit, name in THROTTLE_REASONS.items() if mask & bit]


@dataclass(frozen=True)
class GpuState:
    """One look at a GPU. None: NVML could not read the field on this GPU at that moment."""

    power_w: float | None
    util_percent: float | None
    sm_clock_mhz: float | None
    mem_clock_mhz: float | None
    temperature_c: float | None
    memory_used_bytes: float | None
    reasons: int | None  # clock-event reason mask

    FIELDS = ("power_w", "util_percent", "sm_clock_mhz", "mem_clock_mhz", "temperature_c",
              "memory_used_bytes")


class GpuProbe:
    """One GPU's NVML handle, and reads of it that survive fields the GPU does not support: a
    field NVML answers NotSupported for is not asked again, so the sampler stays cheap."""

    def __init__(self, nvml: Any, handle: Any, index: int, bus_id: str):
        self.nvml, self.handle, self.index, self.bus_id = nvml, handle, index, bus_id
        self._unsupported: set[str] = set()
        reasons = getattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons", None)
        self._reasons = reasons or nvml.nvmlDeviceGetCurrentClocksThrottleReasons  # before NVML 12

    def energy_mj(self) -> int:
        """The board's cumulative energy counter, mJ since the driver loaded (Volta and newer);
        raises NVML's error (NotSupported on older GPUs)."""
        return int(self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle))

    def power_limit_w(self) -> float | None:
        return self._read("limit", lambda: self.nvml.nvmlDeviceGetEnforcedPowerLimit(self.handle) / 1e3)

    def compute_pids(self) -> list[int] | None:
        procs = self._read("procs", lambda: self.nvml.nvmlDeviceGetComputeRunningProcesses(self.handle))
        return None if procs is None else sorted({int(p.pid) for p in procs})

    def state(self) -> GpuState:
        nvml, handle, read = self.nvml, self.handle, self._read
        return GpuState(
            power_w=read("power", lambda: nvml.nvmlDeviceGetPowerUsage(handle) / 1e3),  # mW
            util_percent=read("util", lambda: float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)),
            sm_clock_mhz=read("sm", lambda: float(nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_SM))),
            mem_clock_mhz=read("mem", lambda: float(
                nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_MEM))),
            temperature_c=read("temp", lambda: float(
                nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU))),
            memory_used_bytes=read("memory", lambda: float(nvml.nvmlDeviceGetMemoryInfo(handle).used)),
            reasons=read("reasons", lambda: int(self._reasons(handle))),
        )

    def _read(self, field: str, fetch: Callable[[], Any]) -> Any:
        if field in self._unsupported:
            return None
        try:
            return fetch()
        except self.nvml.NVMLError_NotSupported:
            self._unsupported.add(field)
        except self.nvml.NVMLError:  # transient (e.g. GPU busy resetting a reading): this look only
            pass
        return None


def throttle_shares(masks) -> dict[str, float]:
    """Each throttle reason set in any sample -> the share of the readable samples it was set in."""
    readable = [m for m in masks if m is not None]
    shares = {}
    for bit, name in THROTTLE_REASONS.items():
        hits = sum(1 for m in readable if m & bit)
        if hits:
            shares[name] = hits / len(readable)
    return shares


class PowerSampler:
    """A background thread that looks at every GPU each period (from a start on the time grid,
    so a slow look does not drift the rate); `take()` adds a look from the caller's thread."""

    def __init__(self, probes: list[GpuProbe], clock: Callable[[], float], period_s: float):
        self.probes, self.clock, self.period_s = probes, clock, period_s
        self.times: list[float] = []
        self.states: list[list[GpuState]] = []  # per look, per probe
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def take(self) -> None:
        """One look at every GPU; a failure other than NVML's is kept in `error`, never raised:
        a sampler must not take the trial down."""
        try:
            t = self.clock()
            states = [probe.state() for probe in self.probes]
        except Exception as err:
            self.error = self.error or f"{type(err).__name__}: {err}"
            return
        self.times.append(t)
        self.states.append(states)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="harness-power-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        due = time.perf_counter()
        while self.error is None:
            due = max(due + self.period_s, time.perf_counter())
            if self._stop.wait(due - time.perf_counter()):
                return
            self.take()

    def series(self, t0: float) -> dict[str, list[float | None]]:
        if not self.times:
            return {}
        out: dict[str, list[float | None]] = {"t_s": [t - t0 for t in self.times]}
        powers = [[s.power_w for s in tick] for tick in self.states]
        out["power_w"] = [None if None in tick else sum(tick) for tick in powers]
        for g, probe in enumerate(self.probes):
            for name in GpuState.FIELDS:
                values = [getattr(tick[g], name) for tick in self.states]
                if any(v is not None for v in values):
                    out[f"{name}.gpu{probe.index}"] = values
        return out
