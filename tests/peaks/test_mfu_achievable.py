"""`mfu_achievable`: peaks.achievable_peak_for (the measured GEMM on a GPU, the MFU peak itself on
a CPU, a failed measurement as a reason), account_flops on a CPU (the same figure as MFU, or the
same reason) and on a CUDA device with the measurement replaced (against the measured rate, MFU
against the datasheet; a trial far faster than the measured rate gets none), and the report's
compute table."""

from __future__ import annotations

import pytest
import torch

from harness import peaks
from harness.analysis.trials import trial_frame
from harness.hardware import DeviceFacts
from harness.metrics import matmul_peak
from harness.models import model_flops_per_token, resolve_config
from harness.peaks import NoPeak, Peak, achievable_peak_for
from harness.report.tables import ACHIEVABLE_LABEL, compute_table
from harness.spec import CPU_PEAK_UNDER_LOAD, PEAK_EXCEEDED
from harness.train.accounting import account_flops
from harness.train.loop import LoopOutcome

H200 = DeviceFacts("cuda", "NVIDIA H200", (9, 0))
CPU = DeviceFacts("cpu", "Test CPU Model 9000")
TINY = resolve_config("tiny")
SEQ = 32


# --- peaks.achievable_peak_for -----------------------------------------------------------

def test_a_gpus_achievable_peak_is_the_measured_gemm(tmp_path, fake_gemm):
    peak = achievable_peak_for(H200, "bf16", tmp_path)
    assert (peak.tflops, peak.dtype, peak.measured, peak.quiet) == (780.0, "bf16", True, True)
    assert peak.slack == peaks.ACHIEVABLE_SLACK == 1.05
    assert peak.source.startswith("measured: best of") and "on NVIDIA H200" in peak.source


def test_a_cpus_achievable_peak_is_its_mfu_peak_itself():
    measured = Peak(0.05, "fp32", "measured: m", True)
    assert achievable_peak_for(CPU, "fp32", None, measured) is measured
    with pytest.raises(NoPeak, match="no fp16 peak FLOP/s is measured on a CPU"):
        achievable_peak_for(CPU, "fp16", None, None)


def test_a_dtype_no_gemm_times_has_no_achievable_peak():
    with pytest.raises(NoPeak, match="no fp8 GEMM is timed"):
        achievable_peak_for(H200, "fp8")


@pytest.mark.parametrize("error, why", [
    (torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 256 MiB"),
     "the bf16 GEMM measurement (8192³) ran out of device memory after the trial"),
    (RuntimeError("CUBLAS_STATUS_EXECUTION_FAILED\nmore lines"),
     "the bf16 GEMM measurement failed: RuntimeError: CUBLAS_STATUS_EXECUTION_FAILED"),
])
def test_a_failed_measurement_is_a_reason_not_a_crash(tmp_path, monkeypatch, error, why):
    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(matmul_peak, "time_gemm", fail)
    with pytest.raises(NoPeak) as caught:
        achievable_peak_for(H200, "bf16", tmp_path)
    assert str(caught.value) == why
    assert not (tmp_path / matmul_peak.CACHE_FILE).exists()


# --- account_flops -----------------------------------------------------------------------

def _account(precision: str, facts: DeviceFacts, tokens_per_s: float = 1000.0, devices: int = 1):
    out = LoopOutcome(metrics={"tokens_per_s": tokens_per_s})
    account_flops(out, TINY, SEQ, {"checkpointing": "none", "precision": precision}, facts, devices)
    return out


