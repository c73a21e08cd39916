"""Model growth: initialise a large GPT from a trained small one.

LiGO (Wang et al., ICLR 2023, arXiv 2303.00980) learns a linear growth operator for a
few steps, then grows; StackBERT stacking (Gong et al. 2019) is the unlearned baseline.

    operator = GrowthOperator(small.config, large.config, depth_init="stack", noise_std=0.01)
    losses = learn_operator(operator, small, large, batches, steps=100, lr=1e-3, loss_fn=...)
    grow(small, large, operator)          # or: stack_grow(small, large)
"""

from harness.growth.learn import learn_operator
from harness.growth.operator import (
    AXIS_TABLE,
    GrowthOperator,
    grow,
    operator_flops_per_step,
    stack_grow,
)

__all__ = [
    "AXIS_TABLE",
    "GrowthOperator",
    "grow",
    "learn_operator",
    "operator_flops_per_step",
    "stack_grow",
]
