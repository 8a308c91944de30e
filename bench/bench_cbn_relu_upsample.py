"""cbn_relu_upsample: eager (batch_norm, mul, add, relu, up-sample) vs fused, at HRGAN generator block shapes; and
its conv variant (the first half of a ResBlockUp: CBN → ReLU → ×2 → conv3×3) against the same ops eagerly."""

from __future__ import annotations

import pytest
import torch

from bench.common import BATCH, DEVICE, DTYPE, OP_PROVIDERS, op_case
from fastgan.ops import cbn_relu_upsample, cbn_relu_upsample_conv
from fastgan.ops.cbn_relu_upsample import traffic

#: (case, channels, side, scale): the first CBN (×2) of the last block of HRGAN-32/64/128 and its second CBN (×1).
CASES = [
    ("HRGAN-32 block 3 CBN1", 256, 16, 2),
    ("HRGAN-64 block 4 CBN1", 256, 32, 2),
    ("HRGAN-128 block 5 CBN1", 128, 64, 2),
    ("HRGAN-128 block 5 CBN2", 64, 128, 1),
]
SMOKE = pytest.param(("smoke", 8, 8, 2), marks=pytest.mark.smoke, id="smoke")


#: Memory layouts timed: NCHW planes, and channels-last (how HRGAN trains on CUDA, eager and ``--fused``).
LAYOUTS = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}


def _inputs(batch: int, channels: int, side: int, layout: str):
    x = torch.randn(batch, channels, side, side, device=DEVICE, dtype=DTYPE)
    x = x.to(memory_format=LAYOUTS[layout]).requires_grad_()
    gain = (1 + 0.1 * torch.randn(batch, channels, device=DEVICE)).requires_grad_()
    bias = (0.1 * torch.randn(batch, channels, device=DEVICE)).requires_grad_()
    return x, gain, bias


def _batch_and_statistics(name: str, channels: int) -> tuple[int, torch.Tensor, torch.Tensor]:
    """The case's batch and fresh (C,) running mean and variance."""
    batch = 2 if name == "smoke" else BATCH
    return batch, torch.zeros(channels, device=DEVICE), torch.ones(channels, device=DEVICE)


def _label(name: str, layout: str) -> str:
    return name if layout == "nchw" else f"{name}, channels-last"


@pytest.mark.parametrize("provider", OP_PROVIDERS)
@pytest.mark.parametrize("mode", ["forward", "backward", "full"])
@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("case", [*(pytest.param(c, id=c[0]) for c in CASES), SMOKE])
def test_cbn_relu_upsample(benchmark, case, layout, mode, provider):
    name, channels, side, scale = case
    batch, running_mean, running_var = _batch_and_statistics(name, channels)
    benchmark.group = f"cbn_relu_upsample {name} {layout} {mode}"
    op_case(
        benchmark,
        provider,
        mode,
        lambda: _inputs(batch, channels, side, layout),
        lambda x, gain, bias: cbn_relu_upsample(x, gain, bias, running_mean, running_var, scale=scale),
        {
            "op": "cbn_relu_upsample",
            "case": _label(name, layout),
            "shape": [batch, channels, side, side],
            "scale": scale,
            "layout": layout,
        },
        traffic((batch, channels, side, side), DTYPE, scale),
    )


#: (case, input channels, output channels, side): the first CBN → ReLU → ×2 → conv3×3 of the last block of
#: HRGAN-32/64/128.
CONV_CASES = [
    ("HRGAN-32 block 3 conv1", 256, 256, 16),
    ("HRGAN-64 block 4 conv1", 256, 128, 32),
    ("HRGAN-128 block 5 conv1", 128, 64, 64),
]
CONV_SMOKE = pytest.param(("smoke", 8, 4, 8), marks=pytest.mark.smoke, id="smoke")


def _conv_inputs(batch: int, channels: int, out_channels: int, side: int, layout: str):
    weight = (torch.randn(out_channels, channels, 3, 3, device=DEVICE) / (3 * channels**0.5)).to(DTYPE)
    weight = weight.to(memory_format=LAYOUTS[layout]).requires_grad_()
    conv_bias = torch.zeros(out_channels, device=DEVICE, dtype=DTYPE, requires_grad=True)
    return (*_inputs(batch, channels, side, layout), weight, conv_bias)


@pytest.mark.parametrize("provider", OP_PROVIDERS)
@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("case", [*(pytest.param(c, id=c[0]) for c in CONV_CASES), CONV_SMOKE])
def test_cbn_relu_upsample_conv(benchmark, case, layout, provider):
    """Forward + backward with every gradient (x, gain, bias, weight, conv bias). The fused side convolves by phases
    at x's resolution (`fastgan.ops.upsample_conv`) where that saves work; no traffic figure: the convolution's
    arithmetic, not its bytes, is the cost."""
    name, channels, out_channels, side = case
    batch, running_mean, running_var = _batch_and_statistics(name, channels)
    benchmark.group = f"cbn_relu_upsample_conv {name} {layout} full"
    op_case(
        benchmark,
        provider,
        "full",
        lambda: _conv_inputs(batch, channels, out_channels, side, layout),
        lambda x, gain, bias, weight, conv_bias: cbn_relu_upsample_conv(
            x, gain, bias, weight, conv_bias, running_mean, running_var, scale=2
        ),
        {
            "op": "cbn_relu_upsample_conv",
            "case": _label(name, layout),
            "shape": [batch, channels, side, side],
            "out_channels": out_channels,
            "scale": 2,
            "layout": layout,
        },
        None,
    )
