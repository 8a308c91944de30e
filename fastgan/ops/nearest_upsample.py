"""Nearest-neighbour up-sampling by an integer factor, with a sum-pooling backward."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def is_nhwc(x: torch.Tensor) -> bool:
    """x is laid out channels-last and not also NCHW-contiguous (C = 1 or 1×1 planes are both)."""
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def repeat_blocks(x: torch.Tensor, scale: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, scale·H, scale·W), each pixel repeated over a scale×scale block (one copy).

    A channels-last x gives a channels-last result (the copy runs in NHWC order), so the convolution that
    follows in an NHWC network takes it without another layout copy.
    """
    n, c, h, w = x.shape
    if is_nhwc(x):
        nhwc = x.permute(0, 2, 3, 1)  # (N, H, W, C), a contiguous view
        blocks = nhwc[:, :, None, :, None, :].expand(n, h, scale, w, scale, c)
        return blocks.reshape(n, h * scale, w * scale, c).permute(0, 3, 1, 2)
    return x[:, :, :, None, :, None].expand(n, c, h, scale, w, scale).reshape(n, c, h * scale, w * scale)


class _NearestUpsample(torch.autograd.Function):
    """Forward broadcasts each pixel to a scale×scale block; backward sums each block of the gradient."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: int) -> torch.Tensor:
        ctx.scale = scale
        return repeat_blocks(x, scale)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return F.avg_pool2d(grad, ctx.scale, divisor_override=1), None


def nearest_upsample(x: torch.Tensor, scale: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, scale·H, scale·W), equal to `F.interpolate(x, scale_factor=scale, mode="nearest")`.

    A broadcast and one copy forward, a sum-pool backward: several times faster than interpolate's CPU
    kernels, and than autograd's backward of the broadcast (a strided reduction).
    """
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ValueError(f"nearest_upsample's scale must be a positive integer, got {scale!r}")
    if scale == 1:
        return x
    if x.dim() != 4:
        raise ValueError(f"nearest_upsample expects (N, C, H, W), got {tuple(x.shape)}")
    return _NearestUpsample.apply(x, scale)