@pytest.fixture
def cache_home(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    return tmp_path / "harness"


def test_a_cpu_trials_achievable_mfu_is_its_mfu(monkeypatch):
    measured = Peak(0.05, "fp32", "measured: m", True)
    monkeypatch.setattr(peaks, "peak_for", lambda *args, **kwargs: measured)
    out = _account("fp32", CPU)
    assert out.metrics["mfu_achievable"] == out.metrics["mfu"] > 0
    assert out.notes["peak_achievable_tflops"] == 0.05
    assert out.notes["peak_achievable_source"] == "the same measurement as peak_source"
    assert "mfu_achievable" not in out.unmeasured and out.warnings == []


def test_a_cpu_peak_under_load_leaves_both_unmeasured_with_one_warning(monkeypatch):
    busy = Peak(0.05, "fp32", "measured: ...", True, under_load="other processes used at least 41% "
                "of the 2 CPUs in each of 3 attempts")
    monkeypatch.setattr(peaks, "peak_for", lambda *args, **kwargs: busy)
    out = _account("fp32", CPU)
    assert "mfu" not in out.metrics and "mfu_achievable" not in out.metrics
    assert out.unmeasured["mfu_achievable"] == out.unmeasured["mfu"]
    assert out.unmeasured["mfu"].startswith("the CPU peak could not be measured on a quiet machine")
    assert [w["code"] for w in out.warnings] == [CPU_PEAK_UNDER_LOAD]


def test_a_cpu_without_a_peak_for_the_dtype_says_why(monkeypatch):
    monkeypatch.setattr(peaks, "peak_for", lambda *args, **kwargs: None)
    out = _account("fp16", CPU)
    assert out.unmeasured["mfu_achievable"] == "no fp16 peak FLOP/s is measured on a CPU"


def test_a_cuda_trial_is_against_the_measured_gemm_and_the_datasheet(cache_home, fake_gemm):
    out = _account("bf16", H200, tokens_per_s=2e6)
    achieved = model_flops_per_token(TINY, SEQ) * 2e6
    assert out.metrics["mfu_achievable"] == pytest.approx(achieved / (780.0 * 1e12))
    assert out.metrics["mfu"] == pytest.approx(achieved / (989.4 * 1e12))
    assert out.notes["peak_achievable_tflops"] == 780.0 and out.notes["peak_tflops"] == 989.4
    assert out.notes["peak_achievable_source"].startswith("measured: best of ")
    assert fake_gemm == [("cuda", "bf16", 8192)] and out.warnings == []
    assert (cache_home / matmul_peak.CACHE_FILE).exists()
    again = _account("bf16-pure", H200, tokens_per_s=2e6)  # the next trial reads the cache
    assert len(fake_gemm) == 1 and again.metrics["mfu_achievable"] == out.metrics["mfu_achievable"]


def test_fp8_trials_are_against_the_bf16_gemm(cache_home, fake_gemm):
    out = _account("fp8", H200, tokens_per_s=2e6)
    assert fake_gemm == [("cuda", "bf16", 8192)] and "bf16 GEMMs" in out.notes["peak_achievable_source"]
    assert out.metrics["mfu_achievable"] > out.metrics["mfu"]


def test_several_devices_divide_by_all_their_measured_rates(cache_home, fake_gemm):
    one = _account("bf16", H200, tokens_per_s=2e6)
    eight = _account("bf16", H200, tokens_per_s=16e6, devices=8)
    assert eight.metrics["mfu_achievable"] == pytest.approx(one.metrics["mfu_achievable"])


def test_an_unknown_gpu_gets_mfu_achievable_without_mfu(cache_home, fake_gemm):
    out = _account("bf16", DeviceFacts("cuda", "Some Future GPU", (12, 0)), tokens_per_s=2e6)
    assert "mfu" not in out.metrics and "mfu_achievable" in out.metrics
    assert out.unmeasured["mfu"] == "no bf16 peak FLOP/s known for Some Future GPU"


def _tokens_per_s_at(fraction: float, tflops: float = 780.0) -> float:
    """The global tokens/s at which the tiny model's hardware FLOP/s are `fraction` of `tflops`
    (no checkpointing: hardware FLOPs are model FLOPs)."""
    return fraction * tflops * 1e12 / model_flops_per_token(TINY, SEQ)


def test_a_trial_a_little_faster_than_the_measured_gemm_keeps_its_figure(cache_home, fake_gemm):
    out = _account("bf16", H200, tokens_per_s=_tokens_per_s_at(1.03))
    assert out.metrics["mfu_achievable"] == pytest.approx(1.03)
    assert out.warnings == [] and out.metrics["mfu"] == pytest.approx(1.03 * 780 / 989.4)


def test_a_trial_far_faster_than_the_measured_gemm_has_no_achievable_mfu(cache_home, fake_gemm):
    out = _account("bf16", H200, tokens_per_s=_tokens_per_s_at(1.06))
    assert "mfu_achievable" not in out.metrics and out.metrics["mfu"] == pytest.approx(1.06 * 780 / 989.4)
    why = out.unmeasured["mfu_achievable"]
    assert why.startswith("the trial's 827 TFLOP/s exceed by more than 5% the bf16 peak of 780 TFLOP/s "
                          "(measured: best of ")
    assert why.endswith("so that peak is no bound here")
    assert out.warnings == [{"code": PEAK_EXCEEDED, "message": why}]


def test_a_failed_measurement_leaves_mfu_and_gives_the_reason(cache_home, monkeypatch):
    def fail(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(matmul_peak, "time_gemm", fail)
    out = _account("bf16", H200, tokens_per_s=2e6)
    assert out.metrics["mfu"] > 0 and "mfu_achievable" not in out.metrics
    assert "ran out of device memory" in out.unmeasured["mfu_achievable"]


# --- where it is shown -------------------------------------------------------------------

def _trial(name: str, metrics: dict) -> dict:
    return {"trial_id": name, "name": name, "status": "ok", "params": {"precision": "bf16"},
            "metrics": {"tokens_per_s": 1.0, **metrics}, "spec": {}}


def test_the_compute_table_shows_achievable_mfu_beside_mfu():
    frame = trial_frame([_trial("a", {"mfu": 0.31, "mfu_achievable": 0.4, "hfu": 0.35}),
                         _trial("b", {"mfu": 0.2, "hfu": 0.2})])
    table = compute_table(frame.assign(is_baseline=False))
    at = table.headers.index("MFU")
    assert table.headers[at:at + 3] == ["MFU", ACHIEVABLE_LABEL, "HFU"]
    assert ACHIEVABLE_LABEL == "MFU (achievable peak)"
    assert [row[at:at + 3] for row in table.rows] == [["31.0%", "40.0%", "35.0%"], ["20.0%", "—", "20.0%"]]
    assert len(table.numeric) == len(table.headers)


def test_the_compute_table_has_no_achievable_column_when_no_trial_has_it():
    table = compute_table(trial_frame([_trial("a", {"mfu": 0.31})]).assign(is_baseline=False))
    assert ACHIEVABLE_LABEL not in table.headers
