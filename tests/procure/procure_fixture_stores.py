"""Results databases written by hand (no training) for the procurement tests: the same
scenario on an H100, on two A100s and on a CPU, with figures chosen so that every cost can be
worked out on paper. A uniquely named module (not conftest) so tests can import its names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.spec import TrialResult, TrialSpec
from harness.store import ResultStore

SCENARIO = "shootout"
BF16, FP8 = "precision=bf16 #0", "precision=fp8 #0"
H100 = "NVIDIA H100 80GB HBM3"
A100 = "NVIDIA A100-SXM4-80GB"
CPU = "Test CPU"
NO_ENERGY = "NVML total energy counter not supported on this GPU"
FP8_SKIP = "fp8 needs compute capability 8.9+ (this device: 8.0)"

# $3.60 an H100-hour at 1000 tokens/s on one device: $1.00 per million tokens of device time.
# 1 mJ per token at $0.10/kWh: 1000 J = 2.78e-4 kWh per million tokens, $2.78e-5.
PRICES_YAML = """\
devices:
  H100 80GB HBM3:
    usd_per_device_hour: 3.6
    date: 2026-09
    source: https://example.com/h100
  A100-SXM4-80GB:
    usd_per_device_hour: 1.8
    date: 2026-09-20
    source: https://example.com/a100
electricity:
  usd_per_kwh: 0.10
  date: 2024-10
  source: https://example.com/eia
"""


def env(device: str, name: str) -> dict[str, Any]:
    return {"device": device, "device_name": name, "device_count": 8 if device == "cuda" else 1,
            "cpu_model": CPU, "host": "box", "harness_version": "0.1.0", "git_commit": "abc",
            "git_dirty": False}


def spec(name: str, precision: str, world_size: int = 1, device: str = "cuda") -> TrialSpec:
    return TrialSpec(
        scenario=SCENARIO, trial_id=f"t-{precision}", name=name,
        params={"precision": precision, "repeat": 0},
        model={"arch": "gpt", "flavour": "gpt2", "n_layer": 2, "n_head": 2, "d_model": 32,
               "vocab_size": 64, "max_seq_len": 64},
        data={"kind": "synthetic", "seq_len": 16}, device=device, timeout_s=60.0,
        train={"micro_batch_size": 2, "steps": 6, "warmup_steps": 2, "lr": 1e-3, "seed": 0},
        techniques={"precision": precision, "checkpointing": "none", "compile": False,
                    "world_size": world_size, "nnodes": 1, "grad_accum": 1})


def ok(trial_id: str, tokens_per_s: float, *, mfu: float | None, parameters: float,
       energy_per_token_j: float | None, flops_per_token: float = 6e9,
       peak_memory_bytes: float = 2 * 2**30) -> TrialResult:
    metrics = {"tokens_per_s": tokens_per_s, "flops_per_token": flops_per_token,
               "peak_memory_bytes": peak_memory_bytes}
    unmeasured = {}
    if mfu is None:
        unmeasured["mfu"] = "no fp32 peak FLOP/s known for this device"
    else:
        metrics["mfu"] = mfu
    if energy_per_token_j is None:
        unmeasured.update(energy_j=NO_ENERGY, energy_per_token_j=NO_ENERGY)
    else:
        metrics["energy_per_token_j"] = energy_per_token_j
    return TrialResult(trial_id, "ok", metrics=metrics, unmeasured=unmeasured,
                       notes={"parameters": parameters})


def write_run(path: Path, run_id: str, run_env: dict[str, Any],
              trials: list[tuple[TrialSpec, TrialResult]], scenario: str = SCENARIO,
              started_at: str = "2026-11-01T00:00:00+00:00") -> ResultStore:
    store = ResultStore(path)
    store.create_run(run_id, scenario=scenario, description="", scenario_path="s.yaml",
                     scenario_hash="h", overrides=[], device=run_env["device"], baseline=None,
                     planned_trials=len(trials), env=run_env, started_at=started_at)
    for position, (trial_spec, result) in enumerate(trials):
        store.save_trial(run_id, position, trial_spec, result, run_env, "h")
    store.finish_run(run_id)
    return store


def h100_store(path: Path) -> ResultStore:
    """bf16: 1000 tokens/s on one H100, 1 mJ per token, MFU 40%; fp8 ran here only."""
    bf16, fp8 = spec(BF16, "bf16"), spec(FP8, "fp8")
    return write_run(path, "run-h100", env("cuda", H100), [
        (bf16, ok(bf16.trial_id, 1000.0, mfu=0.40, parameters=1e9, energy_per_token_j=1e-3)),
        (fp8, ok(fp8.trial_id, 1500.0, mfu=0.30, parameters=1e9, energy_per_token_j=8e-4)),
    ])


def a100_store(path: Path) -> ResultStore:
    """bf16: 500 tokens/s on two A100s, energy not measured; fp8 skipped."""
    bf16, fp8 = spec(BF16, "bf16", world_size=2), spec(FP8, "fp8")
    return write_run(path, "run-a100", env("cuda", A100), [
        (bf16, ok(bf16.trial_id, 500.0, mfu=0.35, parameters=1e9, energy_per_token_j=None)),
        (fp8, TrialResult(fp8.trial_id, "skipped", reason=FP8_SKIP)),
    ])


def cpu_store(path: Path) -> ResultStore:
    """bf16 on a CPU the prices file does not know."""
    bf16 = spec(BF16, "bf16", device="cpu")
    return write_run(path, "run-cpu", env("cpu", CPU), [
        (bf16, ok(bf16.trial_id, 50.0, mfu=None, parameters=1e6, energy_per_token_j=None)),
    ])
