"""A device's achievable matmul rate: the best of large square GEMMs on random data, timed once
per device and dtype and cached, the denominator of `mfu_achievable`.

A datasheet peak is a rate no kernel reaches (the issue's author ran 8192³ bf16 products on an
H200 at 769-798 TFLOP/s against its datasheet's 989), so MFU against it mixes what the model
and framework leave on the table with what the device's own GEMMs never had. Against the
measured rate, the first part is what remains.

Method (a CUDA device; the same code runs on a CPU with a tiny n in the tests):
  - inputs: two n x n torch.randn matrices made on the device in the dtype (seed 0);
    n = CUDA_SIZE = 8192, 2·n³ FLOPs per product;
  - each of MATMUL_KERNELS: torch.mm, and F.linear, which multiplies by the transpose and is
    what a model's layers call (on a CPU they take different kernels);
  - WARMUP untimed products, then the best of REPEATS timed ones (CUDA events around each on a
    GPU, perf_counter with synchronisation elsewhere); the faster kernel's best is the figure
    and its median is kept beside it;
  - fp32 with TF32 off (allow_tf32 False, float32 matmul precision 'highest'), tf32 with it on
    ('high'); the global flags are restored afterwards, also when the timing raises.
The record (rate, median, method, date, device name, torch and CUDA versions) is cached in
CACHE_FILE beside the CPU peaks, keyed by device name (and SM count: a MIG slice has the whole
GPU's name), torch version, CUDA (or HIP) version and dtype; a record this code cannot read is
measured again.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

GEMM_DTYPES = {"fp32": torch.float32, "tf32": torch.float32, "bf16": torch.bfloat16,
               "fp16": torch.float16}
MATMUL_KERNELS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "torch.mm": torch.mm, "F.linear": torch.nn.functional.linear}
# TF32 setting per dtype, as harness.techniques.precision sets it: the legacy flag, then the
# precision (torch refuses to report a state set half through its newer fp32_precision API)
TF32_MODES = {"fp32": (False, "highest"), "tf32": (True, "high")}

CACHE_FILE = "matmul_peaks.json"
# 8192³, the size: 1.1 TFLOP a product, ~1.4 ms in bf16 at the issue's ~780 TFLOP/s and
# ~17 ms in fp32 at an H200's datasheet 67 (estimates, not timed here): well under the issue's
# 10 s for the four dtypes. Each trial measures only its own dtype, and only on a cache miss.
CUDA_SIZE = 8192
WARMUP, REPEATS = 5, 10
METHOD_VERSION = 1  # a cached record of another method version is measured again


@dataclass(frozen=True)
class GemmTiming:
    dtype: str
    size: int
    warmup: int
    repeats: int
    tflops: float  # the best product of the faster kernel
    tflops_median: float  # that kernel's median product
    fastest: str  # the kernel that set the figure
    timer: str


class WallTimer:
    """Seconds of one call: perf_counter, the device synchronised at both edges."""

    name = "perf_counter with synchronisation"

    def __init__(self, device: torch.device):
        self.device = device

    def __call__(self, fn: Callable[[], Any]) -> float:
        _synchronize(self.device)
        start = time.perf_counter()
        fn()
        _synchronize(self.device)
        return time.perf_counter() - start


class CudaEventTimer:
    """Seconds of one call on the current stream, from CUDA events recorded around it."""

    name = "CUDA events"

    def __call__(self, fn: Callable[[], Any]) -> float:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3  # ms


def default_timer(device: torch.device) -> Callable[[Callable[[], Any]], float]:
    return CudaEventTimer() if device.type == "cuda" else WallTimer(device)


@contextlib.contextmanager
def matmul_mode(dtype: str) -> Iterator[None]:
    """fp32 with TF32 off, tf32 with it on; the process's flags as they were afterwards."""
    if dtype not in TF32_MODES:
        yield
        return
    allow, precision = TF32_MODES[dtype]
    matmul = torch.backends.cuda.matmul
    saved_allow = matmul.allow_tf32
    try:
        saved_precision: str | None = torch.get_float32_matmul_precision()
    except RuntimeError:  # flags set through both of torch's APIs: only the legacy flag is readable
        saved_precision = None
    try:
        matmul.allow_tf32 = allow
        torch.set_float32_matmul_precision(precision)
        yield
    finally:
        if saved_precision is not None:
            torch.set_float32_matmul_precision(saved_precision)
        matmul.allow_tf32 = saved_allow


def time_gemm(device: torch.device | str, dtype: str, size: int, warmup: int = WARMUP,
              repeats: int = REPEATS, timer: Callable[[Callable[[], Any]], float] | None = None,
              kernels: dict[str, Callable] | None = None) -> GemmTiming:
    """Best-of-`repeats` TFLOP/s of size x size x size products (2·n³ FLOPs) after `warmup`
    untimed ones, the faster of `kernels` (MATMUL_KERNELS). `timer(fn)` is the seconds of one
    call of fn (default: CUDA events on a GPU, perf_counter elsewhere)."""
    device = torch.device(device)
    timer = timer or default_timer(device)
    kernels = MATMUL_KERNELS if kernels is None else kernels
    flops = 2 * size**3
    samples: dict[str, list[float]] = {}
    # autocast off: a caller inside a trial's autocast would otherwise time bf16 for fp32
    with matmul_mode(dtype), _on(device), torch.autocast(device.type, enabled=False):
        generator = torch.Generator(device=device).manual_seed(0)
        a = torch.randn(size, size, generator=generator, device=device, dtype=GEMM_DTYPES[dtype])
        b = torch.randn(size, size, generator=generator, device=device, dtype=GEMM_DTYPES[dtype])
        for name, kernel in kernels.items():
            for _ in range(warmup):
                kernel(a, b)
            samples[name] = [timer(lambda k=kernel: k(a, b)) for _ in range(repeats)]
    fastest = min(samples, key=lambda name: min(samples[name]))
    best = min(samples[fastest])
    if not best > 0:
        raise ValueError(f"the timer measured {best} s for a {size}³ product")
    return GemmTiming(dtype, size, warmup, repeats, flops / best / 1e12,
                      flops / statistics.median(samples[fastest]) / 1e12, fastest,
                      getattr(timer, "name", type(timer).__name__))


