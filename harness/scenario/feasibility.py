"""What a scenario's trials need of this machine, known before a single one runs: memory, ranks
per node, and the plug-in file a model names. A trial that cannot fit is refused when the
scenario is loaded (validate, run, --dry-run) with one line naming the field at fault, instead
of asking the machine for 74.5 GiB minutes into a sweep.

Every estimate is a lower bound: activations, the allocator's slack, CUDA's own context and the
Python processes are left out, model states are taken as perfectly sharded over every rank, and
the largest CUDA device stands for all of them. A refusal is therefore certain, and a scenario
that could run is never refused.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from harness.scenario.loader import Loc
from harness.scenario.schema import Scenario

Sections = dict[str, dict[str, Any]]


class Problem(NamedTuple):
    message: str
    field: str  # dotted, e.g. data.vocab_size


@dataclass(frozen=True)
class Machine:
    cpu_cores: int  # the cores this process may run on: each CPU rank is a process of its own
    host_memory_bytes: int
    cuda_devices: int = 0
    cuda_memory_bytes: int = 0  # total memory of the largest device
    cuda_name: str = ""


def this_machine() -> Machine:
    """The facts of the machine this process runs on; the one place the checks read it, so
    tests replace this function."""
    import psutil
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    devices = torch.cuda.device_count() if torch.cuda.is_available() else 0
    largest = max((torch.cuda.get_device_properties(i) for i in range(devices)),
                  key=lambda props: props.total_memory, default=None)
    return Machine(cpu_cores=cores or 1, host_memory_bytes=psutil.virtual_memory().total,
                   cuda_devices=devices,
                   cuda_memory_bytes=largest.total_memory if largest else 0,
                   cuda_name=largest.name if largest else "")


def runs_on_cuda(machine: Machine, device: str) -> bool:
    """Whether trials loaded for `device` (auto, cpu or cuda) will run on a CUDA device here."""
    return device != "cpu" and machine.cuda_devices > 0


def trial_problem(scenario: Scenario, combination: dict[str, Any], sections: Sections,
                  machine: Machine, device: str) -> Problem | None:
    """What keeps one resolved trial (`sections`, from matrix.resolve_sections) from running
    here, or None."""
    return (_arch_file_problem(sections["model"]["arch"])
            or _parallel_problem(sections["techniques"]["parallel"])
            or _memory_problem(sections, _model_given(scenario, combination), machine, device)
            or _vocab_problem(sections))


class RanksProblem(NamedTuple):
    message: str
    loc: Loc


def ranks_problem(scenario: Scenario, world_sizes: list[int], machine: Machine,
                  device: str) -> RanksProblem | None:
    """Why no trial (their `world_sizes`, ranks per node) can place its ranks on this node, or
    None when at least one can. Only
    `world_size` ranks (per node) run here, whatever `nnodes` is. A trial asking for more
    GPUs than the node has is skipped when the sweep runs, with the reason, so a matrix that
    sweeps past them (scenarios/multi_gpu.yaml) stays valid as long as one trial fits."""
    smallest = min(world_sizes, default=1)
    if runs_on_cuda(machine, device):
        have = f"{machine.cuda_devices} CUDA device{'s' * (machine.cuda_devices != 1)}"
        limit, why = machine.cuda_devices, "each rank needs a GPU of its own"
    else:
        have = f"{machine.cpu_cores} CPU core{'s' * (machine.cpu_cores != 1)}"
        limit, why = machine.cpu_cores, "each rank is a process that needs a core"
    if smallest <= limit:
        return None
    swept = (scenario.matrix or {}).get("world_size")
    if swept and len(set(world_sizes)) > 1:  # the smallest value alone would make a trial fit
        return RanksProblem(f"no trial fits: the smallest world_size is {smallest} ranks per "
                            f"node, but this machine has {have} ({why})",
                            ("matrix", "world_size", swept.index(smallest)))
    return RanksProblem(f"{smallest} ranks per node, but this machine has {have} ({why}; "
                        "world_size counts the ranks of one node, nnodes the nodes)",
                        ("matrix", "world_size", 0) if swept else ("techniques", "world_size"))


def _model_given(scenario: Scenario, combination: dict[str, Any]) -> dict[str, Any]:
    """The model fields a trial's scenario sets itself (its model section and the trial's
    axes), and its preset."""
    given = {key: getattr(scenario.model, key) for key in scenario.model.model_fields_set
             if key != "arch"}
    given["preset"] = scenario.model.preset
    given.update({axis.partition(".")[2]: value for axis, value in combination.items()
                  if axis.startswith("model.") and axis != "model.arch"})
    return given


def _arch_file_problem(arch: str) -> Problem | None:
    location = arch.rpartition(":")[0]
    if arch == "gpt" or not location.endswith(".py"):
        return None  # a module is imported by the worker; importing it here could run anything
    if not Path(location).is_file():  # made absolute against the scenario's folder on loading
        return Problem(f"no such file '{location}'", "model.arch")
    return None


def _parallel_problem(name: str) -> Problem | None:
    """A `parallel` name that can never be a strategy (no such form, file or attribute, or not
    a Strategy class: `sys:exit`). The plug-in's module is imported to see its class; nothing
    in it is called (the worker builds it)."""
    from harness.parallel.registry import check_strategy_name

    problem = check_strategy_name(name)
    return Problem(problem, "techniques.parallel") if problem else None


def _vocab_problem(sections: Sections) -> Problem | None:
    """The token ids of the data must index the model's embedding (harness/train/trial.py
    refuses it too, after building the data)."""
    data, vocab = sections["data"], sections["model"]["vocab_size"]
    if data["kind"] == "synthetic" and data["vocab_size"] > vocab:
        return Problem(f"the synthetic data has {data['vocab_size']} token ids but the model's "
                       f"vocab_size is {vocab}", "data.vocab_size")
    if data["kind"] == "text" and vocab < 256:
        return Problem(f"text data is read as bytes (256 token ids) but the model's vocab_size "
                       f"is {vocab}", "model.vocab_size")
    return None


class Need(NamedTuple):
    """A part of a trial's memory: its bytes, how they were counted, the field they grow with."""
    bytes: int
    counted: str
    field: str


