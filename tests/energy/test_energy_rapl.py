"""CPU package energy from a powercap tree laid out as Linux lays it out, and host utilisation."""

from __future__ import annotations

from collections import namedtuple
from pathlib import Path

import pytest

from harness.metrics.rapl import HostEnergyMeter, RaplEnergy, busy_percent, package_zones

MAX_RANGE = 262_143_328_850  # µJ, a real package's max_energy_range_uj


def zone(root: Path, directory: str, name: str, energy_uj: int, max_range: int | None = MAX_RANGE) -> Path:
    path = root / directory
    path.mkdir(parents=True)
    (path / "name").write_text(name + "\n")
    (path / "energy_uj").write_text(f"{energy_uj}\n")
    if max_range is not None:
        (path / "max_energy_range_uj").write_text(f"{max_range}\n")
    return path


@pytest.fixture
def powercap(tmp_path) -> Path:
    """Two packages, a core subzone, the platform (psys) domain and the MMIO copy of package 0."""
    root = tmp_path / "powercap"
    zone(root, "intel-rapl:0", "package-0", 5_000_000)
    zone(root, "intel-rapl:0/intel-rapl:0:0", "core", 1_000_000)
    zone(root, "intel-rapl:0:0", "core", 1_000_000)  # sysfs also links subzones at the top
    zone(root, "intel-rapl:1", "package-1", MAX_RANGE - 100_000)
    zone(root, "intel-rapl:2", "psys", 9_000_000)
    zone(root, "intel-rapl-mmio:0", "package-0", 5_000_000)
    return root


def add(path: Path, uj: int, wrap_at: int = MAX_RANGE) -> None:
    (path / "energy_uj").write_text(f"{(int((path / 'energy_uj').read_text()) + uj) % wrap_at}\n")


def test_only_package_domains_count(powercap):
    assert [z.name for z in package_zones(powercap)] == ["package-0", "package-1"]


def test_cpu_energy_over_a_window_through_a_wrap(powercap):
    with HostEnergyMeter(root=powercap) as host:
        add(powercap / "intel-rapl:0", 1_000_000)
        add(powercap / "intel-rapl:1", 500_000)  # passes max_energy_range_uj: wraps to 400000
        for other in ("intel-rapl:0:0", "intel-rapl:2", "intel-rapl-mmio:0"):
            add(powercap / other, 77_000_000)  # inside the packages or copies of them: not counted
    assert int((powercap / "intel-rapl:1" / "energy_uj").read_text()) == 400_000
    assert host.reading.metrics["cpu_energy_j"] == pytest.approx(1.5)
    assert "package-0, package-1" in host.reading.notes["cpu_energy_scope"]


def test_polling_keeps_a_window_right_through_several_wraps(powercap):
    rapl = RaplEnergy(package_zones(powercap))
    rapl.start()
    for _ in range(3):  # 3 x 0.6 of the range: the counter wraps twice
        add(powercap / "intel-rapl:1", int(MAX_RANGE * 0.6))
        rapl.poll()
    assert rapl.joules == pytest.approx(3 * int(MAX_RANGE * 0.6) / 1e6)


def test_a_wrap_without_the_range_is_a_reason_not_a_number(tmp_path):
    root = tmp_path / "powercap"
    path = zone(root, "intel-rapl:0", "package-0", 900, max_range=None)
    with HostEnergyMeter(root=root) as host:
        (path / "energy_uj").write_text("100\n")
    assert "cpu_energy_j" not in host.reading.metrics
    assert "max_energy_range_uj is unreadable" in host.reading.unmeasured["cpu_energy_j"]


def test_an_unreadable_counter_is_a_reason(powercap, monkeypatch):
    # root reads any file whatever its mode, so the kernel's refusal is simulated at the read
    real_read = Path.read_text

    def read_text(self, *args, **kwargs):
        if self.name == "energy_uj":
            raise PermissionError(13, "Permission denied", str(self))
        return real_read(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", read_text)
    with HostEnergyMeter(root=powercap) as host:
        pass
    why = host.reading.unmeasured["cpu_energy_j"]
    assert "intel-rapl:0/energy_uj: permission denied" in why and "root only" in why
    assert "cpu_energy_j" not in host.reading.metrics


def test_no_powercap_tree_is_a_reason(tmp_path):
    with HostEnergyMeter(root=tmp_path / "absent") as host:
        pass
    assert host.reading.unmeasured["cpu_energy_j"].startswith("no RAPL powercap interface")


def test_busy_percent_is_the_non_idle_share_of_cpu_time():
    Times = namedtuple("Times", "user nice system idle iowait irq softirq steal guest guest_nice")
    before = Times(100, 0, 50, 800, 50, 0, 0, 0, 0, 0)
    after = Times(160, 0, 70, 860, 70, 0, 0, 0, 10, 0)  # guest time is inside user: not twice
    # busy +80, idle (+iowait) +80: half the CPU time was busy
    assert busy_percent(before, after) == pytest.approx(50.0)
    assert busy_percent(before, before) is None
