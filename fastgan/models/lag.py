"""LAG, the latent adversarial generator (Berthelot, Milanfar & Goodfellow 2020): G(y, z) samples plausible
high-resolution images for one low-resolution image y, and a critic C = F ∘ P judges them in a learnt perceptual
latent space P. Both grow one ×2 stage at a time (`fastgan.models.growing`). Images are in [-1, 1].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fastgan.models.growing import bicubic_skips, check_stage, grown_output, stage_count
from fastgan.models.srgan import ResidualBlock, UpsampleStage

#: Upscaling factors LAG is built for (×2 … ×32, one ×2 stage each).
LAG_SCALES = (2, 4, 8, 16, 32)


def stage_widths(channels: int, min_channels: int, stages: int) -> list[int]:
    """Channels at the input resolution (index 0) and after each ×2 stage: halved per stage, never below the floor."""
    return [max(min_channels, channels >> k) for k in range(stages + 1)]


def broadcast_noise(z: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(N, Z) noise vectors -> (N, Z, height, width) constant planes (one z per image, so tiles of an image agree)."""
    return z[:, :, None, None].expand(-1, -1, height, width)


class LAGGenerator(nn.Module):
    """(y (N, 3, h, w), z (N, Z)) -> x_z (N, 3, scale·h, scale·w), all in [-1, 1] (unclamped).

    EDSR-like: conv3×3 over [y, z broadcast] → `blocks` residual blocks (no BN) with a long skip → log2(scale)
    pixel-shuffle ×2 stages (`fastgan.ops.pixel_shuffle_prelu`), each followed by conv3×3 + PReLU and owning a
    conv3×3 image head. With `bicubic_skip` the heads predict only what bicubic up-sampling of y misses and start at
    zero, so an untrained G(y, z) is the bicubic image.

    Args:
        scale: 2, 4, 8, 16 or 32.
        channels: width at the input resolution; halved per stage down to `min_channels`.
        blocks: residual blocks at the input resolution.
        noise_dim: Z, the length of z.
        min_channels: the narrowest stage.
        bicubic_skip: add bicubic(y) to the output.
    """

    def __init__(
        self,
        scale: int = 4,
        channels: int = 64,
        blocks: int = 8,
        noise_dim: int = 16,
        min_channels: int = 16,
        bicubic_skip: bool = True,
    ):
        super().__init__()
        if scale not in LAG_SCALES:
            raise ValueError(f"LAG scale must be one of {LAG_SCALES}, got {scale}")
        if min(channels, min_channels, noise_dim) < 1 or blocks < 0:
            raise ValueError("LAG needs channels, min_channels and noise_dim >= 1 and blocks >= 0")
        self.scale, self.noise_dim, self.bicubic_skip = scale, noise_dim, bicubic_skip
        self.stages = stage_count(scale)
        widths = stage_widths(channels, min_channels, self.stages)
        self.head = nn.Conv2d(3 + noise_dim, widths[0], 3, padding=1)
        self.body = nn.Sequential(*(ResidualBlock(widths[0], batch_norm=False) for _ in range(blocks)))
        self.upsample = nn.ModuleList(
            nn.Sequential(
                UpsampleStage(widths[k], widths[k + 1]),
                nn.Conv2d(widths[k + 1], widths[k + 1], 3, padding=1),
                nn.PReLU(widths[k + 1]),
            )
            for k in range(self.stages)
        )
        self.to_rgb = nn.ModuleList(nn.Conv2d(widths[k + 1], 3, 3, padding=1) for k in range(self.stages))
        if bicubic_skip:
            for head in self.to_rgb:
                nn.init.zeros_(head.weight)
                nn.init.zeros_(head.bias)

    def forward(
        self, y: torch.Tensor, z: torch.Tensor | None = None, stage: int | None = None, alpha: float = 1.0
    ) -> torch.Tensor:
        """Sample x_z.

        Args:
            y: (N, 3, h, w) low-resolution images in [-1, 1].
            z: (N, Z) noise, or None for z = 0 (the centre of the family).
            stage: ×2 stages to run (default all: the full scale); a progressive run passes its current one.
            alpha: fade-in weight of the newest stage.

        Returns:
            (N, 3, 2^stage·h, 2^stage·w).
        """
        n, _, h, w = y.shape
        if z is None:
            z = y.new_zeros(n, self.noise_dim)
        if z.shape != (n, self.noise_dim):
            raise ValueError(f"z must be ({n}, {self.noise_dim}) for {n} images, got {tuple(z.shape)}")
        stage = self.stages if stage is None else stage
        features = self.head(torch.cat([y, broadcast_noise(z.to(y.dtype), h, w)], dim=1))  # (N, C0, h, w)
        features = features + self.body(features)
        skip = bicubic_skips(y) if self.bicubic_skip else None
        return grown_output(features, self.upsample, list(self.to_rgb), stage, alpha, skip)


