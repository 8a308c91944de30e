"""The receptive-field radius of an upscaler, measured exactly by autograd: how far (in input pixels) an output
pixel can see. Tiling needs it to know how much context makes a tile's output exact."""

from __future__ import annotations

import copy

import torch
from torch import nn

from fastgan.ops.backends import backend


def _mark_support(module: nn.Module, inputs: tuple, output) -> None:
    """Forward hook: the gradient reaching `output` is replaced by 1 where it is non-zero (0 elsewhere), so it keeps
    its support but not its size: through dozens of layers a gradient shrinks geometrically and would underflow
    to zero at the edge of the receptive field."""
    if isinstance(output, torch.Tensor) and output.requires_grad:
        output.register_hook(lambda grad: (grad != 0).to(grad.dtype))


def receptive_radius(model: nn.Module, scale: int, channels: int = 3, limit: int = 1024) -> int:
    """r such that the s×s output block of input pixel p depends only on input pixels within r of p.

    The gradient of that block's sum with respect to a random input is structurally zero outside the receptive
    field, so its support gives r exactly (a dead ReLU can hide a pixel for one input; two inputs are tried). The
    gradient is reset to its support at every module's output (`_mark_support`), so float32 suffices however deep
    the model: 10–30 s for the paper's ×4 SRResNet on 2 CPU cores, where float64 without the reset took 123–200 s.
    The input grows until the support no longer touches its border.

    Args:
        model: (1, C, h, w) → (1, C', s·h, s·w), any convolutional upscaler; evaluated on a float32 CPU copy.
        scale: s.
        channels: C.
        limit: give up (ValueError) beyond this input size: the model is not local (attention, global pooling).
    """
    probe = copy.deepcopy(model).to("cpu", torch.float32).eval()
    for module in probe.modules():
        module.register_forward_hook(_mark_support)
    size = 33
    while size <= limit:
        centre = size // 2
        radius = 0
        generator = torch.Generator().manual_seed(0)
        for _ in range(2):
            image = torch.rand(1, channels, size, size, generator=generator, requires_grad=True)
            with backend("torch"), torch.enable_grad():  # callers may be under no_grad/inference_mode
                out = probe(image)
                block = out[..., scale * centre : scale * (centre + 1), scale * centre : scale * (centre + 1)]
                (grad,) = torch.autograd.grad(block.sum(), image)
            rows, cols = (grad.abs().sum(dim=(0, 1)) > 0).nonzero(as_tuple=True)
            if len(rows):  # none: the block does not depend on the input at all
                radius = max(radius, (rows - centre).abs().max().item(), (cols - centre).abs().max().item())
        if radius < centre:
            return int(radius)
        size = 2 * size + 1
    raise ValueError(f"the model's output depends on inputs more than {limit // 2} pixels away: not tileable")
