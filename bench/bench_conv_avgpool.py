"""conv_avgpool: eager (convolution, then 2×2 average pooling) vs fused (one strided convolution), at the
discriminator's ResBlockDown conv2 shapes: a D step's batch of real and generated 32×32 images."""

from __future__ import annotations

import pytest
import torch

from bench.common import BATCH, DEVICE, DTYPE, OP_PROVIDERS, op_case
from fastgan.ops import conv_avgpool

#: (case, channels, side): D's first block at 32×32 and its second at 16×16, for the shipped CPU preset's D width
#: (48) and the paper's (128). The batch is a D step's: BATCH real and BATCH generated images.
CASES = [
    ("D48 block 1 (32×32)", 48, 32),
    ("D48 block 2 (16×16)", 48, 16),
    ("D128 block 1 (32×32)", 128, 32),
    ("D128 block 2 (16×16)", 128, 16),
]
SMOKE = pytest.param(("smoke", 4, 8), marks=pytest.mark.smoke, id="smoke")


def _inputs(channels: int, side: int):
    x = torch.randn(2 * BATCH, channels, side, side, device=DEVICE, dtype=DTYPE)
    x = x.contiguous(memory_format=torch.channels_last).requires_grad_()
    weight = torch.randn(channels, channels, 3, 3, device=DEVICE, dtype=DTYPE) / (3 * channels**0.5)
    weight = weight.contiguous(memory_format=torch.channels_last).requires_grad_()
    bias = torch.zeros(channels, device=DEVICE, dtype=DTYPE, requires_grad=True)
    return x, weight, bias


@pytest.mark.parametrize("provider", OP_PROVIDERS)
@pytest.mark.parametrize("mode", ["forward", "backward", "full"])
@pytest.mark.parametrize("case", [*(pytest.param(c, id=c[0]) for c in CASES), SMOKE])
def test_conv_avgpool(benchmark, case, mode, provider):
    name, channels, side = case
    benchmark.group = f"conv_avgpool {name} {mode}"
    shape = (2 * BATCH, channels, side, side)
    op_case(
        benchmark,
        provider,
        mode,
        lambda: _inputs(channels, side),
        lambda x, weight, bias: conv_avgpool(x, weight, bias, 2),
        {"op": "conv_avgpool", "case": name, "shape": list(shape), "scale": 2},
        None,
    )
