"""Repeats run in rounds: every combination once per round, shuffled within a round from the
scenario's seed, so drift during a sweep spreads over every combination."""

from __future__ import annotations

from harness.runner import interleaved, run_scenario
from harness.scenario import load_scenario
from harness.store import ResultStore


def test_rounds_hold_every_position_once_in_round_order():
    rounds = [r for _ in range(4) for r in range(3)]  # 4 combinations x 3 repeats, planned order
    order = interleaved(len(rounds), rounds, seed=0)
    assert sorted(order) == list(range(12))
    assert [rounds[i] for i in order] == [0] * 4 + [1] * 4 + [2] * 4
    shuffles = [[i // 3 for i in order[k * 4:(k + 1) * 4]] for k in range(3)]
    assert all(sorted(s) == [0, 1, 2, 3] for s in shuffles)  # each combination once a round
    assert len({tuple(s) for s in shuffles}) > 1  # not the same order every round
    assert interleaved(12, rounds, seed=0) == order  # from the seed: reproducible
    assert interleaved(12, rounds, seed=1) != order


def test_a_single_round_keeps_the_planned_order():
    assert interleaved(5, [0] * 5, seed=3) == [0, 1, 2, 3, 4]


class Recorder:
    """A SweepProgress stand-in that notes the order trials start in."""

    def __init__(self):
        self.started: list[str] = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def start_sweep(self, total, already_done=0):
        pass

    def start_trial(self, name, steps):
        self.started.append(name)

    def step(self, done, total):
        pass

    def end_trial(self, name, result):
        pass

    def note(self, text):
        pass


def test_the_runner_runs_rounds_and_stores_trials_in_planned_order(write_scenario, tmp_path):
    # tf32 is skipped on a CPU: the order is exercised without starting a worker
    path = write_scenario("rounds", repeats=3,
                          matrix={"precision": ["tf32"], "checkpointing": ["none", "full", "every-2"]})
    store = ResultStore(tmp_path / "r.db")
    recorder = Recorder()
    summary = run_scenario(load_scenario(path), store, "cpu", progress=recorder)
    assert [name.rsplit("#", 1)[1] for name in recorder.started] == ["0"] * 3 + ["1"] * 3 + ["2"] * 3
    stored = [t["name"] for t in store.trials(summary.run_id)]
    assert stored[:3] == [f"precision=tf32 checkpointing=none #{r}" for r in range(3)]  # planned
    rounds = [int(name.rsplit("#", 1)[1]) for name in stored]
    assert recorder.started == [stored[i] for i in interleaved(9, rounds, seed=0)]


def test_every_node_runs_the_trials_in_node_0s_order(write_scenario, monkeypatch, tmp_path):
    # a node other than 0 meets node 0's ranks trial by trial: the orders must agree
    import harness.runner as runner
    from harness.launch import Cluster
    from harness.spec import TrialResult

    path = write_scenario("nodes", repeats=3, matrix={"precision": ["fp32", "bf16"], "nnodes": [2],
                                                          "parallel": ["ddp"]})
    started: dict[int, list[str]] = {0: [], 1: []}
    monkeypatch.setattr(runner, "run_worker", lambda spec, workdir, step, cluster:
                        started[cluster.node_rank].append(spec.name) or TrialResult(spec.trial_id, "ok"))
    loaded = load_scenario(path)
    store = ResultStore(tmp_path / "r.db")
    runner.run_scenario(loaded, store, "cpu", progress=Recorder(), cluster=Cluster(2, 0, "h:1"))
    runner.run_scenario(loaded, None, "cpu", progress=Recorder(), cluster=Cluster(2, 1, "h:1"))
    assert started[1] == started[0] and len(started[0]) == 6
    assert [name.rsplit("#", 1)[1] for name in started[0]] == ["0", "0", "1", "1", "2", "2"]
    planned = [spec.name for spec, _ in runner.plan(loaded, "cpu", Cluster(2, 1, "h:1"))]
    assert started[0] != planned  # interleaved, not planned order
