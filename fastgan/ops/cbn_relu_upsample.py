"""Conditional batch-norm → ReLU → nearest up-sampling, the generator's hot elementwise chain."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fastgan.ops.nearest_upsample import nearest_upsample


def cbn_relu_upsample(
    x: torch.Tensor,
    gain: torch.Tensor,
    bias: torch.Tensor,
    running_mean: torch.Tensor | None = None,
    running_var: torch.Tensor | None = None,
    training: bool = True,
    momentum: float = 0.1,
    eps: float = 1e-5,
    scale: int = 2,
) -> torch.Tensor:
    """nearest_upsample(relu(gain · x̂ + bias), scale), x̂ batch-normalised without affine.

    Args:
        x: (N, C, H, W) activations.
        gain, bias: (N, C) per-sample (class-conditional) affine parameters.
        running_mean, running_var: (C,) buffers; updated in place in training mode like `F.batch_norm`.
        training: use batch statistics (True) or the running ones (False).
        momentum, eps: as in `F.batch_norm`.
        scale: integer nearest up-sampling factor; 1 skips the up-sampling.

    Returns:
        (N, C, scale·H, scale·W).
    """
    if x.dim() != 4 or gain.shape != x.shape[:2] or bias.shape != x.shape[:2]:
        raise ValueError(
            f"cbn_relu_upsample expects x (N, C, H, W) and gain, bias (N, C); got x {tuple(x.shape)}, "
            f"gain {tuple(gain.shape)}, bias {tuple(bias.shape)}"
        )
    if scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale}")
    normalised = F.batch_norm(x, running_mean, running_var, None, None, training, momentum, eps)
    out = F.relu(normalised * gain[:, :, None, None] + bias[:, :, None, None])
    return nearest_upsample(out, scale)
