"""harness.peaks: the datasheet table's matching and figures, the precision -> dtype map, the
measured CPU peak and its cache (only quiet measurements kept), MFU against a peak measured
under load, and the utilization arithmetic."""

from __future__ import annotations

import json
import re
import time

import pytest
import torch

from harness import peaks
from harness.hardware import DeviceFacts
from harness.metrics.contention import Contention
from harness.models import resolve_config
from harness.peaks import PEAK_TABLE, Peak, compute_dtype, datasheet_entry, peak_for, utilization
from harness.spec import CPU_PEAK_UNDER_LOAD, PEAK_EXCEEDED
from harness.train.accounting import account_flops
from harness.train.loop import LoopOutcome


def gpu(name: str) -> DeviceFacts:
    return DeviceFacts("cuda", name, (9, 0))


CPU = DeviceFacts("cpu", "Test CPU Model 9000")

# torch's get_device_properties(0).name -> the table's device
NAMES = {
    "NVIDIA H100 80GB HBM3": "NVIDIA H100 SXM",
    "NVIDIA H100 PCIe": "NVIDIA H100 PCIe",
    "NVIDIA H100 NVL": "NVIDIA H100 NVL",
    "NVIDIA H200": "NVIDIA H200 SXM",
    "NVIDIA H200 NVL": "NVIDIA H200 NVL",
    "NVIDIA GH200 480GB": "NVIDIA GH200",
    "NVIDIA A100-SXM4-80GB": "NVIDIA A100",
    "NVIDIA A100-SXM4-40GB": "NVIDIA A100",
    "NVIDIA A100-PCIE-40GB": "NVIDIA A100",
    "NVIDIA A100 80GB PCIe": "NVIDIA A100",
    "NVIDIA L4": "NVIDIA L4",
    "NVIDIA L40S": "NVIDIA L40S",
    "NVIDIA A10G": "NVIDIA A10G",
    "NVIDIA A10": "NVIDIA A10",
    "NVIDIA GeForce RTX 4090": "NVIDIA GeForce RTX 4090",
    "NVIDIA RTX A6000": "NVIDIA RTX A6000",
    "Tesla V100-SXM2-16GB": "NVIDIA V100 SXM2",
    "Tesla V100-SXM2-32GB": "NVIDIA V100 SXM2",
    "Tesla V100-PCIE-16GB": "NVIDIA V100 PCIe",
    "Tesla V100-PCIE-32GB": "NVIDIA V100 PCIe",
    "Tesla V100S-PCIE-32GB": "NVIDIA V100S PCIe",
    "AMD Instinct MI300X": "AMD Instinct MI300X",
    "NVIDIA B200": "NVIDIA B200",
}


@pytest.mark.parametrize("name, device", NAMES.items())
def test_each_torch_name_resolves_to_its_entry(name, device):
    assert datasheet_entry(name).device == device


@pytest.mark.parametrize("name, dtype, tflops", [
    ("NVIDIA H100 80GB HBM3", "bf16", 989.4),
    ("NVIDIA H100 80GB HBM3", "fp16", 989.4),
    ("NVIDIA H100 80GB HBM3", "fp32", 66.9),
    ("NVIDIA H100 80GB HBM3", "tf32", 494.7),
    ("NVIDIA H100 80GB HBM3", "fp8", 1978.9),
    ("NVIDIA H100 PCIe", "bf16", 756.0),
    ("NVIDIA H100 PCIe", "fp32", 51.0),
    ("NVIDIA H200", "bf16", 989.4),
    ("NVIDIA A100-SXM4-80GB", "bf16", 312.0),
    ("NVIDIA A100-PCIE-40GB", "bf16", 312.0),
    ("NVIDIA A100-SXM4-40GB", "tf32", 156.0),
    ("NVIDIA A100 80GB PCIe", "fp32", 19.5),
    ("Tesla V100-SXM2-16GB", "fp16", 125.0),
    ("AMD Instinct MI300X", "bf16", 1307.4),
])
def test_datasheet_figures(name, dtype, tflops):
    peak = peak_for(gpu(name), dtype)
    assert peak == Peak(tflops, dtype, peak.source, measured=False)
    assert datasheet_entry(name).source in peak.source


@pytest.mark.parametrize("name, dtype", [
    ("Tesla V100-SXM2-16GB", "bf16"), ("Tesla V100-PCIE-32GB", "tf32"),
    ("NVIDIA A100-SXM4-80GB", "fp8"),  # Ampere has no fp8 tensor cores
])
def test_a_dtype_the_part_lacks_has_no_peak(name, dtype):
    assert peak_for(gpu(name), dtype) is None


