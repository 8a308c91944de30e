"""Sample sheets of a class-conditional generator: one row per class, and latent interpolations (the paper's
Fig. A1: each row walks from one noise vector to another with the class fixed)."""

from __future__ import annotations

from pathlib import Path

import torch
from torchvision.utils import save_image

from fastgan.atomic import atomic_path


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between noise vectors a, b (D,) at fractions t (T,) → (T, D): stays on the shell
    where Gaussian noise lives, unlike a straight line."""
    omega = torch.arccos((a / a.norm() * b / b.norm()).sum().clamp(-1, 1))
    if omega.abs() < 1e-6:
        return torch.lerp(a, b, t[:, None])
    return (torch.sin((1 - t) * omega)[:, None] * a + torch.sin(t * omega)[:, None] * b) / torch.sin(omega)


@torch.no_grad()
def class_sheet(generator, per_class: int = 10, seed: int = 0) -> torch.Tensor:
    """(C·per_class, 3, R, R) in [-1, 1]: row c holds `per_class` samples of class c."""
    noise = torch.Generator().manual_seed(seed)
    device = next(generator.parameters()).device
    labels = torch.arange(generator.num_classes).repeat_interleave(per_class)
    z = torch.randn(len(labels), generator.z_dim, generator=noise)
    return generator(z.to(device), labels.to(device)).float().cpu()


@torch.no_grad()
def interpolation_sheet(generator, steps: int = 8, seed: int = 0) -> torch.Tensor:
    """(C·steps, 3, R, R): for each class, G(slerp(z0, z1, t), c) for t = 0 … 1; z0, z1 shared by all rows."""
    noise = torch.Generator().manual_seed(seed)
    device = next(generator.parameters()).device
    z0, z1 = torch.randn(2, generator.z_dim, generator=noise)
    path = slerp(z0, z1, torch.linspace(0, 1, steps))
    z = path.repeat(generator.num_classes, 1)
    labels = torch.arange(generator.num_classes).repeat_interleave(steps)
    return generator(z.to(device), labels.to(device)).float().cpu()


def write_sheets(generator, out: str | Path, per_class: int = 10, steps: int = 8, seed: int = 0) -> list[Path]:
    """Write out/class_sheet.png and out/interpolation.png; returns their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "class_sheet.png", out / "interpolation.png"]
    for path, images, columns in (
        (paths[0], class_sheet(generator, per_class, seed), per_class),
        (paths[1], interpolation_sheet(generator, steps, seed), steps),
    ):
        with atomic_path(path, keep_suffix=True) as temporary:
            save_image(images, temporary, nrow=columns, normalize=True, value_range=(-1, 1), padding=1)
    return paths
