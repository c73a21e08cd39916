"""The projection: target FLOPs against the published figures, time and cost against hand
arithmetic, the choice of the basis trial, and the peak it is taken against."""

from __future__ import annotations

import pytest
from procure_fixture_stores import (
    A100,
    BF16,
    FP8,
    H100,
    PRICES_YAML,
    a100_store,
    cpu_store,
    h100_store,
)

from harness.procure.prices import load_prices
from harness.procure.projection import choose_basis, project, training_seconds, trial_peak
from harness.procure.targets import TARGETS, Target


@pytest.fixture
def prices(tmp_path):
    path = tmp_path / "prices.yaml"
    path.write_text(PRICES_YAML)
    return load_prices(path)


def test_llama_2_70b_flops_match_the_published_count():
    llama = TARGETS["llama-2-70b"]
    assert 6 * llama.params * llama.tokens == pytest.approx(8.4e23)  # 6ND
    assert llama.total_flops == pytest.approx(9.0e23, rel=0.01)  # with attention
    # attention per token: 12 · 80 · 8192 · 4096
    assert llama.flops_per_token - 6 * llama.params == 12 * 80 * 8192 * 4096


def test_gpt_3_flops_are_the_papers_3_14e23_plus_attention():
    gpt3 = TARGETS["gpt-3-175b"]
    assert 6 * gpt3.params * gpt3.tokens == pytest.approx(3.15e23)
    assert gpt3.total_flops == pytest.approx(3.15e23 + 300e9 * 12 * 96 * 12288 * 2048)


def test_training_time_by_hand():
    # 1e21 FLOPs on 10 devices of 100 TFLOP/s at 50% MFU: 1e21 / 5e14 = 2e6 s
    assert training_seconds(1e21, 10, 100.0, 0.5) == pytest.approx(2e6)
    with pytest.raises(ValueError):
        training_seconds(1e21, 10, 100.0, 0.0)


def test_llama_2_on_a100s_at_the_model_cards_mfu_gives_its_gpu_hours():
    # The model card: 1,720,320 A100-80GB hours. At 46.6% of the A100's 312 TFLOP/s bf16
    # peak, 9.04e23 FLOPs take about that many device-hours, whatever the device count.
    llama = TARGETS["llama-2-70b"]
    hours = 2048 * training_seconds(llama.total_flops, 2048, 312.0, 0.466) / 3600
    assert hours == pytest.approx(1_720_320, rel=0.01)


def test_the_basis_is_the_largest_model_then_the_highest_mfu(tmp_path):
    trials = h100_store(tmp_path / "h.db").trials("run-h100")
    basis = choose_basis(trials)
    assert basis.trial == BF16  # same size as fp8, higher MFU (0.40 > 0.30)
    bigger = dict(trials[1], notes={"parameters": 2e9})  # fp8 on a bigger model wins
    assert choose_basis([trials[0], bigger]).trial == FP8
    failed = dict(bigger, status="failed")
    assert choose_basis([trials[0], failed]).trial == BF16


def test_no_basis_without_a_measured_mfu(tmp_path):
    trials = cpu_store(tmp_path / "c.db").trials("run-cpu")
    assert choose_basis(trials) == "no ok trial with a measured MFU and a known peak"


def test_the_peak_is_the_datasheets_for_the_trials_compute_dtype(tmp_path):
    bf16, fp8 = h100_store(tmp_path / "h.db").trials("run-h100")
    assert trial_peak(bf16).tflops == 989.4 and trial_peak(bf16).dtype == "bf16"
    assert trial_peak(fp8).dtype == "bf16"  # fp8 MFU is reported against the bf16 peak
    a100 = a100_store(tmp_path / "a.db").trials("run-a100")[0]
    assert trial_peak(a100).tflops == 312.0


def test_a_cpu_peak_comes_from_the_trials_notes_not_this_machine(tmp_path):
    trial = cpu_store(tmp_path / "c.db").trials("run-cpu")[0]
    assert trial_peak(trial) is None  # no peak recorded: none made up
    noted = dict(trial, notes={"peak_tflops": 2.5, "peak_dtype": "bf16", "peak_source": "timed",
                               "peak_measured": True})
    peak = trial_peak(noted)
    assert (peak.tflops, peak.dtype, peak.measured) == (2.5, "bf16", True)


def test_projection_time_and_cost_by_hand(tmp_path, prices):
    trials = h100_store(tmp_path / "h.db").trials("run-h100")
    # 1e21 FLOPs / (100 devices x 989.4e12 x 0.40) seconds
    target = Target("custom", params=1e9, tokens=1e21 / 6e9, layers=1, d_model=1, seq_len=0)
    assert target.total_flops == pytest.approx(1e21)
    p = project(target, trials, 100, prices, "h.db")
    seconds = 1e21 / (100 * 989.4e12 * 0.40)
    assert p.seconds == pytest.approx(seconds)
    assert p.device_hours == pytest.approx(100 * seconds / 3600)
    assert p.device_usd == pytest.approx(100 * seconds / 3600 * 3.6)
    # energy: 1 mJ per token of 6e9 FLOPs, i.e. 1e-3 / 6e9 J per FLOP, x 1e21 FLOPs
    joules = 1e-3 / 6e9 * 1e21
    assert p.energy_j == pytest.approx(joules)
    assert p.energy_usd == pytest.approx(joules / 3.6e6 * 0.10)
    assert p.total_usd == pytest.approx(p.device_usd + p.energy_usd)
    assert p.price_key == "H100 80GB HBM3" and p.basis.device_name == H100


def test_device_hours_and_cost_do_not_depend_on_the_device_count(tmp_path, prices):
    trials = h100_store(tmp_path / "h.db").trials("run-h100")
    llama = TARGETS["llama-2-70b"]
    small, large = (project(llama, trials, n, prices, "h.db") for n in (64, 4096))
    assert small.device_usd == pytest.approx(large.device_usd)
    assert small.seconds == pytest.approx(large.seconds * 64)


def test_unmeasured_energy_and_a_missing_price_leave_reasons_not_zeros(tmp_path, prices):
    trials = a100_store(tmp_path / "a.db").trials("run-a100")
    p = project(TARGETS["gpt-3-175b"], trials, 1024, prices, "a.db")
    assert p.energy_j is None and p.energy_usd is None
    assert "NVML total energy counter not supported" in p.missing["energy"]
    assert p.total_usd == pytest.approx(p.device_usd)
    unpriced = load_prices(prices.path)
    unpriced.book.devices.pop("A100-SXM4-80GB")
    p = project(TARGETS["gpt-3-175b"], trials, 1024, unpriced, "a.db")
    assert p.device_usd is None and p.total_usd is None
    assert p.missing["device_usd"] == f"no price for {A100} in {prices.path}"
