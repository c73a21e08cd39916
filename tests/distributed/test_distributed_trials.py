"""Trials of 2 gloo ranks through the real launcher (torchrun): they complete, their figures
merge with the documented meanings, a rank that fails ends the trial with its error and
without a hang, and a sweep spans two "nodes" (two runners on this machine)."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from harness.runner import run_scenario
from harness.scenario import load_scenario
from harness.store import ResultStore
from harness.train.ranks import merge_rank_metrics

pytestmark = pytest.mark.slow


def test_merge_rank_metrics_follows_the_stated_meanings():
    ranks = [
        {"tokens_per_step": 128, "measured_steps": 10, "window_s": 2.0, "step_time_s": 0.19,
         "step_time_p90_s": 0.2, "peak_rss_bytes": 100.0, "parameter_bytes": 50.0, "eval_loss": 3.0},
        {"tokens_per_step": 128, "measured_steps": 10, "window_s": 2.5, "step_time_s": 0.24,
         "step_time_p90_s": 0.3, "peak_rss_bytes": 120.0, "parameter_bytes": 50.0, "eval_loss": 3.1},
    ]
    merged, per_rank = merge_rank_metrics(ranks)
    assert merged["tokens_per_s"] == 2 * 128 * 10 / 2.5  # all tokens over the longest window
    assert (merged["step_time_s"], merged["step_time_p90_s"]) == (0.24, 0.3)  # the slowest rank
    assert merged["peak_rss_bytes"] == 120.0  # the maximum over ranks
    assert merged["eval_loss"] == 3.0  # rank 0's
    assert per_rank["peak_rss_bytes"] == [100.0, 120.0]


def _two_ranks(write_scenario, name, **sections):
    return write_scenario(name, techniques={"world_size": 2, **sections.pop("techniques", {})},
                          timeout_s=120, **sections)


def test_ddp_and_fsdp_trials_of_two_ranks_complete_with_merged_figures(write_scenario, tmp_path):
    path = _two_ranks(write_scenario, "dp", matrix={"parallel": ["ddp", "fsdp"]},
                      train={"steps": 6, "warmup_steps": 1})
    store = ResultStore(tmp_path / "r.db")
    summary = run_scenario(load_scenario(path), store, "cpu")
    trials = {t["params"]["parallel"]: t for t in store.trials(summary.run_id)}
    for name, trial in trials.items():
        assert trial["status"] == "ok", (name, trial["reason"], trial["traceback"])
        notes, metrics = trial["notes"], trial["metrics"]
        assert notes["ranks"] == 2
        assert notes["global_batch_size"] == 2 * 4  # two ranks of micro-batch 4
        assert notes["tokens_per_step"] == 2 * 4 * 32
        assert metrics["tokens_per_s"] == pytest.approx(
            notes["tokens_per_step"] * notes["measured_steps"] / notes["window_s"])
        assert len(notes["per_rank"]["step_time_s"]) == 2
        assert metrics["step_time_s"] == max(notes["per_rank"]["step_time_s"])
        assert 0 <= metrics["comm_fraction"] < 1
        # contention: each rank's share kept, the trial's the busiest rank's
        shares = notes["per_rank"]["foreign_cpu_share"]
        assert len(shares) == 2 and notes["contention"]["foreign_cpu_share"] == max(shares)
        assert isinstance(trial["warnings"], list)
    ddp, fsdp = trials["ddp"]["metrics"], trials["fsdp"]["metrics"]
    # FSDP shards: each rank holds about half the parameters DDP replicates
    for shard in ("parameter_bytes", "gradient_bytes", "optimizer_state_bytes"):
        assert fsdp[shard] == pytest.approx(ddp[shard] / 2, rel=0.05), shard
    # what each rank saves for backward is its own micro-batch's, whatever the strategy
    assert fsdp["activation_bytes"] == pytest.approx(ddp["activation_bytes"], rel=0.1)
    # the same global batch, the same maths: the losses agree
    assert fsdp["final_loss"] == pytest.approx(ddp["final_loss"], rel=1e-4)


def test_a_rank_that_raises_fails_the_trial_with_its_error_and_no_hang(write_scenario, faulty, tmp_path):
    path = _two_ranks(write_scenario, "rank-fails", model={"arch": faulty("raises_on_rank_1")},
                      techniques={"parallel": "ddp"})
    store = ResultStore(tmp_path / "r.db")
    summary = run_scenario(load_scenario(path), store, "cpu")
    (trial,) = store.trials(summary.run_id)
    assert trial["status"] == "failed"
    assert trial["reason"].startswith("rank 1: RuntimeError: injected failure on rank 1")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_sweep_spans_two_nodes_and_only_node_0_records(write_scenario, tmp_path):
    path = write_scenario("two-nodes", timeout_s=120, train={"steps": 4, "warmup_steps": 1},
                          techniques={"parallel": "ddp"}, matrix={"nnodes": [1, 2]})
    endpoint = f"127.0.0.1:{_free_port()}"
    # --device cpu: on a machine with one GPU, auto would put both "nodes" on cuda:0 (NCCL refuses)
    base = [sys.executable, "-m", "harness", "run", str(path), "--no-report", "-q", "--device", "cpu",
            "--nnodes", "2", "--rdzv-endpoint", endpoint]
    node1 = subprocess.Popen(base + ["--node-rank", "1", "--results", str(tmp_path / "node1.db")],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    node0 = subprocess.run(base + ["--node-rank", "0", "--results", str(tmp_path / "node0.db")],
                           capture_output=True, text=True, timeout=300)
    node1_out = node1.communicate(timeout=120)[0]
    assert node0.returncode == 0, node0.stderr
    assert node1.returncode == 0, node1_out
    assert "took part in 1 trials" in node1_out
    assert not (tmp_path / "node1.db").exists()
    store = ResultStore(tmp_path / "node0.db")
    trials = {t["params"]["nnodes"]: t for t in store.trials(store.runs()[-1]["run_id"])}
    assert trials[1]["status"] == trials[2]["status"] == "ok"
    assert trials[1]["notes"]["ranks"] == 1 and trials[2]["notes"]["ranks"] == 2
