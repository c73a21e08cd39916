"""Plan a scenario's trials, run each in its own worker, commit each result as it ends.

The only module that sees whole TrialSpecs. A resumed run skips every trial already stored,
whatever its status, so no finished trial is lost or run twice.
"""

from __future__ import annotations

import secrets
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from harness import hardware
from harness.errors import InputError
from harness.launch import run_worker
from harness.progress import SweepProgress
from harness.scenario import LoadedScenario, baseline_of, expand
from harness.spec import TrialResult, TrialSpec
from harness.store import ResultStore, utc_now
from harness.techniques.capabilities import unsupported_reason


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    statuses: dict[str, int]  # status -> trials (the whole run, resumed ones included)
    ran: int  # trials run by this invocation

    @property
    def exit_code(self) -> int:
        """1 when trials were planned and not one of them finished `ok`."""
        total = sum(self.statuses.values())
        return 1 if total and not self.statuses.get("ok") else 0


def plan(loaded: LoadedScenario, device: str) -> list[tuple[TrialSpec, str | None]]:
    """Every trial, with the reason it will be skipped (None when it will run)."""
    facts = hardware.device_facts(device)
    return [(spec, unsupported_reason(spec.techniques, facts, spec.model)) for spec in expand(loaded, device)]


def run_scenario(loaded: LoadedScenario, store: ResultStore, device: str, *, resume: bool = False,
                 progress: SweepProgress | None = None) -> RunSummary:
    planned = plan(loaded, device)
    env = hardware.fingerprint(device)
    if resume:
        run_id = _resumable_run(store, loaded)
        done = store.trial_ids(run_id)
    else:
        run_id = new_run_id()
        done = set()
        scenario = loaded.scenario
        store.create_run(run_id, scenario=scenario.name, description=scenario.description,
                         scenario_path=loaded.path, scenario_hash=loaded.file_hash,
                         overrides=list(loaded.overrides), device=device,
                         baseline=baseline_of(scenario), planned_trials=len(planned), env=env)
    progress = progress or SweepProgress(quiet=True)
    todo = [(i, spec, why) for i, (spec, why) in enumerate(planned) if spec.trial_id not in done]
    ran = 0
    with progress, tempfile.TemporaryDirectory(prefix="harness-") as workdir:
        progress.start_sweep(len(planned), already_done=len(planned) - len(todo))
        for position, spec, skip_reason in todo:
            progress.start_trial(spec.name, spec.train["steps"])
            if skip_reason:
                now = utc_now()
                result = TrialResult(spec.trial_id, "skipped", reason=skip_reason,
                                     started_at=now, finished_at=now)
            else:
                result = run_worker(spec, Path(workdir), progress.step)
                ran += 1
            store.save_trial(run_id, position, spec, result, env, loaded.file_hash)
            progress.end_trial(spec.name, result)
    store.finish_run(run_id)
    statuses: dict[str, int] = {}
    for trial in store.trials(run_id):
        statuses[trial["status"]] = statuses.get(trial["status"], 0) + 1
    return RunSummary(run_id, statuses, ran)


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)


def _resumable_run(store: ResultStore, loaded: LoadedScenario) -> str:
    name = loaded.scenario.name
    try:
        run = store.run(scenario=name)
    except InputError:
        raise InputError(f"nothing to resume: no earlier run of scenario '{name}' in {store.path}",
                         field="--resume") from None
    if run.scenario_hash != loaded.file_hash:
        raise InputError(f"the scenario changed since run {run.run_id} (file or --set differ); "
                         "run it without --resume", file=loaded.path, field="--resume")
    return run.run_id
