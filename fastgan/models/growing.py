"""Progressively grown outputs: an upscaler whose ×2 stages are added one at a time, each new one faded in.

An upscaler with S ×2 stages trained progressively first outputs at ×2 (stage 1), then at ×4 (stage 2), …; while
stage s fades in, its image is the blend (1 − α)·up2(x_{s−1}) + α·x_s of the previous stage's image
nearest-up-sampled and the new stage's own (each its head's output plus, with a bicubic skip, the input bicubic-
up-sampled to that stage's size), with α ramping from 0 to 1 (Karras et al. 2018, the progressive growing
LAG trains with). Networks here only compute the blend; the schedule of stages and α is `fastgan.train.progressive`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from fastgan.models.srgan import SRResNet


def stage_count(scale: int) -> int:
    """The number of ×2 stages of a power-of-two `scale` ≥ 2."""
    stages = int(math.log2(scale)) if scale >= 2 else 0
    if stages < 1 or 2**stages != scale:
        raise ValueError(f"a progressively grown upscaler needs a power-of-two scale >= 2, got {scale}")
    return stages


def check_stage(stage: int, stages: int, alpha: float) -> None:
    """Fail early on a stage outside 1..stages or a fade-in weight outside [0, 1]."""
    if not 1 <= stage <= stages:
        raise ValueError(f"stage must be in 1..{stages}, got {stage}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"the fade-in weight alpha must be in [0, 1], got {alpha}")


def grown_output(
    features: torch.Tensor,
    upsample: nn.ModuleList | nn.Sequential,
    to_rgb: list[nn.Module],
    stage: int,
    alpha: float,
    skip: Callable[[int], torch.Tensor] | None = None,
) -> torch.Tensor:
    """The image of `stage`, faded in from the previous stage's by `alpha`.

    Args:
        features: (N, C, h, w) trunk features at the input resolution.
        upsample: the S ×2 stages, each (N, C_k, H, W) -> (N, C_{k+1}, 2H, 2W).
        to_rgb: one module per stage mapping its features to an image (N, 3, ·, ·).
        stage: how many ×2 stages run, 1..S.
        alpha: fade-in weight of the newest stage in [0, 1]; ignored at stage 1 (there is nothing to fade from).
        skip: stage k -> an image (N, 3, 2^k·h, 2^k·w) added to that stage's head (a bicubic skip), so the blend
            starts from exactly the previous stage's output.

    Returns:
        (N, 3, 2^stage·h, 2^stage·w).
    """
    check_stage(stage, len(upsample), alpha)

    def stage_image(k: int, stage_features: torch.Tensor) -> torch.Tensor:
        image = to_rgb[k - 1](stage_features)
        return image if skip is None else image + skip(k)

    previous = None
    for k in range(1, stage + 1):
        if k == stage and stage > 1 and alpha < 1.0:
            previous = stage_image(k - 1, features)
        features = upsample[k - 1](features)
    image = stage_image(stage, features)
    if previous is None:
        return image
    return torch.lerp(F.interpolate(previous, scale_factor=2, mode="nearest"), image, alpha)


def bicubic_skips(image: torch.Tensor) -> Callable[[int], torch.Tensor]:
    """Stage k -> `image` (N, 3, h, w) bicubic-up-sampled ×2^k: the skip that `grown_output` adds to each stage."""
    return lambda k: F.interpolate(image, scale_factor=2**k, mode="bicubic", align_corners=False)


class GrowingSRResNet(nn.Module):
    """An SRResNet trained progressively: its own up-sampling stages and tail, plus a conv3×3 image head for every
    stage before the last (used only while training; the finished network is the plain SRResNet).

    Args:
        net: the SRResNet (scale 4: stages ×2 and ×4).
    """

    def __init__(self, net: SRResNet):
        super().__init__()
        self.net = net
        self.stages = stage_count(net.scale)
        self.heads = nn.ModuleList(nn.Conv2d(net.channels, 3, 3, padding=1) for _ in range(self.stages - 1))

    def forward(self, lr: torch.Tensor, stage: int, alpha: float = 1.0) -> torch.Tensor:
        """(N, 3, h, w) in [0, 1] -> (N, 3, 2^stage·h, 2^stage·w), unclamped; stage = S, alpha = 1 is `net(lr)`."""
        net = self.net
        features = net.head(lr)
        features = features + net.body_tail(net.body(features))
        skip = bicubic_skips(lr) if net.bicubic_skip else None
        return grown_output(features, net.upsample, [*self.heads, net.tail], stage, alpha, skip)
