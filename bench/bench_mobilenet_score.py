"""mobilenet_score: eager (log_softmax, logsumexp, KL, exp: ~19 launches forward) vs fused (Triton: two launches
forward, one backward; on a CPU one compiled call computing the score with its gradient, and a multiply backward)."""

from __future__ import annotations

import pytest
import torch

from bench.common import DEVICE, DTYPE, OP_PROVIDERS, op_case
from fastgan.ops import mobilenet_score
from fastgan.ops.mobilenet_score import traffic

#: (case, batch, classes): ImageNet-headed evaluator at the G batch, and a 10-class evaluator.
CASES = [("B=128 K=1000", 128, 1000), ("B=256 K=1000", 256, 1000), ("B=128 K=10", 128, 10)]
SMOKE = pytest.param(("smoke", 4, 10), marks=pytest.mark.smoke, id="smoke")


@pytest.mark.parametrize("provider", OP_PROVIDERS)
@pytest.mark.parametrize("mode", ["forward", "backward", "full"])
@pytest.mark.parametrize("case", [*(pytest.param(c, id=c[0]) for c in CASES), SMOKE])
def test_mobilenet_score(benchmark, case, mode, provider):
    name, batch, classes = case
    benchmark.group = f"mobilenet_score {name} {mode}"
    op_case(
        benchmark,
        provider,
        mode,
        lambda: (torch.randn(batch, classes, device=DEVICE, dtype=DTYPE).mul_(3).requires_grad_(),),
        mobilenet_score,
        {"op": "mobilenet_score", "case": name, "shape": [batch, classes]},
        traffic(batch, classes, DTYPE),
    )
