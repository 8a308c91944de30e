"""pixel_shuffle_prelu: eager (pixel_shuffle copy, then PReLU) vs fused, at SRResNet's ×2 up-sampling stage."""

from __future__ import annotations

import pytest
import torch

from bench.common import DEVICE, DTYPE, OP_PROVIDERS, op_case
from fastgan.ops import pixel_shuffle_prelu
from fastgan.ops.pixel_shuffle_prelu import traffic

#: (case, batch, side): SRResNet's up-sampling conv gives 64·r² = 256 channels; 64×64 tiles batched 8 at a time,
#: one 256×256 tile.
CASES = [("SRResNet 64x64 tiles", 8, 64), ("SRResNet 256x256 tile", 1, 256)]
CHANNELS, UPSCALE = 64, 2
SMOKE = pytest.param(("smoke", 1, 8), marks=pytest.mark.smoke, id="smoke")


def _inputs(batch: int, side: int):
    x = torch.randn(batch, CHANNELS * UPSCALE**2, side, side, device=DEVICE, dtype=DTYPE, requires_grad=True)
    weight = torch.full((CHANNELS,), 0.25, device=DEVICE, dtype=DTYPE, requires_grad=True)
    return x, weight


@pytest.mark.parametrize("provider", OP_PROVIDERS)
@pytest.mark.parametrize("mode", ["forward", "backward", "full"])
@pytest.mark.parametrize("case", [*(pytest.param(c, id=c[0]) for c in CASES), SMOKE])
def test_pixel_shuffle_prelu(benchmark, case, mode, provider):
    name, batch, side = case
    benchmark.group = f"pixel_shuffle_prelu {name} {mode}"
    shape = (batch, CHANNELS * UPSCALE**2, side, side)
    op_case(
        benchmark,
        provider,
        mode,
        lambda: _inputs(batch, side),
        lambda x, weight: pixel_shuffle_prelu(x, weight, UPSCALE),
        {"op": "pixel_shuffle_prelu", "case": name, "shape": list(shape), "scale": UPSCALE},
        traffic(shape, DTYPE, UPSCALE),
    )