@pytest.mark.parametrize("name", ["NVIDIA Quadro P1000", "NVIDIA GeForce RTX 4090 Laptop GPU",
                                  "NVIDIA GB200", "NVIDIA L40", "Some Future GPU"])
def test_an_unknown_gpu_has_no_peak(name):
    assert datasheet_entry(name) is None
    assert peak_for(gpu(name), "bf16") is None


def test_every_entry_has_a_source_and_sane_figures():
    for entry in PEAK_TABLE:
        assert entry.source.strip() and re.search(r"\b20\d\d\b", entry.source), entry.device
        assert "dense" in entry.source, entry.device
        assert set(entry.tflops) <= {"fp32", "tf32", "bf16", "fp16", "fp8"}
        assert all(value > 0 for value in entry.tflops.values())
        # the tensor-core rates rise as the format narrows
        ordered = [entry.tflops[d] for d in ("tf32", "bf16", "fp8") if d in entry.tflops]
        assert ordered == sorted(ordered), entry.device
        if "bf16" in entry.tflops:
            assert entry.tflops["bf16"] > entry.tflops["fp32"]


def test_every_entry_is_reachable():
    """No pattern is shadowed by an earlier one: each entry's own device name resolves to it."""
    for entry in PEAK_TABLE:
        assert datasheet_entry(entry.device) is entry, entry.device


@pytest.mark.parametrize("precision, dtype", [
    ("fp32", "fp32"), ("tf32", "tf32"), ("bf16", "bf16"), ("bf16-pure", "bf16"),
    ("fp16", "fp16"), ("fp8", "bf16"),
])
def test_compute_dtype(precision, dtype):
    assert compute_dtype(precision) == dtype


def test_compute_dtype_rejects_an_unknown_precision():
    with pytest.raises(ValueError, match="int4"):
        compute_dtype("int4")


# --- the measured CPU peak ---------------------------------------------------------------

class ScriptedMeter:
    """A ContentionMeter stand-in that replays one foreign share per window (2 CPUs, 1 s), so a
    test decides which attempts were busy whatever else the machine is doing."""

    def __init__(self, *shares: float):
        self.shares, self.windows = list(shares), 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        share = self.shares[min(self.windows, len(self.shares) - 1)]
        self.windows += 1
        self.reading = Contention(1.0, 2, 2 * share, 0.0, (0.25, 0.2, 0.1), (0.3, 0.2, 0.1))


def cpu_peak(dtype: str, *shares: float, **kwargs) -> Peak | None:
    """peak_for on the test CPU, its attempts judged by `shares` (default: quiet), no waits."""
    return peak_for(CPU, dtype, meter=ScriptedMeter(*(shares or (0.0,))), wait=lambda s: None,
                    **kwargs)


@pytest.fixture
def counted_timing(monkeypatch):
    """Counts calls of the timing function, still timing for real."""
    calls = []
    real = peaks.time_matmul

    def timed(dtype, size, *args, **kwargs):
        calls.append((dtype, size))
        return real(dtype, size, *args, **kwargs)

    monkeypatch.setattr(peaks, "time_matmul", timed)
    return calls


def test_cpu_peak_is_measured_once_then_read_from_the_cache(tmp_path, counted_timing):
    first = cpu_peak("fp32", cache_dir=tmp_path, size=256)
    cache_file = tmp_path / peaks.CACHE_FILE
    mtime = cache_file.stat().st_mtime_ns
    second = cpu_peak("fp32", cache_dir=tmp_path, size=256)

    assert counted_timing == [("fp32", 256)]
    assert cache_file.stat().st_mtime_ns == mtime
    assert second == first
    assert first.measured and first.quiet and first.dtype == "fp32"
    threads = torch.get_num_threads()
    record, = json.loads(cache_file.read_text()).values()
    assert first.source == (f"measured: best of {peaks.REPEATS} timed 256x256 matmuls each of "
                            f"torch.mm and F.linear on this CPU, {threads} threads, "
                            f"{record['measured_at'][:10]}, "
                            "others used 0.0% of the CPUs, load average 0.2")
    assert record["tflops"] == first.tflops and record["threads"] == threads
    assert (record["foreign_cpu_share"], record["steal_share"], record["attempts"]) == (0.0, 0.0, 1)
    assert record["load_avg_1m"] == 0.25


