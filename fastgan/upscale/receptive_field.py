"""The receptive-field radius of an upscaler, measured exactly by autograd: how far (in input pixels) an output
pixel can see. Tiling needs it to know how much context makes a tile's output exact."""

from __future__ import annotations

import copy

import torch
from torch import nn

from fastgan.ops.backends import backend


def receptive_radius(model: nn.Module, scale: int, channels: int = 3, limit: int = 1024) -> int:
    """r such that the s×s output block of input pixel p depends only on input pixels within r of p.

    The gradient of that block's sum with respect to a random float64 input is structurally zero outside the
    receptive field, so its support gives r exactly (a dead ReLU can hide a pixel for one input; two inputs are
    tried). The input grows until the support no longer touches its border.

    Args:
        model: (1, C, h, w) → (1, C', s·h, s·w), any convolutional upscaler; evaluated on a float64 CPU copy.
        scale: s.
        channels: C.
        limit: give up (ValueError) beyond this input size: the model is not local (attention, global pooling).
    """
    probe = copy.deepcopy(model).to("cpu", torch.float64).eval()
    size = 33
    while size <= limit:
        centre = size // 2
        radius = 0
        generator = torch.Generator().manual_seed(0)
        for _ in range(2):
            image = torch.rand(1, channels, size, size, dtype=torch.float64, generator=generator, requires_grad=True)
            with backend("torch"), torch.enable_grad():  # callers may be under no_grad/inference_mode
                out = probe(image)
                block = out[..., scale * centre : scale * (centre + 1), scale * centre : scale * (centre + 1)]
                (grad,) = torch.autograd.grad(block.sum(), image)
            rows, cols = (grad.abs().sum(dim=(0, 1)) > 0).nonzero(as_tuple=True)
            radius = max(radius, (rows - centre).abs().max().item(), (cols - centre).abs().max().item())
        if radius < centre:
            return int(radius)
        size = 2 * size + 1
    raise ValueError(f"the model's output depends on inputs more than {limit // 2} pixels away: not tileable")
