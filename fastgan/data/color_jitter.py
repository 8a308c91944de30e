"""Colour jitter: per-sample brightness, contrast and saturation factors, and `color_twist`, the torch twin of
DALI's `fn.color_twist` on uint8 images (the DALI loaders jitter in their pipelines, the torch loaders with this)."""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import torch

#: (brightness, contrast, saturation) amplitudes that leave the images untouched.
NO_JITTER = (0.0, 0.0, 0.0)
#: Added to a loader's seed so that the factors come from a stream of their own: drawing them leaves the order,
#: flips and crops (and so the batches of a run without jitter) unchanged.
JITTER_STREAM = 1 << 62
#: RGB -> YIQ, DALI's coefficients; its saturation scales I and Q (`fn.color_twist`, `fn.saturation`).
RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.321], [0.211, -0.523, 0.311]], dtype=torch.float64)
#: uint8's contrast centre in DALI's colour operators (half of 256, not 127.5).
CONTRAST_CENTER = 128.0


def check_amplitudes(amplitudes: Sequence[float]) -> tuple[float, float, float]:
    """(brightness, contrast, saturation) amplitudes, each in [0, 1), as a tuple of floats.

    Raises:
        ValueError: not three numbers in [0, 1).
    """
    values = tuple(amplitudes)
    if len(values) != 3 or not all(isinstance(a, numbers.Real) and 0 <= a < 1 for a in values):  # also rejects NaN
        raise ValueError(
            f"colour jitter takes three amplitudes (brightness, contrast, saturation), each in [0, 1) with 0 for "
            f"none, e.g. [0.2, 0.2, 0.1]; got {list(values)}"
        )
    return tuple(float(a) for a in values)


def jitter_factors(seed: int, key: int, count: int, amplitudes: Sequence[float]) -> torch.Tensor:
    """Factors 1 + U(-a, a) of `count` samples, from a generator seeded by (seed, key) in the jitter stream.

    Args:
        seed: the loader's seed.
        key: what the samples belong to: the epoch (image loaders) or the batch number (patch loaders).
        count: samples.
        amplitudes: (brightness, contrast, saturation) amplitudes a, each in [0, 1).

    Returns:
        (count, 3) float32 rows of (brightness, contrast, saturation) factors; all 1 where an amplitude is 0.
    """
    g = torch.Generator().manual_seed(seed * 1_000_003 + key + JITTER_STREAM)
    spread = torch.rand(count, 3, generator=g).mul_(2).sub_(1)
    return spread.mul_(torch.tensor(check_amplitudes(amplitudes))).add_(1)


def color_twist(images: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """DALI's `fn.color_twist(images, brightness=b, contrast=c, saturation=s)` on uint8 images.

    out = clamp(floor(b · (128 + c · (S(s) · rgb − 128)) + 0.5), 0, 255) with S(s) = YIQ⁻¹ · diag(1, s, s) · YIQ,
    YIQ = `RGB_TO_YIQ`: S(s) · rgb = s · rgb + (1 − s) · k · (0.299 r + 0.587 g + 0.114 b), a lerp towards the luma
    times k = YIQ⁻¹'s first column ≈ (0.9997, 0.9996, 1.0028). One rounding (half up) and one clamp, applied in
    float32 as DALI's CPU kernel does.

    Args:
        images: (B, 3, H, W) uint8 RGB.
        factors: (B, 3) (brightness, contrast, saturation) factors, each >= 0.

    Returns:
        (B, 3, H, W) uint8, on the images' device.
    """
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"color_twist takes uint8 (B, 3, H, W) RGB images, got {images.dtype} {tuple(images.shape)}")
    if factors.shape != (images.shape[0], 3):
        raise ValueError(f"color_twist takes (B, 3) factors for {images.shape[0]} images, got {tuple(factors.shape)}")
    brightness, contrast, saturation = factors.double().cpu().unbind(1)  # (B,) each
    scale = torch.stack([torch.ones_like(saturation), saturation, saturation], 1)  # (B, 3)
    matrix = RGB_TO_YIQ.inverse() @ (scale[:, :, None] * RGB_TO_YIQ)  # (B, 3, 3): YIQ⁻¹ · diag · YIQ
    matrix = (brightness * contrast)[:, None, None] * matrix
    offset = brightness * CONTRAST_CENTER * (1 - contrast)  # (B,)
    matrix, offset = (t.float().to(images.device, non_blocking=True) for t in (matrix, offset))  # no wait on the GPU
    out = torch.einsum("bij,bjhw->bihw", matrix, images.float()) + offset.view(-1, 1, 1, 1)
    return out.add_(0.5).floor_().clamp_(0, 255).to(torch.uint8)
