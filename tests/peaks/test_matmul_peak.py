"""harness.metrics.matmul_peak: the GEMM timing's arithmetic with a scripted timer, the TF32
flags set while timing and restored after (also when the timing raises), the cache (measured
once, keyed by device, torch, CUDA and dtype; a torn or unreadable record measured again), and
the source text that says how the figure was had."""

from __future__ import annotations

import json

import pytest
import torch

from harness import peaks
from harness.metrics import matmul_peak
from harness.metrics.matmul_peak import GemmTiming, gemm_peak, time_gemm


class ScriptedTimer:
    """Returns the scripted seconds in turn; notes the TF32 flags at each call."""

    name = "scripted timer"

    def __init__(self, *seconds: float, error: Exception | None = None):
        self.seconds, self.error, self.calls, self.flags = list(seconds), error, 0, []

    def __call__(self, fn):
        fn()
        self.flags.append((torch.backends.cuda.matmul.allow_tf32, torch.get_float32_matmul_precision()))
        if self.error is not None:
            raise self.error
        self.calls += 1
        return self.seconds[(self.calls - 1) % len(self.seconds)]


@pytest.fixture
def tf32_flags():
    """The process's TF32 flags put back after the test, whatever it set."""
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.get_float32_matmul_precision())
    yield
    torch.set_float32_matmul_precision(saved[1])
    torch.backends.cuda.matmul.allow_tf32 = saved[0]


def flags():
    return torch.backends.cuda.matmul.allow_tf32, torch.get_float32_matmul_precision()


# --- the timing --------------------------------------------------------------------------

def test_the_rate_is_two_n_cubed_over_the_best_product_of_the_faster_kernel():
    # torch.mm: 0.5, 0.25, 0.4 s; F.linear: 0.3 s three times -> torch.mm's 0.25 s sets it
    timer = ScriptedTimer(0.5, 0.25, 0.4, 0.3, 0.3, 0.3)
    timing = time_gemm("cpu", "fp32", 16, warmup=1, repeats=3, timer=timer)
    assert timer.calls == 6
    assert timing == GemmTiming("fp32", 16, 1, 3, 2 * 16**3 / 0.25 / 1e12, 2 * 16**3 / 0.4 / 1e12,
                                "torch.mm", "scripted timer")


def test_each_kernel_gets_its_warm_up_and_repeats_on_random_data_of_the_dtype():
    seen = []

    def counting(name):
        def kernel(a, b):
            seen.append((name, a.dtype, tuple(a.shape), tuple(b.shape), a.device.type))
            assert a.std() > 0.5 and not torch.equal(a, b)  # torch.randn, two different matrices
            return torch.mm(a, b)
        return kernel

    time_gemm("cpu", "fp16", 8, warmup=2, repeats=3, timer=ScriptedTimer(0.1),
              kernels={"one": counting("one"), "two": counting("two")})
    assert seen == [(n, torch.float16, (8, 8), (8, 8), "cpu") for n in ["one"] * 5 + ["two"] * 5]


def test_a_callers_autocast_does_not_change_the_timed_dtype():
    dtypes = []

    def timer(fn):
        dtypes.append(fn().dtype)
        return 0.1

    with torch.autocast("cpu", dtype=torch.bfloat16):
        time_gemm("cpu", "fp32", 8, warmup=0, repeats=1, timer=timer)
    assert dtypes == [torch.float32, torch.float32]


def test_a_real_tiny_product_on_the_cpu_gives_a_positive_rate():
    timing = time_gemm("cpu", "bf16", 64, warmup=1, repeats=2)
    assert timing.tflops >= timing.tflops_median > 0
    assert timing.timer == "perf_counter with synchronisation"


@pytest.mark.parametrize("dtype, during", [("fp32", (False, "highest")), ("tf32", (True, "high"))])
@pytest.mark.parametrize("before", [(False, "highest"), (True, "high")])
def test_tf32_flags_are_set_while_timing_and_restored_after(tf32_flags, dtype, during, before):
    torch.backends.cuda.matmul.allow_tf32 = before[0]
    torch.set_float32_matmul_precision(before[1])
    timer = ScriptedTimer(0.1)
    time_gemm("cpu", dtype, 8, warmup=0, repeats=2, timer=timer)
    assert set(timer.flags) == {during}
    assert flags() == before


