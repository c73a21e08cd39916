"""The machine: which device to run on, and the fingerprint stored with every trial.

With `launch`, the only module that reads the environment (CUDA_VISIBLE_DEVICES, host name).
"""

from __future__ import annotations

import importlib.util
import os
import platform
import socket
import subprocess
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil
import torch

import harness
from harness.errors import InputError

LIBRARIES = ("torch", "numpy", "pydantic", "pandas", "matplotlib", "rich", "psutil", "pyyaml",
             "nvidia-ml-py", "torchao", "bitsandbytes", "deepspeed", "pyarrow")


@dataclass(frozen=True)
class DeviceFacts:
    """What the capability table needs to know of the device a trial runs on."""

    type: str  # "cpu" or "cuda"
    name: str
    compute_capability: tuple[int, int] | None = None  # CUDA only
    bf16_supported: bool = True
    libraries: frozenset[str] = frozenset()  # optional libraries importable here
    device_count: int = 1  # GPUs on this node (CPU ranks share the one CPU)

    def has(self, library: str) -> bool:
        return library in self.libraries


OPTIONAL_LIBRARIES = ("torchao", "bitsandbytes", "deepspeed")


def device_facts(device: str) -> DeviceFacts:
    libraries = frozenset(name for name in OPTIONAL_LIBRARIES if importlib.util.find_spec(name))
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        return DeviceFacts("cuda", props.name, (props.major, props.minor),
                           torch.cuda.is_bf16_supported(including_emulation=False), libraries,
                           torch.cuda.device_count())
    return DeviceFacts(device, cpu_model(), None, True, libraries)


def resolve_device(requested: str) -> str:
    """'auto' picks CUDA when present. Asking for CUDA on a machine without it is a usage
    error, not a sweep of skipped trials."""
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise InputError("CUDA was requested but torch sees no CUDA device "
                         f"(torch {torch.__version__}, built with CUDA {torch.version.cuda})",
                         field="--device")
    if requested not in ("cpu", "cuda"):
        raise InputError(f"unknown device '{requested}' (auto, cpu or cuda)", field="--device")
    return requested


def fingerprint(device: str) -> dict[str, Any]:
    """Hardware and software facts that explain a number: device, driver, versions, host."""
    env: dict[str, Any] = {
        "device": device,
        "device_name": cpu_model(),
        "device_count": 1,
        "host": socket.gethostname(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": cpu_model(),
        "cpu_cores_logical": psutil.cpu_count(logical=True),
        "cpu_cores_physical": psutil.cpu_count(logical=False),
        "torch_threads": torch.get_num_threads(),
        "host_memory_bytes": psutil.virtual_memory().total,
        "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "libraries": library_versions(),
        "harness_version": harness.__version__,
        **git_state(),
    }
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        env.update({
            "device_name": props.name,
            "device_count": torch.cuda.device_count(),
            "device_memory_bytes": props.total_memory,
            "compute_capability": f"{props.major}.{props.minor}",
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "driver": nvidia_driver(),
        })
    return env


def library_versions() -> dict[str, str]:
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    # torch's own string keeps the build's local tag ("2.11.0+cu130", "2.13.0+cpu"), which the
    # wheel's metadata may lack: the same release built for CUDA or CPU is not the same torch
    versions["torch"] = torch.__version__
    return versions


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def nvidia_driver() -> str | None:
    try:
        import pynvml  # nvidia-ml-py, the `gpu` extra

        pynvml.nvmlInit()
        version = pynvml.nvmlSystemGetDriverVersion()
        return version.decode() if isinstance(version, bytes) else version
    except Exception:  # not installed, or no NVML on this machine
        return None


def git_state() -> dict[str, Any]:
    """Commit and dirty flag of the harness source tree, when it is a git checkout."""
    root = Path(harness.__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                                text=True, timeout=10)
        if commit.returncode != 0:
            return {"git_commit": None, "git_dirty": None}
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                cwd=root, capture_output=True, text=True, timeout=10)
        return {"git_commit": commit.stdout.strip(), "git_dirty": bool(status.stdout.strip())}
    except (OSError, subprocess.TimeoutExpired):
        return {"git_commit": None, "git_dirty": None}


@dataclass(frozen=True)
class RankEnvironment:
    """This process's place in a torchrun-launched trial (one rank, world size 1, otherwise)."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    local_world_size: int = 1

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def rank_environment() -> RankEnvironment:
    """Read the variables torchrun (torch elastic) sets for each rank it starts."""
    env = os.environ
    if "RANK" not in env or "WORLD_SIZE" not in env:
        return RankEnvironment()
    return RankEnvironment(int(env["RANK"]), int(env.get("LOCAL_RANK", 0)),
                           int(env["WORLD_SIZE"]), int(env.get("LOCAL_WORLD_SIZE", 1)))


def rank_device(device: str, local_rank: int) -> torch.device:
    return torch.device("cuda", local_rank) if device == "cuda" else torch.device(device)
