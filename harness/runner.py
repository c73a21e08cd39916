"""Plan a scenario's trials, run each in its own worker, commit each result as it ends.

The only module that sees whole TrialSpecs. A resumed run skips every trial already stored,
whatever its status, so no finished trial is lost or run twice.

Repeats run in rounds: every combination once per round, in an order shuffled from the
scenario's seed, so that a machine drifting during a sweep (another job starting, a CPU
warming up) spreads over every combination instead of passing for one technique's effect.
Trials are stored at their planned position, so reports list them in planned order.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone

from harness import hardware
from harness.errors import InputError
from harness.launch import Cluster, run_worker, worker_folder
from harness.progress import SweepProgress
from harness.scenario import LoadedScenario, baseline_of, iter_expand
from harness.spec import TrialResult, TrialSpec
from harness.store import ResultStore, utc_now
from harness.store.lease import run_lease
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


def plan(loaded: LoadedScenario, device: str, cluster: Cluster = Cluster()) -> list[tuple[TrialSpec, str | None]]:
    """Every trial, with the reason it will be skipped (None when it will run)."""
    return list(iter_plan(loaded, device, cluster))


def iter_plan(loaded: LoadedScenario, device: str, cluster: Cluster = Cluster(), *,
              facts: hardware.DeviceFacts | None = None) -> Iterator[tuple[TrialSpec, str | None]]:
    """The plan one trial at a time, in planned order. `facts`: the device to plan for, when it
    is not this machine's (`harness suite --dry-run --assume-device`); by default this one's."""
    facts = facts or hardware.device_facts(device)
    for spec in iter_expand(loaded, device):
        yield spec, _skip_reason(spec, facts, cluster)


def _skip_reason(spec: TrialSpec, facts: hardware.DeviceFacts, cluster: Cluster) -> str | None:
    nodes = spec.techniques["nnodes"]
    if nodes > cluster.nnodes:
        return f"needs {nodes} nodes; this sweep runs on {cluster.nnodes} (harness run --nnodes)"
    return unsupported_reason(spec.techniques, facts, spec.model)


def run_scenario(loaded: LoadedScenario, store: ResultStore | None, device: str, *,
                 resume: bool = False, progress: SweepProgress | None = None,
                 cluster: Cluster = Cluster()) -> RunSummary:
    """Run every planned trial. On several nodes every node's runner calls this with the same
    scenario; each takes part in the trials that span it, and only node 0 (which passes the
    store) records them."""
    planned = plan(loaded, device, cluster)
    if store is None:
        return _take_part(planned, cluster, progress, loaded.scenario.train.seed)
    env = hardware.fingerprint(device)
    if resume:
        run_id = _resumable_run(store, loaded)
    else:
        run_id = new_run_id()
        scenario = loaded.scenario
        store.create_run(run_id, scenario=scenario.name, description=scenario.description,
                         scenario_path=loaded.path, scenario_hash=loaded.file_hash,
                         overrides=list(loaded.overrides), device=device,
                         baseline=baseline_of(scenario), planned_trials=len(planned), env=env)
    progress = progress or SweepProgress(quiet=True)
    # a holder is dead once it missed two trials' worth of heartbeats (it renews after each)
    stale_after_s = 2 * max((spec.timeout_s for spec, _ in planned), default=0) + 60
    ran = 0
    with run_lease(store, run_id, stale_after_s) as renew, progress, worker_folder() as workdir:
        done = store.trial_ids(run_id)  # read once the run is ours: nobody adds to it now
        todo = [(i, *planned[i]) for i in run_order(planned, loaded.scenario.train.seed)
                if planned[i][0].trial_id not in done]
        progress.start_sweep(len(planned), already_done=len(planned) - len(todo))
        for position, spec, skip_reason in todo:
            progress.start_trial(spec.name, spec.train["steps"])
            if skip_reason:
                now = utc_now()
                result = TrialResult(spec.trial_id, "skipped", reason=skip_reason,
                                     started_at=now, finished_at=now)
            else:
                result = run_worker(spec, workdir, progress.step, cluster)
                ran += 1
            if not store.save_trial(run_id, position, spec, result, env, loaded.file_hash):
                progress.note(f"{spec.name}: the database stayed locked; the trial is kept in "
                              f"{store.journal} and stored by the next harness command")
            progress.end_trial(spec.name, result)
            renew()
    store.finish_run(run_id)
    statuses: dict[str, int] = {}
    for trial in store.trials(run_id):
        statuses[trial["status"]] = statuses.get(trial["status"], 0) + 1
    return RunSummary(run_id, statuses, ran)


def _take_part(planned: list[tuple[TrialSpec, str | None]], cluster: Cluster,
               progress: SweepProgress | None, seed: int) -> RunSummary:
    """A node other than 0: start this node's ranks of every trial that spans it, store nothing."""
    progress = progress or SweepProgress(quiet=True)
    ran = 0
    with progress, worker_folder() as workdir:
        # the same order as node 0's runner, or one trial's ranks would meet another's
        mine = [spec for spec, skip in (planned[i] for i in run_order(planned, seed))
                if not skip and spec.techniques["nnodes"] > cluster.node_rank]
        progress.start_sweep(len(mine))
        for spec in mine:
            progress.start_trial(spec.name, spec.train["steps"])
            result = run_worker(spec, workdir, progress.step, cluster)
            # rank 0 lives on node 0, so only a failure of this node's ranks is news here
            own_failure = (result.reason or "").startswith("rank ")
            outcome = f"failed: {result.reason}" if own_failure else "done"
            progress.note(f"{spec.name}: this node's ranks {outcome} (recorded on node 0)")
            ran += 1
    return RunSummary(run_id="", statuses={}, ran=ran)


def run_order(planned: list[tuple[TrialSpec, str | None]], seed: int) -> list[int]:
    """The positions of the planned trials in the order every node runs them."""
    return interleaved(len(planned), [spec.params.get("repeat", 0) for spec, _ in planned], seed)


def interleaved(count: int, rounds: list[int], seed: int) -> list[int]:
    """Positions 0..count-1 in the order they run: by round (a trial's repeat), each round's
    trials shuffled by a generator seeded from `seed` and the round. A single round keeps the
    planned order."""
    if len(set(rounds)) < 2:
        return list(range(count))
    order = []
    for round_ in sorted(set(rounds)):
        members = [i for i in range(count) if rounds[i] == round_]
        random.Random(f"{seed}:{round_}").shuffle(members)
        order += members
    return order


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