@pytest.mark.parametrize("dtype, before", [("fp32", (True, "high")), ("tf32", (False, "highest"))])
def test_tf32_flags_are_restored_when_the_timing_raises(tf32_flags, dtype, before):
    torch.backends.cuda.matmul.allow_tf32 = before[0]
    torch.set_float32_matmul_precision(before[1])
    with pytest.raises(RuntimeError, match="launch failed"):
        time_gemm("cpu", dtype, 8, warmup=0, repeats=2,
                  timer=ScriptedTimer(error=RuntimeError("launch failed")))
    assert flags() == before


def test_bf16_and_fp16_leave_the_tf32_flags_alone(tf32_flags):
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.set_float32_matmul_precision("high")
    timer = ScriptedTimer(0.1)
    time_gemm("cpu", "bf16", 8, warmup=0, repeats=1, timer=timer)
    assert timer.flags == [(True, "high")] * 2 and flags() == (True, "high")


# --- the cache ---------------------------------------------------------------------------

def test_measured_once_then_read_from_the_cache(tmp_path, fake_gemm):
    first = gemm_peak("cuda", "NVIDIA H200", "bf16", tmp_path)
    cache_file = tmp_path / matmul_peak.CACHE_FILE
    mtime = cache_file.stat().st_mtime_ns
    second = gemm_peak("cuda", "NVIDIA H200", "bf16", tmp_path)
    assert fake_gemm == [("cuda", "bf16", 8192)]
    assert second == first and cache_file.stat().st_mtime_ns == mtime
    (key, record), = json.loads(cache_file.read_text()).items()
    assert key == f"NVIDIA H200 | torch {torch.__version__} | {matmul_peak.backend_version()} | bf16"
    assert record == first
    assert {k: record[k] for k in ("tflops", "tflops_median", "dtype", "size", "warmup", "repeats",
                                   "kernels", "fastest_kernel", "timer", "device_name", "torch")} == {
        "tflops": 780.0, "tflops_median": 770.0, "dtype": "bf16", "size": 8192,
        "warmup": matmul_peak.WARMUP, "repeats": matmul_peak.REPEATS, "kernels": "torch.mm and F.linear",
        "fastest_kernel": "F.linear", "timer": "CUDA events", "device_name": "NVIDIA H200",
        "torch": torch.__version__}
    assert not list(tmp_path.glob(".*.tmp"))  # written through a temporary name and renamed


def test_the_cache_is_keyed_by_device_dtype_torch_and_cuda(tmp_path, fake_gemm, monkeypatch):
    gemm_peak("cuda", "NVIDIA H200", "bf16", tmp_path)
    gemm_peak("cuda", "NVIDIA H200", "fp16", tmp_path)
    gemm_peak("cuda", "NVIDIA H100 80GB HBM3", "bf16", tmp_path)
    monkeypatch.setattr(torch.version, "cuda", "99.1")
    monkeypatch.setattr(torch.version, "hip", None)
    gemm_peak("cuda", "NVIDIA H200", "bf16", tmp_path)
    monkeypatch.setattr(torch, "__version__", "9.9.9")
    gemm_peak("cuda", "NVIDIA H200", "bf16", tmp_path)
    gemm_peak("cuda", "NVIDIA H200", "fp16", tmp_path)  # still 9.9.9 and CUDA 99.1: measured
    gemm_peak("cuda", "NVIDIA H200", "bf16", tmp_path)  # cached
    assert len(fake_gemm) == 6
    keys = json.loads((tmp_path / matmul_peak.CACHE_FILE).read_text())
    assert len(keys) == 6 and "NVIDIA H200 | torch 9.9.9 | CUDA 99.1 | fp16" in keys


def test_the_sm_count_is_part_of_the_key_where_known():
    assert matmul_peak.cache_key("NVIDIA H100 80GB HBM3", "bf16", 16).startswith(
        "NVIDIA H100 80GB HBM3 | 16 SMs | torch ")


