"""SRResNet / SRGAN (Ledig et al. 2017): a ×2 or ×4 generator built from residual blocks and pixel-shuffle
up-sampling stages, and a fully convolutional discriminator for any crop size."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from fastgan.ops.pixel_shuffle_prelu import PixelShufflePReLU

SCALES = (2, 4)


class ResidualBlock(nn.Module):
    """conv3×3 → [BN] → PReLU → conv3×3 → [BN], plus the input."""

    def __init__(self, channels: int, batch_norm: bool = True):
        super().__init__()
        norm = (lambda: nn.BatchNorm2d(channels)) if batch_norm else nn.Identity
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=not batch_norm),
            norm(),
            nn.PReLU(channels),
            nn.Conv2d(channels, channels, 3, padding=1, bias=not batch_norm),
            norm(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, C, H, W)."""
        return x + self.body(x)


class UpsampleStage(nn.Module):
    """conv3×3 (C → 4C') → pixel shuffle ×2 → PReLU; the last two are `fastgan.ops.pixel_shuffle_prelu`.

    C' (`out_channels`) defaults to C.
    """

    def __init__(self, channels: int, out_channels: int | None = None):
        super().__init__()
        out_channels = out_channels or channels
        self.conv = nn.Conv2d(channels, 4 * out_channels, 3, padding=1)
        self.shuffle = PixelShufflePReLU(out_channels, upscale=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, C', 2H, 2W)."""
        return self.shuffle(self.conv(x))


class SRResNet(nn.Module):
    """LR image (N, 3, h, w) in [0, 1] -> SR image (N, 3, scale·h, scale·w), unclamped (clamp to show it).

    conv9×9 (3 → C) + PReLU; `blocks` residual blocks; conv3×3 [+ BN] and a long skip; log2(scale)
    up-sampling stages; conv9×9 (C → 3). The paper's generator is `SRResNet(scale, 64, 16, batch_norm=True)`;
    the light real-time preset drops BN, shrinks C and the block count (see `flops_per_output_pixel`) and
    sets `bicubic_skip`: the network then predicts only the detail bicubic up-sampling misses.
    """

    def __init__(
        self, scale: int = 4, channels: int = 64, blocks: int = 16, batch_norm: bool = True, bicubic_skip: bool = False
    ):
        super().__init__()
        if scale not in SCALES:
            raise ValueError(f"SRResNet scale must be one of {SCALES}, got {scale}")
        if channels < 1 or blocks < 0:
            raise ValueError(f"SRResNet needs channels >= 1 and blocks >= 0, got {channels} and {blocks}")
        self.scale, self.channels, self.blocks, self.batch_norm = scale, channels, blocks, batch_norm
        self.bicubic_skip = bicubic_skip
        self.head = nn.Sequential(nn.Conv2d(3, channels, 9, padding=4), nn.PReLU(channels))
        self.body = nn.Sequential(*(ResidualBlock(channels, batch_norm) for _ in range(blocks)))
        self.body_tail = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=not batch_norm),
            nn.BatchNorm2d(channels) if batch_norm else nn.Identity(),
        )
        self.upsample = nn.Sequential(*(UpsampleStage(channels) for _ in range(int(math.log2(scale)))))
        self.tail = nn.Conv2d(channels, 3, 9, padding=4)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        """(N, 3, h, w) -> (N, 3, scale·h, scale·w)."""
        features = self.head(lr)  # (N, C, h, w)
        features = features + self.body_tail(self.body(features))  # long skip
        out = self.tail(self.upsample(features))  # (N, 3, sh, sw)
        if self.bicubic_skip:
            out = out + F.interpolate(lr, scale_factor=self.scale, mode="bicubic", align_corners=False)
        return out

    def flops_per_output_pixel(self) -> float:
        """Multiply-adds ×2 per output pixel of one forward pass (convolutions only: they are > 99 % of it; the
        bicubic skip adds 16 taps per output value)."""
        c, s = self.channels, self.scale
        per_lr_pixel = 2 * (9 * 9 * 3 * c + self.blocks * 2 * 9 * c * c + 9 * c * c)  # head, blocks, body tail
        per_lr_pixel += sum(2 * 9 * c * 4 * c * 4**stage for stage in range(int(math.log2(s))))  # up-sampling convs
        per_output_pixel = per_lr_pixel / (s * s) + 2 * 9 * 9 * c * 3  # the tail runs at output resolution
        return float(per_output_pixel)


class SRDiscriminator(nn.Module):
    """HR or SR image (N, 3, H, W) in [0, 1] -> (N,) real/fake logits, for any H, W ≥ 16.

    conv3×3 (3 → 64) + LeakyReLU, then seven conv3×3 → BN → LeakyReLU blocks (stride 2 at every other one,
    64 → 512 channels), global average pooling (so any crop size works; the paper flattened a fixed 6×6 map),
    dense 1024, LeakyReLU, dense 1.
    """

    def __init__(self, channels: int = 64):
        super().__init__()
        c = channels
        plan = [(c, c, 2), (c, 2 * c, 1), (2 * c, 2 * c, 2), (2 * c, 4 * c, 1), (4 * c, 4 * c, 2)]
        plan += [(4 * c, 8 * c, 1), (8 * c, 8 * c, 2)]
        layers: list[nn.Module] = [nn.Conv2d(3, c, 3, padding=1), nn.LeakyReLU(0.2)]
        for cin, cout, stride in plan:
            layers += [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8 * c, 1024), nn.LeakyReLU(0.2), nn.Linear(1024, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) -> (N,) logits."""
        return self.head(self.features(x * 2 - 1)).squeeze(1)
