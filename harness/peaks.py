"""Peak FLOP/s of the device for a compute dtype, and the utilization (MFU, HFU) against it.

A GPU's peak is its datasheet figure: dense (non-sparse) tensor-core TFLOP/s, fp32 on the
non-tensor cores. Where a datasheet gives only 2:4-sparse figures they are halved, and the
entry's source says so. Every figure carries its source as data, printed beside it in reports.
A device the table does not know has no peak, so its trials carry no MFU (never a guess).

A CPU has no datasheet figure worth the name, so its peak is measured: the best of a few
timed square matmuls (torch.mm and F.linear: they take different kernels), once per machine
(CPU model, torch version, thread count, dtype) and cached as JSON. "Best of N" is the point:
a peak is what the hardware can do, not the median.
It is measured under a ContentionMeter and only a quiet measurement is kept: on a busy machine
the figure is too low and every MFU against it too high, for as long as the cache lives. A busy
attempt is retried after a pause; when every attempt was busy the Peak says so (`under_load`)
and the trial's MFU is left unmeasured.

Beside the MFU peak, an achievable one (`achievable_peak_for`, the denominator of
`mfu_achievable`): on a GPU the best rate of large GEMMs measured once per device and dtype
(harness.metrics.matmul_peak); on a CPU the measured peak MFU is against already.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch

from harness.hardware import DeviceFacts
from harness.metrics import matmul_peak
from harness.metrics.contention import Contention, ContentionMeter, HarnessProcesses, cpu_busy
from harness.metrics.matmul_peak import MATMUL_KERNELS

_NV_H100 = "https://resources.nvidia.com/en-us-tensor-core/nvidia-tensor-core-gpu-datasheet"
_HALVED = "dense, non-sparse: the datasheet's sparse tensor figures halved"


@dataclass(frozen=True)
class DatasheetEntry:
    """One device's datasheet peaks in TFLOP/s by compute dtype; a dtype it lacks is absent."""

    pattern: str  # regex searched (case-insensitive) in torch's get_device_properties().name
    device: str
    tflops: dict[str, float]
    source: str


