"""The distillation objective, summed over tokens:

    alpha * tau^2 * KL(p_teacher^tau || p_student^tau) + (1 - alpha) * CE(student, data)

p^tau is the softmax of logits / tau. The tau^2 keeps the soft term's gradients at the scale of
the hard term's as tau grows (Hinton et al. 2015, section 2). KL(teacher || student) is the
direction whose student gradient is the cross-entropy to the teacher's distribution, as in
DistilBERT (Sanh et al. 2019) and DistilGPT2. Computed in fp32 whatever the logits' dtype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from harness.train.step import next_token_loss


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                      targets: torch.Tensor, alpha: float, temperature: float
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """(objective summed over tokens, cross-entropy summed over tokens).
    Logits (B, T, V), targets (B, T)."""
    cross_entropy = next_token_loss(student_logits, targets, reduction="sum")
    if alpha == 0:
        return cross_entropy, cross_entropy
    student = F.log_softmax(student_logits.float().flatten(0, 1) / temperature, dim=-1)  # (BT, V)
    teacher = F.log_softmax(teacher_logits.float().flatten(0, 1) / temperature, dim=-1)
    # kl_div(input=log q, target=log p, log_target=True) = sum p (log p - log q)
    kl = F.kl_div(student, teacher, reduction="sum", log_target=True)
    return alpha * temperature**2 * kl + (1 - alpha) * cross_entropy, cross_entropy
