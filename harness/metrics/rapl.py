"""The host over a window: the CPU packages' energy from RAPL, and the CPUs' utilisation.

RAPL (Running Average Power Limit) counters come from Linux's powercap tree, one per CPU package:
/sys/class/powercap/intel-rapl:N/energy_uj (AMD Zen exposes the same tree). A counter is µJ and
wraps at max_energy_range_uj (about 262 kJ: some 20 minutes of a 200 W package), so the meter
reads the counters every few seconds in a background thread and adds up the deltas; a window
then survives any number of wraps.

The figures are the node's: every process on the machine and, in a multi-rank trial, every rank
on the node is inside them. Since Linux 5.10 energy_uj is readable by root only (CVE-2020-8694,
"Platypus"); elsewhere cpu_energy_j is unmeasured with that reason, never 0.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from pathlib import Path

import psutil

from harness.metrics.readings import Readings

POWERCAP = Path("/sys/class/powercap")
# Top-level zones only: subzones (core, uncore, dram: 'intel-rapl:0:1') lie inside their package,
# and 'intel-rapl-mmio:0' is the same package again through another interface.
PACKAGE_ZONE = re.compile(r"intel-rapl:\d+")
ROOT_ONLY = "RAPL energy is readable by root only since Linux 5.10 (CVE-2020-8694)"


class RaplUnavailable(Exception):
    """The counters cannot be read; the message is the reason stored in `unmeasured`."""


@dataclass(frozen=True)
class RaplZone:
    path: Path
    name: str  # 'package-0'
    max_range_uj: int | None  # where the counter wraps; None when unreadable


def package_zones(root: Path = POWERCAP) -> list[RaplZone]:
    """The CPU package domains under `root` ('psys', the whole platform, overlaps them: left out)."""
    if not root.is_dir():
        raise RaplUnavailable(f"no RAPL powercap interface at {root} "
                              "(not an x86 Linux host, or the intel_rapl driver is not loaded)")
    zones = []
    for path in sorted(root.iterdir()):
        if not PACKAGE_ZONE.fullmatch(path.name):
            continue
        name = _read(path / "name", default=path.name)
        if not name.startswith("package"):
            continue
        try:
            max_range = int(_read(path / "max_energy_range_uj"))
        except (RaplUnavailable, ValueError):
            max_range = None
        zones.append(RaplZone(path, name, max_range))
    if not zones:
        raise RaplUnavailable(f"no RAPL package domain under {root}")
    return zones


def read_uj(zone: RaplZone) -> int:
    try:
        return int(_read(zone.path / "energy_uj"))
    except ValueError as err:
        raise RaplUnavailable(f"{zone.path / 'energy_uj'}: {err}") from None


def _read(path: Path, default: str | None = None) -> str:
    try:
        return path.read_text().strip()
    except PermissionError:
        if default is not None:
            return default
        raise RaplUnavailable(f"{path}: permission denied ({ROOT_ONLY})") from None
    except OSError as err:
        if default is not None:
            return default
        raise RaplUnavailable(f"{path}: {err.strerror or err}") from None


class RaplEnergy:
    """Joules used by each package since `start()`, through counter wraps: call `poll()` at least
    once per wrap period (minutes)."""

    def __init__(self, zones: list[RaplZone]):
        self.zones = zones
        self.broken: str | None = None  # why the total cannot be trusted

    def start(self) -> None:
        self._last = [read_uj(zone) for zone in self.zones]
        self._total_uj = [0] * len(self.zones)
        self.broken = None

    def poll(self) -> None:
        now = [read_uj(zone) for zone in self.zones]
        for i, zone in enumerate(self.zones):
            delta = now[i] - self._last[i]
            if delta < 0:
                if zone.max_range_uj is None:
                    self.broken = f"{zone.name}'s counter wrapped and its max_energy_range_uj is unreadable"
                else:
                    delta += zone.max_range_uj
            self._total_uj[i] += delta
        self._last = now

    @property
    def joules(self) -> float:
        return sum(self._total_uj) / 1e6


HostEnergy = Readings  # cpu_energy_j and host_cpu_percent, or why not


class HostEnergyMeter:
    """`with HostEnergyMeter() as host: ...`; then `host.reading`: cpu_energy_j (RAPL, all
    packages) and host_cpu_percent (all logical CPUs busy, percent). Re-enterable: each window
    replaces the reading; the zones are found once."""

    def __init__(self, root: Path = POWERCAP, poll_s: float = 5.0):
        self.root, self.poll_s = Path(root), poll_s
        self.reading = HostEnergy()
        self._rapl: RaplEnergy | None = None
        self._why: str | None = None

    def __enter__(self) -> HostEnergyMeter:
        self.reading = HostEnergy()
        if self._rapl is None and self._why is None:
            try:
                self._rapl = RaplEnergy(package_zones(self.root))
            except RaplUnavailable as err:
                self._why = str(err)
        self._error: str | None = self._why
        self._stop = threading.Event()
        self._poller = None
        if self._rapl is not None:
            try:
                self._rapl.start()
                self._poller = threading.Thread(target=self._poll, name="harness-rapl", daemon=True)
                self._poller.start()
            except RaplUnavailable as err:
                self._error = str(err)
        self._cpu = psutil.cpu_times()
        return self

    def __exit__(self, *exc) -> None:
        cpu = psutil.cpu_times()
        if self._poller is not None:
            self._stop.set()
            self._poller.join()
            try:
                self._rapl.poll()
            except RaplUnavailable as err:
                self._error = self._error or str(err)
        out = self.reading
        if self._error is None and self._rapl is not None and self._rapl.broken:
            self._error = self._rapl.broken
        if self._error is None:
            out.metrics["cpu_energy_j"] = self._rapl.joules
            packages = ", ".join(zone.name for zone in self._rapl.zones)
            out.notes["cpu_energy_scope"] = (f"RAPL, CPU packages {packages}: the whole node, "
                                             "every process and rank on it")
        else:
            out.unmeasured["cpu_energy_j"] = self._error
        busy = busy_percent(self._cpu, cpu)
        if busy is None:
            out.unmeasured["host_cpu_percent"] = "window shorter than the kernel's CPU-time tick"
        else:
            out.metrics["host_cpu_percent"] = busy

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self._rapl.poll()
            except RaplUnavailable as err:
                self._error = self._error or str(err)
                return


def cpu_seconds(times) -> tuple[float, float]:
    """(total, busy) seconds of a `psutil.cpu_times()` reading, summed over the logical CPUs:
    busy is all but idle and iowait. Guest time is inside user and nice: not added twice."""
    total = sum(times)
    total -= getattr(times, "guest", 0.0) + getattr(times, "guest_nice", 0.0)
    idle = times.idle + getattr(times, "iowait", 0.0)
    return total, total - idle


def busy_percent(before, after) -> float | None:
    """Share of all logical CPUs' time that was not idle between two `psutil.cpu_times()`,
    percent (psutil.cpu_percent's formula, without its hidden module-wide state)."""
    (total0, busy0), (total1, busy1) = cpu_seconds(before), cpu_seconds(after)
    if total1 - total0 <= 0:
        return None
    return min(100.0, max(0.0, 100.0 * (busy1 - busy0) / (total1 - total0)))