# Ordered: the first rule whose pattern matches wins, so the specific parts (H100 NVL, H100
# PCIe, L40S, V100S) come before the general ones (H100 = SXM, L4, V100).
PEAK_TABLE: tuple[DatasheetEntry, ...] = (
    DatasheetEntry(
        r"GH200", "NVIDIA GH200",
        {"fp32": 66.9, "tf32": 494.7, "bf16": 989.4, "fp16": 989.4, "fp8": 1978.9},
        "NVIDIA GH200 Grace Hopper Superchip datasheet (2024), https://www.nvidia.com/en-us/"
        "data-center/grace-hopper-superchip/: the H100 SXM's tensor rates; dense, non-sparse"),
    DatasheetEntry(
        r"H200\s*NVL", "NVIDIA H200 NVL",
        {"fp32": 60.0, "tf32": 417.5, "bf16": 835.5, "fp16": 835.5, "fp8": 1670.5},
        "NVIDIA H200 NVL datasheet (2024), https://www.nvidia.com/en-us/data-center/h200/; "
        + _HALVED),
    DatasheetEntry(
        r"H200", "NVIDIA H200 SXM",
        {"fp32": 66.9, "tf32": 494.7, "bf16": 989.4, "fp16": 989.4, "fp8": 1978.9},
        "NVIDIA H200 datasheet (2024), https://www.nvidia.com/en-us/data-center/h200/: the H100 "
        "SXM's tensor rates (1,979 bf16 sparse); dense, non-sparse figures of the H100 SXM5"),
    DatasheetEntry(
        r"H100\s*NVL", "NVIDIA H100 NVL",
        {"fp32": 60.0, "tf32": 417.5, "bf16": 835.5, "fp16": 835.5, "fp8": 1670.5},
        f"NVIDIA H100 NVL datasheet (2024, per GPU), {_NV_H100}; {_HALVED}"),
    DatasheetEntry(
        r"H100\s*PCIe", "NVIDIA H100 PCIe",
        {"fp32": 51.0, "tf32": 378.0, "bf16": 756.0, "fp16": 756.0, "fp8": 1513.0},
        f"NVIDIA H100 datasheet (2023), {_NV_H100}; {_HALVED}"),
    DatasheetEntry(  # "NVIDIA H100 80GB HBM3" is the SXM part
        r"H100", "NVIDIA H100 SXM",
        {"fp32": 66.9, "tf32": 494.7, "bf16": 989.4, "fp16": 989.4, "fp8": 1978.9},
        "NVIDIA H100 Tensor Core GPU Architecture whitepaper (2022), H100 SXM5 column, "
        "https://resources.nvidia.com/en-us-tensor-core/gtc22-whitepaper-hopper; "
        "dense, non-sparse"),
    DatasheetEntry(  # SXM4 and PCIe, 40 and 80 GB: the same peak rates
        r"A100", "NVIDIA A100",
        {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0, "fp16": 312.0},
        "NVIDIA A100 datasheet (2021), https://www.nvidia.com/content/dam/en-zz/Solutions/"
        "Data-Center/a100/pdf/nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf; "
        "dense, non-sparse"),
    DatasheetEntry(
        r"L40S", "NVIDIA L40S",
        {"fp32": 91.6, "tf32": 183.0, "bf16": 362.05, "fp16": 362.05, "fp8": 733.0},
        "NVIDIA L40S datasheet (2023), https://resources.nvidia.com/en-us-l40s/l40s-datasheet-28413"
        "; dense, non-sparse"),
    DatasheetEntry(
        r"\bL4\b", "NVIDIA L4",
        {"fp32": 30.3, "tf32": 60.0, "bf16": 121.0, "fp16": 121.0, "fp8": 242.5},
        "NVIDIA L4 datasheet (2023), https://resources.nvidia.com/en-us-data-center-overview/"
        f"l4-gpu-datasheet; {_HALVED}"),
    DatasheetEntry(
        r"A10G", "NVIDIA A10G",
        {"fp32": 35.0, "tf32": 35.0, "bf16": 70.0, "fp16": 70.0},
        "no NVIDIA datasheet (AWS-only part); AWS's figures as quoted by Baseten, 'NVIDIA A10 vs "
        "A10G' (2023), https://www.baseten.co/blog/nvidia-a10-vs-a10g-for-ml-model-inference/; "
        "dense, non-sparse"),
    DatasheetEntry(
        r"\bA10\b", "NVIDIA A10",
        {"fp32": 31.2, "tf32": 62.5, "bf16": 125.0, "fp16": 125.0},
        "NVIDIA A10 datasheet (2021), https://www.nvidia.com/en-us/data-center/products/a10-gpu/"
        "; dense, non-sparse"),
    DatasheetEntry(  # not the "Laptop GPU" or "4090 D" parts
        r"RTX 4090\s*$", "NVIDIA GeForce RTX 4090",
        {"fp32": 82.6, "tf32": 82.6, "bf16": 165.2, "fp16": 165.2, "fp8": 330.3},
        "NVIDIA Ada Lovelace GPU Architecture whitepaper (2022), https://images.nvidia.com/aem-dam/"
        "Solutions/geforce/ada/nvidia-ada-gpu-architecture.pdf; dense, non-sparse, "
        "FP32 accumulate"),
    DatasheetEntry(
        r"RTX A6000", "NVIDIA RTX A6000",
        {"fp32": 38.7, "bf16": 154.8, "fp16": 154.8},
        f"NVIDIA RTX A6000 datasheet (2021), https://www.nvidia.com/en-us/design-visualization/"
        f"rtx-a6000/; {_HALVED}"),
    DatasheetEntry(  # no bf16, no tf32: Volta tensor cores do fp16 only
        r"V100S", "NVIDIA V100S PCIe", {"fp32": 16.4, "fp16": 130.0},
        "NVIDIA V100 datasheet (2020), https://images.nvidia.com/content/technologies/volta/pdf/"
        "volta-v100-datasheet-update-us-1165301-r5.pdf; dense"),
    DatasheetEntry(
        r"V100.*PCIe", "NVIDIA V100 PCIe", {"fp32": 14.0, "fp16": 112.0},
        "NVIDIA V100 datasheet (2020), https://images.nvidia.com/content/technologies/volta/pdf/"
        "volta-v100-datasheet-update-us-1165301-r5.pdf; dense"),
    DatasheetEntry(
        r"V100", "NVIDIA V100 SXM2", {"fp32": 15.7, "fp16": 125.0},
        "NVIDIA V100 datasheet (2020), https://images.nvidia.com/content/technologies/volta/pdf/"
        "volta-v100-datasheet-update-us-1165301-r5.pdf; dense"),
    DatasheetEntry(
        r"MI300X", "AMD Instinct MI300X",
        {"fp32": 163.4, "tf32": 653.7, "bf16": 1307.4, "fp16": 1307.4, "fp8": 2614.9},
        "AMD Instinct MI300X data sheet (2023), https://www.amd.com/content/dam/amd/en/documents/"
        "instinct-tech-docs/data-sheets/amd-instinct-mi300x-data-sheet.pdf; dense, non-sparse"),
    DatasheetEntry(
        r"(?<!G)B200", "NVIDIA B200",
        {"fp32": 75.0, "tf32": 1125.0, "bf16": 2250.0, "fp16": 2250.0, "fp8": 4500.0},
        "NVIDIA HGX B200 specifications (2024), https://www.nvidia.com/en-us/data-center/hgx/: "
        f"8-GPU figures / 8; {_HALVED}"),
)


