"""SRResNet / SRGAN objectives: pixel loss, VGG perceptual (content) loss, and the adversarial losses (standard
and relativistic-average BCE)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fastgan.models.vgg import VGGFeatures

PIXEL_LOSSES = ("mse", "l1")
#: SRGAN rescales VGG feature maps by 1/12.75 so the content loss is on the scale of the pixel MSE.
VGG_RESCALE = 1.0 / 12.75


def pixel_loss(sr: torch.Tensor, hr: torch.Tensor, kind: str = "mse") -> torch.Tensor:
    """Mean squared (or absolute) error between SR and HR images (N, 3, H, W) in [0, 1]."""
    if kind not in PIXEL_LOSSES:
        raise ValueError(f"pixel loss must be one of {PIXEL_LOSSES}, got {kind!r}")
    return F.mse_loss(sr, hr) if kind == "mse" else F.l1_loss(sr, hr)


def perceptual_loss(vgg: VGGFeatures, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    """SRGAN's content loss: MSE between rescaled VGG19 feature maps of SR and HR (N, 3, H, W) in [0, 1]."""
    with torch.no_grad():
        target = vgg(hr) * VGG_RESCALE
    return F.mse_loss(vgg(sr) * VGG_RESCALE, target)


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, relativistic: bool) -> torch.Tensor:
    """BCE on D's logits (N,): real → 1, fake → 0; relativistic-average: D(x_r) − mean D(x_f) → 1 and vice versa."""
    if relativistic:
        real_logits, fake_logits = real_logits - fake_logits.mean(), fake_logits - real_logits.mean()
    ones, zeros = torch.ones_like(real_logits), torch.zeros_like(fake_logits)
    return F.binary_cross_entropy_with_logits(real_logits, ones) + F.binary_cross_entropy_with_logits(
        fake_logits, zeros
    )


def generator_adversarial_loss(
    real_logits: torch.Tensor | None, fake_logits: torch.Tensor, relativistic: bool
) -> torch.Tensor:
    """−log D(G(LR)) as BCE against "real"; relativistic-average uses both sides (real_logits required)."""
    if not relativistic:
        return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))
    if real_logits is None:
        raise ValueError("the relativistic generator loss needs the discriminator's logits of real images")
    real, fake = real_logits - fake_logits.mean(), fake_logits - real_logits.mean()
    return F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake)) + F.binary_cross_entropy_with_logits(
        real, torch.zeros_like(real)
    )
