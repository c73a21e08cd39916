"""Peak memory over the measured window: the CUDA caching allocator's peaks on a GPU, the
host's resident-set peak everywhere.

The host peak uses Linux's high-water mark (VmHWM), reset at the window's start by writing
5 to /proc/self/clear_refs, so the figure covers the window alone. Where that cannot be
reset, the lifetime peak (getrusage) is reported and the note says so.
"""

from __future__ import annotations

import resource
import sys
from pathlib import Path

import torch

from harness.metrics.readings import Readings

PROC = Path("/proc/self")


class MemoryMeter:
    def __init__(self, device: torch.device):
        self.device = device
        self.peaks = Readings()

    def __enter__(self) -> MemoryMeter:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        self._hwm_reset = reset_host_peak()
        return self

    def __exit__(self, *exc) -> None:
        metrics, unmeasured = self.peaks.metrics, self.peaks.unmeasured
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            stats = torch.cuda.memory_stats(self.device)
            metrics["peak_memory_bytes"] = float(stats.get("allocated_bytes.all.peak", 0))
            metrics["peak_reserved_bytes"] = float(stats.get("reserved_bytes.all.peak", 0))
            metrics["alloc_retries"] = float(stats.get("num_alloc_retries", 0))
        else:
            why = f"no device allocator on {self.device.type}; the host peak is peak_rss_bytes"
            unmeasured["peak_memory_bytes"] = why
            unmeasured["peak_reserved_bytes"] = why
        peak = host_peak_bytes()
        if peak is None:
            unmeasured["peak_rss_bytes"] = f"no resident-set high-water mark on {sys.platform}"
        else:
            metrics["peak_rss_bytes"] = float(peak)
            if not self._hwm_reset:
                self.peaks.notes["peak_rss_bytes"] = "process lifetime peak (could not reset VmHWM)"


def reset_host_peak() -> bool:
    try:
        (PROC / "clear_refs").write_text("5")
        return True
    except OSError:
        return False


def host_peak_bytes() -> int | None:
    try:
        for line in (PROC / "status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    if sys.platform.startswith("linux"):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if sys.platform == "darwin":
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # bytes on macOS
    return None


def local_nbytes(tensor: torch.Tensor) -> int:
    """Bytes this process holds of `tensor`: a sharded tensor's local shard only (FSDP2's
    DTensor, or the partition DeepSpeed ZeRO-3 keeps in `ds_tensor`)."""
    if hasattr(tensor, "ds_tensor"):
        tensor = tensor.ds_tensor
    local = tensor.to_local() if hasattr(tensor, "to_local") else tensor
    return local.numel() * local.element_size()


def global_numel(tensor: torch.Tensor) -> int:
    """Elements of the whole tensor, however it is sharded (ZeRO-3 empties the module's own)."""
    return getattr(tensor, "ds_numel", None) or tensor.numel()