def test_without_a_cache_dir_every_call_measures(fake_gemm):
    gemm_peak("cuda", "NVIDIA H200", "bf16", None)
    gemm_peak("cuda", "NVIDIA H200", "bf16", None)
    assert len(fake_gemm) == 2


@pytest.mark.parametrize("contents", ['{"half a', "[1, 2]", ""])
def test_a_torn_cache_file_is_measured_again(tmp_path, fake_gemm, contents):
    (tmp_path / matmul_peak.CACHE_FILE).write_text(contents)
    record = gemm_peak("cuda", "NVIDIA H200", "bf16", tmp_path)
    assert len(fake_gemm) == 1 and record["tflops"] == 780.0
    assert len(json.loads((tmp_path / matmul_peak.CACHE_FILE).read_text())) == 1


@pytest.mark.parametrize("stale", [
    {"tflops": 500.0},  # no method version: written by other code
    {"tflops": 500.0, "method_version": matmul_peak.METHOD_VERSION + 1},
    {"tflops": None, "method_version": matmul_peak.METHOD_VERSION},
    {"tflops": 0.0, "method_version": matmul_peak.METHOD_VERSION},
    "780",
])
def test_a_record_this_code_cannot_read_is_measured_again(tmp_path, fake_gemm, stale):
    key = matmul_peak.cache_key("NVIDIA H200", "bf16")
    other = matmul_peak.cache_key("NVIDIA H200", "fp16")
    (tmp_path / matmul_peak.CACHE_FILE).write_text(json.dumps({key: stale, other: {"kept": True}}))
    assert gemm_peak("cuda", "NVIDIA H200", "bf16", tmp_path)["tflops"] == 780.0
    cached = json.loads((tmp_path / matmul_peak.CACHE_FILE).read_text())
    assert len(fake_gemm) == 1 and cached[key]["tflops"] == 780.0 and cached[other] == {"kept": True}


def test_the_source_says_how_it_was_measured(tmp_path, fake_gemm):
    record = gemm_peak("cuda", "NVIDIA H200", "fp32", tmp_path)
    assert (record["allow_tf32"], record["float32_matmul_precision"]) == (False, "highest")
    assert matmul_peak.describe(record) == (
        f"measured: best of {matmul_peak.REPEATS} timed 8192x8192x8192 fp32 GEMMs with TF32 off each of "
        f"torch.mm and F.linear (F.linear fastest, median 770 TFLOP/s), torch.randn inputs, "
        f"{matmul_peak.WARMUP} warm-up, CUDA events, on NVIDIA H200, torch {torch.__version__}, "
        f"{matmul_peak.backend_version()}, {record['measured_at'][:10]}")
    tf32 = gemm_peak("cuda", "NVIDIA H200", "tf32", tmp_path)
    assert "fp32 GEMMs with TF32 on" in matmul_peak.describe(tf32) and tf32["allow_tf32"] is True
    assert " bf16 GEMMs each of" in matmul_peak.describe(gemm_peak("cuda", "NVIDIA H200", "bf16", tmp_path))


def test_a_real_measurement_on_the_cpu_is_cached_with_its_method(tmp_path):
    record = gemm_peak("cpu", "Test CPU", "fp32", tmp_path, size=32)
    assert record["tflops"] > 0 and record["timer"] == "perf_counter with synchronisation"
    assert gemm_peak("cpu", "Test CPU", "fp32", tmp_path, size=32) == record


# --- on a real GPU ------------------------------------------------------------------------

@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_real_gpu_gemm_is_below_its_datasheet_and_restores_the_flags(tmp_path, tf32_flags):
    name = torch.cuda.get_device_properties(0).name
    before = flags()
    record = gemm_peak("cuda", name, "bf16", tmp_path, size=4096)
    assert flags() == before and record["timer"] == "CUDA events" and record["tflops"] > 0
    entry = peaks.datasheet_entry(name)
    if entry is not None and "bf16" in entry.tflops:
        assert record["tflops"] < entry.tflops["bf16"] * 1.05