class LAGCritic(nn.Module):
    """C(x, d) = F(P(x, d)): P projects an image and its low-resolution conditioning to the perceptual latent space,
    F (a 1×1 conv then a spatial mean) maps the latent to a WGAN score.

    P mirrors the generator: a conv3×3 image input per stage, then for each stage from the top down conv3×3 →
    space-to-depth ×2 → conv3×3 (LeakyReLU 0.2 after each conv), the conditioning d (in colour levels) concatenated
    at the input resolution and merged by a conv3×3, then `blocks` more conv3×3 layers there. No normalisation (a
    gradient-penalty critic).
    While a stage fades in, the features entering the stage below blend the new path with the image average-pooled
    into the previous stage's input (Karras et al. 2018).

    Args:
        scale, channels, blocks, min_channels: as for `LAGGenerator`.
    """

    def __init__(self, scale: int = 4, channels: int = 64, blocks: int = 4, min_channels: int = 16):
        super().__init__()
        if scale not in LAG_SCALES:
            raise ValueError(f"LAG scale must be one of {LAG_SCALES}, got {scale}")
        self.stages = stage_count(scale)
        widths = stage_widths(channels, min_channels, self.stages)
        act = nn.LeakyReLU(0.2)
        self.from_rgb = nn.ModuleList(
            nn.Sequential(nn.Conv2d(3, widths[k + 1], 3, padding=1), act) for k in range(self.stages)
        )
        self.downsample = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(widths[k + 1], widths[k + 1], 3, padding=1),
                act,
                nn.PixelUnshuffle(2),
                nn.Conv2d(4 * widths[k + 1], widths[k], 3, padding=1),
                act,
            )
            for k in range(self.stages)
        )
        layers: list[nn.Module] = [nn.Conv2d(widths[0] + 3, widths[0], 3, padding=1), act]
        for _ in range(blocks):
            layers += [nn.Conv2d(widths[0], widths[0], 3, padding=1), act]
        self.trunk = nn.Sequential(*layers)
        self.score_head = nn.Conv2d(widths[0], 1, 1)

    def project(
        self, x: torch.Tensor, conditioning: torch.Tensor, stage: int | None = None, alpha: float = 1.0
    ) -> torch.Tensor:
        """P(x, d): (N, 3, 2^stage·h, 2^stage·w) image and (N, 3, h, w) conditioning in colour levels -> (N, C0, h, w)
        latent."""
        stage = self.stages if stage is None else stage
        check_stage(stage, self.stages, alpha)
        features = self.downsample[stage - 1](self.from_rgb[stage - 1](x))
        if stage > 1 and alpha < 1.0:
            skipped = self.from_rgb[stage - 2](F.avg_pool2d(x, 2))
            features = torch.lerp(skipped, features, alpha)
        for k in range(stage - 2, -1, -1):
            features = self.downsample[k](features)
        if features.shape[-2:] != conditioning.shape[-2:]:
            raise ValueError(
                f"conditioning of size {tuple(conditioning.shape[-2:])} does not match the image "
                f"{tuple(x.shape[-2:])} at stage {stage} (×{2**stage})"
            )
        return self.trunk(torch.cat([features, conditioning], dim=1))

    def score(self, latent: torch.Tensor) -> torch.Tensor:
        """F: (N, C0, h, w) latent -> (N,) critic scores."""
        return self.score_head(latent).mean(dim=(1, 2, 3))

    def forward(
        self, x: torch.Tensor, conditioning: torch.Tensor, stage: int | None = None, alpha: float = 1.0
    ) -> torch.Tensor:
        """C(x, d) = F(P(x, d)) -> (N,) scores."""
        return self.score(self.project(x, conditioning, stage, alpha))
