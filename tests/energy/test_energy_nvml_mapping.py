"""Which NVML device a torch index is, and why a figure is unavailable where there is no NVML."""

from __future__ import annotations

import sys

import pytest
import torch
from energy_fake_nvml import FakeNvml, ManualClock

from harness.metrics.energy import ENERGY_METRICS, NO_GPU, EnergyMeter, metrics_from
from harness.metrics.nvml import NOT_INSTALLED, decode_throttle, normalize_bus_id, visible_devices
from harness.metrics.rapl import HostEnergyMeter


@pytest.fixture
def no_rapl(tmp_path):
    return HostEnergyMeter(root=tmp_path / "no-powercap")


def bus_ids(devices, visible, bus_id_of, no_rapl) -> list[str]:
    clock = ManualClock(1.0)
    meter = EnergyMeter(devices, nvml=FakeNvml("quad", clock), clock=clock, visible=visible,
                        bus_id_of=bus_id_of, host=no_rapl)
    with meter:
        clock.advance(1.0)
    assert meter.reading.unavailable is None
    return [gpu.pci_bus_id for gpu in meter.reading.gpus]


def test_visible_devices_map_torch_indices_to_bus_ids_in_pci_order(no_rapl):
    # NVML lists the quad machine as 43, 1b, 9d, 52; in bus order GPU 2 is 52 and GPU 0 is 1b
    devices = [torch.device("cuda", 0), torch.device("cuda", 1)]
    assert bus_ids(devices, ["2", "0"], lambda i: None, no_rapl) == ["0000:52:00.0", "0000:1b:00.0"]
    uuid = "GPU-5a1e0d3c-0000-0000-0000-00000000009d"
    assert bus_ids(devices[:1], [uuid], lambda i: None, no_rapl) == ["0000:9d:00.0"]


def test_the_bus_id_torch_reports_wins_over_the_variable(no_rapl):
    from_torch = bus_ids([torch.device("cuda", 0)], ["2", "0"], lambda i: "0000:43:00.0", no_rapl)
    assert from_torch == ["0000:43:00.0"]


def test_two_gpus_energy_is_their_sum(no_rapl):
    clock = ManualClock(1.0)
    fake = FakeNvml("quad", clock)
    meter = EnergyMeter([torch.device("cuda", 0), torch.device("cuda", 1)], nvml=fake, clock=clock,
                        visible=["2", "0"], bus_id_of=lambda i: None, host=no_rapl)
    with meter:
        clock.advance(1.0)
    one = (fake.devices[0].at(2.0)["energy_mj"] - fake.devices[0].at(1.0)["energy_mj"]) / 1e3
    assert [g.energy_j for g in meter.reading.gpus] == [one, one]
    assert meter.reading.energy_j == 2 * one


def test_a_device_outside_the_visible_list_is_unavailable_with_the_reason(no_rapl):
    clock = ManualClock(1.0)
    meter = EnergyMeter(torch.device("cuda", 1), nvml=FakeNvml("quad", clock), clock=clock,
                        visible=["3"], bus_id_of=lambda i: None, host=no_rapl)
    with meter:
        clock.advance(1.0)
    _, unmeasured, _ = metrics_from(meter.reading, tokens=100)
    assert unmeasured["energy_j"] == "cuda:1 is not among CUDA_VISIBLE_DEVICES=3"


def test_visible_devices_reads_the_variable(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2, 0")
    assert visible_devices() == ["2", "0"]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert visible_devices() is None


def test_bus_ids_from_nvml_torch_and_sysfs_compare_equal():
    assert normalize_bus_id(b"00000000:3B:00.0") == "0000:3b:00.0"
    assert normalize_bus_id("0000:3b:00.0") == normalize_bus_id("3B:00.0") == "0000:3b:00.0"


def test_throttle_decoding_leaves_out_idle_and_application_clocks():
    assert decode_throttle(0x1 | 0x2) == []
    assert decode_throttle(0x1 | 0x4 | 0x40) == ["power_cap", "hw_thermal"]
    assert decode_throttle(0x8 | 0x20 | 0x80) == ["hw_slowdown", "sw_thermal", "hw_power_brake"]


def test_on_a_cpu_every_energy_figure_is_unavailable_with_a_reason_never_zero(no_rapl):
    meter = EnergyMeter(torch.device("cpu"), host=no_rapl)
    with meter:
        sum(range(10_000))
    metrics, unmeasured, _ = metrics_from(meter.reading, tokens=4096)
    assert not set(ENERGY_METRICS) & set(metrics)
    for name in ENERGY_METRICS:
        assert unmeasured[name].startswith(NO_GPU)
    assert unmeasured["cpu_energy_j"].startswith("no RAPL powercap interface")


def test_without_nvidia_ml_py_the_reason_says_how_to_install_it(monkeypatch, no_rapl):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # `import pynvml` raises ImportError
    meter = EnergyMeter(torch.device("cuda", 0), host=no_rapl)
    with meter:
        pass
    metrics, unmeasured, _ = metrics_from(meter.reading, tokens=4096)
    assert "energy_j" not in metrics
    assert unmeasured["energy_j"] == NOT_INSTALLED
    assert NOT_INSTALLED == "nvidia-ml-py is not installed (pip install 'harness[gpu]')"
