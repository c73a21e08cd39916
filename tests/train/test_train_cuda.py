"""On a CUDA device the same trial measures the device: allocator peaks and CUDA-event step
times. Skipped cleanly where torch sees no GPU."""

from __future__ import annotations

import pytest
import torch

from harness.scenario import expand, load_scenario
from harness.train.worker import run_trial

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def test_a_cuda_trial_reports_allocator_peaks_above_the_saved_activations(write_scenario):
    fp32, bf16 = expand(load_scenario(write_scenario("cuda", matrix={"precision": ["fp32", "bf16"]})), "cuda")
    for spec in (fp32, bf16):
        result = run_trial(spec)
        metrics = result.metrics
        assert metrics["peak_memory_bytes"] > metrics["activation_bytes"] > 0
        assert metrics["peak_reserved_bytes"] >= metrics["peak_memory_bytes"]
        assert "peak_memory_bytes" not in result.unmeasured
        assert len(result.series["step_time_s"]) == result.notes["measured_steps"]
