"""LAG objectives (Berthelot et al. 2020, Eq. 4–11): WGAN with gradient penalty, the centre loss in the critic's
latent space, and the low-resolution conditioning the critic sees, rounded with the straight-through estimator."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

#: r, one 8-bit colour level of an image in [-1, 1] (Eq. 10).
COLOR_RESOLUTION = 2 / 255
#: Levels by which H(x) may lie beyond half a level from y and still count as y: a real image's H lands on .5 ties
#: (box means of 8-bit values, often), which float error in H tips either way.
TIE_SLACK = 1e-3


def straight_through_round(x: torch.Tensor) -> torch.Tensor:
    """round(x) in the forward pass, the identity's gradient in the backward pass: sg(round(x) − x) + x (Eq. 11)."""
    return (x.round() - x).detach() + x


def downscale(x: torch.Tensor, factor: int, method: str = "bicubic") -> torch.Tensor:
    """H, the down-scaling operator: the data's degradation (`sr.degrade`) without its rounding — anti-aliased
    bicubic, or the box mean of factor×factor blocks for "area".

    (N, 3, H, W) -> (N, 3, H/factor, W/factor); differentiable twice (the gradient penalty goes through it).
    """
    if method not in ("bicubic", "area"):
        raise ValueError(f"the down-scaling operator is bicubic or area, got {method!r}")
    if factor == 1:
        return x
    if method == "area":
        return F.avg_pool2d(x, factor)
    h, w = x.shape[-2:]
    return F.interpolate(x, size=(h // factor, w // factor), mode="bicubic", antialias=True, align_corners=False)


def lr_conditioning(
    y: torch.Tensor, x: torch.Tensor, factor: int, method: str = "bicubic", resolution: float = COLOR_RESOLUTION
) -> torch.Tensor:
    """|y − round_r(clamp(H(x)))| / r: how far the down-scaled sample lands from its input, in colour levels (Eq. 10).

    Clamping to [-1, 1] and counting whole levels repeat what `degrade` did to make y (clamp, round to the levels
    −1 + k·r that 8-bit images take there), so a sample whose down-scaled image rounds to its input y gets a
    conditioning of exactly 0, as a real image does — also where bicubic overshoots the range, and where H lands on
    a half-level tie that `degrade` rounded one way and float error would tip the other (`TIE_SLACK`).

    Args:
        y: (N, 3, h, w) the low-resolution inputs in [-1, 1] (8-bit quantised).
        x: (N, 3, factor·h, factor·w) samples in [-1, 1].
        factor: x's size over y's.
        method: H, the degradation that made y from real images ("bicubic" or "area").
        resolution: r, the colour quantum.

    Returns:
        (N, 3, h, w), whole numbers in the forward pass; gradients reach x through the straight-through rounding.
    """
    h = downscale(x, factor, method)
    h = h + (h.clamp(-1, 1) - h).detach()  # clamped forward, identity gradient (like the rounding)
    distance = (((y + 1) / resolution).round() - (h + 1) / resolution).abs()  # in levels, not yet whole
    return straight_through_round(distance - TIE_SLACK).clamp_min(0)  # ties round towards y; never −0


def gradient_penalty(
    critic: Callable[[torch.Tensor], torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    rho: torch.Tensor | None = None,
    target: float = 1.0,
) -> torch.Tensor:
    """E[(‖∇_x̂ C(x̂)‖₂ − target)²] at x̂ = ρ·x + (1 − ρ)·G(y, z), ρ ~ U(0, 1) per sample (Eq. 5).

    Args:
        critic: images (N, 3, H, W) -> (N,) scores (its conditioning computed from the images it is given).
        real, fake: (N, 3, H, W); `fake` is detached here.
        rho: (N,) mixing weights in [0, 1]; drawn from torch's default generator when None.
        target: the Lipschitz constant aimed at (1 in WGAN-GP).

    Returns:
        The scalar penalty, differentiable with respect to the critic's parameters.
    """
    if rho is None:
        rho = torch.rand(real.shape[0], device=real.device)
    rho = rho.to(real.device, real.dtype).view(-1, 1, 1, 1)
    mixed = (rho * real + (1 - rho) * fake.detach()).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(mixed).sum(), mixed, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - target).square().mean()


def critic_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """E[C(G(y, z), d)] − E[C(x, 0)], the Wasserstein part of Eq. 8 (add the weighted gradient penalty)."""
    return fake_scores.mean() - real_scores.mean()


def centre_loss(real_latent: torch.Tensor, centre_latent: torch.Tensor) -> torch.Tensor:
    """‖P(x, 0) − P(G(y, 0), d)‖², averaged over latent elements (Eq. 6); the real latent is a fixed target."""
    return F.mse_loss(centre_latent, real_latent.detach())
