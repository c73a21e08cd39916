"""A stand-in for pynvml that replays a trace (tests/energy/energy_trace.json), so the energy meter's
real code runs on a machine without a GPU. It implements the subset of pynvml's API the meter
calls, with pynvml's units (counter mJ, power and limit mW, memory bytes) and its error classes.

Time comes from a clock shared with the meter: `ManualClock` for exact windows (the test moves
time), or `since(origin)` for a trace replayed in real time.
"""

from __future__ import annotations

import bisect
import json
import os
import threading
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

TRACE = Path(__file__).parent / "energy_trace.json"


class NVMLError(Exception):
    def __init__(self, value: int, message: str):
        super().__init__(message)
        self.value = value


class NVMLError_NotSupported(NVMLError):  # noqa: N801 (pynvml's name)
    def __init__(self, message: str = "Not Supported"):
        super().__init__(3, message)  # NVML_ERROR_NOT_SUPPORTED


class NVMLError_NotFound(NVMLError):  # noqa: N801
    def __init__(self, message: str = "Not Found"):
        super().__init__(6, message)  # NVML_ERROR_NOT_FOUND


class ManualClock:
    """Seconds on the trace's time line; the test moves it."""

    def __init__(self, t: float = 0.0):
        self.t = t
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.t

    def advance(self, dt: float) -> None:
        with self._lock:
            self.t = round(self.t + dt, 9)


def since(origin: float):
    """A real-time clock whose zero is `origin` (a perf_counter value)."""
    return lambda: time.perf_counter() - origin


class _Device:
    def __init__(self, spec: dict):
        self.spec = spec
        self.points = spec["points"]
        self.times = [p["t"] for p in self.points]

    def at(self, t: float) -> dict:
        """The point that holds at t (the last with p.t <= t), defaults filled in."""
        i = max(0, bisect.bisect_right(self.times, t + 1e-12) - 1)
        return {**self.spec.get("defaults", {}), **self.points[i]}

    def power_mw(self, t: float) -> int:
        """Linear between points, flat beyond the ends."""
        ts, pts = self.times, self.points
        if t <= ts[0]:
            return pts[0]["power_mw"]
        if t >= ts[-1]:
            return pts[-1]["power_mw"]
        i = bisect.bisect_right(ts, t) - 1
        a, b = pts[i], pts[i + 1]
        share = (t - a["t"]) / (b["t"] - a["t"])
        return round(a["power_mw"] + share * (b["power_mw"] - a["power_mw"]))

    def power_w_integral(self, t0: float, t1: float, steps: int = 20000) -> float:
        """Joules of the trace's own (piecewise-linear) power over [t0, t1], finely summed."""
        dt = (t1 - t0) / steps
        return sum((self.power_mw(t0 + k * dt) + self.power_mw(t0 + (k + 1) * dt)) / 2 * dt
                   for k in range(steps)) / 1e3


class FakeNvml:
    """`FakeNvml("steady", clock)`: the named machine of the trace file, as pynvml would show it."""

    NVMLError = NVMLError
    NVMLError_NotSupported = NVMLError_NotSupported
    NVML_CLOCK_SM = 1
    NVML_CLOCK_MEM = 2
    NVML_TEMPERATURE_GPU = 0

    def __init__(self, machine: str, clock, trace: Path = TRACE):
        specs = json.loads(Path(trace).read_text())["machines"][machine]
        self.devices = [_Device(spec) for spec in specs]
        self.clock = clock
        self.calls: Counter[str] = Counter()

    def device(self, bus_id: str) -> _Device:
        return next(d for d in self.devices if _bus(d.spec["bus_id"]) == _bus(bus_id))

    # --- lookup -----------------------------------------------------------------------------
    def nvmlDeviceGetCount(self) -> int:  # noqa: N802
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> _Device:  # noqa: N802
        self.calls["nvmlDeviceGetHandleByIndex"] += 1
        return self.devices[index]

    def nvmlDeviceGetHandleByPciBusId(self, bus_id: str | bytes) -> _Device:  # noqa: N802
        self.calls["nvmlDeviceGetHandleByPciBusId"] += 1
        wanted = _bus(bus_id.decode() if isinstance(bus_id, bytes) else bus_id)
        for device in self.devices:
            if _bus(device.spec["bus_id"]) == wanted:
                return device
        raise NVMLError_NotFound()

    def nvmlDeviceGetHandleByUUID(self, uuid: str | bytes) -> _Device:  # noqa: N802
        uuid = uuid.decode() if isinstance(uuid, bytes) else uuid
        for device in self.devices:
            if device.spec["uuid"] == uuid:
                return device
        raise NVMLError_NotFound()

    def nvmlDeviceGetPciInfo(self, handle: _Device) -> SimpleNamespace:  # noqa: N802
        return SimpleNamespace(busId=handle.spec["bus_id"].encode())  # bytes, as ctypes gives it

    # --- readings -----------------------------------------------------------------------------
    def nvmlDeviceGetTotalEnergyConsumption(self, handle: _Device) -> int:  # noqa: N802
        self.calls["energy"] += 1
        if not handle.spec["energy_counter"]:
            raise NVMLError_NotSupported()
        return handle.at(self.clock())["energy_mj"]

    def nvmlDeviceGetPowerUsage(self, handle: _Device) -> int:  # noqa: N802
        self.calls["power"] += 1
        return handle.power_mw(self.clock())

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: _Device) -> int:  # noqa: N802
        return handle.spec["power_limit_mw"]

    def nvmlDeviceGetUtilizationRates(self, handle: _Device) -> SimpleNamespace:  # noqa: N802
        return SimpleNamespace(gpu=handle.at(self.clock())["util"], memory=40)

    def nvmlDeviceGetClockInfo(self, handle: _Device, kind: int) -> int:  # noqa: N802
        point = handle.at(self.clock())
        return point["sm_mhz"] if kind == self.NVML_CLOCK_SM else point["mem_mhz"]

    def nvmlDeviceGetTemperature(self, handle: _Device, sensor: int) -> int:  # noqa: N802
        return handle.at(self.clock())["temp_c"]

    def nvmlDeviceGetMemoryInfo(self, handle: _Device) -> SimpleNamespace:  # noqa: N802
        used = handle.at(self.clock())["memory_used_bytes"]
        return SimpleNamespace(used=used, total=85_520_809_984, free=85_520_809_984 - used)

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: _Device) -> int:  # noqa: N802
        return handle.at(self.clock())["reasons"]

    def nvmlDeviceGetComputeRunningProcesses(self, handle: _Device) -> list[SimpleNamespace]:  # noqa: N802
        pids = handle.at(self.clock())["pids"]
        return [SimpleNamespace(pid=os.getpid() if p == "self" else p, usedGpuMemory=2**30) for p in pids]


def _bus(bus_id: str) -> str:
    domain, bus, rest = bus_id.lower().split(":")
    return f"{int(domain, 16)}:{int(bus, 16)}:{rest}"
