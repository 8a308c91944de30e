"""HRGAN networks (Park, Lee & Yu 2022): a class-conditional generator that outputs R×R images while
its projection discriminator only ever sees 32×32 images."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import nn

from fastgan.models.blocks import ResBlock, ResBlockDown, ResBlockUp, sn_xavier, xavier_init_
from fastgan.ops import cbn_relu_upsample_conv

TRAINING_RESOLUTION = 32
_BLOCKS_FOR_RESOLUTION = {32: 3, 64: 4, 128: 5}


def generator_channels(resolution: int, channels: int) -> list[int]:
    """Output channels of each ResBlockUp: `channels` up to 32×32, then halved per extra ×2 block."""
    if resolution not in _BLOCKS_FOR_RESOLUTION:
        raise ValueError(f"HRGAN resolution must be one of {sorted(_BLOCKS_FOR_RESOLUTION)}, got {resolution}")
    blocks = _BLOCKS_FOR_RESOLUTION[resolution]
    return [channels if i < 3 else max(channels >> (i - 2), 16) for i in range(blocks)]


def check_widths(resolution: int, widths: Sequence[int]) -> None:
    """Raise ValueError unless `widths` (the 4×4 projection's, then each ResBlockUp's output) fit HRGAN-`resolution`."""
    if resolution not in _BLOCKS_FOR_RESOLUTION:
        raise ValueError(f"HRGAN resolution must be one of {sorted(_BLOCKS_FOR_RESOLUTION)}, got {resolution}")
    blocks = _BLOCKS_FOR_RESOLUTION[resolution]
    if len(widths) != blocks + 1:
        raise ValueError(
            f"HRGAN-{resolution} has {blocks} ResBlockUps, so widths needs {blocks + 1} entries "
            f"(the 4×4 projection, then each block's output), got {list(widths)}"
        )
    if min(widths) < 1:
        raise ValueError(f"HRGAN widths must be positive, got {list(widths)}")


class Generator(nn.Module):
    """G(z, y): noise and class label -> (N, 3, R, R) image in [-1, 1].

    A linear projection to 4×4×C, one ResBlockUp per ×2 (3 for R=32, 4 for R=64, 5 for R=128),
    then BN → ReLU → conv3×3 → tanh. Widths follow `generator_channels(resolution, channels)` unless
    `widths` lists them explicitly (the projection's, then each block's output).
    """

    def __init__(
        self,
        resolution: int,
        num_classes: int,
        z_dim: int = 128,
        channels: int = 256,
        widths: Sequence[int] | None = None,
    ):
        super().__init__()
        if min(num_classes, z_dim, channels) < 1:
            raise ValueError(f"num_classes, z_dim and channels must be positive: {num_classes}, {z_dim}, {channels}")
        self.resolution, self.num_classes, self.z_dim = resolution, num_classes, z_dim
        if widths is not None:
            check_widths(resolution, widths)
        widths = list(widths) if widths is not None else [channels, *generator_channels(resolution, channels)]
        channels = widths[0]
        self.project = nn.Linear(z_dim, 4 * 4 * channels)
        self.blocks = nn.ModuleList(ResBlockUp(cin, cout, num_classes) for cin, cout in pairwise(widths))
        self.out_bn = nn.BatchNorm2d(widths[-1])
        self.out_conv = nn.Conv2d(widths[-1], 3, 3, padding=1)
        xavier_init_(self)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """z (N, z_dim), y (N,) int64 labels -> (N, 3, R, R) in [-1, 1]."""
        if y.shape != z.shape[:1] or y.is_floating_point() or y.dtype == torch.bool:
            raise ValueError(
                f"labels must be integer class indices of shape ({z.shape[0]},), one per z; got {y.dtype} "
                f"{tuple(y.shape)}"
            )
        h = self.project(z).view(z.shape[0], -1, 4, 4)  # (N, C, 4, 4)
        for block in self.blocks:
            h = block(h, y)  # (N, C', 2H, 2W)
        n, c = h.shape[:2]
        bn = self.out_bn  # BN → ReLU → conv as one op: the fused backends keep only h for backward
        h = cbn_relu_upsample_conv(
            h,
            bn.weight.expand(n, c),
            bn.bias.expand(n, c),
            self.out_conv.weight,
            self.out_conv.bias,
            bn.running_mean,
            bn.running_var,
            training=bn.training,
            momentum=bn.momentum,
            eps=bn.eps,
            scale=1,
        )
        return torch.tanh(h)  # (N, 3, R, R)


def downsample_to_training(images: torch.Tensor) -> torch.Tensor:
    """G_d: average-pool (N, 3, R, R) generator output by HR = R/32 to (N, 3, 32, 32)."""
    size = images.shape[-1]
    if images.dim() != 4 or images.shape[-2] != size or size % TRAINING_RESOLUTION:
        raise ValueError(
            f"downsample_to_training takes (N, 3, R, R) images with R a multiple of {TRAINING_RESOLUTION}, got "
            f"{tuple(images.shape)}"
        )
    factor = size // TRAINING_RESOLUTION
    return images if factor == 1 else F.avg_pool2d(images, factor)


class Discriminator(nn.Module):
    """D(x, y): a 32×32 image and its label -> (N,) realness score (projection discriminator).

    ResBlockDown (no leading ReLU) → ResBlockDown → ResBlock ×2 at 8×8 → ReLU → global sum pool →
    linear + <embed(y), h>. Spectral norm on every layer, Xavier-uniform init.
    """

    def __init__(self, num_classes: int, channels: int = 128):
        super().__init__()
        self.num_classes = num_classes
        self.blocks = nn.Sequential(
            ResBlockDown(3, channels, first=True),
            ResBlockDown(channels, channels),
            ResBlock(channels, channels),
            ResBlock(channels, channels),
        )
        self.linear = sn_xavier(nn.Linear(channels, 1))
        self.embed = sn_xavier(nn.Embedding(num_classes, channels))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x (N, 3, 32, 32), y (N,) int64 -> (N,) scores."""
        if x.shape[-2:] != (TRAINING_RESOLUTION, TRAINING_RESOLUTION):
            raise ValueError(
                f"the HRGAN discriminator takes {TRAINING_RESOLUTION}×{TRAINING_RESOLUTION} images, got "
                f"{tuple(x.shape[-2:])}; pass generator output through downsample_to_training first"
            )
        if y.shape != x.shape[:1]:
            raise ValueError(f"labels must have shape ({x.shape[0]},), one per image; got {tuple(y.shape)}")
        h = F.relu(self.blocks(x)).sum(dim=(2, 3))  # (N, C)
        return self.linear(h).squeeze(1) + (self.embed(y) * h).sum(dim=1)