def _memory_problem(sections: Sections, model_given: dict[str, Any], machine: Machine,
                    device: str) -> Problem | None:
    techniques = sections["techniques"]
    ranks, here = techniques["world_size"] * techniques["nnodes"], techniques["world_size"]
    on_cuda = runs_on_cuda(machine, device)
    # FSDP's offload keeps the shards in host memory; anything else keeps them on the device
    state_on_gpu = on_cuda and not (techniques["parallel"] == "fsdp"
                                    and techniques["fsdp_cpu_offload"])
    # one GPU holds one rank's share; host memory holds the shares of every rank of this node
    state = _model_state(sections, model_given, 1 if state_on_gpu else here, ranks)
    logits = _logits(sections, 1 if on_cuda else here)  # where the computation runs
    on_device: list[Need | None] = []
    host = [_synthetic_table(sections["data"])]
    (on_device if state_on_gpu else host).append(state)
    (on_device if on_cuda else host).append(logits)
    gpu = f"its CUDA device ({machine.cuda_name})" if machine.cuda_name else "its CUDA device"
    return (_over(on_device, machine.cuda_memory_bytes, f"{gpu} has {{}}")
            or _over(host, machine.host_memory_bytes, "this machine has {} of host memory"))


def _over(needs: list[Need | None], memory: int, has: str) -> Problem | None:
    parts = [need for need in needs if need is not None and need.bytes > 0]
    total = sum(need.bytes for need in parts)
    if total <= memory:
        return None
    parts.sort(key=lambda need: -need.bytes)
    # the parts that make the total: a 64-token table beside a 700 TiB model explains nothing
    counted = " + ".join(need.counted for need in parts if need.bytes * 100 >= total)
    field = parts[0].field
    return Problem(f"the trial needs at least {format_bytes(total)} ({counted}) but "
                   + has.format(format_bytes(memory)), field)