def gemm_peak(device: torch.device | str, device_name: str, dtype: str, cache_dir: Path | None,
              size: int = CUDA_SIZE, timer: Callable[[Callable[[], Any]], float] | None = None) -> dict:
    """The cached record of `dtype` on this device, or a fresh measurement (cached under
    `cache_dir`; measured every call without one)."""
    device = torch.device(device)
    key = cache_key(device_name, dtype, sm_count(device))
    record = read_cache(cache_dir, CACHE_FILE).get(key)
    if readable(record):
        return record
    started = time.perf_counter()
    timing = time_gemm(device, dtype, size, timer=timer)
    record = _record(timing, device_name, time.perf_counter() - started)
    if cache_dir is not None:  # read again just before writing: another trial may have added a dtype
        write_cache(cache_dir, CACHE_FILE, {**read_cache(cache_dir, CACHE_FILE), key: record})
    return record


def cache_key(device_name: str, dtype: str, sms: int | None = None) -> str:
    """'NVIDIA H200 | 132 SMs | torch 2.13.0+cu130 | CUDA 13.0 | bf16'."""
    parts = [device_name, *([f"{sms} SMs"] if sms else []), f"torch {torch.__version__}",
             backend_version(), dtype]
    return " | ".join(parts)


def backend_version() -> str:
    if torch.version.hip:
        return f"HIP {torch.version.hip}"
    return f"CUDA {torch.version.cuda}" if torch.version.cuda else "no CUDA"


def sm_count(device: torch.device) -> int | None:
    if device.type != "cuda" or not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_properties(device).multi_processor_count


def readable(record: Any) -> bool:
    return (isinstance(record, dict) and record.get("method_version") == METHOD_VERSION
            and isinstance(record.get("tflops"), (int, float)) and math.isfinite(record["tflops"])
            and record["tflops"] > 0)


def _record(timing: GemmTiming, device_name: str, seconds: float) -> dict:
    tf32 = TF32_MODES.get(timing.dtype)
    return {"tflops": timing.tflops, "tflops_median": timing.tflops_median, "dtype": timing.dtype,
            "size": timing.size, "warmup": timing.warmup, "repeats": timing.repeats,
            "kernels": " and ".join(MATMUL_KERNELS), "fastest_kernel": timing.fastest,
            "inputs": "torch.randn on the device, seed 0", "timer": timing.timer,
            "allow_tf32": None if tf32 is None else tf32[0],
            "float32_matmul_precision": None if tf32 is None else tf32[1],
            "device_name": device_name, "torch": torch.__version__, "backend": backend_version(),
            "seconds": round(seconds, 3), "method_version": METHOD_VERSION,
            "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def describe(record: dict) -> str:
    """peak_achievable_source: 'measured: best of 10 timed 8192x8192x8192 bf16 GEMMs each of
    torch.mm and F.linear (F.linear fastest, median 781 TFLOP/s), torch.randn inputs, 5 warm-up,
    CUDA events, on NVIDIA H200, torch 2.13.0+cu130, CUDA 13.0, 2026-12-01'."""
    n, dtype = record["size"], record["dtype"]
    what = {"fp32": "fp32 GEMMs with TF32 off", "tf32": "fp32 GEMMs with TF32 on"}.get(
        dtype, f"{dtype} GEMMs")
    return (f"measured: best of {record['repeats']} timed {n}x{n}x{n} {what} each of "
            f"{record['kernels']} ({record['fastest_kernel']} fastest, median "
            f"{record['tflops_median']:.4g} TFLOP/s), torch.randn inputs, "
            f"{record['warmup']} warm-up, {record['timer']}, on {record['device_name']}, "
            f"torch {record['torch']}, {record['backend']}, {str(record['measured_at'])[:10]}")


# --- the JSON caches of measured peaks (this one and harness.peaks' CPU peaks) ---------------

def read_cache(cache_dir: Path | None, name: str) -> dict:
    if cache_dir is None:
        return {}
    try:
        data = json.loads((cache_dir / name).read_text())
    except (OSError, ValueError):  # absent or torn: measure again
        return {}
    return data if isinstance(data, dict) else {}


def write_cache(cache_dir: Path, name: str, data: dict) -> None:
    # Write then rename, so a concurrent trial reads the old file or the new, never half.
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cache_dir / f".{name}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, cache_dir / name)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _on(device: torch.device) -> contextlib.AbstractContextManager:
    """The CUDA device current while timing (events and the default stream are per device)."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()
