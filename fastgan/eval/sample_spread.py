"""How varied a LAG generator's samples are for one input: the per-pixel standard deviation across z, and how far
the centre G(y, 0) is from the real image (PSNR) next to bicubic up-sampling."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from fastgan.data.sr_loader import center_crops, degrade
from fastgan.eval.sr_compare import quantize
from fastgan.eval.sr_metrics import psnr
from fastgan.models.lag import LAGGenerator


@dataclass(frozen=True)
class Spread:
    """One image's numbers: `std_levels` is the per-pixel standard deviation across the samples, averaged over
    pixels and channels, in 8-bit levels (of 255); PSNRs are in dB on 8-bit-quantised [0, 1] images."""

    name: str
    std_levels: float
    psnr_centre: float
    psnr_bicubic: float


@torch.no_grad()
def sample_spread(
    generator: LAGGenerator,
    images: list[tuple[str, torch.Tensor]],
    samples: int = 16,
    seed: int = 0,
    method: str = "bicubic",
) -> list[Spread]:
    """Down-scale each image by the generator's scale, draw `samples` z's and measure the spread of G(y, z).

    Args:
        generator: a trained LAG generator (eval mode).
        images: (name, uint8 (3, H, W)) full-resolution images, centre-cropped to multiples of the scale.
        samples: K ≥ 2 draws of z per image (the same K z's for every image).
        seed: seeds the z's.
        method: how the inputs are down-scaled ("bicubic" or "area", as in training).

    Returns:
        One `Spread` per image.
    """
    if samples < 2:
        raise ValueError(f"a spread needs at least 2 samples, got {samples}")
    device = next(generator.parameters()).device
    scale = generator.scale
    z = torch.randn(samples, generator.noise_dim, generator=torch.Generator().manual_seed(seed)).to(device)
    results = []
    for (name, _), hr in zip(images, center_crops(images, scale), strict=True):
        hr = hr.to(device)
        lr = degrade(hr, scale, method)  # (1, 3, h, w) in [0, 1]
        y = lr * 2 - 1
        drawn = torch.cat([generator(y, z[k : k + 1]) for k in range(samples)])  # (K, 3, H, W) in [-1, 1]
        drawn = quantize((drawn.clamp(-1, 1) + 1) / 2)
        centre = quantize((generator(y).clamp(-1, 1) + 1) / 2)
        bicubic = quantize(F.interpolate(lr, scale_factor=scale, mode="bicubic", align_corners=False).clamp(0, 1))
        results.append(
            Spread(
                name,
                drawn.std(dim=0).mean().item() * 255,
                psnr(centre, hr, border=scale).item(),
                psnr(bicubic, hr, border=scale).item(),
            )
        )
    return results


def markdown(results: list[Spread], scale: int, samples: int) -> str:
    """The per-image table and the mean row."""
    lines = [
        f"| image (×{scale}, {samples} samples) | spread (std, 8-bit levels) | PSNR G(y, 0) | PSNR bicubic |",
        "|---|---|---|---|",
    ]
    for r in results:
        lines.append(f"| {r.name} | {r.std_levels:.2f} | {r.psnr_centre:.2f} | {r.psnr_bicubic:.2f} |")
    n = len(results)
    mean = [sum(getattr(r, k) for r in results) / n for k in ("std_levels", "psnr_centre", "psnr_bicubic")]
    lines.append(f"| **mean** | **{mean[0]:.2f}** | **{mean[1]:.2f}** | **{mean[2]:.2f}** |")
    return "\n".join(lines) + "\n"
