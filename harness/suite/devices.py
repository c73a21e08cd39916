"""The device a suite is planned for: this machine's, or one named with --assume-device.

An assumed device is a CUDA device of that name with the compute capability of its family
(from the table below), native bf16 and every optional library installed, so that the plan
skips what that device would skip; its peaks are the datasheet's (harness.peaks).

The peaks of the estimate: a GPU's datasheet figures (or, for a GPU the table lacks, assumed
ones); a CPU's measured figure only where harness.peaks has cached one for this machine, else
an assumed one. A dry run never times a matmul.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from harness import hardware, peaks
from harness.errors import InputError

# (pattern searched in the name, compute capability): the first match wins, so the specific
# names (GH200, L40S) come before the ones they contain (H200, L4)
ASSUMABLE: tuple[tuple[str, str, tuple[int, int]], ...] = (
    (r"GH200", "GH200", (9, 0)),
    (r"H200", "H200", (9, 0)),
    (r"H100", "H100", (9, 0)),
    (r"(?<!G)B200", "B200", (10, 0)),
    (r"A100", "A100", (8, 0)),
    (r"L40S", "L40S", (8, 9)),
    (r"\bL4\b", "L4", (8, 9)),
)

# A GPU the datasheet table lacks: round figures of a recent data-centre part (an assumption,
# named as one in the plan), so that a plan can still be made.
ASSUMED_GPU_TFLOPS = {"fp32": 20.0, "tf32": 150.0, "bf16": 300.0, "fp16": 300.0}
# A CPU without a cached measured peak: an assumption of the order of a few cores' fp32 rate.
ASSUMED_CPU_TFLOPS = 0.1


@dataclass(frozen=True)
class Peak:
    tflops: float
    source: str  # "datasheet: ...", "measured (cached): ...", "assumed"


@dataclass(frozen=True)
class PlannedDevice:
    facts: hardware.DeviceFacts
    assumed: bool  # named by --assume-device, not this machine's
    peaks: dict[str, Peak]  # by compute dtype (harness.peaks.compute_dtype)

    @property
    def type(self) -> str:
        return self.facts.type

    @property
    def name(self) -> str:
        return self.facts.name

    def peak(self, dtype: str) -> Peak:
        """The peak of `dtype`; a dtype the device lists no figure for takes fp32's."""
        return self.peaks.get(dtype) or self.peaks["fp32"]

    def describe(self) -> dict:
        libraries = sorted(self.facts.libraries)
        return {"type": self.type, "name": self.name, "assumed": self.assumed,
                "compute_capability": (".".join(map(str, self.facts.compute_capability))
                                       if self.facts.compute_capability else None),
                "libraries": libraries,
                "libraries_note": ("assumed installed on the assumed device" if self.assumed
                                   else "importable here"),
                "peaks_tflops": {dtype: {"tflops": p.tflops, "source": p.source}
                                 for dtype, p in self.peaks.items()}}


def assumed_device(name: str) -> PlannedDevice:
    """A CUDA device called `name`, as far as the plan needs one; InputError for a name the
    table does not know."""
    family = next(((label, cc) for pattern, label, cc in ASSUMABLE
                   if re.search(pattern, name, flags=re.IGNORECASE)), None)
    entry = peaks.datasheet_entry(name)
    if family is None or entry is None:
        known = ", ".join(label for _, label, _ in ASSUMABLE)
        raise InputError(f"cannot plan for '{name}': known devices are {known} (e.g. "
                         "'NVIDIA H200')", field="--assume-device")
    facts = hardware.DeviceFacts("cuda", name, family[1], True,
                                 frozenset(hardware.OPTIONAL_LIBRARIES), 1)
    return PlannedDevice(facts, True, _datasheet(entry))


def this_device(device: str) -> PlannedDevice:
    """This machine's `device` (cpu or cuda, resolved)."""
    facts = hardware.device_facts(device)
    if facts.type == "cuda":
        entry = peaks.datasheet_entry(facts.name)
        found = _datasheet(entry) if entry else {
            dtype: Peak(tflops, "assumed: no datasheet figure for this GPU")
            for dtype, tflops in ASSUMED_GPU_TFLOPS.items()}
        return PlannedDevice(facts, False, found)
    found = {dtype: cached for dtype in peaks.CPU_DTYPES
             if (cached := cached_cpu_peak(facts.name, dtype)) is not None}
    found.setdefault("fp32", Peak(ASSUMED_CPU_TFLOPS, "assumed: no measured CPU peak is cached"))
    return PlannedDevice(facts, False, found)


def _datasheet(entry: peaks.DatasheetEntry) -> dict[str, Peak]:
    return {dtype: Peak(tflops, f"datasheet: {entry.device}") for dtype, tflops in entry.tflops.items()}


def cached_cpu_peak(cpu_model: str, dtype: str) -> Peak | None:
    """The CPU peak harness.peaks measured and cached for this machine, if it has; never measures.

    A record harness.peaks would measure again is no figure here either."""
    from harness.metrics import matmul_peak

    cache = matmul_peak.read_cache(peaks.default_cache_dir(), peaks.CACHE_FILE)
    record = peaks.usable_cpu_record(cache.get(peaks.cpu_cache_key(cpu_model, dtype)))
    if record is None:
        return None
    return Peak(float(record["tflops"]), f"measured (cached): {str(record.get('measured_at'))[:10]}")