@dataclass(frozen=True)
class Peak:
    tflops: float
    dtype: str
    source: str
    measured: bool
    # why a measured figure is not usable: "other processes used at least 41% of the 2 CPUs in
    # each of 3 attempts"; None for a quiet measurement or a datasheet figure
    under_load: str | None = None
    # how far a trial's hardware FLOP/s may exceed the figure before it is taken as no bound:
    # 1 for a datasheet's (a hard bound) and the CPU's; ACHIEVABLE_SLACK for a timed GEMM's
    slack: float = 1.0

    @property
    def quiet(self) -> bool:
        return self.under_load is None


def compute_dtype(precision: str) -> str:
    """The dtype whose peak a precision's MFU is reported against.

    fp8 is reported against the bf16 peak: torchao float8 training runs only the Linear
    layers' matmuls in fp8, and attention, norms, the loss and the rest in bf16, so the fp8
    peak would be a denominator no trial could approach. The bf16 peak is the conservative
    choice of the two (it claims no fp8 rate the run never had) and puts fp8 and bf16 trials
    on one scale: an fp8 speedup shows as higher MFU. torchtitan reports no MFU under fp8.
    """
    mapping = {"fp32": "fp32", "tf32": "tf32", "bf16": "bf16", "bf16-pure": "bf16",
               "fp16": "fp16", "fp8": "bf16"}
    try:
        return mapping[precision]
    except KeyError:
        raise ValueError(f"unknown precision '{precision}' ({', '.join(mapping)})") from None


def datasheet_entry(device_name: str) -> DatasheetEntry | None:
    """The table's first entry whose pattern is found in torch's device name, if any."""
    for entry in PEAK_TABLE:
        if re.search(entry.pattern, device_name, flags=re.IGNORECASE):
            return entry
    return None


def peak_for(facts: DeviceFacts, dtype: str, cache_dir: Path | None = None,
             size: int | None = None, *, meter: ContentionMeter | None = None,
             wait: Callable[[float], None] = time.sleep) -> Peak | None:
    """The peak TFLOP/s of the device for `dtype`, or None where there is none to be had.

    CUDA (and ROCm, which torch reports as cuda): the datasheet table. CPU: a measured peak
    for fp32 and bf16, cached under `cache_dir` (measured afresh each call without one; the
    worker passes `default_cache_dir()`). `size` fixes the matmul size (tests); by default it
    is chosen so one matmul takes about 80 ms. `meter` and `wait` judge and space the attempts
    (tests replay them); by default a ContentionMeter for which only this process is the
    harness's: another rank or the runner working competes with the matmul as much as a stranger.
    """
    if facts.type == "cuda":
        entry = datasheet_entry(facts.name)
        if entry is None or dtype not in entry.tflops:
            return None
        return Peak(entry.tflops[dtype], dtype, f"{entry.device}: {entry.source}", measured=False)
    if facts.type == "cpu" and dtype in CPU_DTYPES:
        meter = meter or ContentionMeter(HarnessProcesses(os.getpid()))
        return _cpu_peak(facts.name, dtype, cache_dir, size, meter, wait)
    return None


class NoPeak(Exception):
    """No achievable peak is to be had; the message is the reason stored in `unmeasured`."""


# A trial may outrun a timed GEMM by this much before the figure is taken as no bound: the GEMM's
# rate varies between runs by a few percent (the H200 at 769-798 TFLOP/s, ±2%), and a
# trial's clocks and GEMM shapes are not the measurement's. More than that is a peak measured
# low (a shared or throttled GPU), and MFU against it would flatter every trial.
ACHIEVABLE_SLACK = 1.05