def test_cpu_cache_is_keyed_by_dtype_and_thread_count(tmp_path, counted_timing):
    threads = torch.get_num_threads()
    cpu_peak("fp32", cache_dir=tmp_path, size=128)
    cpu_peak("bf16", cache_dir=tmp_path, size=128)
    try:
        torch.set_num_threads(1)
        one_thread = cpu_peak("fp32", cache_dir=tmp_path, size=128)
        cpu_peak("fp32", cache_dir=tmp_path, size=128)
    finally:
        torch.set_num_threads(threads)
    cpu_peak("fp32", cache_dir=tmp_path, size=128)  # back to the first key: cached

    assert counted_timing == [("fp32", 128), ("bf16", 128), ("fp32", 128)]
    assert "1 threads" in one_thread.source
    keys = json.loads((tmp_path / peaks.CACHE_FILE).read_text())
    assert len(keys) == 3 and any("| 1 threads |" in key for key in keys)


def test_cpu_peak_without_a_cache_dir_measures_every_time(counted_timing):
    cpu_peak("bf16", size=128)
    cpu_peak("bf16", size=128)
    assert len(counted_timing) == 2


def test_a_torn_cache_file_is_measured_again(tmp_path, counted_timing):
    (tmp_path / peaks.CACHE_FILE).write_text('{"half a')
    peak = cpu_peak("fp32", cache_dir=tmp_path, size=128)
    assert len(counted_timing) == 1 and peak.tflops > 0


def test_a_busy_attempt_is_not_cached_and_a_quiet_retry_is(tmp_path, counted_timing):
    waits = []
    peak = peak_for(CPU, "fp32", tmp_path, 128, meter=ScriptedMeter(0.4, 0.0), wait=waits.append)
    record, = json.loads((tmp_path / peaks.CACHE_FILE).read_text()).values()
    assert peak.quiet and len(counted_timing) == 2 and waits == [peaks.RETRY_WAIT_S]
    assert (record["attempts"], record["foreign_cpu_share"]) == (2, 0.0)


def test_when_every_attempt_is_busy_the_peak_is_marked_and_nothing_is_cached(tmp_path, counted_timing):
    peak = cpu_peak("fp32", 0.5, 0.41, 0.6, cache_dir=tmp_path, size=128)
    assert len(counted_timing) == peaks.ATTEMPTS == 3
    assert not (tmp_path / peaks.CACHE_FILE).exists()
    assert not peak.quiet and peak.measured
    assert peak.under_load == "other processes used at least 41% of the 2 CPUs in each of 3 attempts"
    assert "others used 41.0% of the CPUs" in peak.source  # the least busy attempt's figure


@pytest.mark.parametrize("older", [
    {},  # no contention figures: maybe measured on a busy machine
    {"foreign_cpu_share": 0.0, "steal_share": 0.0, "attempts": 1},  # torch.mm alone
])
def test_a_cache_entry_of_older_code_is_measured_again(tmp_path, counted_timing, older):
    key = (f"{CPU.name} | torch {torch.__version__} | {torch.get_num_threads()} threads | fp32")
    old = {"tflops": 0.001, "size": 128, "repeats": 8, "threads": torch.get_num_threads(),
           "seconds": 1.0, "load_avg_1m": 7.5, "measured_at": "2025-01-01T00:00:00+00:00", **older}
    (tmp_path / peaks.CACHE_FILE).write_text(json.dumps({key: old}))
    peak = cpu_peak("fp32", cache_dir=tmp_path, size=128)
    record = json.loads((tmp_path / peaks.CACHE_FILE).read_text())[key]
    assert len(counted_timing) == 1 and peak.tflops == record["tflops"] != 0.001
    assert record["foreign_cpu_share"] == 0.0 and record["kernels"] == "torch.mm and F.linear"


def test_mfu_against_a_peak_measured_under_load_is_unmeasured_with_a_warning(monkeypatch):
    busy = Peak(0.05, "fp32", "measured: ...", measured=True,
                under_load="other processes used at least 41% of the 2 CPUs in each of 3 attempts")
    monkeypatch.setattr(peaks, "peak_for", lambda *args, **kwargs: busy)
    out = LoopOutcome(metrics={"tokens_per_s": 1000.0})
    account_flops(out, resolve_config("tiny"), 32, {"checkpointing": "none", "precision": "fp32"}, CPU)
    why = ("the CPU peak could not be measured on a quiet machine: other processes used at least "
           "41% of the 2 CPUs in each of 3 attempts")
    assert "mfu" not in out.metrics and "hfu" not in out.metrics and out.metrics["achieved_tflops"] > 0
    assert out.unmeasured["mfu"] == out.unmeasured["hfu"] == why
    assert out.warnings == [{"code": CPU_PEAK_UNDER_LOAD, "message": why}]
    assert out.notes["peak_quiet"] is False and out.notes["peak_tflops"] == 0.05


