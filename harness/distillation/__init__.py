"""Knowledge distillation (Hinton et al. 2015): a student trained on a teacher's softened
next-token distribution as well as on the data, against the same student from scratch."""

from harness.distillation.loss import distillation_loss

__all__ = ["distillation_loss"]