def achievable_peak_for(facts: DeviceFacts, dtype: str, cache_dir: Path | None = None,
                        mfu_peak: Peak | None = None) -> Peak:
    """The rate the device's own GEMMs reach for `dtype`; raises NoPeak with the reason.

    CUDA (and ROCm): the best of large square GEMMs on random data, timed on the current device
    once per device and dtype and cached under `cache_dir` (harness.metrics.matmul_peak); fp8's
    compute dtype is bf16, so its trials are against the bf16 GEMM too. CPU: `mfu_peak` itself,
    the measured peak MFU is against already (the same object, so the caller can tell).
    The measurement runs in the calling process: only after a trial's measured window.
    """
    if facts.type == "cpu":
        if mfu_peak is None:
            raise NoPeak(f"no {dtype} peak FLOP/s is measured on a CPU")
        return mfu_peak
    if facts.type != "cuda":
        raise NoPeak(f"no GEMM peak is measured on a '{facts.type}' device")
    if dtype not in matmul_peak.GEMM_DTYPES:
        raise NoPeak(f"no {dtype} GEMM is timed ({', '.join(matmul_peak.GEMM_DTYPES)})")
    try:
        record = matmul_peak.gemm_peak(torch.device("cuda"), facts.name, dtype, cache_dir)
    except torch.cuda.OutOfMemoryError:
        raise NoPeak(f"the {dtype} GEMM measurement ({matmul_peak.CUDA_SIZE}³) ran out of device "
                     "memory after the trial") from None
    except Exception as err:  # a failed measurement costs the figure, never the trial
        message = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise NoPeak(f"the {dtype} GEMM measurement failed: {type(err).__name__}: {message}") from None
    return Peak(record["tflops"], dtype, matmul_peak.describe(record), measured=True,
                slack=ACHIEVABLE_SLACK)


def utilization(flops_per_token: float, tokens_per_s: float, peak: Peak, devices: int = 1) -> float:
    """Achieved FLOP/s over the peak of all devices: MFU with model FLOPs per token (6N +
    attention), HFU with hardware FLOPs (recompute included). `tokens_per_s` is global."""
    if devices < 1 or peak.tflops <= 0:
        raise ValueError(f"utilization needs devices >= 1 and a positive peak, got {devices}, "
                         f"{peak.tflops}")
    return flops_per_token * tokens_per_s / (peak.tflops * 1e12 * devices)


# --- the measured CPU peak ---------------------------------------------------------------

CPU_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
# MATMUL_KERNELS: both ways a model multiplies matrices; they take different kernels on a CPU.
# Without AVX-512 BF16, a bf16 torch.mm took a slow path at 0.0015 TFLOP/s on the development VM
# while the bf16 F.linear a transformer's layers call ran at 0.0098 (oneDNN): a peak of torch.mm
# alone put the tiny GPT's bf16 MFU at 350-390%.
CACHE_FILE = "cpu_peaks.json"
TARGET_SECONDS = 0.08  # one matmul: long enough to dwarf timer and dispatch overhead
# Many short samples rather than few long ones: on a shared machine the best of them is the
# likeliest to have caught the cores free. The contention figures are kept with the figure.
WARMUP, REPEATS = 2, 8
# A busy attempt is tried again after a pause, a few times: long enough for a short job (a
# compile, a sibling rank's exit) to end, short enough not to stall a sweep on a busy machine.
ATTEMPTS, RETRY_WAIT_S = 3, 2.0


def default_cache_dir() -> Path:
    """$XDG_CACHE_HOME/harness, else ~/.cache/harness.

    Besides hardware and launch, the one place that reads the environment: a measured peak
    belongs to the machine, not to a run, so it lives where the user keeps caches. Only the
    worker calls this; everything below it takes the directory as an argument.
    """
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "harness"


def time_matmul(dtype: str, size: int, warmup: int = WARMUP, repeats: int = REPEATS) -> float:
    """Best-of-`repeats` TFLOP/s of a size x size x size matmul (2·n³ FLOPs) after warm-up, the
    faster of MATMUL_KERNELS, on this CPU."""
    return matmul_peak.time_gemm("cpu", dtype, size, warmup, repeats, kernels=MATMUL_KERNELS).tflops


