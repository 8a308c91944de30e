"""How varied a LAG generator's samples are for one input: the per-pixel standard deviation across z, how far the
centre G(y, 0) is from the real image (PSNR) next to bicubic up-sampling, and a sheet of the samples."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from PIL import Image

from fastgan.data.sr_loader import center_crops, degrade
from fastgan.eval.precision import exact_fp32
from fastgan.eval.sr_compare import comparison_image, quantize
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


@dataclass(frozen=True)
class Draws:
    """One image's LR input and up-scalings, all 8-bit-quantised in [0, 1]: lr (1, 3, h, w); hr, bicubic, centre
    (1, 3, H, W); samples (K, 3, H, W), G(y, z_k)."""

    name: str
    lr: torch.Tensor
    hr: torch.Tensor
    bicubic: torch.Tensor
    centre: torch.Tensor
    samples: torch.Tensor


@torch.no_grad()
def draw_samples(
    generator: LAGGenerator,
    images: list[tuple[str, torch.Tensor]],
    samples: int = 16,
    seed: int = 0,
    method: str = "bicubic",
    noise_scale: float = 1.0,
) -> list[Draws]:
    """Down-scale each image by the generator's scale and up-scale it again: bicubic, G(y, 0) and K draws of z.

    Args:
        generator: a trained LAG generator (eval mode).
        images: (name, uint8 (3, H, W)) full-resolution images, centre-cropped to multiples of the scale.
        samples: K draws of z per image (the same K z's for every image).
        seed: seeds the z's.
        method: how the inputs are down-scaled ("bicubic" or "area", as in training).
        noise_scale: σ of the z's, drawn from N(0, σ²I) (1: the training prior).
    """
    device = next(generator.parameters()).device
    scale = generator.scale
    z = noise_scale * torch.randn(samples, generator.noise_dim, generator=torch.Generator().manual_seed(seed))
    z = z.to(device)
    draws = []
    for (name, _), hr in zip(images, center_crops(images, scale), strict=True):
        hr = hr.to(device)
        lr = degrade(hr, scale, method)  # (1, 3, h, w) in [0, 1]
        y = lr * 2 - 1
        with exact_fp32(device.type):  # no TF32: the spread and PSNRs must not depend on the GPU generation
            drawn = torch.cat([generator(y, z[k : k + 1]) for k in range(samples)])  # (K, 3, H, W) in [-1, 1]
            centre = (generator(y).clamp(-1, 1) + 1) / 2
        bicubic = F.interpolate(lr, scale_factor=scale, mode="bicubic", align_corners=False).clamp(0, 1)
        upscaled = (quantize(bicubic), quantize(centre), quantize((drawn.clamp(-1, 1) + 1) / 2))
        draws.append(Draws(name, lr.cpu(), hr.cpu(), *(t.cpu() for t in upscaled)))  # sheets and tables: CPU
    return draws


def sample_spread(draws: list[Draws], scale: int) -> list[Spread]:
    """The spread of each image's samples (K ≥ 2) and the PSNRs of its centre and bicubic (`scale`-pixel border
    cropped)."""
    if any(len(d.samples) < 2 for d in draws):
        raise ValueError("a spread needs at least 2 samples per image")
    return [
        Spread(
            d.name,
            d.samples.std(dim=0).mean().item() * 255,
            psnr(d.centre, d.hr, border=scale).item(),
            psnr(d.bicubic, d.hr, border=scale).item(),
        )
        for d in draws
    ]


def spread_sheet(draws: list[Draws], shown: int = 3, crop: int = 128) -> Image.Image:
    """One row per image: LR (nearest) | bicubic | G(y, 0) | `shown` samples | the samples' per-pixel std (x8,
    grey) | HR, each the centre crop × crop (or the whole image where it is smaller)."""
    rows = []
    for d in draws:
        std = (d.samples.std(dim=0, keepdim=True).mean(dim=1, keepdim=True) * 8).clamp(0, 1).expand(1, 3, -1, -1)
        panels = {"bicubic": d.bicubic, "G(y, 0)": d.centre}
        panels |= {f"z{k + 1}": d.samples[k : k + 1] for k in range(min(shown, len(d.samples)))}
        panels["std x8"] = std
        height, width = d.hr.shape[-2:]
        side = min(crop, height, width)
        rows.append(comparison_image(d.lr, panels, d.hr, ((height - side) // 2, (width - side) // 2, side)))
    sheet = Image.new("RGB", (max(r.width for r in rows), sum(r.height for r in rows)), "white")
    top = 0
    for row in rows:
        sheet.paste(row, (0, top))
        top += row.height
    return sheet


def markdown(results: list[Spread], scale: int, samples: int, noise_scale: float = 1.0) -> str:
    """The per-image table and the mean row.

    Raises:
        ValueError: no results (no images were measured).
    """
    if not results:
        raise ValueError("no images to measure the spread on: give --images, or a run whose sr.held_out is not empty")
    lines = [
        f"| image (×{scale}, {samples} samples{'' if noise_scale == 1 else f', z ~ N(0, {noise_scale:g}²I)'}) | "
        "spread (std, 8-bit levels) | PSNR G(y, 0) | PSNR bicubic |",
        "|---|---|---|---|",
    ]
    for r in results:
        lines.append(f"| {r.name} | {r.std_levels:.2f} | {r.psnr_centre:.2f} | {r.psnr_bicubic:.2f} |")
    n = len(results)
    mean = [sum(getattr(r, k) for r in results) / n for k in ("std_levels", "psnr_centre", "psnr_bicubic")]
    lines.append(f"| **mean** | **{mean[0]:.2f}** | **{mean[1]:.2f}** | **{mean[2]:.2f}** |")
    return "\n".join(lines) + "\n"
