"""The distillation objective: alpha * tau^2 * KL(teacher || student) + (1 - alpha) * CE."""

from __future__ import annotations

import math

import pytest
import torch

from harness.distillation import distillation_loss
from harness.train.step import next_token_loss


def _logits(seed: int, shape=(2, 5, 11)) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def test_the_distillation_term_is_zero_when_student_and_teacher_are_the_same_model():
    logits, targets = _logits(0), torch.randint(0, 11, (2, 5))
    student = logits.clone().requires_grad_()
    loss, ce = distillation_loss(student, logits, targets, alpha=1.0, temperature=2.0)
    assert loss.item() == pytest.approx(0.0, abs=1e-5)
    loss.backward()  # the KL's gradient vanishes where the distributions agree
    assert student.grad.abs().max().item() < 1e-6
    assert ce.item() == pytest.approx(next_token_loss(logits, targets, reduction="sum").item())


def test_alpha_mixes_the_two_terms_and_tau_squared_scales_the_soft_one():
    s, t, y = _logits(1), _logits(2), torch.randint(0, 11, (2, 5))
    hard = next_token_loss(s, y, reduction="sum").item()
    soft_tau1 = distillation_loss(s, t, y, alpha=1.0, temperature=1.0)[0].item()
    # KL by hand, summed over the 10 token positions
    p, q = torch.log_softmax(t, -1), torch.log_softmax(s, -1)
    assert soft_tau1 == pytest.approx((p.exp() * (p - q)).sum().item(), rel=1e-5)
    assert soft_tau1 > 0
    mixed = distillation_loss(s, t, y, alpha=0.25, temperature=1.0)[0].item()
    assert mixed == pytest.approx(0.25 * soft_tau1 + 0.75 * hard, rel=1e-5)
    assert distillation_loss(s, t, y, alpha=0.0, temperature=3.0)[0].item() == pytest.approx(hard)
    p3, q3 = torch.log_softmax(t / 3, -1), torch.log_softmax(s / 3, -1)
    kl3 = (p3.exp() * (p3 - q3)).sum().item()
    assert distillation_loss(s, t, y, alpha=1.0, temperature=3.0)[0].item() == pytest.approx(9 * kl3, rel=1e-5)


def test_half_precision_logits_are_compared_in_fp32():
    s, t, y = _logits(3).bfloat16(), _logits(4).bfloat16(), torch.randint(0, 11, (2, 5))
    loss, _ = distillation_loss(s, t, y, alpha=0.5, temperature=2.0)
    expected, _ = distillation_loss(s.float(), t.float(), y, alpha=0.5, temperature=2.0)
    assert loss.dtype == torch.float32 and math.isfinite(loss.item())
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