def auto_size(dtype: str, target_s: float = TARGET_SECONDS) -> int:
    """A matmul size taking about `target_s` here: time n = 1024, scale by the cube root."""
    tflops = time_matmul(dtype, 1024, warmup=1, repeats=3)
    size = (target_s * tflops * 1e12 / 2) ** (1 / 3)
    return int(min(max(round(size / 128) * 128, 256), 8192))


def cpu_cache_key(cpu_model: str, dtype: str) -> str:
    """The cache key of a CPU peak: the machine, torch, the thread count and the dtype."""
    return f"{cpu_model} | torch {torch.__version__} | {torch.get_num_threads()} threads | {dtype}"


def usable_cpu_record(record: object) -> dict | None:
    """A cached CPU peak this code trusts, or None. A record without contention figures was
    written by older code, maybe on a busy machine; one without `kernels` timed torch.mm alone:
    both are measured again."""
    if isinstance(record, dict) and "foreign_cpu_share" in record and "kernels" in record:
        return record
    return None


def _cpu_peak(cpu_model: str, dtype: str, cache_dir: Path | None, size: int | None,
              meter: ContentionMeter, wait: Callable[[float], None]) -> Peak:
    threads = torch.get_num_threads()
    key = cpu_cache_key(cpu_model, dtype)
    cache = _read_cache(cache_dir)
    record = usable_cpu_record(cache.get(key))
    if record is not None:
        return Peak(record["tflops"], dtype, _describe(record), measured=True)
    n = size or auto_size(dtype)
    busy: list[dict] = []
    for attempt in range(1, ATTEMPTS + 1):
        if attempt > 1:
            wait(RETRY_WAIT_S)
        started = time.perf_counter()
        with meter:
            tflops = time_matmul(dtype, n)
        record = _record(tflops, n, threads, time.perf_counter() - started, meter.reading, attempt)
        if not cpu_busy(meter.reading):
            if cache_dir is not None:
                _write_cache(cache_dir, {**cache, key: record})
            return Peak(tflops, dtype, _describe(record), measured=True)
        busy.append(record)
    least = min(busy, key=lambda r: r["foreign_cpu_share"] or 0.0)
    return Peak(least["tflops"], dtype, _describe(least), measured=True,
                under_load=_describe_busy(busy, meter.reading.cpus))


def _record(tflops: float, size: int, threads: int, seconds: float, contention: Contention,
            attempts: int) -> dict:
    load = contention.load_avg_before
    return {"tflops": tflops, "size": size, "repeats": REPEATS, "threads": threads,
            "seconds": round(seconds, 3), "load_avg_1m": None if load is None else round(load[0], 2),
            "foreign_cpu_share": contention.foreign_cpu_share, "steal_share": contention.steal_share,
            "attempts": attempts, "kernels": " and ".join(MATMUL_KERNELS),
            "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def _describe(record: dict) -> str:
    """peak_source: 'measured: best of 8 timed 1024x1024 matmuls each of torch.mm and F.linear
    on this CPU, 2 threads, 2026-12-01, others used 0.4% of the CPUs, load average 0.3'."""
    parts = [f"measured: best of {record['repeats']} timed {record['size']}x{record['size']} "
             f"matmuls each of {record['kernels']} on this CPU, {record['threads']} threads",
             str(record["measured_at"])[:10]]
    if record.get("foreign_cpu_share") is not None:
        parts.append(f"others used {record['foreign_cpu_share']:.1%} of the CPUs")
    if record.get("steal_share"):
        parts.append(f"steal {record['steal_share']:.1%}")
    if record.get("load_avg_1m") is not None:
        parts.append(f"load average {record['load_avg_1m']:.1f}")
    return ", ".join(parts)


def _describe_busy(records: list[dict], cpus: int) -> str:
    """'other processes used at least 41% of the 2 CPUs in each of 3 attempts'."""
    foreign = min(r["foreign_cpu_share"] or 0.0 for r in records)
    steal = min(r["steal_share"] or 0.0 for r in records)
    line = f"other processes used at least {foreign:.0%} of the {cpus} CPUs"
    if steal >= foreign:  # steal, not a process here, is what kept the cores
        line = f"the hypervisor gave at least {steal:.0%} of the {cpus} CPUs' time to other guests"
    return f"{line} in each of {len(records)} attempts"


def _read_cache(cache_dir: Path | None) -> dict:
    return matmul_peak.read_cache(cache_dir, CACHE_FILE)


def _write_cache(cache_dir: Path, data: dict) -> None:
    matmul_peak.write_cache(cache_dir, CACHE_FILE, data)
