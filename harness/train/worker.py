"""The worker process of one trial (or one rank of it):
`python -m harness.train.worker SPEC.json RESULT.json [RUNNER_PID]`.

Runs the trial (harness.train.trial) and writes a TrialResult: rank 0 to RESULT.json, any
other rank only when it fails, to RESULT.rank<N>.json, then exits non-zero so that torchrun
ends the whole trial. Any exception becomes a status (failed, oom, diverged); the runner
turns a worker that never writes a result (killed, timed out) into a status too. Rank 0's
progress goes to stdout as lines starting with PROGRESS_PREFIX.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
import traceback
from pathlib import Path

import torch

from harness.hardware import rank_environment
from harness.parallel import Unsupported
from harness.spec import TrialResult, TrialSpec, utc_now
from harness.train.loop import Diverged
from harness.train.trial import run_trial

PROGRESS_PREFIX = "@@harness "
TRACEBACK_TAIL = 4000  # characters of a failure's traceback kept in the store


def runner_of(kind: str):
    """The function that runs one trial of `kind` (the scenario's `kind`)."""
    if kind == "train":
        return run_trial
    if kind == "inference":
        from harness.inference.trial import run_inference_trial
        return run_inference_trial
    if kind == "distill":
        from harness.distillation.trial import run_distillation_trial
        return run_distillation_trial
    if kind == "grow":
        from harness.growth.trial import run_growth_trial
        return run_growth_trial
    raise ValueError(f"unknown trial kind {kind!r}")


# The CPU allocator's out-of-memory is a plain RuntimeError ("[enforce fail at alloc_cpu.cpp]
# ... DefaultCPUAllocator: can't allocate memory: you tried to allocate N bytes"), not
# torch.OutOfMemoryError as CUDA's is.
CPU_ALLOCATION_FAILED = "DefaultCPUAllocator: can't allocate memory"


def run_and_classify(spec: TrialSpec, progress=lambda done, total: None) -> TrialResult:
    """The trial kind's runner, with every way a trial can end turned into a status."""
    started = utc_now()
    try:
        result = runner_of(spec.kind)(spec, progress)
    except Unsupported as err:  # a plug-in strategy's own reason not to run here
        result = TrialResult(spec.trial_id, "skipped", reason=str(err))
    except Diverged as err:
        result = TrialResult(spec.trial_id, "diverged", reason=str(err),
                             series={"loss": err.losses})
    except (torch.OutOfMemoryError, MemoryError) as err:
        result = TrialResult(spec.trial_id, "oom", reason=_one_line(err) or type(err).__name__,
                             traceback=_tail())
    except RuntimeError as err:
        status = "oom" if CPU_ALLOCATION_FAILED in str(err) else "failed"
        result = TrialResult(spec.trial_id, status, reason=f"{type(err).__name__}: {_one_line(err)}",
                             traceback=_tail())
    except Exception as err:
        result = TrialResult(spec.trial_id, "failed", reason=f"{type(err).__name__}: {_one_line(err)}",
                             traceback=_tail())
    result.started_at, result.finished_at = started, utc_now()
    return result


def main(argv: list[str]) -> int:
    spec_path, result_path = Path(argv[0]), Path(argv[1])
    # under torchrun the parent is its agent (harness.elastic), which dies with the runner
    die_with_parent(int(argv[2]) if len(argv) > 2 else os.getppid())
    spec = TrialSpec.from_dict(json.loads(spec_path.read_text()))

    def progress(done: int, total: int) -> None:
        print(f"{PROGRESS_PREFIX}{json.dumps({'done': done, 'total': total})}", flush=True)

    result = run_and_classify(spec, progress)
    ranks = rank_environment()
    if ranks.distributed and result.status != "ok":
        result.reason = f"rank {ranks.rank}: {result.reason}"
    if ranks.rank == 0:
        write_result(result, result_path)
    elif result.status != "ok":
        write_result(result, rank_result_path(result_path, ranks.rank))
    return 0 if result.status == "ok" else 1


def write_result(result: TrialResult, path: Path) -> None:
    partial = path.with_suffix(".partial")
    partial.write_text(result.to_json())
    os.replace(partial, path)  # the runner never reads half a result


def rank_result_path(result_path: Path, rank: int) -> Path:
    return result_path.with_name(f"{result_path.stem}.rank{rank}.json")


def die_with_parent(parent_pid: int) -> None:
    """Ask Linux to SIGKILL this worker when the runner dies (PR_SET_PDEATHSIG), so a killed
    sweep leaves no training running in the background; exit at once if it already died."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            return
    if os.getppid() != parent_pid:
        os._exit(1)


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:500] if text else ""


def _tail() -> str:
    return traceback.format_exc()[-TRACEBACK_TAIL:]


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