def _synthetic_table(data: dict[str, Any]) -> Need | None:
    """The synthetic source's V x V float64 transition matrix (harness/data/synthetic.py), in
    host memory whatever the device."""
    if data["kind"] != "synthetic":
        return None
    vocab = data["vocab_size"]
    return Need(vocab * vocab * 8, f"synthetic data table {vocab}^2 x 8 bytes", "data.vocab_size")


def _logits(sections: Sections, holders: int) -> Need:
    """One micro-batch's logits (B, T, V), which every model returns whole (harness.models),
    at 2 bytes a value at the least (bf16), for each of the `holders` ranks in one memory."""
    batch, seq_len = sections["train"]["micro_batch_size"], sections["data"]["seq_len"]
    vocab = sections["model"]["vocab_size"]
    counted = f"logits {batch} x {seq_len} x {vocab} x 2 bytes"
    if holders > 1:
        counted += f" x {holders} ranks"
    return Need(batch * seq_len * vocab * 2 * holders, counted, "train.micro_batch_size")


def _model_state(sections: Sections, model_given: dict[str, Any], holders: int,
                 ranks: int) -> Need | None:
    """Weights, gradients and optimizer state that `holders` of the trial's `ranks` keep in
    one memory, the model taken as evenly sharded; None for a plug-in model, whose size its
    config does not tell."""
    from harness.models import GPTConfig, total_parameter_count  # torch is loaded by now

    model, techniques = sections["model"], sections["techniques"]
    if model["arch"] != "gpt":
        return None
    config = GPTConfig(**{key: value for key, value in model.items() if key != "arch"})
    parameters = total_parameter_count(config)
    per_parameter, kinds = _bytes_per_parameter(techniques["precision"], techniques["optimizer"])
    counted = f"{parameters:,} parameters x {per_parameter} bytes of {kinds}"
    if holders < ranks:
        counted += f", {holders}/{ranks} of it sharded here at best"
    share = -(-parameters * per_parameter * holders // ranks)  # rounded up
    return Need(share, counted, _field_growing_the_model(config, model_given))


def _bytes_per_parameter(precision: str, optimizer: str) -> tuple[int, str]:
    """Weights + gradients + optimizer state per parameter. Mixed precision keeps fp32 master
    weights and gradients; bf16-pure keeps all three in bf16 (harness/techniques/)."""
    weight = 2 if precision == "bf16-pure" else 4
    state = {"adamw": 2 * weight, "adamw-fused": 2 * weight, "sgd": weight,  # momentum
             "adamw8bit": 2}.get(optimizer, 0)  # two 8-bit moments
    return 2 * weight + state, f"weights, gradients and {optimizer} state"


def _field_growing_the_model(config: Any, model_given: dict[str, Any]) -> str:
    """The model field the scenario sets whose value, put back to its preset's (the tiny
    preset's when there is none), shrinks the model the most; else the preset itself."""
    from harness.models import PRESETS, total_parameter_count

    preset = model_given.get("preset")
    reference = PRESETS.get(preset) if isinstance(preset, str) else None
    reference = reference or PRESETS["tiny"]
    smallest, field = total_parameter_count(config), "model.preset"
    for key in model_given:
        if key == "preset" or not hasattr(reference, key):
            continue
        try:
            count = total_parameter_count(dataclasses.replace(config, **{key: getattr(reference, key)}))
        except (ValueError, TypeError, ZeroDivisionError):  # e.g. d_model no longer splits into heads
            continue
        if count < smallest:
            smallest, field = count, f"model.{key}"
    return field


def format_bytes(count: int) -> str:
    """1024-based, one decimal: 74.5 GiB; MiB below, TiB and PiB above; bytes in powers of ten
    for the sizes only a typo asks for."""
    value = count / 2**20
    for unit in ("MiB", "GiB", "TiB", "PiB"):
        if value < 1024:
            return f"{value:,.1f} {unit}"
        value /= 1024
    return f"{count:.1e} bytes"
