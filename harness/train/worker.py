"""The worker process of one trial: `python -m harness.train.worker SPEC.json RESULT.json`.

Builds the data and the model, applies the techniques, trains under the meters and writes a
TrialResult. Any exception becomes the trial's status (failed, oom, diverged) in the result
file; the runner turns a worker that never writes one (killed, timed out) into a status too.
Progress goes to stdout as lines starting with PROGRESS_PREFIX.
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

from harness.data import load_splits
from harness.hardware import device_facts
from harness.models import GPTConfig, build_model
from harness.spec import TrialResult, TrialSpec
from harness.store.db import utc_now
from harness.techniques import apply_techniques
from harness.techniques.optimizers import make_optimizer
from harness.train.accounting import account_compile, account_flops, account_loss_scaling, account_memory
from harness.train.loop import Diverged, LoopSettings, run_training
from harness.train.step import make_train_step

PROGRESS_PREFIX = "@@harness "
TRACEBACK_TAIL = 4000  # characters of a failure's traceback kept in the store


def run_trial(spec: TrialSpec, progress=lambda done, total: None) -> TrialResult:
    device = torch.device(spec.device)
    train, data, techniques = spec.train, spec.data, spec.techniques
    torch.manual_seed(train["seed"])
    batch, accum = train["micro_batch_size"], techniques["grad_accum"]
    splits = load_splits(
        data["kind"], seq_len=data["seq_len"], seed=train["seed"],
        train_sequences=train["steps"] * batch * accum,
        eval_sequences=train["eval_batches"] * batch, path=data["path"],
        vocab_size=data["vocab_size"], concentration=data["concentration"],
        eval_fraction=data["eval_fraction"])
    config = GPTConfig(**{k: v for k, v in spec.model.items() if k != "arch"})
    if splits.vocab_size > config.vocab_size:
        raise ValueError(f"the data has {splits.vocab_size} token ids but the model's "
                         f"vocab_size is {config.vocab_size}")

    bare_model = build_model(spec.model["arch"], config).to(device)
    model, precision = apply_techniques(bare_model, techniques, device)
    optimizer = make_optimizer(bare_model, techniques["optimizer"], train["lr"], train["weight_decay"])
    step = make_train_step(model, optimizer, precision, train["grad_clip"])
    settings = LoopSettings(steps=train["steps"], warmup_steps=train["warmup_steps"],
                            micro_batch_size=batch, eval_batches=train["eval_batches"],
                            grad_accum=accum, progress_every=max(1, train["steps"] // 50))
    outcome = run_training(step, model, bare_model, precision, splits, device, settings, progress)

    account_flops(outcome, config, splits.seq_len, techniques, device_facts(spec.device))
    account_memory(outcome, bare_model, optimizer)
    account_loss_scaling(outcome, precision, train["steps"])
    account_compile(outcome, techniques["compile"])
    outcome.notes.update({
        "loss_floor": splits.loss_floor, "entropy_rate": splits.entropy_rate,
        "data": splits.description, "parameters": sum(p.numel() for p in bare_model.parameters()),
    })
    return TrialResult(trial_id=spec.trial_id, status="ok", metrics=outcome.metrics,
                       unmeasured=outcome.unmeasured, series=outcome.series, notes=outcome.notes)


def run_and_classify(spec: TrialSpec, progress=lambda done, total: None) -> TrialResult:
    """run_trial, with every way a trial can end turned into a status."""
    started = utc_now()
    try:
        result = run_trial(spec, progress)
    except Diverged as err:
        result = TrialResult(spec.trial_id, "diverged", reason=str(err),
                             series={"loss": err.losses})
    except (torch.OutOfMemoryError, MemoryError) as err:
        result = TrialResult(spec.trial_id, "oom", reason=_one_line(err) or type(err).__name__,
                             traceback=_tail())
    except Exception as err:
        result = TrialResult(spec.trial_id, "failed", reason=f"{type(err).__name__}: {_one_line(err)}",
                             traceback=_tail())
    result.started_at, result.finished_at = started, utc_now()
    return result


def main(argv: list[str]) -> int:
    spec_path, result_path = Path(argv[0]), Path(argv[1])
    if len(argv) > 2:
        die_with_parent(int(argv[2]))
    spec = TrialSpec.from_dict(json.loads(spec_path.read_text()))

    def progress(done: int, total: int) -> None:
        print(f"{PROGRESS_PREFIX}{json.dumps({'done': done, 'total': total})}", flush=True)

    result = run_and_classify(spec, progress)
    partial = result_path.with_suffix(".partial")
    partial.write_text(result.to_json())
    os.replace(partial, result_path)  # the runner never reads half a result
    return 0


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