def test_mfu_against_a_quiet_peak_is_measured_without_a_warning(monkeypatch):
    monkeypatch.setattr(peaks, "peak_for", lambda *args, **kwargs: Peak(0.05, "fp32", "m", True))
    out = LoopOutcome(metrics={"tokens_per_s": 1000.0})
    account_flops(out, resolve_config("tiny"), 32, {"checkpointing": "none", "precision": "fp32"}, CPU)
    assert out.metrics["mfu"] > 0 and out.warnings == [] and out.notes["peak_quiet"] is True


@pytest.mark.parametrize("dtype", ["tf32", "fp16", "fp8"])
def test_cpu_has_no_peak_for_dtypes_it_does_not_measure(tmp_path, dtype):
    assert cpu_peak(dtype, cache_dir=tmp_path, size=128) is None


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_measured_cpu_peak_beats_a_naive_floor(tmp_path, dtype):
    # Any BLAS on any core of the last decade does a 384³ matmul at over 1 GFLOP/s.
    assert cpu_peak(dtype, cache_dir=tmp_path, size=384).tflops > 1e-3


def test_auto_size_is_a_multiple_of_128_in_range():
    size = peaks.auto_size("fp32", target_s=0.01)
    assert 256 <= size <= 8192 and size % 128 == 0


def test_default_cache_dir_honours_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert peaks.default_cache_dir() == tmp_path / "harness"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert peaks.default_cache_dir() == tmp_path / "home" / ".cache" / "harness"


# --- utilization -------------------------------------------------------------------------

def test_utilization_arithmetic():
    peak = Peak(989.4, "bf16", "test", measured=False)
    # 6N for N = 1e9 at 55,000 tokens/s = 3.3e14 FLOP/s = 33.35% of 989.4 TFLOP/s
    assert utilization(6e9, 55_000, peak) == pytest.approx(3.3e14 / 989.4e12)
    # global tokens/s over 8 devices: 8x the throughput at 8x the peak is the same MFU
    one_device = utilization(6e9, 55_000, peak)
    assert utilization(6e9, 8 * 55_000, peak, devices=8) == pytest.approx(one_device)
    assert utilization(1e12, 1.0, Peak(1.0, "fp32", "test", measured=True)) == pytest.approx(1.0)


def test_utilization_rejects_zero_devices_and_a_zero_peak():
    with pytest.raises(ValueError):
        utilization(1.0, 1.0, Peak(1.0, "bf16", "t", False), devices=0)
    with pytest.raises(ValueError):
        utilization(1.0, 1.0, Peak(0.0, "bf16", "t", False))


def test_a_trial_faster_than_its_peak_gets_no_mfu_and_says_why(monkeypatch):
    # a peak below what the model achieved is no peak (a timed kernel that missed a fast path)
    monkeypatch.setattr(peaks, "peak_for", lambda *args, **kwargs: Peak(1e-6, "bf16", "measured: x", True))
    out = LoopOutcome(metrics={"tokens_per_s": 1000.0})
    account_flops(out, resolve_config("tiny"), 32, {"checkpointing": "none", "precision": "bf16"}, CPU)
    assert "mfu" not in out.metrics and "hfu" not in out.metrics
    assert out.unmeasured["mfu"].endswith("exceed the bf16 peak of 1e-06 TFLOP/s (measured: x), so "
                                          "that peak is no bound here")
    assert [w["code"] for w in out.warnings] == [PEAK_EXCEEDED]


def test_the_cpu_peak_is_the_faster_of_both_matmul_kernels(monkeypatch):
    slow_mm = {"torch.mm": lambda a, b: (time.sleep(0.02), torch.mm(a, b))[1],
               "F.linear": torch.nn.functional.linear}
    monkeypatch.setattr(peaks, "MATMUL_KERNELS", slow_mm)
    fast = peaks.time_matmul("fp32", 64, warmup=0, repeats=2)
    assert fast > 2 * 64**3 / 0.02 / 1e12  # the sleeping kernel never sets the figure
