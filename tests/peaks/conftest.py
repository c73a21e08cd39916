"""Shared by the achievable-peak tests: the GEMM timing replaced by a fixed, counted result."""

from __future__ import annotations

import pytest
import torch

from harness.metrics import matmul_peak
from harness.metrics.matmul_peak import GemmTiming


@pytest.fixture
def fake_gemm(monkeypatch):
    """time_gemm replaced: 780 TFLOP/s best, 770 median, counted; no product is run."""
    calls = []

    def timed(device, dtype, size, warmup=matmul_peak.WARMUP, repeats=matmul_peak.REPEATS, timer=None,
              kernels=None):
        calls.append((torch.device(device).type, dtype, size))
        return GemmTiming(dtype, size, warmup, repeats, 780.0, 770.0, "F.linear", "CUDA events")

    monkeypatch.setattr(matmul_peak, "time_gemm", timed)
    # no SM count in the keys, so they read the same on a machine with a GPU
    monkeypatch.setattr(matmul_peak, "sm_count", lambda device: None)
    return calls
