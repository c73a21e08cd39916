"""What a report says before its figures: a busy machine at the top, how busy every trial's
window was, the peak MFU is against; and what it says of a comparison it cannot test."""

from __future__ import annotations

from pathlib import Path

from harness.report.content import build_content
from harness.report.markdown import render_markdown
from harness.spec import TrialResult, TrialSpec
from harness.store import ResultStore

ENV = {"device": "cpu", "device_name": "Test CPU", "device_count": 1, "host": "box",
       "cpu_model": "Test CPU", "harness_version": "0.1.0"}
PEAK = "measured: best of 8 timed 512x512 matmuls on this CPU, 2 threads"


def spec(precision: str, repeat: int) -> TrialSpec:
    return TrialSpec(
        scenario="caveats", trial_id=f"t-{precision}-{repeat}", name=f"precision={precision} #{repeat}",
        params={"precision": precision, "repeat": repeat},
        model={"arch": "gpt", "flavour": "gpt2", "n_layer": 2, "n_head": 2, "d_model": 32,
               "vocab_size": 64, "max_seq_len": 64},
        data={"kind": "synthetic", "seq_len": 16}, device="cpu", timeout_s=60.0,
        train={"micro_batch_size": 2, "steps": 6, "warmup_steps": 2, "lr": 1e-3, "seed": 0},
        techniques={"precision": precision, "compile": False})


def result(trial_id: str, tokens_per_s: float, *, busy: bool = False, share: float = 0.004) -> TrialResult:
    warnings = [{"code": "machine-busy", "message": f"other processes used {share:.0%} of the 2 CPUs"}] if busy else []
    return TrialResult(
        trial_id, "ok", metrics={"tokens_per_s": tokens_per_s, "step_time_s": 32 / tokens_per_s,
                                 "peak_rss_bytes": 3e8, "mfu": 0.2},
        notes={"contention": {"foreign_cpu_share": share, "load_avg_before": [0.4, 0.3, 0.2],
                              "load_avg_after": [1.9, 0.5, 0.3]},
               "peak_tflops": 0.05, "peak_dtype": "fp32", "peak_source": PEAK},
        warnings=warnings)


def store_of(path: Path, run_id: str, values: dict[str, list[float]], *, busy: set[str] = frozenset(),
             started_at: str = "2026-01-02T00:00:00+00:00", store: ResultStore | None = None) -> ResultStore:
    store = store or ResultStore(path)
    plan = [(p, r, v) for p, vs in values.items() for r, v in enumerate(vs)]
    store.create_run(run_id, scenario="caveats", description="", scenario_path="", scenario_hash="h",
                     overrides=[], device="cpu", baseline={"precision": "fp32"},
                     planned_trials=len(plan), env=ENV, started_at=started_at)
    for position, (precision, repeat, value) in enumerate(plan):
        s = spec(precision, repeat)
        busy_here = f"{precision} #{repeat}" in busy
        store.save_trial(run_id, position, s, result(s.trial_id, value, busy=busy_here,
                                                     share=0.45 if busy_here else 0.004), ENV, "h")
    store.finish_run(run_id)
    return store


def test_a_busy_machine_is_said_first_and_its_trials_left_out(tmp_path):
    store = store_of(tmp_path / "r.db", "run", {"fp32": [100, 101, 99], "bf16": [150, 152, 60]},
                     busy={"bf16 #2"})
    content = build_content(store, "run", claims=[])
    (line,) = content.warnings
    assert line.startswith("1 of 6 trials were measured on a busy machine: their figures are shown, "
                           "but left out of every comparison, claim and history (machine-busy)")
    assert "precision=bf16 #2: other processes used 45% of the 2 CPUs" in line
    markdown = render_markdown(content)
    assert markdown.index("**WARNING:**") < markdown.index("## Summary")
    _, _, statistics = content.analysis[0]
    row = dict(zip(statistics.headers, statistics.rows[0]))
    assert row["basis"] == "Welch t over 2 vs 3 repeats; 1 treatment run left out: machine busy"
    assert row["throughput"] == "faster"


def test_every_report_says_how_busy_the_windows_were_and_which_peak_mfu_is_against(tmp_path):
    store = store_of(tmp_path / "r.db", "run", {"fp32": [100, 101], "bf16": [150, 152]})
    content = build_content(store, "run", claims=[])
    assert content.warnings == []
    facts = dict(content.facts)
    assert facts["contention"] == ("other processes used 0.4%–0.4% of the CPUs in the measured "
                                   "windows; 1-minute load average 0.40–1.90")
    compute = next(note for title, note, _ in content.accounting if title == "Compute")
    assert f"Peak used: 0.05 TFLOP/s fp32 ({PEAK})." in compute


def test_one_run_per_side_is_no_test_unless_earlier_runs_give_the_noise(tmp_path):
    path = tmp_path / "r.db"
    store = store_of(path, "first", {"fp32": [100], "bf16": [150]})
    _, _, statistics = build_content(store, "first", claims=[]).analysis[0]
    row = dict(zip(statistics.headers, statistics.rows[0]))
    assert (row["throughput"], row["basis"]) == ("no test", "one run per side: no test")
    assert row["speedup (95% interval)"] == "1.50× (no test)"
    for night, jitter in enumerate((1.0, 1.02, 0.99)):
        store_of(path, f"earlier-{night}", {"fp32": [100 * jitter], "bf16": [150 * jitter]},
                 started_at=f"2026-01-0{night + 3}T00:00:00+00:00", store=store)
    store_of(path, "later", {"fp32": [100], "bf16": [150]}, started_at="2026-01-09T00:00:00+00:00",
             store=store)
    _, _, statistics = build_content(store, "later", claims=[]).analysis[0]
    row = dict(zip(statistics.headers, statistics.rows[0]))
    assert row["throughput"] == "faster"
    assert "against the run-to-run noise of 4 earlier runs of caveats on this machine" in row["basis"]


def test_the_achievable_peak_is_listed_beside_the_datasheet_peak_but_a_cpu_lists_one():
    from harness.report.caveats import peaks_used

    gpu = {"notes": {"peak_tflops": 989.4, "peak_dtype": "bf16", "peak_source": "NVIDIA H200 SXM: datasheet",
                     "peak_achievable_tflops": 780.0, "peak_achievable_source": "measured: best of 10"}}
    cpu = {"notes": {"peak_tflops": 0.14, "peak_dtype": "fp32", "peak_source": PEAK,
                     "peak_achievable_tflops": 0.14,
                     "peak_achievable_source": "the same measurement as peak_source"}}
    assert peaks_used([gpu, gpu, cpu]) == [
        "989 TFLOP/s bf16 (NVIDIA H200 SXM: datasheet)",
        "780 TFLOP/s bf16, achievable (measured: best of 10)",
        f"0.14 TFLOP/s fp32 ({PEAK})"]
